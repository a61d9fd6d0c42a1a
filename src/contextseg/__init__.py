"""contextseg: semantic segmentation built around context aggregation."""

from . import backbones, data, engine, heads, losses, metrics, models, modules
from .engine.checkpoints import from_pretrained, load, save_pretrained
from .engine.pictures import explain
from .models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "register_model", "load", "save_pretrained", "from_pretrained", "explain", "backbones", "data", "engine", "heads", "losses", "metrics", "models", "modules", "__version__"]
