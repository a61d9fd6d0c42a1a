"""explain: what each context module looks at, for every model, through Python and the CLI."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import contextseg as cs
from contextseg.cli.main import main
from contextseg.engine.pictures.explain import NothingToExplain, explain, maps_by_group, render

pytest.importorskip("matplotlib")

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
    if cs.models.get_model_class(name).has_context_maps():
        assert code == 0
        written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
        groups = maps_by_group(explain(cs.load(tmp_path / "model"), photo(), pixels=[(10, 30), (40, 5)]))
        assert written == sorted(f"street_{group}.png" for group in groups) and groups  # one picture per group of maps
    else:  # a baseline: one clear line, exit 2, and no empty --out folder left behind
        assert code == 2 and not (tmp_path / "out").exists()
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
    maps = maps_by_group(e)["prior"]
    assert [m.title for m in maps[:2]] == ["intra-class prior P of (20, 30)", "inter-class 1 - P"]
    for (px, py), (intra, inter) in zip([(20, 30), (60, 2)], zip(maps[::2], maps[1::2])):
        row = (py * 6 // 48) * 8 + px * 8 // 64
        assert intra.pixel == inter.pixel == (px, py) and intra.kind == inter.kind == "pixel_map"
        assert np.allclose(intra.values, prior[row].view(6, 8).numpy(), atol=1e-6)
        assert np.allclose(inter.values, 1 - prior[row].view(6, 8).numpy(), atol=1e-6)
    assert e["pixels"] == [(20, 30), (60, 2)] and e["image"].shape == (48, 64, 3)


def test_ocrnet_maps_are_distributions_and_default_pixels_sit_on_classes(tmp_path):
    e = explain(tiny("ocrnet"), photo())
    groups = maps_by_group(e)
    regions = np.stack([m.values for m in groups["regions"]])
    assert [m.label for m in groups["regions"]] == [0, 1, 2, 3]
    assert np.allclose(regions.reshape(4, -1).sum(1), 1, atol=1e-5)  # a spatial softmax per region
    attention = np.stack([m.values for m in groups["pixel_region_attention"]])
    assert attention.shape == (len(e["pixels"]), 4) and np.allclose(attention.sum(1), 1, atol=1e-5)  # a softmax over regions
    assert [m.pixel for m in groups["pixel_region_attention"]] == e["pixels"]
    for x, y in e["pixels"]:
        assert 0 <= x < e["image"].shape[1] and 0 <= y < e["image"].shape[0]
    assert len({int(e["labels"][y, x]) for x, y in e["pixels"]}) == len(e["pixels"])  # different classes
    assert [p.name for p in render(e, tmp_path, "s")] == ["s_regions.png", "s_pixel_region_attention.png"]


def test_hanet_curves_are_each_blocks_attention_on_its_own_inputs():
    """The row curves are the four HANet blocks' attention, each computed on the inputs the block
    gets in the forward pass (captured here by forward hooks, independently of the head's hook)."""
    model = tiny("hanet")
    e = explain(model, photo(), pixels=[(5, 5)])
    captured = []
    hooks = [block.register_forward_hook(lambda m, i, o: captured.append(o[0, :, :, 0].numpy())) for block in model.decode_head.hanet]
    view = torch.from_numpy(e["image"]).permute(2, 0, 1).float().div(255)
    try:
        with torch.no_grad():
            model(((view - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None])[None])
    finally:
        for hook in hooks:
            hook.remove()
    curves = maps_by_group(e)["height_attention"]
    assert [m.kind for m in curves] == ["row_curve"] * 4
    for got, want in zip(curves, captured):
        assert np.allclose(got.values, want, atol=2e-2)  # the shown image is the view rounded to uint8


def test_encnet_bars_are_the_se_branch_presence():
    model = tiny("encnet")
    e = explain(model, photo(), pixels=[(5, 5)])
    (bars,) = maps_by_group(e)["class_presence"]
    view = torch.from_numpy(e["image"]).permute(2, 0, 1).float().div(255)
    with torch.no_grad():
        x = ((view - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None])[None]
        se = torch.sigmoid(model.decode_head(model.backbone(x))["se_logits"][0]).numpy()
    assert bars.kind == "class_bars" and bars.pixel is None and np.allclose(bars.values, se, atol=2e-2)


def test_context_map_refuses_unknown_kinds_and_wrong_shapes():
    with pytest.raises(ValueError, match="kind"):
        cs.heads.ContextMap("heat", "g", "t", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="1-d array"):
        cs.heads.ContextMap("class_bars", "g", "t", np.zeros((2, 2)))


def test_a_matrix_map_is_drawn_beside_the_image(tmp_path):
    # the generic kind for a relation that is not a place in the image (DANet's channel attention)
    matrix = cs.heads.ContextMap("matrix", "relation", "channel attention", np.eye(6) * 0.5 + 0.05, vrange=None)
    with pytest.raises(ValueError, match="2-d array"):
        cs.heads.ContextMap("matrix", "g", "t", np.zeros(3))
    explanation = {"image": photo(), "labels": np.zeros((40, 56), np.int64), "classes": CLASSES, "maps": [matrix], "pixels": []}
    written = render(explanation, tmp_path, "street")
    assert [p.name for p in written] == ["street_relation.png"]
    from PIL import Image

    with Image.open(written[0]) as picture:
        assert picture.width > picture.height  # the image and the matrix side by side


def test_the_explanation_prints_as_one_line(tmp_path):
    e = explain(tiny("hanet"), photo(), pixels=[(10, 30)], out_dir=tmp_path)
    text = repr(e)
    assert isinstance(e, dict) and "\n" not in text and len(text) < 400
    assert text.startswith("Explanation(model='hanet'") and "pixels=" in text and "files=" in text and "array" not in text


def test_the_api_names_pictures_as_the_cli_does(tmp_path):
    from PIL import Image

    Image.fromarray(photo()).save(tmp_path / "street.png")
    model = tiny("hanet")
    e = explain(model, tmp_path / "street.png", pixels=[(10, 30)], out_dir=tmp_path / "api")
    assert main(["explain", str(tmp_path / "street.png"), "--checkpoint", str(_saved(model, tmp_path)), "--out", str(tmp_path / "cli"), "--pixel", "10,30"]) == 0
    assert sorted(p.name for p in e["files"]) == sorted(p.name for p in (tmp_path / "cli").glob("*.png"))
    assert all(p.name.startswith("street_") for p in e["files"])
    assert [p.name for p in explain(model, photo(), out_dir=tmp_path / "array")["files"]][0].startswith("explain_")


def _saved(model, tmp_path):
    cs.save_pretrained(model, tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("name", [n for n in cs.list_models() if cs.models.get_model_class(n).has_context_maps()])
def test_every_picture_says_what_it_shows(name, tmp_path):
    # each group of maps carries a one-line caption drawn under its picture
    e = explain(tiny(name), photo(), pixels=[(10, 30)])
    for group, maps in maps_by_group(e).items():
        assert any(m.caption for m in maps), f"{name}: the {group!r} picture has no caption"


def test_the_height_attention_picture_has_a_legend(tmp_path):
    from contextseg.engine.pictures.explain import _draw_row_curves, pyplot

    e = explain(tiny("hanet"), photo(), pixels=[(10, 30)])
    plt = pyplot()
    fig = _draw_row_curves(plt, e, maps_by_group(e)["height_attention"])
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    plt.close(fig)
    assert labels == ["mean over channels", "10-90 % of channels", "query pixel's row"]
