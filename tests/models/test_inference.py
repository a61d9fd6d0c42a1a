import numpy as np
import pytest
import torch
from torch import nn

import contextseg as cs
from contextseg.models.inference import inference, row_positions, slide_inference, slide_windows


class Pointwise(nn.Module):
    """A 1x1 conv: every pixel's logits depend on that pixel only, so windows must not matter."""

    def __init__(self, crop=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.crop = crop
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


class RowReader(nn.Module):
    """Outputs the row positions it was given as the logit of class 0 (a HANet stand-in)."""

    uses_positions = True

    def forward(self, x, positions=None):
        assert positions is not None and positions.shape == (x.shape[0], x.shape[2])
        return torch.stack([positions[:, :, None].expand(-1, -1, x.shape[3]), torch.zeros_like(x[:, 0])], 1)


def test_slide_windows_cover_the_image_with_full_size_windows():
    boxes = slide_windows(100, 70, (40, 30), (26, 20))
    cover = torch.zeros(100, 70)
    for y1, y2, x1, x2 in boxes:
        assert (y2 - y1, x2 - x1) == (40, 30)
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    assert slide_windows(20, 10, (40, 30), (26, 20)) == [(0, 20, 0, 10)]  # small image: one padded window


def test_slide_equals_whole_for_a_pointwise_model_and_windows_are_exact():
    model = Pointwise().eval()
    x = torch.randn(2, 3, 53, 71)
    whole = model(x)
    model.sizes.clear()
    slide = slide_inference(model, x, (24, 32), (16, 21))
    assert torch.allclose(slide, whole, atol=1e-6)
    assert set(model.sizes) == {(24, 32)}
    # an image smaller than the window is padded to exactly the window
    model.sizes.clear()
    small = torch.randn(1, 3, 10, 12)
    assert torch.allclose(slide_inference(model, small, (24, 32)), model(small), atol=1e-6)
    assert model.sizes[0] == (24, 32)


def test_inference_flip_and_scales_average_probabilities():
    model = Pointwise().eval()
    x = torch.randn(1, 3, 32, 48)
    base = inference(model, x)
    assert torch.allclose(base, model(x).softmax(1), atol=1e-6)
    assert torch.allclose(inference(model, x, flip=True), base, atol=1e-6)  # pointwise: flip-invariant
    ms = inference(model, x, scales=(0.5, 1.0, 1.5), flip=True, out_size=(40, 60))
    assert ms.shape == (1, 4, 40, 60)
    assert torch.allclose(ms.sum(1), torch.ones(1, 40, 60), atol=1e-5)
    with pytest.raises(ValueError, match="crop_size"):
        inference(model, x, mode="slide")


def test_slide_passes_each_window_its_absolute_rows():
    model = RowReader()
    x = torch.randn(1, 3, 50, 20)
    out = slide_inference(model, x, (16, 20), (10, 20))
    expected = row_positions(1, 50)
    assert torch.allclose(out[0, 0, :, 0], expected[0], atol=1e-6)
    # through the full inference API with TTA, still the whole image's rows
    probs = inference(model, x, mode="slide", crop_size=(16, 20), flip=True)
    assert probs.shape == (1, 2, 50, 20)


class Coarse(nn.Module):
    """A segmentor stand-in: logits computed at 1/4 of the input and upsampled to it, smooth
    enough that the resize to the output size interpolates between differing neighbours."""

    def __init__(self, classes=6):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, classes, 3, padding=1)

    def forward(self, x):
        coarse = self.conv(nn.functional.avg_pool2d(x, 4, ceil_mode=True))
        return nn.functional.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("settings, out_size", [
    ({}, (97, 131)),  # upsampling to a larger photo
    ({}, (13, 9)),  # downsampling
    ({"scales": [0.75, 1.25], "flip": True}, (61, 83)),
    ({"mode": "slide", "crop_size": (24, 24), "stride": (16, 16)}, (70, 50)),
])
def test_banded_labels_equal_the_argmax_of_the_full_probabilities(settings, out_size):
    """predict_labels never holds (B, K, H, W) probabilities at the output size; whatever the bands,
    its labels are those of inference(...).argmax(1), the float64 full resize."""
    from contextseg.models.inference import predict_labels

    model = Coarse().double().eval()
    images = torch.randn(2, 3, 40, 52, dtype=torch.float64)
    reference = inference(model, images, out_size=out_size, **settings).argmax(1)
    for band_elements in (1, 6 * 2 * out_size[1] * 5, 1 << 24):  # one row per band, five rows, everything
        labels = predict_labels(model, images, out_size=out_size, band_elements=band_elements, **settings)
        assert labels.shape == (2, *out_size) and labels.dtype == torch.int64
        assert torch.equal(labels, reference)


def test_banded_resize_is_bilinear_without_aligned_corners():
    from contextseg.models.inference import _resize_rows

    logits = torch.randn(1, 3, 7, 11, dtype=torch.float64)
    full = nn.functional.interpolate(logits, size=(23, 5), mode="bilinear", align_corners=False)
    assert torch.allclose(_resize_rows(logits, (23, 5), 4, 17), full[:, :, 4:17], atol=1e-12)


def test_test_time_scales_are_bounded():
    with pytest.raises(ValueError, match="scales"):
        inference(Pointwise(), torch.randn(1, 3, 8, 8), scales=[1e9])
    with pytest.raises(ValueError, match="scales"):
        inference(Pointwise(), torch.randn(1, 3, 8, 8), scales=[float("nan")])


def test_config_scale_bound_is_the_inference_bound():
    from contextseg.engine.config import MAX_SCALE
    from contextseg.models.inference import MAX_SCALE as INFERENCE_MAX_SCALE

    assert MAX_SCALE == INFERENCE_MAX_SCALE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_predict_takes_every_input_type_and_extreme_shape_on_a_cast_model(dtype, tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = cs.create_model("hanet", num_classes=3, backbone="resnet18d", channels=8, c1_channels=4, hanet_reduction=4, aux_head=False).eval().to(dtype)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "p.png")
    inputs = {"row": np.zeros((1, 50, 3), np.uint8), "column": np.zeros((50, 1, 3), np.uint8), "pixel": np.zeros((1, 1, 3), np.uint8),
              "grey": np.zeros((20, 30), np.uint8), "pil": Image.new("RGB", (30, 20)), "path": tmp_path / "p.png",
              "float tensor": torch.zeros(3, 20, 30, dtype=dtype)}
    for name, image in inputs.items():
        labels = model.predict(image)
        size = image.size[::-1] if isinstance(image, Image.Image) else (20, 30) if name in ("path", "float tensor") else image.shape[:2]
        assert labels.shape == tuple(size) and labels.dtype == torch.int64, name


def test_ambiguous_layouts_and_bad_settings_are_refused_saying_what_to_pass():
    model = cs.create_model("fcn", num_classes=3, backbone="resnet18d", channels=8, aux_head=False).eval()
    with pytest.raises(ValueError, match=r"looks channels first: pass array.transpose\(1, 2, 0\)"):
        model.predict(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(ValueError, match=r"channels first \(C, H, W\) and as channels last \(H, W, C\) alike.*permute"):
        model.predict(torch.zeros(3, 10, 3, dtype=torch.uint8))
    image = np.zeros((24, 32, 3), np.uint8)
    for settings, message in [(dict(mode="slide", crop_size=(0, 10)), "crop_size must be two positive integers"),
                              (dict(mode="slide", crop_size=(10,)), "crop_size must be two positive integers"),
                              (dict(mode="slide", crop_size=(16, 16), stride=(0, 4)), "stride must be two positive integers"),
                              (dict(mode="slide", crop_size=(10**6, 10**6)), "at most 16384"),
                              (dict(scales=[0.0]), "scales must be"), (dict(flip="yes"), "flip must be True or False")]:
        with pytest.raises(ValueError, match=message):
            model.predict(image, **settings)


def test_the_inference_settings_are_the_evaluate_section():
    # one list of keys and defaults (models.inference.INFERENCE_SETTINGS) for predict, saved models
    # and default_inference; the config's evaluate section (which cannot import models) must match it
    from dataclasses import fields

    from contextseg.engine.config import EvalConfig
    from contextseg.models.inference import INFERENCE_SETTINGS

    evaluate = {f.name: getattr(EvalConfig(), f.name) for f in fields(EvalConfig) if f.name != "antialias"}
    assert evaluate == INFERENCE_SETTINGS
    model = cs.create_model("fcn", num_classes=3, backbone="resnet18d")
    assert model.default_inference() == INFERENCE_SETTINGS
    with pytest.raises(TypeError, match="use mode, crop_size, stride, scales, flip"):
        model.predict(np.zeros((8, 8, 3), np.uint8), window=3)


def test_non_finite_logits_under_autocast_are_recomputed_in_fp32():
    # a model whose bf16 forward misbehaves (as torch 2.14.1's CPU bf16 strided conv with a
    # one-pixel-wide output can) gives the fp32 labels, not argmax-of-NaN class 0
    class FlakyUnderAutocast(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            out = self.conv(x)
            return torch.full_like(out, float("nan")) if torch.is_autocast_enabled("cpu") else out

    model = FlakyUnderAutocast().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = model(x).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            probs = inference(model, x)
            from contextseg.models.inference import predict_labels
            labels = predict_labels(model, x)
    assert torch.isfinite(probs).all() and torch.equal(probs.argmax(1), expected) and torch.equal(labels, expected)
