"""Measuring models: parameters, FLOPs, latency and peak memory (``contextseg bench``, the benchmarks).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products,
counted as 2 x multiply-accumulates). On CUDA the peak memory is ``torch.cuda.max_memory_allocated``;
on the CPU each model runs in a fresh subprocess and the peak is the growth of its resident set
during one step (see `PeakMemory`); both exclude the weights and inputs already in memory.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["PeakMemory", "build_for_input", "bench_one", "bench_in_subprocess"]


def _rss_kib(field: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory growth (MiB) inside a ``with`` block: what the block needs beyond what was live.

    CUDA: the caching allocator's peak over the allocation at entry. CPU: the growth of the
    process's resident set, with the high-water mark reset at entry (Linux ``/proc/self/clear_refs``;
    elsewhere the lifetime peak, which can hide small blocks).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.mib = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._start = _rss_kib("VmRSS") or 0
        except OSError:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
        else:
            peak = _rss_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mib = max(peak - self._start, 0) / 1024


def build_for_input(name: str, backbone: str, num_classes: int, size: tuple[int, int]):
    """Model ``name`` for ``size`` inputs at output stride 8 (with the options tied to that input
    size, `Segmentor.crop_options`: CPNet's prior)."""
    from ..models import create_model, get_model_class

    kwargs = get_model_class(name).crop_options(size, 8)
    return create_model(name, num_classes=num_classes, backbone=backbone, output_stride=8, **kwargs)


def bench_one(name: str, backbone: str, num_classes: int, size, batch: int, repeats: int, device: str, precision: str, train: bool,
              compile: bool = False, channels_last: bool | str = False) -> dict:
    """One row of ``contextseg bench``; ``precision`` and ``channels_last`` may be ``auto``
    (`resolve_precision`), the row gives what they resolved to."""
    from .distributed import resolve_device
    from .precision import autocast_context, resolve_precision

    dev = resolve_device(device)
    chosen = resolve_precision(precision, {"true": True, "false": False}.get(channels_last, channels_last), dev)
    precision, channels_last = chosen.precision, chosen.channels_last
    torch.manual_seed(0)
    plain = build_for_input(name, backbone, num_classes, tuple(size)).to(dev)
    memory_format = chosen.memory_format
    plain = plain.to(memory_format=memory_format)
    params = sum(p.numel() for p in plain.parameters())
    model = torch.compile(plain) if compile else plain
    x = torch.randn(batch, 3, *size, device=dev).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch, *size), device=dev)
    ctx = autocast_context(dev, precision)

    model.train(train)  # inference is timed in eval mode: running BatchNorm statistics, no dropout

    def step():
        if train:
            with ctx():
                loss = model(x, y)["loss"]
            loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), ctx():
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with PeakMemory(dev) as memory:
        step()  # warm-up, and the peak of one step
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    plain.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter, ctx():
        plain(x)
    flops = counter.get_total_flops()
    return {
        "model": name,
        "backbone": backbone,
        "params_M": params / 1e6,
        "GFLOPs": flops / 1e9,
        "latency_ms": 1000 * statistics.median(times),
        "peak_mem_MiB": memory.mib,
        "device": str(dev),
        "size": list(size),
        "batch": batch,
        "mode": "train" if train else "inference",
        "precision": precision,
        "compile": compile,
        "channels_last": channels_last,
    }


def _worker(kwargs: dict, queue) -> None:
    try:
        queue.put(bench_one(**kwargs))
    except Exception as exc:  # report it to the parent instead of leaving it waiting
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def bench_in_subprocess(kwargs: dict) -> dict:
    """Run `bench_one` in a fresh process (so its peak RSS is its own); its error becomes ours."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(kwargs, queue))
    proc.start()
    try:
        while True:
            try:
                row = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"bench of {kwargs['name']!r} died (exit code {proc.exitcode}; out of memory?)") from None
    finally:
        proc.join()
    if "error" in row:
        raise ValueError(f"bench of {kwargs['name']!r} failed: {row['error']}")
    return row
