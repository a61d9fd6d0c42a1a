"""One training step of the CPNet head + Affinity Loss, plain (N x N prior map) against fused
(row blocks, recomputed in backward), side by side at growing prior sizes.

For each prior size it prints the peak memory growth of the step (forward, loss, backward) and its
time, for three variants of the same head with the same weights and inputs:

- ``plain``: ``CPHead(fused=False)``, the reference that materialises the prior map;
- ``fused``: ``CPHead(fused=True)``, the default;
- ``features``: the fused head with the prior attention replaced by a stand-in that returns
  ``X~ / N`` as intra and inter context: every O(N C) activation of the head, no prior at all.
  The goal is ``fused <= 1.5 x (features + one row block)``, i.e. memory linear in N.

Each variant runs in its own process (a clean resident-set high-water mark, no allocator state
carried over); the first of ``--repeats`` steps is a warm-up. The plain form runs only where its
estimated need (7 tensors of B x N x N floats) fits ``--plain-limit-gib``; elsewhere it says so.

    python benchmarks/cpnet_memory.py --sizes 60 96 128 --batch 2 --in-channels 512 --channels 512 --classes 150
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from unittest import mock

import torch

from contextseg.engine.measure import PeakMemory
from contextseg.heads import CPHead
from contextseg.modules import context_prior


def stand_in(query, key, bias, row_loss):
    """The attention replaced by ``X~ / N`` (intra and inter), and the loss by the mean of X~
    (the layer drops it when no row loss was given)."""
    n = query.shape[1]
    return query / n, query / n, query.mean()


def step(head: CPHead, features: torch.Tensor, labels: torch.Tensor, repeats: int) -> tuple[float, float, float]:
    """(peak MiB, median seconds, loss) of forward + loss + backward."""
    times, peaks = [], []
    for _ in range(repeats + 1):
        head.zero_grad(set_to_none=True)
        x = features.clone().requires_grad_()
        with PeakMemory("cpu") as memory:
            start = time.perf_counter()
            outputs = head([x], targets=labels) if head.loss_in_forward else head([x])
            loss = outputs["logits"].float().mean() + head.losses(outputs, labels)["loss_affinity"]
            loss.backward()
            times.append(time.perf_counter() - start)
        peaks.append(memory.mib)
        del outputs, x
    times, peaks = times[1:], peaks[1:]  # the first step warms up
    return max(peaks), sorted(times)[len(times) // 2], float(loss.detach())


def one(args: argparse.Namespace) -> dict:
    """Build, step and measure one variant at one size (run in a subprocess by :func:`main`)."""
    size, n = args.one_size, args.one_size**2
    g = torch.Generator().manual_seed(0)
    features = torch.randn(args.batch, args.in_channels, size, size, generator=g)
    labels = torch.randint(0, args.classes, (args.batch, 8 * size, 8 * size), generator=g)
    labels[:, :size] = 255
    torch.manual_seed(0)
    head = CPHead([args.in_channels] * 4, args.classes, channels=args.channels, prior_channels=args.channels, prior_size=size, dropout=0.0,
                  fused=args.one != "plain").train()
    if args.one == "features":
        with mock.patch.object(context_prior.SigmoidPriorAttention, "apply", stand_in):
            mib, seconds, loss = step(head, features, labels, args.repeats)
    else:
        mib, seconds, loss = step(head, features, labels, args.repeats)
    block = next(context_prior.row_blocks(args.batch, n))
    return {"mib": mib, "seconds": seconds, "loss": loss, "block_mib": args.batch * (block[1] - block[0]) * n * 4 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 96, 128], help="square prior sizes h = w")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--in-channels", type=int, default=512, help="C5 channels fed to the head")
    parser.add_argument("--channels", type=int, default=512, help="prior_channels (C of X~) and head channels")
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--plain-limit-gib", type=float, default=10.0, help="run the plain form only where its estimated need fits")
    parser.add_argument("--one", choices=("features", "fused", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    print(f"CPNet head + Affinity Loss, one training step: B={args.batch}, C5 {args.in_channels}, C {args.channels}, {args.classes} classes, "
          f"{torch.get_num_threads()} threads, float32 CPU, median of {args.repeats} after a warm-up")
    print(f"{'prior':>8} {'N':>6} {'variant':>9} {'peak MiB':>9} {'x features+block':>17} {'s/step':>7} {'loss':>10}")
    first = {}
    shared = [f"--batch={args.batch}", f"--in-channels={args.in_channels}", f"--channels={args.channels}", f"--classes={args.classes}", f"--repeats={args.repeats}"]
    for size in args.sizes:
        n = size * size
        need_gib = 7 * args.batch * n * n * 4 / 2**30
        variants = ["features", "fused"] + (["plain"] if need_gib <= args.plain_limit_gib else [])
        results = {}
        for name in variants:
            out = subprocess.run([sys.executable, __file__, *shared, f"--one={name}", f"--one-size={size}"], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{size:>4}x{size:<3} {n:>6} {name:>9} failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
                continue
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        if "features" not in results or "fused" not in results:
            continue
        base = results["features"]["mib"] + results["fused"]["block_mib"]
        for name, r in results.items():
            print(f"{size:>4}x{size:<3} {n:>6} {name:>9} {r['mib']:9.0f} {r['mib'] / base:17.2f} {r['seconds']:7.2f} {r['loss']:10.5f}")
        if need_gib > args.plain_limit_gib:
            print(f"{size:>4}x{size:<3} {n:>6} {'plain':>9} not run: needs about {need_gib:.1f} GiB (> --plain-limit-gib {args.plain_limit_gib})")
        if "plain" in results:
            print(f"{'':>15} fused/plain: memory {results['fused']['mib'] / results['plain']['mib']:.3f}x, time {results['fused']['seconds'] / results['plain']['seconds']:.2f}x")
        first.setdefault("n", n), first.setdefault("fused", results["fused"]["mib"]), first.setdefault("features", results["features"]["mib"])
        print(f"{'':>15} growth from N={first['n']}: N x{n / first['n']:.2f}, fused memory x{results['fused']['mib'] / first['fused']:.2f}, "
              f"features x{results['features']['mib'] / first['features']:.2f}", flush=True)


if __name__ == "__main__":
    main()
