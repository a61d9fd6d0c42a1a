"""Training-step efficiency: contextseg's Trainer against a bare PyTorch loop, side by side.

Both train the same model (built from the config, same seed) with the same optimizer and batch:

- the bare loop runs forward, backward and the optimizer step over batches that were transformed
  once and pre-loaded into memory, with nothing else around them;
- the Trainer runs ``Trainer.fit()`` for the same number of iterations: data loading, transforms,
  loss, optimizer, scheduler, EMA, logging and checkpoint bookkeeping included (the evaluation is
  timed on its own, below the table).

Rounds alternate (bare, Trainer, bare, Trainer, ...) so that a noisy machine hurts both alike; the
table gives each side's median seconds per iteration and where the time goes.

    python benchmarks/train_step.py configs/fcn/fcn_r18_camvid.yaml --iters 20 --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from contextseg.engine.builders import build_eval_dataset
from contextseg.engine.config import load_config
from contextseg.engine.evaluate import evaluate
from contextseg.engine.training.optim import build_optimizer
from contextseg.engine.training.trainer import Trainer, _lap

PHASES = ("data", "forward", "backward", "step")


def bare_loop(trainer: Trainer, batches: list[dict], iters: int) -> tuple[float, dict[str, float]]:
    """Seconds per iteration and per phase of forward/backward/step over pre-loaded batches."""
    model = copy.deepcopy(trainer.model).train()  # the same model, weights and memory format
    optimizer = build_optimizer(model, trainer.cfg.train)
    clock: dict[str, float] = {}
    start = tick = time.perf_counter()
    for i in range(iters):
        batch = batches[i % len(batches)]
        tick = _lap(clock, "data", tick)
        optimizer.zero_grad(set_to_none=True)
        kwargs = {"positions": batch["positions"]} if "positions" in batch else {}
        loss = model(batch["image"], batch["mask"], **kwargs)["loss"]
        tick = _lap(clock, "forward", tick)
        loss.backward()
        tick = _lap(clock, "backward", tick)
        optimizer.step()
        tick = _lap(clock, "step", tick)
    total = time.perf_counter() - start
    return total / iters, {k: v / iters for k, v in clock.items()}


def trainer_loop(cfg, iters: int) -> tuple[float, dict[str, float], Trainer]:
    """Seconds per iteration of ``Trainer.fit()`` for ``iters`` iterations (evaluation skipped)."""
    cfg.train.max_iters = iters
    cfg.train.eval_interval = iters + 1
    trainer = Trainer(cfg, progress=False)
    trainer._evaluate_and_save = lambda: None  # timed separately
    for i in range(len(trainer.train_set)) if cfg.data.cache else ():  # steady state: samples decoded once
        trainer.train_set._load_cached(i)
    start = time.perf_counter()
    trainer.fit()
    total = time.perf_counter() - start
    return total / iters, {k: v / iters for k, v in trainer.phase_seconds.items()}, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--iters", type=int, default=20, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-eval", action="store_true", help="skip timing the evaluation")
    args = parser.parse_args()

    results: dict[str, list[tuple[float, dict]]] = {"bare loop": [], "Trainer": []}
    batches: list[dict] | None = None
    trainer = None
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as work:
            cfg = load_config(args.config, [*args.overrides, f"train.work_dir={work}", "train.resume=false"])
            sec, phases, trainer = trainer_loop(cfg, args.iters)
            if batches is None:  # pre-load the bare loop's batches once, from the same dataset
                batches = _preload(trainer, args.iters)
            results["bare loop"].append(bare_loop(trainer, batches, args.iters))
            results["Trainer"].append((sec, phases))
            print(f"round {r + 1}: bare {results['bare loop'][-1][0]:.3f} s/it, Trainer {sec:.3f} s/it", flush=True)

    tc = trainer.cfg
    print(
        f"\n{tc.model['name']} ({tc.model.get('backbone')}, OS {trainer.model.backbone.output_stride}), "
        f"batch {tc.train.batch_size}, crop {tc.data.crop_size[0]}x{tc.data.crop_size[1]}, "
        f"{torch.get_num_threads()} threads, {args.iters} iterations x {args.rounds} rounds (median)"
    )
    print(f"{'':<10} {'s/iter':>7}  " + "  ".join(f"{p:>8}" for p in PHASES) + f"  {'other':>8}")
    medians = {}
    for name, runs in results.items():
        sec = statistics.median(r[0] for r in runs)
        phases = {p: statistics.median(r[1].get(p, 0.0) for r in runs) for p in PHASES}
        other = max(sec - sum(phases.values()), 0.0)
        medians[name] = sec
        print(f"{name:<10} {sec:7.3f}  " + "  ".join(f"{phases[p]:8.3f}" for p in PHASES) + f"  {other:8.3f}")
    print(f"Trainer / bare loop: {medians['Trainer'] / medians['bare loop']:.3f}x")
    if not args.no_eval:
        val = build_eval_dataset(trainer.cfg, with_positions=trainer.model.uses_positions)
        val.cache = trainer.cfg.data.cache
        start = time.perf_counter()
        evaluate(trainer.model, val, trainer.cfg.evaluate, trainer.device, crop_size=trainer.cfg.data.crop_size, progress=False)
        first = time.perf_counter() - start
        print(f"evaluation ({len(val)} images, {trainer.cfg.evaluate.mode}): {first:.1f} s")


def _preload(trainer: Trainer, count: int) -> list[dict]:
    """``count`` training batches, transformed once, as plain tensors in memory."""
    loader = torch.utils.data.DataLoader(trainer.train_set, batch_size=trainer.batch_per_rank, shuffle=True, drop_last=True)
    batches = []
    while len(batches) < count:
        for batch in loader:
            batches.append({k: v.contiguous(memory_format=trainer.memory_format) if k == "image" else v for k, v in batch.items()})
            if len(batches) == count:
                break
    return batches


if __name__ == "__main__":
    main()
