"""Decode heads: the baselines and the five context methods' heads."""

from .aspp import ASPP, ASPPHead, DeepLabV3PlusHead, aspp_dilations
from .base import CONTEXT_MAP_KINDS, ContextMap, DecodeHead, HeadOutput, feature_index
from .cp_head import CPHead
from .enc_head import EncHead
from .fcn import FCNHead
from .hanet_head import HANetHead
from .ocr_head import OCRHead
from .psp import PSPHead, PyramidPoolingModule
from .sp_head import SPHead

__all__ = [
    "DecodeHead",
    "HeadOutput",
    "ContextMap",
    "CONTEXT_MAP_KINDS",
    "feature_index",
    "FCNHead",
    "PSPHead",
    "PyramidPoolingModule",
    "ASPP",
    "ASPPHead",
    "DeepLabV3PlusHead",
    "aspp_dilations",
    "CPHead",
    "EncHead",
    "OCRHead",
    "SPHead",
    "HANetHead",
]
