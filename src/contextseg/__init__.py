"""contextseg: semantic segmentation built around context aggregation.

``import contextseg`` is light: the layers (``backbones``, ``data``, ``modules``, ``losses``,
``heads``, ``models``, ``engine``, ``metrics``) and the functions below are imported on first use
(PEP 562), so that ``contextseg --help`` and ``contextseg --version`` answer without loading torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and the API reference read; at run time each is imported on first use
    from . import backbones, data, engine, heads, losses, metrics, models, modules
    from .engine.checkpoints import from_pretrained, load, save_pretrained
    from .engine.pictures import explain
    from .models import create_model, list_models, register_model

try:  # the one version is the package metadata's (pyproject.toml)
    __version__ = _metadata.version("contextseg")
except _metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"

#: each public name -> the module that holds it (a layer is its own module)
_WHERE = {
    "create_model": ".models", "list_models": ".models", "register_model": ".models",
    "load": ".engine.checkpoints", "save_pretrained": ".engine.checkpoints", "from_pretrained": ".engine.checkpoints",
    "explain": ".engine.pictures",
    **{layer: f".{layer}" for layer in ("backbones", "data", "engine", "heads", "losses", "metrics", "models", "modules")},
}

__all__ = ["create_model", "list_models", "register_model", "load", "save_pretrained", "from_pretrained", "explain", "backbones", "data", "engine", "heads", "losses", "metrics", "models", "modules", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'contextseg' has no attribute {name!r}")
    module = importlib.import_module(_WHERE[name], __name__)
    value = module if _WHERE[name] == f".{name}" else getattr(module, name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
