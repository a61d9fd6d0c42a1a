"""Engine: what runs models, one package per thing it holds.

- ``config``: YAML configs (``_base_`` inheritance, ``key=value`` overrides) as dataclasses;
- ``builders``: datasets and models from a config;
- ``training/``: the trainer, optimizers, LR schedules, the seeded infinite sampler;
- ``distributed``: ``torch.distributed`` helpers (torchrun: ranks, devices, barriers);
- ``log``: the ``contextseg`` logger, rank 0 only;
- ``evaluate``: mIoU over a dataset with whole/slide/multi-scale+flip inference;
- ``checkpoints/``: training checkpoints and saved-model folders (``cs.load``, ``cs.save_pretrained``);
- ``convert/``: weights of the official releases and of mmsegmentation's zoo, one module per source;
- ``pictures/``: ``explain`` (what the context modules look at), IoU and confusion plots, legends;
- ``measure``: parameters, FLOPs, latency and peak memory (``contextseg bench``).
"""

from . import checkpoints, convert, pictures, training
from ..models.inference import inference, slide_inference  # re-exported: cs.engine.inference
from .config import Config, ConfigError, load_config
from .evaluate import evaluate, format_results
from .training import Trainer, train

__all__ = ["Config", "ConfigError", "load_config", "evaluate", "format_results", "inference", "slide_inference", "Trainer", "train", "checkpoints", "convert", "pictures", "training"]
