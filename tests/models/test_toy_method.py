"""A context method defined entirely in this file (module, head, segmentor), registered, and run
through every check a packaged model gets: build, train step, eval, saved-model round trip, ONNX,
explain, a config-built training run and the CLI. Nothing in the package names it: if this test
needs a package file touched, adding a method costs more than the README says."""

import numpy as np
import pytest
import torch
from torch import nn

import contextseg as cs
from contextseg.heads import ContextMap, DecodeHead, HeadOutput, feature_index
from contextseg.modules import ConvBNReLU


class GlobalAffinity(nn.Module):
    """Toy context module: each pixel i listens to every pixel j with weight
    ``a_ij = softmax_j(x_i . x_j / sqrt(C))`` and adds what it hears: ``y_i = x_i + sum_j a_ij x_j``.

    Shape: ``(B, C, h, w) -> (B, C, h, w)``; ``affinity`` is ``(B, N, N)``, N = h w."""

    def affinity(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.softmax(flat.transpose(1, 2) @ flat / flat.shape[1] ** 0.5, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = (self.affinity(x) @ x.flatten(2).transpose(1, 2)).transpose(1, 2).view_as(x)
        return x + context


class ToyHead(DecodeHead):
    def __init__(self, in_channels, num_classes, *, channels=32, smoothing=0.5, dropout=0.1, in_index=-1, **shared):
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        self.reduce = ConvBNReLU(self.input_channels, channels, 3)
        self.context = GlobalAffinity()
        self.smoothing = smoothing

    def forward(self, features) -> HeadOutput:
        return {"logits": self.cls_seg(self.context(self.reduce(features[self.in_index])))}

    def losses(self, outputs, targets):  # a method loss term: the logits' mean square, weighted
        return {"loss_toy": self.smoothing * outputs["logits"].float().pow(2).mean()}

    def context_maps(self, features, pixels, image_size, **inputs):
        x = self.reduce(features[self.in_index])
        h, w = x.shape[-2:]
        rows = self.context.affinity(x)[0, feature_index(pixels, image_size, (h, w))]
        return [ContextMap("pixel_map", "affinity", f"affinity of ({px}, {py})", row.view(h, w), pixel=(px, py), vrange=None) for (px, py), row in zip(pixels, rows)]


class ToyNet(cs.models.Segmentor):
    head_cls = ToyHead
    description = "Toy: global affinity context (test only)"
    loss_terms = ("loss_toy",)


@pytest.fixture
def toy():
    cs.register_model("toynet", ToyNet)
    yield "toynet"
    cs.models.MODELS.pop("toynet")


def test_the_toy_method_passes_every_model_check(toy, tmp_path, every_model_checks):
    assert toy in cs.list_models() and ToyNet.has_context_maps()
    every_model_checks(toy, tmp_path)


def test_the_toy_context_map_is_its_affinity_row(toy):
    torch.manual_seed(0)
    model = cs.create_model(toy, num_classes=3, backbone="resnet18d", output_stride=8, channels=8).eval()
    image = np.random.default_rng(1).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    e = cs.explain(model, image, pixels=[(17, 9)])
    (m,) = e["maps"]
    view = torch.from_numpy(e["image"]).permute(2, 0, 1).double().div(255)
    mean, std = torch.tensor([0.485, 0.456, 0.406], dtype=torch.double), torch.tensor([0.229, 0.224, 0.225], dtype=torch.double)
    with torch.no_grad():
        x = model.double().decode_head.reduce(model.backbone(((view - mean[:, None, None]) / std[:, None, None])[None])[-1])
        flat = x[0].flatten(1)  # (C, N), the affinity written plainly
        i = (9 * 4 // 32) * 5 + 17 * 5 // 40
        logits = torch.stack([flat[:, i] @ flat[:, j] for j in range(flat.shape[1])]) / flat.shape[0] ** 0.5
    assert m.pixel == (17, 9) and np.allclose(m.values.ravel(), torch.softmax(logits, 0).numpy(), atol=2e-2)


def test_the_toy_method_trains_from_a_config_and_the_cli_explains_it(toy, tmp_path):
    from contextseg.cli.main import main

    work = tmp_path / "run"
    (tmp_path / "toy.yaml").write_text(
        "name: toy\n"
        "model: {name: toynet, backbone: resnet18d, output_stride: 8, channels: 8}\n"
        "data: {name: synthetic, kwargs: {size: [32, 48], length: 4}, crop_size: [32, 48], num_workers: 0}\n"
        f"train: {{max_iters: 2, batch_size: 2, eval_interval: 2, log_interval: 1, work_dir: {work}}}\n"
    )
    code = main(["train", str(tmp_path / "toy.yaml")])
    assert code == 0 and (work / "last.pt").is_file()
    from PIL import Image

    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(tmp_path / "a.png")
    assert main(["explain", str(tmp_path / "a.png"), "--checkpoint", str(work / "last.pt"), "--out", str(tmp_path / "x"), "--pixel", "3,3"]) == 0
    assert (tmp_path / "x" / "a_affinity.png").is_file()
