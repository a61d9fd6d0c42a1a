"""contextseg against the official releases of CPNet, SPNet and HANet, in float64.

    python benchmarks/official_parity.py --method spnet --official /path/to/SPNet
    python benchmarks/official_parity.py --method hanet --official /path/to/HANet
    python benchmarks/official_parity.py --method cpnet --official /path/to/ContextPrior

Give a local checkout of the official repository (ycszen/ContextPrior, Andrew-Qibin/SPNet,
shachoi/HANet; never a dependency of contextseg or of CI). Its files run unchanged: the packages
they import that are not installed here (mmcv, mmseg, the repository's own registries, HANet's
config) are replaced by minimal stand-ins registered in ``sys.modules`` before the official file
is executed, and the release's CUDA-only calls (``.cuda()``, ``label.get_device()``) are patched to
stay on the CPU for the duration of the call (and its loss's ``.float()`` target cast reads as
float64, so that everything compares in float64). Weights are copied into contextseg's modules through
the explicit key maps below, and the script prints the max abs difference of every output and
every gradient (inputs and parameters), train and eval mode. Goal: <= 1e-12 everywhere but the
documented case of the CPNet loss on saturated logits (see configs/cpnet/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import contextseg as cs
from contextseg.heads import CPHead, SPHead
from contextseg.losses import AffinityLoss
from contextseg.modules import HeightAttention, MixedPooling, StripPooling

torch.set_default_dtype(torch.float64)

# -- loading official files with stand-ins -------------------------------------------------------


def stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # importable as a package
    sys.modules[name] = module
    return module


def load_file(path: Path, name: str) -> types.ModuleType:
    """Execute the official file ``path`` unchanged as module ``name`` (its package set up so
    that its relative imports find the stand-ins)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def cpu_only():
    """The releases call ``.cuda()`` and ``.to(label.get_device())``; keep both on the CPU."""
    cuda, get_device = torch.Tensor.cuda, torch.Tensor.get_device
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.Tensor.get_device = lambda self: "cpu"
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.Tensor.get_device = cuda, get_device


@contextlib.contextmanager
def float_is_double():
    """The released loss casts its targets with ``.float()``; read that as float64 for the call,
    so that the comparison runs in float64 end to end."""
    original = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self.double()
    try:
        yield
    finally:
        torch.Tensor.float = original


# -- comparison helpers ------------------------------------------------------------------------


def copy_weights(ours: nn.Module, theirs: nn.Module, key_map: dict[str, str], compared: tuple[str, ...] = ()) -> None:
    """``ours[k] = theirs[k with its first matching key_map prefix replaced]`` for every tensor of
    ours; every tensor of both sides must be used exactly once (``compared``: official tensors
    that are checked against a constant of ours instead)."""
    own, other = ours.state_dict(), theirs.state_dict()
    sources = {key: _mapped(key, key_map) for key in own}
    missing = [f"{k} -> {v}" for k, v in sources.items() if v not in other]
    unused = sorted(set(other) - set(sources.values()) - set(compared))
    if missing or unused:
        raise KeyError(f"key map incomplete: ours without official {missing[:5]}, official without ours {unused[:5]}")
    ours.load_state_dict({k: other[v] for k, v in sources.items()})


def _mapped(key: str, key_map: dict[str, str]) -> str:
    for a, b in key_map.items():
        if key.startswith(a):
            return b + key[len(a):]
    return key


def randomise(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:  # frozen tables (HANet's positional encoding) stay as built
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


def report(rows: list[tuple[str, float]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, diff in rows:
        print(f"  {name:<{width}}  max |diff| = {diff:.2e}")


def compare(name, ours_fn, theirs_fn, inputs, ours_module, theirs_module, param_map) -> list[tuple[str, float]]:
    """Outputs and the gradients (of a fixed random projection of the output) with respect to
    each input and each parameter, ours vs theirs."""
    rows = []
    ours_module.zero_grad(set_to_none=True)
    theirs_module.zero_grad(set_to_none=True)
    xs_a = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    xs_b = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out_a, out_b = ours_fn(*xs_a), theirs_fn(*xs_b)
    rows.append((f"{name}: output", (out_a - out_b).abs().max().item()))
    probe = torch.randn(out_a.shape, generator=torch.Generator().manual_seed(1))
    (out_a * probe).sum().backward()
    (out_b * probe).sum().backward()
    for i, (a, b) in enumerate(zip(xs_a, xs_b)):
        if a.grad is not None:
            rows.append((f"{name}: d/d input {i}", (a.grad - b.grad).abs().max().item()))
    theirs_params = dict(theirs_module.named_parameters())
    worst = 0.0
    for key, p in ours_module.named_parameters():
        q = theirs_params[_mapped(key, param_map)]
        if p.grad is not None or q.grad is not None:
            worst = max(worst, (p.grad - q.grad).abs().max().item())
    rows.append((f"{name}: d/d every parameter", worst))
    return rows


# -- SPNet -----------------------------------------------------------------------------------


def spnet(root: Path) -> list[tuple[str, float]]:
    stub("spnet_official")
    customize = load_file(root / "models" / "customize.py", "spnet_official.customize")
    resnet = load_file(root / "models" / "resnet.py", "spnet_official.resnet")
    up = {"mode": "bilinear", "align_corners": True}
    rows = []
    mpm_map = {"reduce_short.": "conv1_1.", "reduce_long.": "conv1_2.", "short_local.": "conv2_0.", "short_pools.0.1.": "conv2_1.",
               "short_pools.1.1.": "conv2_2.", "long_w.1.": "conv2_3.", "long_h.1.": "conv2_4.", "short_out.": "conv2_5.",
               "long_out.": "conv2_6.", "merge.": "conv3."}
    for mode in ("eval", "train"):
        theirs = customize.StripPooling(32, (5, 3), nn.BatchNorm2d, up)
        ours = MixedPooling(32, pool_sizes=(5, 3))
        randomise(theirs)
        copy_weights(ours, theirs, mpm_map)
        getattr(ours, mode)(), getattr(theirs, mode)()
        x = torch.randn(2, 32, 13, 17, generator=torch.Generator().manual_seed(2))
        rows += compare(f"MPM ({mode})", ours, theirs, [x], ours, theirs, mpm_map)
        spm_map = {"conv_h.0.": "conv1.", "conv_h.1.": "bn1.", "conv_w.0.": "conv2.", "conv_w.1.": "bn2.", "fuse.": "conv3."}
        theirs = resnet.SPBlock(24, 24, norm_layer=nn.BatchNorm2d)
        ours = StripPooling(24)
        randomise(theirs, 3)
        copy_weights(ours, theirs, spm_map)
        getattr(ours, mode)(), getattr(theirs, mode)()
        x = torch.randn(2, 24, 11, 9, generator=torch.Generator().manual_seed(4))
        rows += compare(f"SPM gate ({mode})", ours.gate, theirs, [x], ours, theirs, spm_map)
    # the head: trans_layer, two MPMs, score_layer (its dropout off), our conv_seg = score_layer.4
    spec = importlib.util.spec_from_file_location("spnet_official.spnet", root / "models" / "spnet.py")
    stub("spnet_official.base", BaseNet=object)
    stub("spnet_official.fcn", FCNHead=object)
    head_module = importlib.util.module_from_spec(spec)
    sys.modules["spnet_official.spnet"] = head_module
    spec.loader.exec_module(head_module)
    theirs = head_module.SPHead(64, 5, nn.BatchNorm2d, up)
    theirs.strip_pool1 = customize.StripPooling(32, (5, 3), nn.BatchNorm2d, up)
    theirs.strip_pool2 = customize.StripPooling(32, (5, 3), nn.BatchNorm2d, up)
    theirs.score_layer[3].p = 0.0
    ours = SPHead([8, 16, 32, 64], 5, channels=16, mpm_channels=32, pool_sizes=(5, 3), dropout=0.0)
    randomise(theirs, 5)
    head_map = {"trans_layer.": "trans_layer.", "mixed_pooling.0.": "strip_pool1.", "mixed_pooling.1.": "strip_pool2.", "score_conv.0.": "score_layer.0.",
                "score_conv.1.": "score_layer.1.", "conv_seg.": "score_layer.4."}
    for a, b in mpm_map.items():
        for i in (0, 1):
            head_map[f"mixed_pooling.{i}.{a}"] = f"strip_pool{i + 1}.{b}"
    head_map = dict(sorted(head_map.items(), key=lambda kv: -len(kv[0])))  # longest prefix first
    copy_weights(ours, theirs, head_map)
    for mode in ("eval", "train"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        c5 = torch.randn(2, 64, 13, 17, generator=torch.Generator().manual_seed(6))
        rows += compare(f"SPHead ({mode})", lambda x: ours([x, x, x, x])["logits"], theirs, [c5], ours, theirs, head_map)
    return rows


# -- HANet -----------------------------------------------------------------------------------


def hanet(root: Path) -> list[tuple[str, float]]:
    cfg = types.SimpleNamespace(MODEL=types.SimpleNamespace(BNFUNC=nn.BatchNorm1d))  # BN over (B, C, rows)
    stub("config", cfg=cfg)  # the release's global config: only its BN class is read
    stub("network").__path__ = [str(root / "network")]  # network.mynn, network.PosEmbedding: the official files
    with cpu_only():
        official = load_file(root / "network" / "HANet.py", "network.HANet")
    key_map = {"reduce.0.": "attention_first.0.", "reduce.1.": "attention_first.1.", "conv.0.": "attention_second.0.",
               "conv.1.": "attention_second.1.", "conv.3.": "attention_third.0."}
    rows = []
    for image_height, crop, top in ((1024, 768, 128), (1024, 768, 37), (360, 176, 91), (180, 90, 13)):
        with cpu_only():
            theirs = official.HANet_Conv(40, 24, 3, 8, 3, 2, 1, pos_rfactor=8, pooling="mean", dropout_prob=0.0, pos_noise=0.0)
        ours = HeightAttention(40, 24, reduction=8, rows=16, dropout=0.0, position_noise=0.0)
        randomise(theirs, 7)
        copy_weights(ours, theirs, key_map, compared=("pos_emb1d_2nd.pos_layer.weight",))
        table = theirs.pos_emb1d_2nd.pos_layer.weight  # the frozen sinusoidal table, +1, 17 rows
        if image_height == 1024 and top == 128:
            rows.append(("HANet positional table (17 rows)", (ours.encoding - table).abs().max().item()))
        g = torch.Generator().manual_seed(8)
        low = torch.randn(2, 40, crop // 8, 12, generator=g)
        high = torch.randn(2, 24, crop // 8, 12, generator=g)
        rows_img = top + torch.arange(crop)
        pos_h = (rows_img * 128 // image_height).view(1, crop, 1).expand(2, crop, 5)  # the release's uint8 row map
        positions = (rows_img.double() / image_height).expand(2, crop)  # ours: r / H
        for mode in ("eval", "train"):
            getattr(ours, mode)(), getattr(theirs, mode)()
            with cpu_only():
                rows += compare(
                    f"HANet crop {crop} of {image_height} at row {top} ({mode})",
                    lambda lo, hi: hi * ours(lo, hi, positions),
                    lambda lo, hi: theirs(lo, hi, (pos_h, None)),
                    [low, high],
                    ours,
                    theirs,
                    key_map,
                )
    rows += hanet_model_conversion(root)
    return rows


def hanet_model_conversion(root: Path) -> list[tuple[str, float]]:
    """The released DeepV3PlusHANet (R101, variant D, flags 1 1 1 1 0) with random weights, its
    state dict converted by ``contextseg.engine.convert.from_hanet``: logits of both, eval mode."""
    import functools
    import importlib

    from contextseg.engine.convert import from_hanet

    resnet = importlib.import_module("network.Resnet")
    resnet.resnet101 = functools.partial(resnet.resnet101, pretrained=False)  # the ImageNet file is not needed
    with cpu_only():
        deepv3 = importlib.import_module("network.deepv3")
        args = types.SimpleNamespace(hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8, pooling="mean",
                                     dropout=0.1, pos_noise=0.5, aux_loss=True, attention_loss=0.0)
        sys.modules["config"].cfg.MODEL.BNFUNC = nn.BatchNorm2d  # the network's 2-D norms
        theirs = deepv3.DeepV3PlusHANet(19, trunk="resnet-101", variant="D", args=args)
        for block in (theirs.hanet0, theirs.hanet1, theirs.hanet2, theirs.hanet3):  # their 1-D norms
            block.attention_first[1] = nn.BatchNorm1d(block.attention_first[1].num_features)
            block.attention_second[1] = nn.BatchNorm1d(block.attention_second[1].num_features)
    randomise(theirs, 21)
    theirs.eval()
    ours = from_hanet({k: v.clone() for k, v in theirs.state_dict().items()})
    ours.eval()
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(22))
    top, image_height = 40, 360
    rows_img = top + torch.arange(96)
    pos_h = (rows_img * 128 // image_height).view(1, 96, 1).expand(1, 96, 128)
    with torch.no_grad(), cpu_only():
        out_b = theirs(x, pos=(pos_h, None))
        out_a = ours(x, positions=(rows_img.double() / image_height)[None])
    assert torch.isfinite(out_a).all() and out_a.abs().mean() > 0, "degenerate logits"
    return [("HANet release model -> contextseg.convert.from_hanet: logits (eval)", (out_a - out_b).abs().max().item())]


# -- CPNet -----------------------------------------------------------------------------------


class _ConvModule(nn.Module):
    """mmcv ConvModule: conv (bias unless a norm follows), norm, activation; keys conv/bn."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias="auto", conv_cfg=None, norm_cfg=None, act_cfg=dict(type="ReLU")):
        super().__init__()
        bias = norm_cfg is None if bias == "auto" else bias
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if norm_cfg is not None else None
        self.activate = nn.ReLU() if act_cfg is not None else None

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x) if self.bn is not None else x
        return self.activate(x) if self.activate is not None else x


class _BaseDecodeHead(nn.Module):
    """The parts of mmseg's BaseDecodeHead the released CPHead uses."""

    def __init__(self, in_channels, channels, *, num_classes, dropout_ratio=0.1, conv_cfg=None, norm_cfg=None, act_cfg=dict(type="ReLU"), in_index=-1, align_corners=False, **_):
        super().__init__()
        self.in_channels, self.channels, self.num_classes = in_channels, channels, num_classes
        self.conv_cfg, self.norm_cfg, self.act_cfg, self.in_index = conv_cfg, norm_cfg, act_cfg, in_index
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def cls_seg(self, feat):
        return self.conv_seg(self.dropout(feat) if self.dropout is not None else feat)

    def _transform_inputs(self, inputs):
        return inputs[self.in_index]


def _weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    loss = loss * weight if weight is not None else loss
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def cpnet(root: Path) -> list[tuple[str, float]]:
    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    stub("mmcv")
    stub("mmcv.cnn", ConvModule=_ConvModule, Scale=nn.Identity)
    stub("mmcv.cnn.bricks")
    stub("mmcv.cnn.bricks.norm", build_norm_layer=lambda cfg, n: ("bn", nn.BatchNorm2d(n)))
    stub("mmseg")
    stub("mmseg.core", add_prefix=lambda d, p: {f"{p}.{k}": v for k, v in d.items()})
    stub("mmseg.ops", resize=lambda x, size=None, mode="nearest", align_corners=None, **k: F.interpolate(x, size=size, mode=mode, align_corners=align_corners))
    stub("cpofficial", LOSSES=registry, HEADS=registry, build_loss=lambda cfg: None)
    stub("cpofficial.builder", LOSSES=registry, HEADS=registry, build_loss=lambda cfg: None)
    stub("cpofficial.utils", SelfAttentionBlock=object)
    stub("cpofficial.decode_head")
    stub("cpofficial.decode_head.decode_head", BaseDecodeHead=_BaseDecodeHead)
    stub("cpofficial.loss")
    stub("cpofficial.loss.utils", weight_reduce_loss=_weight_reduce_loss)
    head_module = load_file(root / "decode_head" / "cp_head.py", "cpofficial.decode_head.cp_head")
    loss_module = load_file(root / "loss" / "affinity_loss.py", "cpofficial.loss.affinity_loss")
    rows = []
    key_map = {"context_prior.aggregation.reduce_conv.0.": "aggregation.reduce_conv.conv.", "context_prior.aggregation.reduce_conv.1.": "aggregation.reduce_conv.bn.",
               "context_prior.aggregation.branch_a.0.": "aggregation.t1.conv.", "context_prior.aggregation.branch_a.1.": "aggregation.t2.conv.",
               "context_prior.aggregation.branch_b.0.": "aggregation.p1.conv.", "context_prior.aggregation.branch_b.1.": "aggregation.p2.conv.",
               "context_prior.aggregation.norm.": "aggregation.norm.", "context_prior.prior_conv.0.": "prior_conv.conv.", "context_prior.prior_conv.1.": "prior_conv.bn.",
               "context_prior.intra_conv.0.": "intra_conv.conv.", "context_prior.intra_conv.1.": "intra_conv.bn.", "context_prior.inter_conv.0.": "inter_conv.conv.",
               "context_prior.inter_conv.1.": "inter_conv.bn.", "bottleneck.0.": "bottleneck.conv.", "bottleneck.1.": "bottleneck.bn.", "conv_seg.": "conv_seg."}
    def prior_map(outputs):  # the fused head returns the map's factors, the plain one the map
        return torch.sigmoid(outputs["prior"].logits() if "prior" in outputs else outputs["prior_logits"])

    for groups, fused in ((1, True), (4, True), (1, False)):
        form = "fused" if fused else "plain"
        theirs = head_module.CPHead(prior_channels=16, prior_size=(4, 6), am_kernel_size=5, groups=groups, in_channels=24, channels=12, num_classes=5,
                                    dropout_ratio=0.0, norm_cfg=dict(type="BN"), in_index=-1)
        ours = CPHead([8, 12, 16, 24], 5, channels=12, prior_size=(4, 6), prior_channels=16, kernel_size=5, prior_groups=groups, dropout=0.0, fused=fused)
        randomise(theirs, 9 + groups)
        copy_weights(ours, theirs, key_map)
        x = torch.randn(2, 24, 4, 6, generator=torch.Generator().manual_seed(10))
        for mode in ("eval", "train"):
            getattr(ours, mode)(), getattr(theirs, mode)()
            rows += compare(f"CPHead logits, {form}, groups {groups} ({mode})", lambda t: ours([t])["logits"], lambda t: theirs([t])[0], [x], ours, theirs, key_map)
            rows += compare(f"CPHead prior map, {form}, groups {groups} ({mode})", lambda t: prior_map(ours([t])), lambda t: theirs([t])[1], [x], ours, theirs, key_map)
    # the loss on ordinary and on saturated logits (the release clamps log of a saturated sigmoid)
    labels = torch.randint(0, 5, (2, 16, 24), generator=torch.Generator().manual_seed(11))
    labels[:, :3] = 255
    theirs_head = head_module.CPHead(prior_channels=16, prior_size=(4, 6), am_kernel_size=5, in_channels=24, channels=12, num_classes=5, norm_cfg=dict(type="BN"))
    ideal = theirs_head._construct_ideal_affinity_matrix(labels[:, None], (4, 6)).double()  # .float() in the release
    for scale, name in ((2.0, "ordinary logits"), (40.0, "saturated logits |x| ~ 40 (documented)")):
        logits = scale * torch.randn(2, 24, 24, generator=torch.Generator().manual_seed(12))
        a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        ours_loss = AffinityLoss(5)(a, labels, (4, 6))
        with cpu_only(), float_is_double():
            theirs_loss = loss_module.AffinityLoss()(torch.sigmoid(b), ideal)
        ours_loss.backward()
        theirs_loss.backward()
        rows.append((f"Affinity Loss value, {name}", (ours_loss - theirs_loss).abs().item()))
        rows.append((f"Affinity Loss gradient, {name}", (a.grad - b.grad).abs().max().item()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, choices=("cpnet", "spnet", "hanet"))
    parser.add_argument("--official", required=True, help="local checkout of the official repository")
    args = parser.parse_args()
    root = Path(args.official)
    print(f"{args.method}: contextseg {cs.__version__} vs the release at {root} (float64)")
    rows = {"cpnet": cpnet, "spnet": spnet, "hanet": hanet}[args.method](root)
    report(rows)
    worst = max(d for name, d in rows if "(documented)" not in name)
    print(f"largest difference (documented cases aside): {worst:.2e}")


if __name__ == "__main__":
    main()
