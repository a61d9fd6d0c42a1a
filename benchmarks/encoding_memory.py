"""Peak memory and time of EncNet's Encoding layer (forward + backward): matmul form vs the
expanded (B, N, K, C) residual tensor of the naive formula (mmseg's pure-PyTorch version).

    python benchmarks/encoding_memory.py --size 64 64 --batch 4 --channels 512 --codes 32 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from contextseg.engine.measure import PeakMemory
from contextseg.modules import Encoding


def naive_encoding(x: torch.Tensor, codewords: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    feats = x.flatten(2).transpose(1, 2)  # (B, N, C)
    residual = feats[:, :, None, :] - codewords[None, None]  # (B, N, K, C)
    assign = torch.softmax(scale * residual.pow(2).sum(-1), dim=2)
    return (assign[..., None] * residual).sum(1)


def measure(fn, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    inp = x.clone().requires_grad_()
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        fn(inp).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    return memory.mib, 1000 * elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--codes", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    enc = Encoding(args.channels, args.codes).to(device)
    x = torch.randn(args.batch, args.channels, *args.size, device=device)
    with torch.no_grad():
        diff = (enc(x) - naive_encoding(x, enc.codewords, enc.scale)).abs().max().item()
    bnkc = args.batch * args.size[0] * args.size[1] * args.codes * args.channels * 4 / 2**20
    print(f"B={args.batch} N={args.size[0]}x{args.size[1]} C={args.channels} K={args.codes} on {device}; one (B,N,K,C) tensor = {bnkc:.0f} MiB; max |difference| {diff:.2e}")
    print(f"{'implementation':<12} {'peak MiB':>9} {'ms':>9}")
    for name, fn in [("matmul", enc), ("naive", lambda t: naive_encoding(t, enc.codewords, enc.scale))]:
        mib, ms = measure(fn, x, device)
        print(f"{name:<12} {mib:9.0f} {ms:9.0f}")


if __name__ == "__main__":
    main()
