"""Plug-in context modules, one file per paper."""

from .common import ConvBNReLU, resize
from .context_prior import AggregationModule, ContextPriorLayer
from .encoding import EncModule, Encoding
from .height_attention import HeightAttention
from .object_context import ObjectContextBlock, SpatialGather
from .strip_pooling import MixedPooling, StripPooling, insert_strip_pooling

__all__ = [
    "AggregationModule",
    "ContextPriorLayer",
    "Encoding",
    "EncModule",
    "SpatialGather",
    "ObjectContextBlock",
    "StripPooling",
    "MixedPooling",
    "insert_strip_pooling",
    "HeightAttention",
    "ConvBNReLU",
    "resize",
]
