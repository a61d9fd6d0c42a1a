"""mmsegmentation 1.2.2 zoo layouts converted by ``contextseg convert mmseg``: equal logits.

For each supported model this builds mmseg's own model from mmseg's own config (random weights,
random BatchNorm statistics), saves a checkpoint the way the zoo does (``state_dict`` + ``meta``),
converts it with :func:`contextseg.engine.convert.from_mmseg`, and compares the logits of both on
random inputs in eval mode (float32 and float64). Goal: max |diff| <= 1e-4 in float32.

Runs in its own virtual environment, never a dependency of the package or CI::

    python -m venv /tmp/mmseg && . /tmp/mmseg/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1 mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2 ftfy regex
    pip install -e .            # contextseg
    python benchmarks/mmseg_parity.py [--models fcn pspnet ...] [--size 64 96]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mmcv_ops_standin  # noqa: E402,F401  (before mmseg: mmcv-lite has no compiled ops)

import torch  # noqa: E402

from contextseg.engine.convert import from_mmseg  # noqa: E402

from contextseg.engine.convert import MMSEG_MODELS  # noqa: E402
from contextseg.models import get_model_class  # noqa: E402

CONFIGS = {  # every layout the converter knows (each model's mmseg_layout.config) and OCRNet's HRNet variants
    **{name: get_model_class(name).mmseg_layout.config for name in MMSEG_MODELS},
    "ocrnet-hr18": "ocrnet/ocrnet_hr18_4xb2-80k_cityscapes-512x1024.py",
    "ocrnet-hr48": "ocrnet/ocrnet_hr48_4xb2-80k_cityscapes-512x1024.py",
}


def build_mmseg(config: str):
    import mmseg
    from mmengine import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", config))
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    if "hr" in config:
        cfg.model.backbone.pop("init_cfg", None)
    text = cfg.pretty_text.replace("SyncBN", "BN")  # one process on the CPU
    cfg = Config.fromstring(text, ".py")
    return MODELS.build(cfg.model)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere and BatchNorm statistics away from 0/1, so every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = max(1, t[0].numel()) if t.ndim > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5 if t.ndim > 1 else 1 + 0.1 * torch.randn(t.shape, generator=g))


def calibrate_batchnorm(model, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the statistics of its input on ``x`` (one
    train-mode pass with momentum 1), as trained weights have them: without it random weights
    through HRNet's residual and fuse sums give logits of 1e3, and float32 rounding scales with them."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        mmseg_logits(model, x)
    for m in norms:
        m.momentum = 0.1
    model.eval()


def mmseg_logits(model, x: torch.Tensor) -> torch.Tensor:
    metas = [dict(img_shape=tuple(x.shape[-2:]), ori_shape=tuple(x.shape[-2:]), pad_shape=tuple(x.shape[-2:]))] * x.shape[0]
    return model.encode_decode(x, metas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--size", type=int, nargs=2, default=(64, 96), metavar=("H", "W"))
    parser.add_argument("--calibrate-bn", action="store_true", help="running statistics from a forward pass on another random batch (realistic activation scales)")
    args = parser.parse_args()
    import mmseg

    print(f"mmsegmentation {mmseg.__version__} zoo layouts -> contextseg, eval mode, input 2x3x{args.size[0]}x{args.size[1]}")
    print(f"{'model':<14} {'config':<58} {'tensors':>7} {'max|logit|':>10} {'float32 max|diff|':>18} {'relative':>9} {'float64 max|diff|':>18}")
    worst = 0.0
    for i, name in enumerate(args.models):
        theirs = build_mmseg(CONFIGS[name]).eval()
        randomise(theirs, i)
        if args.calibrate_bn:
            calibrate_batchnorm(theirs, torch.randn(2, 3, *args.size, generator=torch.Generator().manual_seed(200 + i)))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.pth"
            torch.save({"state_dict": theirs.state_dict(), "meta": {"dataset_meta": {"classes": [f"c{k}" for k in range(19)], "palette": [[k, k, k] for k in range(19)]}}}, path)
            ours = from_mmseg(path, name.split("-")[0])
        x = torch.randn(2, 3, *args.size, generator=torch.Generator().manual_seed(100 + i))
        diffs = []
        for dtype in (torch.float32, torch.float64):
            theirs.to(dtype), ours.to(dtype)
            with torch.no_grad():
                want = mmseg_logits(theirs, x.to(dtype))
                diffs.append((ours(x.to(dtype)) - want).abs().max().item())
            scale = want.abs().max().item()
        worst = max(worst, diffs[0] / scale)
        print(f"{name:<14} {CONFIGS[name]:<58} {len(theirs.state_dict()):>7} {scale:>10.3g} {diffs[0]:>18.2e} {diffs[0] / scale:>9.1e} {diffs[1]:>18.2e}", flush=True)
    print(f"largest float32 difference relative to the largest logit: {worst:.2e}")


if __name__ == "__main__":
    main()
