"""contextseg: semantic segmentation built around context aggregation."""

from importlib import metadata as _metadata

from . import backbones, data, engine, heads, losses, metrics, models, modules
from .engine.checkpoints import from_pretrained, load, save_pretrained
from .engine.pictures import explain
from .models import create_model, list_models, register_model

try:  # the one version is the package metadata's (pyproject.toml)
    __version__ = _metadata.version("contextseg")
except _metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["create_model", "list_models", "register_model", "load", "save_pretrained", "from_pretrained", "explain", "backbones", "data", "engine", "heads", "losses", "metrics", "models", "modules", "__version__"]
