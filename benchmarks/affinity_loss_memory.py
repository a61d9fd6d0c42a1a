"""Peak memory and time of CPNet's Affinity Loss (forward + backward) against the naive formula.

The naive version builds the ideal affinity map A = L L^T and evaluates BCE and the three global
terms on full N x N tensors, as the released code does. contextseg's loss walks row chunks in a
custom autograd function, so beyond the logits it needs their gradient and chunk temporaries.

    python benchmarks/affinity_loss_memory.py --size 64 64 --batch 2 --classes 150 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from contextseg.engine.measure import PeakMemory
from contextseg.losses import AffinityLoss


def naive_affinity_loss(logits: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    """The released AffinityLoss (extra-class ignore), written with explicit N x N tensors."""
    small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long().flatten(1)
    small = torch.where(small == 255, torch.full_like(small, num_classes), small)
    onehot = F.one_hot(small, num_classes + 1).float()
    with torch.no_grad():
        target = torch.bmm(onehot, onehot.transpose(1, 2))
    prior = torch.sigmoid(logits)
    unary = F.binary_cross_entropy(prior, target)
    n = logits.shape[1]
    vtarget = (1 - torch.eye(n, device=logits.device)) * target

    def ratio(num, den):
        return num / torch.where(den > 0, den, torch.ones_like(den))

    recall = ratio((prior * vtarget).sum(2), vtarget.sum(2))
    spec = ratio(((1 - prior) * (1 - target)).sum(2), (1 - target).sum(2))
    prec = ratio((prior * vtarget).sum(2), prior.sum(2))
    ones = torch.ones_like(recall)
    return unary + F.binary_cross_entropy(recall, ones) + F.binary_cross_entropy(spec, ones) + F.binary_cross_entropy(prec, ones)


def measure(fn, logits: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[float, float, float]:
    x = logits.clone().requires_grad_()
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        loss = fn(x, labels)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    return memory.mib, 1000 * elapsed, float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"), help="prior size (feature map)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    h, w = args.size
    n = h * w
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(args.batch, n, n, generator=g).to(device)
    labels = torch.randint(0, args.classes, (args.batch, 8 * h, 8 * w), generator=g)
    labels[:, : 2 * h] = 255
    labels = labels.to(device)
    logits_mib = logits.numel() * 4 / 2**20
    ours = AffinityLoss(args.classes)
    print(f"N = {h}x{w} = {n}, batch {args.batch}: logits {logits_mib:.0f} MiB on {device}")
    print(f"{'implementation':<12} {'peak MiB':>9} {'x logits':>9} {'ms':>9}  loss")
    for name, fn in [("contextseg", lambda x, y: ours(x, y, (h, w))), ("naive", lambda x, y: naive_affinity_loss(x, y, (h, w), args.classes))]:
        mib, ms, value = measure(fn, logits, labels, device)
        print(f"{name:<12} {mib:9.0f} {mib / logits_mib:9.2f} {ms:9.0f}  {value:.6f}")


if __name__ == "__main__":
    main()
