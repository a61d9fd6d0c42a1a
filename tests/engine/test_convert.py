"""Converters of official weights: every tensor of the official layout (names and shapes listed
once from the official code, tests/engine/data) maps, values unchanged; a renamed or reshaped
tensor is refused by name; the converted models run."""

import json
from pathlib import Path

import pytest
import torch

import contextseg as cs
from contextseg.cli.main import main
from contextseg.engine.convert import MMSEG_MODELS, ConversionError, from_encoding_resnet, from_hanet, hanet_key
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


# -- mmsegmentation --------------------------------------------------------------------------

MMSEG = [*MMSEG_MODELS, "ocrnet_hr18"]  # every layout the converter knows, and OCRNet's HRNet variant


def mmseg_layout(model):
    path = DATA / f"mmseg_{model}.json"
    if not path.is_file():
        pytest.fail(f"no {path.name}: `python tests/records.py mmseg {model}` writes it (run it in mmsegmentation's venv)")
    return json.loads(path.read_text())["tensors"]


@pytest.mark.parametrize("model", MMSEG)
def test_mmseg_zoo_layout_converts_every_tensor_unchanged(model, tmp_path):
    from contextseg.engine.convert import from_mmseg, mmseg_key

    layout = mmseg_layout(model)
    state = {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.full(shape, float(i))) for i, (k, shape) in enumerate(layout.items())}
    path = tmp_path / "zoo.pth"
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": [f"c{k}" for k in range(19)], "palette": [[k, 0, 0] for k in range(19)]}}}, path)
    name, hrnet = model.split("_")[0], model.endswith("hr18")
    net = from_mmseg(path, name)
    ours = net.state_dict()
    assert len(ours) == len(state)
    for key, value in state.items():  # each tensor arrives, unchanged, where the name map says
        assert torch.equal(ours[mmseg_key(key, name, hrnet)], value), key
    assert net.meta["classes"][3] == "c3" and net.meta["palette"][2] == [2, 0, 0]
    if hrnet:
        assert net.backbone.name == "hrnet_w18" and net.backbone.fuse_upsample == "bilinear"
    else:
        assert net.backbone.name == ("resnet101c" if model == "ocrnet" else "resnet50c") and net.backbone.output_stride == 8


def test_mmseg_conversion_refuses_a_renamed_or_reshaped_tensor_by_name():
    from contextseg.engine.convert import from_mmseg

    state = {k: torch.zeros(shape) for k, shape in mmseg_layout("pspnet").items()}
    renamed = dict(state)
    renamed["decode_head.psp_modules.9.1.conv.weight"] = renamed.pop("decode_head.psp_modules.3.1.conv.weight")
    with pytest.raises(ConversionError, match=r"unmapped tensors \['decode_head.psp_modules.9.1.conv.weight \(-> decode_head.ppm.stages.9.1.0.weight\)'\].*lacks \['decode_head.ppm.stages.3.1.0.weight'\]"):
        from_mmseg({"state_dict": renamed}, "pspnet")
    reshaped = dict(state, **{"decode_head.bottleneck.conv.weight": torch.zeros(512, 4096, 1, 1)})
    with pytest.raises(ConversionError, match=r"decode_head.bottleneck.conv.weight \(-> decode_head.bottleneck.0.weight\): \(512, 4096, 1, 1\) in the file, \(512, 4096, 3, 3\) expected"):
        from_mmseg({"state_dict": reshaped}, "pspnet")
    with pytest.raises(ConversionError, match=r"not an mmsegmentation deeplabv3 checkpoint.*looks like a pspnet checkpoint \(--model pspnet\)"):
        from_mmseg({"state_dict": state}, "deeplabv3")
    # a model built on another holds that one's signature too (mmseg_layout.refines): refused as it, named
    for model, base in (("ccnet", "fcn"), ("deeplabv3plus", "deeplabv3")):
        holds_both = {k: torch.zeros(shape) for k, shape in mmseg_layout(model).items()}
        with pytest.raises(ConversionError, match=rf"not an mmsegmentation {base} checkpoint: its tensors are those of a model built on it; it looks like a {model} checkpoint"):
            from_mmseg({"state_dict": holds_both}, base)


def test_mmseg_checkpoint_with_mmengine_objects_in_meta_is_read_without_running_them(tmp_path):
    """Zoo checkpoints may pickle mmengine objects in ``meta``: read as inert stand-ins (weights_only)."""
    from contextseg.engine.convert import from_mmseg

    ran = []

    class HistoryBuffer:  # pretends to be mmengine's; unpickling it must not call its code
        def __init__(self):
            self.data = [1.0, 2.0]

        def __setstate__(self, state):
            ran.append(state)

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = "mmengine.logging.history_buffer", "HistoryBuffer"
    import sys
    import types

    names = ["mmengine", "mmengine.logging", "mmengine.logging.history_buffer"]
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[names[-1]].HistoryBuffer = HistoryBuffer
    try:
        state = {k: torch.zeros(shape) for k, shape in mmseg_layout("fcn").items()}
        torch.save({"state_dict": state, "meta": {"hub": HistoryBuffer(), "dataset_meta": {}}, "message_hub": {"x": HistoryBuffer()}}, tmp_path / "zoo.pth")
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module
    net = from_mmseg(tmp_path / "zoo.pth", "fcn", dataset="cityscapes")
    assert not ran and net.meta["classes"][0] == "road"
    state = {k: torch.zeros(shape) for k, shape in mmseg_layout("fcn").items()}  # a v0.x zoo file: CLASSES/PALETTE in meta
    net = from_mmseg({"state_dict": state, "meta": {"CLASSES": tuple(f"k{i}" for i in range(19)), "PALETTE": [[i, i, 0] for i in range(19)]}}, "fcn")
    assert net.meta["classes"][5] == "k5" and net.meta["palette"][5] == [5, 5, 0]


def test_convert_mmseg_cli_writes_a_saved_model(tmp_path, capsys):
    state = {k: torch.randn(shape) * 0.01 if not k.endswith("num_batches_tracked") else torch.tensor(1) for k, shape in mmseg_layout("deeplabv3plus").items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = torch.ones_like(state[k])
    torch.save({"state_dict": state}, tmp_path / "zoo.pth")
    assert main(["convert", "mmseg", str(tmp_path / "zoo.pth"), "--model", "deeplabv3plus", "--dataset", "cityscapes", "--out", str(tmp_path / "model")]) == 0
    model = cs.load(tmp_path / "model")
    assert model.meta["classes"][-1] == "bicycle" and model.decode_head.aspp.out_channels == 5 * 512
    assert model.predict(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 64)
    assert main(["convert", "mmseg", str(tmp_path / "zoo.pth"), "--out", str(tmp_path / "other")]) == 2
    assert "--model" in capsys.readouterr().err


def _resnet_v1c_stage(x, blocks, dilation, first_dilation, stride):
    """mmseg's ResNetV1c stage, restated: bottlenecks, stride on the 3x3 (style pytorch), the first
    block's 3x3 at ``first_dilation`` (contract_dilation), a 1x1 conv + BN shortcut."""
    import torch.nn.functional as F

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    for i, block in enumerate(blocks):
        d, s = (first_dilation, stride) if i == 0 else (dilation, 1)
        out = F.relu(bn(F.conv2d(x, block.conv1.weight), block.bn1))
        out = F.relu(bn(F.conv2d(out, block.conv2.weight, stride=s, padding=d, dilation=d), block.bn2))
        out = bn(F.conv2d(out, block.conv3.weight), block.bn3)
        shortcut = x if block.downsample is None else bn(F.conv2d(x, block.downsample[0].weight, stride=s), block.downsample[1])
        x = F.relu(out + shortcut)
    return x


def test_resnet50c_at_output_stride_8_is_mmseg_resnet_v1c_d8():
    """timm's resnet50c in our backbone = ResNetV1c (deep stem 32-32-64, strides (1, 2, 1, 1),
    dilations (1, 1, 2, 4), contract_dilation) written plainly from mmseg's definition."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    backbone = cs.create_model("fcn", num_classes=2, backbone="resnet50c", output_stride=8).backbone.eval()
    body = backbone.body
    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5), m.weight.normal_(1, 0.1), m.bias.normal_(0, 0.1)
        x = torch.randn(1, 3, 64, 64)
        ours = backbone(x)

        def bn(t, m):
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        stem = body.conv1
        y = F.relu(bn(F.conv2d(x, stem[0].weight, stride=2, padding=1), stem[1]))
        y = F.relu(bn(F.conv2d(y, stem[3].weight, padding=1), stem[4]))
        y = F.relu(bn(F.conv2d(y, stem[6].weight, padding=1), body.bn1))
        y = F.max_pool2d(y, 3, 2, 1)
        c2 = _resnet_v1c_stage(y, body.layer1, 1, 1, 1)
        c3 = _resnet_v1c_stage(c2, body.layer2, 1, 1, 2)
        c4 = _resnet_v1c_stage(c3, body.layer3, 2, 1, 1)  # contract_dilation: the first block at dilation 1
        c5 = _resnet_v1c_stage(c4, body.layer4, 4, 2, 1)
    assert [tuple(t.shape[-2:]) for t in ours] == [(16, 16), (8, 8), (8, 8), (8, 8)]
    for got, want in zip(ours, (c2, c3, c4, c5)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
