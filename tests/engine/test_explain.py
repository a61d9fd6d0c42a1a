"""explain: what each context module looks at, for every model, through Python and the CLI."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import contextseg as cs
from contextseg.cli.main import main
from contextseg.engine.explain import EXPLAINED, NothingToExplain, explain, render

pytest.importorskip("matplotlib")

FILES = {
    "cpnet": ["prior"],
    "ocrnet": ["regions", "pixel_region_attention"],
    "hanet": ["height_attention"],
    "encnet": ["class_presence"],
    "spnet": ["strip_gates"],
}
CLASSES = ["sky", "building", "road", "car"]


def tiny(name):
    torch.manual_seed(0)
    options = cs.models.get_model_class(name).small_options((48, 64))  # CPNet: a 6x8 prior
    model = cs.create_model(name, num_classes=4, backbone="resnet18d", output_stride=8, channels=16, **options).eval()
    model.meta.update(classes=CLASSES, palette=[[0, 0, 255], [128, 0, 0], [128, 64, 128], [0, 0, 142]])
    return model


def photo(h=40, w=56):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    image[: h // 3] = [90, 160, 230]
    return image


@pytest.mark.parametrize("name", cs.list_models())
def test_every_model_through_the_cli(name, tmp_path):
    cs.save_pretrained(tiny(name), tmp_path / "model")
    from PIL import Image

    Image.fromarray(photo()).save(tmp_path / "street.png")
    code = main(["explain", str(tmp_path / "street.png"), "--checkpoint", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--pixel", "10,30", "--pixel", "40,5"])
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == sorted(f"street_{f}.png" for f in FILES.get(name, []))
    if name not in EXPLAINED:
        with pytest.raises(NothingToExplain, match="baseline"):
            explain(tiny(name), photo())


def test_cpnet_heat_map_is_the_prior_row_of_the_model():
    model = tiny("cpnet")
    image = photo(48, 64)  # the model sees it at its 48x64 crop (prior 6x8 at OS 8)
    e = explain(model, image, pixels=[(20, 30), (60, 2)])
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    x = ((x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None])[None]
    with torch.no_grad():
        prior = torch.sigmoid(model.decode_head(model.backbone(x))["prior"].logits()[0])  # (48, 48), fused by default
    for (px, py), heat in zip([(20, 30), (60, 2)], e["prior"]):
        row = (py * 6 // 48) * 8 + px * 8 // 64
        assert np.allclose(heat, prior[row].view(6, 8).numpy(), atol=1e-6)
    assert e["pixels"] == [(20, 30), (60, 2)] and e["image"].shape == (48, 64, 3)


def test_ocrnet_maps_are_distributions_and_default_pixels_sit_on_classes(tmp_path):
    e = explain(tiny("ocrnet"), photo())
    assert np.allclose(e["regions"].reshape(4, -1).sum(1), 1, atol=1e-5)  # a spatial softmax per region
    assert np.allclose(e["pixel_region_attention"].sum(1), 1, atol=1e-5)  # a softmax over regions
    for x, y in e["pixels"]:
        assert 0 <= x < e["image"].shape[1] and 0 <= y < e["image"].shape[0]
    assert len({int(e["labels"][y, x]) for x, y in e["pixels"]}) == len(e["pixels"])  # different classes
    assert [p.name for p in render(e, tmp_path, "s")] == ["s_regions.png", "s_pixel_region_attention.png"]
