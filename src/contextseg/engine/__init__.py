"""Engine: configuration, training, evaluation, inference, checkpoints and distributed helpers."""

from .config import Config, ConfigError, load_config
from .evaluate import evaluate, format_results
from ..models.inference import inference, slide_inference  # re-exported: cs.engine.inference
from .trainer import Trainer, train

__all__ = ["Config", "ConfigError", "load_config", "evaluate", "format_results", "inference", "slide_inference", "Trainer", "train"]
