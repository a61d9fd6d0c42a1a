"""Converters of official weights: every tensor of the official layout (names and shapes listed
once from the official code, tests/engine/data) maps, values unchanged; a renamed or reshaped
tensor is refused by name; the converted models run."""

import json
from pathlib import Path

import pytest
import torch

import contextseg as cs
from contextseg.cli.main import main
from contextseg.engine.convert import ConversionError, from_encoding_resnet, from_hanet, hanet_key
from contextseg.modules.height_attention import height_encoding

DATA = Path(__file__).parent / "data"


def official_state(layout: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.fixture(scope="module")
def hanet_release():
    layout = json.loads((DATA / "hanet_release_r101_keys.json").read_text())
    state = official_state(layout)
    for k in range(4):  # the frozen table the release builds (17 rows, sin/cos + 1)
        key = f"hanet{k}.pos_emb1d_2nd.pos_layer.weight"
        state[key] = height_encoding(17, layout[key][1])
    return state


def test_hanet_release_converts_every_tensor_unchanged(hanet_release, tmp_path):
    path = tmp_path / "HANet_r101_os8_city.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in hanet_release.items()}, "epoch": 3}, path)
    model = from_hanet(path)
    ours = model.state_dict()
    for key, value in hanet_release.items():
        target = hanet_key(key)
        if target is None or key == "dsn.0.bias":  # the table is rebuilt; the bias is folded below
            continue
        if key == "dsn.1.running_mean":  # the aux conv's bias is folded into its BN
            assert torch.allclose(ours[target], value - hanet_release["dsn.0.bias"])
        else:
            assert torch.equal(ours[target], value), key
    assert model.meta["classes"][0] == "road" and model.num_classes == 19
    # the release dilates every block of layer3/layer4 (variant D)
    assert model.backbone.body.layer3[0].conv2.dilation == (2, 2) and model.backbone.body.layer4[0].conv2.dilation == (4, 4)
    # the folded bias gives the release's aux output: BN(conv(x) + b) == BN'(conv(x))
    x = torch.randn(1, 1024, 5, 6)
    conv = torch.nn.Conv2d(1024, 512, 3, padding=1)
    conv.weight.data, conv.bias.data = hanet_release["dsn.0.weight"], hanet_release["dsn.0.bias"]
    bn = torch.nn.BatchNorm2d(512).eval()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data = hanet_release[f"dsn.1.{name}"]
    with torch.no_grad():
        assert torch.allclose(model.aux_head.convs[0][1](model.aux_head.convs[0][0](x)), bn(conv(x)), atol=1e-4)
    cs.save_pretrained(model, tmp_path / "saved")
    with torch.no_grad():
        y = torch.randn(1, 3, 64, 64)
        assert torch.equal(cs.from_pretrained(tmp_path / "saved")(y), model(y))


def test_hanet_conversion_refuses_a_renamed_or_reshaped_tensor(hanet_release):
    renamed = dict(hanet_release)
    renamed["bot_fine.0.weights"] = renamed.pop("bot_fine.0.weight")
    with pytest.raises(ConversionError, match=r"bot_fine\.0\.weights.*c1_bottleneck\.0\.weight"):
        from_hanet(renamed)
    reshaped = dict(hanet_release)
    reshaped["hanet2.attention_third.0.weight"] = torch.zeros(256, 20, 5)
    with pytest.raises(ConversionError, match=r"decode_head\.hanet\.2\.conv\.3\.weight"):
        from_hanet(reshaped)


@pytest.mark.parametrize("depth", [50, 101])
def test_encoding_resnet_to_timm_resnet_s(depth, tmp_path):
    layout = json.loads((DATA / "encoding_resnet_keys.json").read_text())[f"resnet{depth}"]
    state = official_state(layout, depth)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / f"resnet{depth}-encoding.pth"
    torch.save(state, path)
    name, converted = from_encoding_resnet(path)
    assert name == f"resnet{depth}s" and "fc.weight" not in converted
    assert all(torch.equal(converted[k], v) for k, v in state.items() if not k.startswith("fc."))
    out = tmp_path / "backbone.safetensors"
    assert main(["convert", "encoding-resnet", str(path), "--out", str(out)]) == 0
    model = cs.create_model("fcn", num_classes=3, backbone=name, pretrained_backbone=str(out), channels=16)
    assert torch.equal(model.backbone.body.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    broken = {k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"}
    with pytest.raises(ConversionError, match=r"layer2\.0\.bn1\.running_var"):
        from_encoding_resnet(broken)
