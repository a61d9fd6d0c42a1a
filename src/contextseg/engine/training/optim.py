"""Optimizers with parameter groups (LR multipliers, per-group weight decay) and LR schedules."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

import torch
from torch import nn

from ..config import TrainConfig

__all__ = ["build_param_groups", "build_optimizer", "PolyLR", "CosineLR", "build_scheduler"]


def build_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Group trainable parameters by (LR multiplier, weight decay).

    Parameters outside ``backbone.`` get ``head_lr_mult``; 1-d parameters (norm weights, biases,
    the Encoding layer's smoothing factors) get ``norm_weight_decay`` when it is set; then the first
    ``paramwise`` rule whose glob ``pattern`` matches the parameter name overrides ``lr_mult``
    and/or ``weight_decay``. The same groups serve SGD and AdamW.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_mult = 1.0 if name.startswith("backbone.") else float(cfg.head_lr_mult)
        weight_decay = float(cfg.weight_decay)
        if cfg.norm_weight_decay is not None and param.ndim <= 1:
            weight_decay = float(cfg.norm_weight_decay)
        for rule in cfg.paramwise:
            if fnmatchcase(name, rule["pattern"]):
                lr_mult = float(rule.get("lr_mult", lr_mult))
                weight_decay = float(rule.get("weight_decay", weight_decay))
                break
        groups.setdefault((lr_mult, weight_decay), []).append(param)
    return [
        {"params": params, "lr": cfg.lr * lr_mult, "initial_lr": cfg.lr * lr_mult, "weight_decay": wd, "lr_mult": lr_mult}
        for (lr_mult, wd), params in groups.items()
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer``: SGD with momentum (the papers' recipes) or AdamW (decoupled weight decay)."""
    groups = build_param_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class _Warmup:
    def __init__(self, warmup_iters: int, warmup_ratio: float) -> None:
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio

    def warm(self, it: int, factor: float) -> float:
        """Scale ``factor`` linearly from ``warmup_ratio`` to 1 over the first ``warmup_iters``."""
        if it < self.warmup_iters:
            factor *= self.warmup_ratio + (1.0 - self.warmup_ratio) * it / self.warmup_iters
        return factor


class PolyLR(_Warmup):
    """LR factor at iteration ``it``: ``max((1 - it / max_iters) ** power, min_ratio)``.

    With ``warmup_iters > 0`` the factor is further scaled linearly from ``warmup_ratio`` to 1 over
    the first ``warmup_iters`` iterations. Each group's LR is ``initial_lr * factor``, so group
    multipliers are preserved.
    """

    def __init__(self, max_iters: int, power: float = 0.9, min_ratio: float = 1e-4, warmup_iters: int = 0, warmup_ratio: float = 0.1) -> None:
        super().__init__(warmup_iters, warmup_ratio)
        self.max_iters = max_iters
        self.power = power
        self.min_ratio = min_ratio

    def __call__(self, it: int) -> float:
        return self.warm(it, max((1.0 - min(it, self.max_iters) / self.max_iters) ** self.power, self.min_ratio))


class CosineLR(_Warmup):
    """LR factor ``min_ratio + (1 - min_ratio) * (1 + cos(pi * it / max_iters)) / 2``, with the same
    linear warm-up as `PolyLR`."""

    def __init__(self, max_iters: int, min_ratio: float = 1e-4, warmup_iters: int = 0, warmup_ratio: float = 0.1) -> None:
        super().__init__(warmup_iters, warmup_ratio)
        self.max_iters = max_iters
        self.min_ratio = min_ratio

    def __call__(self, it: int) -> float:
        progress = min(it, self.max_iters) / self.max_iters
        return self.warm(it, self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    min_ratio = (cfg.min_lr / cfg.lr) if cfg.min_lr is not None else 1e-4
    if cfg.schedule == "cosine":
        factor = CosineLR(cfg.max_iters, min_ratio, cfg.warmup_iters, cfg.warmup_ratio)
    else:
        factor = PolyLR(cfg.max_iters, cfg.power, min_ratio, cfg.warmup_iters, cfg.warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
