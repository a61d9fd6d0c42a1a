"""Losses: cross entropy (ignore, class weights, OHEM) and the papers' own losses."""

from .affinity import AffinityLoss
from .cross_entropy import CrossEntropyLoss
from .semantic_encoding import SemanticEncodingLoss

__all__ = ["CrossEntropyLoss", "AffinityLoss", "SemanticEncodingLoss"]
