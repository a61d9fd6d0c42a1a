"""Decode heads side by side with mmsegmentation 1.2.2: forward + backward time and peak memory.

Each head is built twice with the same layout, mmseg's from its own zoo config's ``decode_head``
(random init, BN instead of SyncBN; the config of each model's ``mmseg_layout``) and contextseg's
with the options the mmseg converter uses (``contextseg.engine.convert.MMSEG_MODELS``), and fed the same ResNet-D8 features: B = 2,
C2 256 x 128 x 128, C3 512, C4 1024, C5 2048 x 64 x 64, 150 classes. Rounds alternate between the
two libraries (mmseg, contextseg, mmseg, ...) so a noisy machine hurts both alike; each cell is the
median of ``--repeats`` steps after one warm-up. Memory is the growth of the resident set during the
step (CPU) or the allocator's peak (CUDA); on Linux the script re-runs itself with glibc's mmap
threshold fixed (``MALLOC_MMAP_THRESHOLD_``), so that every large tensor is mapped on allocation and
unmapped on free: otherwise glibc raises the threshold after the first free, later tensors come from
a heap that keeps what the previous step freed, and the resident-set growth depends on which
library ran before. Goal: every head <= 1.0x mmseg's time and memory,
EncHead <= 0.3x.

Runs in its own virtual environment, never a dependency of the package or CI::

    pip install torch==2.14.1 torchvision==0.29.1 mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2 ftfy regex
    pip install -e .
    python benchmarks/compare_mmseg.py [--heads fcn pspnet ...] [--repeats 5] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mmcv_ops_standin  # noqa: E402,F401  (before mmseg: mmcv-lite has no compiled ops)

import torch  # noqa: E402

from contextseg.engine.measure import PeakMemory  # noqa: E402
from contextseg.engine.convert import MMSEG_MODELS  # noqa: E402
from contextseg.models import get_model_class  # noqa: E402

HEADS = {name: get_model_class(name).mmseg_layout.config for name in MMSEG_MODELS}  # model: the mmseg zoo config of its layout
CHANNELS = (256, 512, 1024, 2048)


def mmseg_head(config: str, num_classes: int):
    """mmseg's decode head(s) of a zoo config and a function running them on features."""
    import mmseg
    from mmengine import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", config))
    cfg = Config.fromstring(cfg.pretty_text.replace("SyncBN", "BN"), ".py")
    heads = cfg.model.decode_head if isinstance(cfg.model.decode_head, list) else [cfg.model.decode_head]
    for h in heads:
        h.num_classes = num_classes
    modules = torch.nn.ModuleList(MODELS.build(h) for h in heads)
    if len(modules) == 1:
        return modules, lambda feats: [modules[0](feats)]
    return modules, lambda feats: (lambda region: [region, modules[1](feats, region)])(modules[0](feats))


def our_head(model: str, num_classes: int):
    """contextseg's decode head (OCRNet's owns its region head) and a function running it: every
    output its losses read (EncNet's SE logits, OCRNet's regions), as mmseg's heads return in training."""
    cls = get_model_class(model)
    options = dict(MMSEG_MODELS[model])
    options.pop("aux_channels", None)
    head = cls.head_cls(list(CHANNELS), num_classes, output_stride=8, **options)
    return head, lambda feats: list(head(feats).values())  # every output the losses read, as mmseg's training forward


def step(run, module, feats) -> tuple[float, float]:
    module.zero_grad(set_to_none=True)
    inputs = [f.clone().requires_grad_() for f in feats]
    with PeakMemory(feats[0].device) as memory:
        start = time.perf_counter()
        outs = [t for o in run(inputs) for t in (o if isinstance(o, (tuple, list)) else [o])]  # EncHead: (logits, se_logits)
        sum(o.float().square().mean() for o in outs).backward()
        if feats[0].is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory.mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="C5 height and width (C2 is twice that)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    import mmseg

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    s = args.size
    feats = [torch.randn(args.batch, c, *((2 * s, 2 * s) if i == 0 else (s, s)), generator=g).to(device) for i, c in enumerate(CHANNELS)]
    print(f"mmsegmentation {mmseg.__version__} vs contextseg: forward + backward, B={args.batch}, C5 2048x{s}x{s}, {args.classes} classes, "
          f"{args.device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'head':<30} {'params mmseg':>12} {'ours':>8} {'mmseg s':>8} {'ours s':>8} {'time':>6} {'mmseg MiB':>9} {'ours MiB':>9} {'memory':>7}")
    for name in args.heads:
        theirs, run_theirs = mmseg_head(HEADS[name], args.classes)
        ours, run_ours = our_head(name, args.classes)
        label = " + ".join(type(m).__name__ for m in theirs)
        theirs.to(device).train(), ours.to(device).train()
        times = {"theirs": [], "ours": []}
        mems = {"theirs": [], "ours": []}
        for r in range(args.repeats + 1):
            for side, run, module in (("theirs", run_theirs, theirs), ("ours", run_ours, ours)):
                seconds, mib = step(run, module, feats)
                if r:  # the first round warms up
                    times[side].append(seconds), mems[side].append(mib)
        t = {k: statistics.median(v) for k, v in times.items()}
        m = {k: statistics.median(v) for k, v in mems.items()}
        params = {k: sum(p.numel() for p in mod.parameters()) / 1e6 for k, mod in (("theirs", theirs), ("ours", ours))}
        print(f"{label:<30} {params['theirs']:>11.2f}M {params['ours']:>7.2f}M {t['theirs']:>8.3f} {t['ours']:>8.3f} {t['ours'] / t['theirs']:>5.2f}x "
              f"{m['theirs']:>9.0f} {m['ours']:>9.0f} {m['ours'] / max(m['theirs'], 1e-9):>6.2f}x", flush=True)


def _exact_peaks() -> None:
    """Re-run this script with a fixed mmap threshold (see the module docstring), once."""
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})


if __name__ == "__main__":
    _exact_peaks()
    main()
