"""Weights of the official releases and of mmsegmentation's zoo as contextseg models and backbones,
one module per source, all reading through `.reading` (and so through the one torch-file
reader, ``weights_only=True``):

- `from_hanet` (`.hanet`): a released HANet Cityscapes model -> a ``hanet`` model;
- `from_encoding_resnet` (`.encoding`): PyTorch-Encoding's deep-stem ImageNet ResNets
  -> a timm ``resnet50s``/``resnet101s`` state dict, for ``model.pretrained_backbone``;
- `from_mmseg` (`.mmseg`): an mmsegmentation checkpoint of FCN, PSPNet, DeepLabV3(+),
  EncNet or OCRNet -> the contextseg model.

Every tensor is mapped by name through an explicit table; a file with a tensor the table does not
know, a tensor it lacks, or a shape that does not fit is refused with the names.
"""

from .encoding import from_encoding_resnet
from .hanet import from_hanet, hanet_key
from .mmseg import MMSEG_DATASETS, MMSEG_MODELS, from_mmseg, mmseg_key
from .reading import ConversionError, read_state_dict

__all__ = ["from_hanet", "from_encoding_resnet", "from_mmseg", "hanet_key", "mmseg_key", "read_state_dict", "ConversionError", "MMSEG_MODELS", "MMSEG_DATASETS"]
