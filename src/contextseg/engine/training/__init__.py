"""Training: the trainer (iteration loop, evaluation, checkpoints, exact resume), optimizers and LR
schedules, the seeded infinite sampler."""

from .optim import build_optimizer, build_param_groups, build_scheduler
from .sampler import InfiniteSampler, SeededDraws
from .trainer import Trainer, train

__all__ = [
    "Trainer",
    "train",
    "build_optimizer",
    "build_param_groups",
    "build_scheduler",
    "InfiniteSampler",
    "SeededDraws",
]
