"""Checkpoints and saved models: training checkpoints (``.pt``, atomic and finite, exact resume) and
saved-model folders (``model.safetensors`` + ``config.json``, the Hub layout), read through one
reader (`read_torch_file`)."""

from .checkpoint import find_resume, load_checkpoint, model_state, nonfinite_tensors, save_checkpoint
from .files import ensure_writable_folder, read_torch_file
from .saved_model import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load, load_checkpoint_model, save_pretrained

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "find_resume",
    "model_state",
    "nonfinite_tensors",
    "ensure_writable_folder",
    "read_torch_file",
    "load",
    "load_checkpoint_model",
    "save_pretrained",
    "from_pretrained",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
]
