"""The segmentor: backbone -> decode head (-> auxiliary head) -> losses.

Every model of the registry is a small subclass that names its decode head; the whole architecture
reads in `Segmentor.forward`.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..backbones import TimmBackbone
from ..data.base import as_rgb_array
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform
from ..heads.base import ContextMap, DecodeHead, HeadOutput
from ..heads.fcn import FCNHead
from ..losses import CrossEntropyLoss
from ..modules.common import resize
from .inference import INFERENCE_SETTINGS, predict_labels

__all__ = ["Segmentor", "MmsegLayout"]


@dataclass(frozen=True)
class MmsegLayout:
    """How mmsegmentation 1.x lays out a model's checkpoint, declared next to the model so that
    ``contextseg convert mmseg`` (`contextseg.engine.convert.from_mmseg`) needs no edit for a
    new one (timm keeps each family's checkpoint filter beside the family in the same way).

    Args:
        options: contextseg keywords that rebuild mmseg's layout of its ``*_r50-d8`` /
            ``*_r101-d8`` zoo models (head widths, kernel sizes, ...).
        config: the mmsegmentation 1.2.2 zoo config (under its ``configs/``) the layout is that of;
            the parity benchmarks build mmseg's model from it.
        signature: a tensor-name prefix that only this model's mmseg checkpoints hold.
        renames: ``(mmseg prefix, contextseg prefix)`` inside ``decode_head.`` / ``auxiliary_head.``,
            tried in order before mmcv's ``ConvModule`` parts (``conv``/``bn`` -> ``0``/``1``) are mapped.
        refines: a model whose signature this model's checkpoints hold too (DeepLabV3+ holds
            DeepLabV3's ASPP, CCNet FCN's ``conv_cat``): a checkpoint is that model's only if it
            does not also hold this one's signature.
        auxiliary: whether mmseg's model has the auxiliary FCN head on C4 (the converter builds
            it only if the checkpoint holds it).
        zoo_miou: the single-scale Cityscapes val mIoU mmsegmentation publishes for ``config``'s
            trained model (its ``metafile.yaml``), which the converted weights should reproduce.
    """

    options: dict[str, Any]
    config: str
    signature: str
    renames: tuple[tuple[str, str], ...] = field(default=())
    refines: str | None = None
    auxiliary: bool = True
    zoo_miou: float | None = None


class Segmentor(nn.Module):
    """Encoder-decoder segmentation model.

    Args:
        num_classes: K.
        backbone: timm model name (``resnet50d``, ``resnet101d``, ``resnet18d``, ``hrnet_w48``, ...).
        output_stride: 8, 16 or 32 (ignored by backbones that cannot dilate).
        pretrained_backbone: ``None``/``False`` random init, ``True`` timm hub weights, or a local
            ``.pth``/``.pt``/``.safetensors`` path.
        aux_head: add the auxiliary FCN head on C4 (CBR 3x3 -> ``aux_channels``, cls_seg).
        aux_weight: weight of its cross entropy (0.4 in the papers' recipes).
        aux_channels: width of the auxiliary head (256 in the papers, for a 1024-channel C4).
        ignore_index: label value ignored by every loss (255).
        class_weight: optional per-class weights of the cross entropy.
        ohem_thresh: online hard example mining on the main output only: the probability below which a pixel is hard (None: off).
        ohem_min_kept: the fewest pixels OHEM keeps.
        contract_dilation: False dilates the first block of each dilated stage fully (HANet's release).
        hrnet_upsample: HRNet fuse-layer upsampling, ``"nearest"`` (timm) or ``"bilinear"`` (mmseg).
        **head_kwargs: options of the decode head (see each model's head class).

    Forward:
        ``eval``: ``images (B, 3, H, W) -> logits (B, K, H, W)`` at the input resolution.
        ``train`` with ``targets (B, H, W)`` int64: a dict of scalar tensors, ``"loss"`` (the
        weighted total) and each weighted term (``"loss_seg"``, ``"loss_aux"``, method terms).
        ``positions (B, H)`` (optional) gives each image row's absolute height in the original
        image as a fraction in [0, 1]; only height-aware heads (HANet) read it.
    """

    head_cls: type[DecodeHead] = FCNHead
    description: str = ""  # one line: "Name: what it computes (authors, venue)"
    context_modules: tuple[str, ...] = ()  # the names in contextseg.modules that make its context (none for a baseline)
    loss_terms: tuple[str, ...] = ()  # the method's own weighted loss terms, besides loss_seg and loss_aux
    aux_at_feature_resolution = False  # HANet computes its aux loss against downsampled labels
    align_corners = False  # how logits are upsampled to the input (HANet's release: True)
    # whether an ONNX export may take any input height and width: False where the model is tied to
    # its crop (CPNet's prior); adaptive pooling exports through modules.common.adaptive_avg_pool2d,
    # whose bins follow the input size; the batch size is always free
    onnx_any_size = True
    mmseg_layout: MmsegLayout | None = None  # mmsegmentation's checkpoint layout, where it has this model

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50d",
        output_stride: int = 8,
        pretrained_backbone: bool | str | os.PathLike | None = None,
        aux_head: bool = True,
        aux_weight: float = 0.4,
        aux_channels: int = 256,
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
        contract_dilation: bool = True,
        hrnet_upsample: str = "nearest",
        **head_kwargs: Any,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_weight = list(class_weight) if class_weight is not None else None
        self.aux_weight = aux_weight
        self.aux_channels = int(aux_channels)
        self._contract_dilation = contract_dilation
        self._hrnet_upsample = hrnet_upsample
        self.backbone = self.build_backbone(backbone, output_stride, pretrained_backbone)
        self.decode_head = self.build_decode_head(self.backbone.channels, self.num_classes, **head_kwargs)
        self.aux_head = self.build_aux_head(self.backbone.channels, self.num_classes) if aux_head else None
        self.decode_head.init_weights()
        if self.aux_head is not None:
            self.aux_head.init_weights()
        # what a saved or loaded model carries beside its weights: classes, palette, mean/std,
        # test scale (base_size), training crop and evaluation settings (cs.load fills it in)
        self.meta: dict[str, Any] = {}
        self.criterion = CrossEntropyLoss(ignore_index, class_weight, ohem_thresh, ohem_min_kept)
        self.aux_criterion = CrossEntropyLoss(ignore_index, class_weight)

    # -- construction hooks -------------------------------------------------------------------
    def build_backbone(self, name: str, output_stride: int, pretrained) -> TimmBackbone:
        return TimmBackbone(name, output_stride, pretrained, contract_dilation=self._contract_dilation, fuse_upsample=self._hrnet_upsample)

    def build_decode_head(self, in_channels: list[int], num_classes: int, **kwargs: Any) -> DecodeHead:
        return self.head_cls(in_channels, num_classes, **kwargs, **self.head_context())

    def head_context(self) -> dict[str, Any]:
        """What the segmentor supplies to every head (see `DecodeHead`)."""
        return {"output_stride": self.backbone.output_stride, "ignore_index": self.ignore_index, "class_weight": self.class_weight}

    def build_aux_head(self, in_channels: list[int], num_classes: int) -> DecodeHead | None:
        return FCNHead(in_channels, num_classes, channels=self.aux_channels, num_convs=1, concat_input=False, in_index=2, **self.head_context())

    @property
    def uses_positions(self) -> bool:
        """Whether the model reads per-row image positions (HANet)."""
        return self.decode_head.uses_positions

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) normalised floats, got shape {tuple(images.shape)}")
        features = self.backbone(images)
        extra: dict[str, torch.Tensor | None] = {}
        if self.decode_head.uses_positions:
            extra["positions"] = positions
        if self.decode_head.loss_in_forward and self.training and targets is not None:
            extra["targets"] = targets
        outputs = self.decode_head(features, **extra)
        if self.training and targets is not None:
            if targets.shape != (images.shape[0], *images.shape[-2:]):
                raise ValueError(
                    f"targets must be (B, H, W) = {(images.shape[0], *images.shape[-2:])}, got {tuple(targets.shape)}"
                )
            aux_logits = self.aux_head(features)["logits"] if self.aux_head is not None else None
            return self.losses(outputs, aux_logits, targets)
        return resize(outputs["logits"], images.shape[-2:], align_corners=self.align_corners)

    def losses(self, outputs: HeadOutput, aux_logits: torch.Tensor | None, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss terms by name plus their sum under ``"loss"``."""
        terms = {"loss_seg": self.criterion(resize(outputs["logits"], targets.shape[-2:], align_corners=self.align_corners), targets)}
        if aux_logits is not None:
            if self.aux_at_feature_resolution:
                labels = resize(targets[:, None].float(), aux_logits.shape[-2:], mode="nearest")[:, 0].long()
                terms["loss_aux"] = self.aux_weight * self.aux_criterion(aux_logits, labels)
            else:
                terms["loss_aux"] = self.aux_weight * self.aux_criterion(resize(aux_logits, targets.shape[-2:]), targets)
        terms.update(self.decode_head.losses(outputs, targets))
        return {"loss": sum(terms.values()), **terms}

    # -- inference for people ---------------------------------------------------------------------
    def default_inference(self) -> dict[str, Any]:
        """How this model segments an image unless told otherwise: ``self.meta["inference"]`` (what
        its training config evaluated with), and for a model tied to its training crop
        (`tied_input_size`, CPNet) sliding windows of that crop."""
        settings = {k: list(v) if isinstance(v, list) else v for k, v in INFERENCE_SETTINGS.items()}
        settings.update({k: v for k, v in self.meta.get("inference", {}).items() if v is not None})
        tied = self.tied_input_size()
        if tied is not None:
            settings["mode"] = "slide"
            settings["crop_size"] = settings["crop_size"] or list(tied)
        return settings

    # -- options tied to the training crop -----------------------------------------------------
    @classmethod
    def crop_options(cls, crop_size: Sequence[int], output_stride: int) -> dict[str, Any]:
        """Keywords whose value follows from the training crop ``(h, w)`` at ``output_stride``
        (CPNet: its prior is the crop's feature map). The one place this rule lives: configs, the
        bench, export, explain and inference all ask here. ``{}`` for a model that takes any size."""
        return {}

    def tied_input_size(self) -> tuple[int, int] | None:
        """The input ``(h, w)`` this model is tied to (CPNet: its training crop, from ``meta`` or
        the prior size times the output stride), or None when it takes any size."""
        return None

    # -- what explain draws ----------------------------------------------------------------------
    @torch.no_grad()
    def context_maps(self, images: torch.Tensor, pixels: Sequence[tuple[int, int]], positions: torch.Tensor | None = None) -> list[ContextMap]:
        """What the model's context modules compute on one normalised image ``(1, 3, H, W)`` (at
        `tied_input_size` where the model has one) for query pixels ``(x, y)`` of it: the
        decode head's `DecodeHead.context_maps`; a method with a context module outside its
        head (SPNet's strip pooling in the backbone) adds its maps here. ``[]`` for a baseline."""
        features = self.backbone(images)
        extra = {"positions": positions} if self.decode_head.uses_positions else {}
        return self.decode_head.context_maps(features, pixels, tuple(images.shape[-2:]), **extra)

    @classmethod
    def has_context_maps(cls) -> bool:
        """Whether `context_maps` says anything: the head or the segmentor overrides it."""
        return cls.context_maps is not Segmentor.context_maps or cls.head_cls.context_maps is not DecodeHead.context_maps

    @torch.no_grad()
    def predict(self, images: Any, **overrides: Any) -> torch.Tensor | list[torch.Tensor]:
        """Label maps (int64) at each image's original size, with the model's own inference settings.

        ``images`` may be an image file path, a PIL image, or an array (``(H, W, 3)`` uint8 and the
        other forms `as_rgb_array` accepts and casts: grayscale, RGBA,
        uint16, floats in [0, 1]), each resized to the model's test scale ``meta["base_size"]`` and
        normalised with ``meta["mean"]``/``meta["std"]`` as in evaluation (returns ``(H, W)``); a
        list of those (returns a list); or an already normalised float tensor ``(3, H, W)`` or
        ``(B, 3, H, W)`` of any float dtype (cast to the weights'; returns ``(H, W)`` or
        ``(B, H, W)``). Empty images, NaN or infinite values and unreadable dtypes are a
        ``ValueError``. ``overrides`` replace `default_inference`'s settings (``mode``,
        ``crop_size``, ``stride``, ``scales`` (each in (0, 8]), ``flip``). The labels are the
        argmax of `inference` computed in bands of rows
        (`predict_labels`): a large photo never holds its
        full-size class probabilities.
        """
        if isinstance(images, (list, tuple)):
            return [self.predict(image, **overrides) for image in images]
        unknown = set(overrides) - {*INFERENCE_SETTINGS, "positions"}
        if unknown:
            raise TypeError(f"predict() got unknown setting(s) {sorted(unknown)}; use {', '.join(INFERENCE_SETTINGS)}")
        settings = {**self.default_inference(), **overrides}
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            if images.ndim not in (3, 4) or images.shape[-3] != 3 or images.numel() == 0:
                raise ValueError(f"predict() takes a normalised float tensor (3, H, W) or (B, 3, H, W) with H, W > 0; got shape {tuple(images.shape)}")
            if not bool(torch.isfinite(images).all()):
                raise ValueError("predict() got a tensor with NaN or infinite values")
            batch = (images if images.ndim == 4 else images[None]).to(dtype)  # half, bfloat16 or float64 input: cast to the weights' dtype
            out_size = batch.shape[-2:]
        else:
            rgb = as_rgb_array(images)
            out_size = rgb.shape[:2]
            transform = EvalTransform(base_size=self.meta.get("base_size"), mean=self.meta.get("mean", IMAGENET_MEAN), std=self.meta.get("std", IMAGENET_STD))
            image = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
            batch = transform(image, torch.zeros(out_size, dtype=torch.int64))["image"][None].to(dtype)  # a model cast to float64 or a half type
        was_training = self.training
        self.eval()
        try:
            labels = predict_labels(self, batch.to(device), out_size=out_size, **settings)
        finally:
            self.train(was_training)
        return labels if isinstance(images, torch.Tensor) and images.ndim == 4 else labels[0]

    @classmethod
    def small_options(cls, size: tuple[int, int]) -> dict[str, Any]:
        """Keywords that make the model work on small ``size`` inputs at output stride 8 (tests,
        benchmarks): the crop-tied options of that size (`crop_options`) and e.g. SPNet's
        pool sizes."""
        return cls.crop_options(size, 8)

    @classmethod
    def options(cls) -> dict[str, inspect.Parameter]:
        """Every keyword ``create_model`` accepts for this model: segmentor's and head's."""
        params = {}
        for klass in (Segmentor, cls):  # the segmentor's and a subclass's own keywords (e.g. SPNet's spm)
            params.update({n: p for n, p in inspect.signature(klass.__init__).parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"})
        head = inspect.signature(cls.head_cls).parameters
        params.update({n: p for n, p in head.items() if p.kind is p.KEYWORD_ONLY})
        return params
