"""Precision and memory format side by side in one run: the whole training loop of a recipe and its
inference (evaluation of the validation set, ``predict`` on its photos), fp32 against what
``precision: auto`` / ``channels_last: auto`` choose on this machine.

Rounds alternate the setups (fp32 NCHW, fp32 NHWC, bf16 NCHW, and ``auto`` where it differs from
those) in one process, so a noisy machine hurts all alike; the table gives each setup's median and
its ratio to fp32 NCHW (the default before ``auto``). Inference runs on the recipe's model with
random weights: the time does not depend on them.

    python benchmarks/precision_speed.py configs/fcn/fcn_r18_camvid.yaml data.root=data/camvid --iters 15 --rounds 3
    python benchmarks/precision_speed.py configs/hanet/hanet_r18_camvid_2h.yaml data.root=data/camvid --no-inference

On a CPU without native bf16, ``auto`` is fp32 NHWC and the bf16 row shows what emulation costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from contextseg.data.base import read_image
from contextseg.engine.builders import build_eval_dataset, build_model
from contextseg.engine.config import load_config
from contextseg.engine.distributed import resolve_device
from contextseg.engine.evaluate import evaluate
from contextseg.engine.precision import autocast_context, cpu_has_native_bf16, resolve_precision
from train_step import trainer_loop  # benchmarks/ is on sys.path when this script runs

SETUPS = {"fp32 NCHW": ("fp32", False), "fp32 NHWC": ("fp32", True), "bf16 NCHW": ("bf16", False), "bf16 NHWC": ("bf16", True)}


def setups_with_auto(device: torch.device) -> dict[str, tuple[str, bool]]:
    chosen = resolve_precision("auto", "auto", device)
    auto = (chosen.precision, chosen.channels_last)
    return {(f"{name} = auto" if value == auto else name): value for name, value in SETUPS.items()}


def train_round(config: str, overrides: list[str], precision: str, channels_last: bool, iters: int) -> float:
    with tempfile.TemporaryDirectory() as work:
        cfg = load_config(config, [*overrides, f"train.work_dir={work}", "train.resume=false",
                                   f"train.precision={precision}", f"train.channels_last={str(channels_last).lower()}"])
        seconds, _, _ = trainer_loop(cfg, iters)
    return seconds


def inference_round(model, dataset, cfg, device, precision: str, channels_last: bool, images: int) -> tuple[float, float]:
    """(evaluation images/s, predict images/s) on the first ``images`` validation images."""
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    ctx = autocast_context(device, precision)
    subset = torch.utils.data.Subset(dataset, range(min(images, len(dataset))))
    subset.classes, subset.ignore_index = dataset.classes, dataset.ignore_index
    start = time.perf_counter()
    evaluate(model, subset, cfg.evaluate, device, crop_size=cfg.data.crop_size, autocast=ctx, progress=False)
    eval_rate = len(subset) / (time.perf_counter() - start)
    photos = [read_image(dataset.samples[k][0]) for k in range(len(subset))]  # the photos as a user's files give them
    start = time.perf_counter()
    with ctx():
        for photo in photos:
            model.predict(photo)
    return eval_rate, len(photos) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (data.root=...)")
    parser.add_argument("--iters", type=int, default=15, help="training iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=20, help="validation images per inference round")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.train.device)
    native, flags = cpu_has_native_bf16()
    setups = setups_with_auto(device)
    print(f"{cfg.name} on {device} ({torch.get_num_threads()} threads, native bf16: {flags or 'no'}), torch {torch.__version__}; "
          f"auto = {resolve_precision('auto', 'auto', device).describe()}", flush=True)
    train_times: dict[str, list[float]] = {name: [] for name in setups}
    infer: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    model = dataset = None
    if not args.no_inference:
        dataset = build_eval_dataset(cfg)
        model = build_model(cfg, len(dataset.classes), dataset.ignore_index).to(device).eval()
    for r in range(args.rounds):
        for name, (precision, channels_last) in setups.items():
            if not args.no_training:
                train_times[name].append(train_round(args.config, args.overrides, precision, channels_last, args.iters))
                print(f"round {r + 1} {name}: train {train_times[name][-1]:.3f} s/it", flush=True)
            if model is not None:
                infer[name].append(inference_round(model, dataset, cfg, device, precision, channels_last, args.images))
                print(f"round {r + 1} {name}: eval {infer[name][-1][0]:.2f} img/s, predict {infer[name][-1][1]:.2f} img/s", flush=True)
    base = next(iter(setups))
    print("\n| setup | train s/it | vs fp32 NCHW | eval img/s | vs fp32 NCHW | predict img/s | vs fp32 NCHW |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name in setups:
        cells = []
        if train_times[name]:
            t = statistics.median(train_times[name])
            cells += [f"{t:.3f}", f"{t / statistics.median(train_times[base]):.2f}x"]
        else:
            cells += ["", ""]
        for k in (0, 1):
            if infer[name]:
                v = statistics.median(x[k] for x in infer[name])
                cells += [f"{v:.2f}", f"{v / statistics.median(x[k] for x in infer[base]):.2f}x"]
            else:
                cells += ["", ""]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
