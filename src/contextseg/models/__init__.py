"""Models: the segmentor, the baselines, the five context methods and the model registry."""

from .baselines import FCN, DeepLabV3, DeepLabV3Plus, PSPNet
from .cpnet import CPNet
from .encnet import EncNet
from .hanet import HANet
from .ocrnet import OCRNet
from .registry import MODELS, create_model, get_model_class, list_models, register_model
from .segmentor import Segmentor
from .spnet import SPNet

__all__ = [
    "Segmentor",
    "FCN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "CPNet",
    "EncNet",
    "OCRNet",
    "SPNet",
    "HANet",
    "MODELS",
    "create_model",
    "list_models",
    "get_model_class",
    "register_model",
]
