"""Where run-to-run differences of a training come from: the same recipe, seed and data, trained
twice for a few iterations, then again with another number of threads.

Each run is ``contextseg train CONFIG`` in its own process for ``--iters`` iterations (every other
setting the recipe's); the script compares the final weights of run pairs tensor by tensor:

- same seed, same threads, twice: whether training is bit-for-bit repeatable on this machine;
- same seed, 1 thread vs the default: whether the floating-point summation order of the CPU
  kernels (oneDNN/OpenMP split work by thread) changes the result;
- another seed: the scale of a genuine seed-to-seed difference after the same iterations.

    python benchmarks/reproducibility.py configs/fcn/fcn_r18_camvid.yaml --iters 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def train(config: str, work: Path, seed: int, iters: int, threads: int | None, overrides: list[str]) -> dict[str, torch.Tensor]:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "contextseg", "train", config, f"train.work_dir={work}", f"train.seed={seed}", f"train.max_iters={iters}",
               f"train.eval_interval={iters}", f"train.log_interval={iters}", f"train.checkpoint_interval={iters}", "train.warmup_iters=0", *overrides]
    subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return torch.load(work / "last.pt", map_location="cpu", weights_only=True)["model"]


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[int, float]:
    """(tensors that differ at all, largest absolute difference) over the floating tensors."""
    differ, largest = 0, 0.0
    for key, value in a.items():
        if value.is_floating_point():
            delta = (value - b[key]).abs().max().item()
            differ += delta > 0
            largest = max(largest, delta)
    return differ, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {
            "seed 0, default threads": train(args.config, tmp / "a", 0, args.iters, None, args.overrides),
            "seed 0, default threads, again": train(args.config, tmp / "b", 0, args.iters, None, args.overrides),
            "seed 0, 1 thread": train(args.config, tmp / "c", 0, args.iters, 1, args.overrides),
            "seed 1, default threads": train(args.config, tmp / "d", 1, args.iters, None, args.overrides),
        }
    reference = runs["seed 0, default threads"]
    total = sum(v.is_floating_point() for v in reference.values())
    print(f"| after {args.iters} iterations of {Path(args.config).name} (torch {torch.__version__}, {torch.get_num_threads()} threads by default) | tensors that differ (of {total}) | largest difference |")
    print("| --- | --- | --- |")
    for name, weights in runs.items():
        if name != "seed 0, default threads":
            differ, largest = difference(reference, weights)
            print(f"| {name} vs seed 0, default threads | {differ} | {largest:.3g} |")


if __name__ == "__main__":
    main()
