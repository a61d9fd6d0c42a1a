"""Whole-model speed: eager against ``channels_last``, ``torch.compile`` and both, side by side.

For each model and each variant it runs ``contextseg bench``'s measurement (:func:`bench_one`: one
warm-up step, which includes compilation, then the median of ``--repeats`` steps) in a fresh
process, and prints each variant's time and peak memory as a ratio to eager. Training steps
(forward, loss, backward) and inference (forward under ``no_grad``) are measured separately, as
each has its own setting in the library (``train.compile`` / ``train.channels_last``, and
``contextseg bench --compile --channels-last``).

    python benchmarks/whole_model_speed.py --models all --backbone resnet18d \
        --train-size 176 240 --train-batch 8 --infer-size 360 480 --infer-batch 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from contextseg.engine.measure import bench_in_subprocess as _bench_in_subprocess
from contextseg.models import list_models

VARIANTS = {"eager": (False, False), "channels_last": (False, True), "compile": (True, False), "compile+channels_last": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["all"])
    parser.add_argument("--backbone", default="resnet18d")
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--train-size", type=int, nargs=2, default=[176, 240])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--infer-size", type=int, nargs=2, default=[360, 480])
    parser.add_argument("--infer-batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("train", "inference"), default=["train", "inference"])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="append every row to this JSON file as it is measured")
    args = parser.parse_args()
    models = list_models() if args.models == ["all"] else args.models
    rows = json.loads(args.json.read_text()) if args.json and args.json.exists() else []

    print(f"{args.backbone}, OS 8, {args.num_classes} classes, {torch.get_num_threads()} threads, float32 CPU, median of {args.repeats} after a warm-up "
          f"(train: batch {args.train_batch} at {args.train_size[0]}x{args.train_size[1]}; inference: batch {args.infer_batch} at "
          f"{args.infer_size[0]}x{args.infer_size[1]})")
    print(f"{'model':<14} {'mode':<9} {'variant':<22} {'ms':>9} {'x eager':>8} {'MiB':>7} {'x eager':>8} {'warm-up s':>9}")
    for name in models:
        for mode in args.modes:
            train = mode == "train"
            eager = None
            for variant in args.variants:
                compile, channels_last = VARIANTS[variant]
                kwargs = dict(name=name, backbone=args.backbone, num_classes=args.num_classes, size=tuple(args.train_size if train else args.infer_size),
                              batch=args.train_batch if train else args.infer_batch, repeats=args.repeats, device="cpu", precision="fp32", train=train,
                              compile=compile, channels_last=channels_last)
                start = time.perf_counter()
                try:
                    row = _bench_in_subprocess(kwargs)
                except (RuntimeError, ValueError) as exc:
                    print(f"{name:<14} {mode:<9} {variant:<22} failed: {exc}", flush=True)
                    continue
                row["variant"], row["wall_s"] = variant, time.perf_counter() - start
                warmup = row["wall_s"] - (args.repeats + 1) * row["latency_ms"] / 1000  # mostly compilation, plus start-up and the FLOP count
                eager = eager or (row if variant == "eager" else None)
                ratio_t = f"{row['latency_ms'] / eager['latency_ms']:8.2f}" if eager else f"{'':>8}"
                ratio_m = f"{row['peak_mem_MiB'] / max(eager['peak_mem_MiB'], 1e-9):8.2f}" if eager else f"{'':>8}"
                print(f"{name:<14} {mode:<9} {variant:<22} {row['latency_ms']:9.1f} {ratio_t} {row['peak_mem_MiB']:7.0f} {ratio_m} {warmup:9.1f}", flush=True)
                rows.append(row)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
