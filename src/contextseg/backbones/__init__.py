"""Backbones: timm feature extractors returning C2..C5."""

from .timm_backbone import TimmBackbone, load_backbone_weights

__all__ = ["TimmBackbone", "load_backbone_weights"]
