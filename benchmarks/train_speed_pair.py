"""Two training setups side by side: seconds per ``Trainer.fit()`` iteration, rounds alternating.

Each side is a config (``default`` = the embedded default) with optional ``key=value`` overrides.
Rounds alternate A, B, A, B, ... in one process, so a noisy machine hurts both alike; the table
gives each side's median seconds per iteration (data, forward, backward, step: the whole loop, as
``benchmarks/train_step.py`` times it) and B / A. Written to answer whether the HANet default is as fast as the
DeepLabV3+ default it replaced.

    python benchmarks/train_speed_pair.py --a benchmarks/default_deeplabv3plus.yaml --b default --iters 30 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from contextseg.engine.config import load_config
from train_step import trainer_loop  # benchmarks/ is on sys.path when this script runs


def one_round(spec: list[str], iters: int) -> float:
    config, overrides = (None if spec[0] == "default" else spec[0]), spec[1:]
    with tempfile.TemporaryDirectory() as work:
        cfg = load_config(config, [*overrides, f"train.work_dir={work}", "train.resume=false"])
        seconds, _, trainer = trainer_loop(cfg, iters)
    return seconds, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, metavar="CONFIG [KEY=VALUE ...]")
    parser.add_argument("--b", nargs="+", required=True, metavar="CONFIG [KEY=VALUE ...]")
    parser.add_argument("--iters", type=int, default=30, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    times: dict[str, list[float]] = {"A": [], "B": []}
    names = {}
    for r in range(args.rounds):
        for side, spec in (("A", args.a), ("B", args.b)):
            seconds, trainer = one_round(spec, args.iters)
            times[side].append(seconds)
            m = trainer.cfg.model
            names[side] = f"{m['name']} ({m.get('backbone')}), {' '.join(spec)}"
            print(f"round {r + 1} {side}: {seconds:.3f} s/it", flush=True)
    cfg = trainer.cfg
    print(f"\nbatch {cfg.train.batch_size}, crop {cfg.data.crop_size[0]}x{cfg.data.crop_size[1]}, {torch.get_num_threads()} threads, "
          f"{args.iters} iterations x {args.rounds} rounds (median)")
    medians = {side: statistics.median(t) for side, t in times.items()}
    for side in ("A", "B"):
        print(f"{side}: {medians[side]:.3f} s/it  ({', '.join(f'{t:.3f}' for t in times[side])})  {names[side]}")
    print(f"B / A: {medians['B'] / medians['A']:.3f}x")


if __name__ == "__main__":
    main()
