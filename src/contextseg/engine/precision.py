"""Which number format and memory layout a run computes in: ``auto`` follows the hardware.

``precision: auto`` resolves, for the device the run uses, to

- **CPU**: ``bf16`` autocast where the CPU computes bfloat16 natively, as torch reports it
  (``torch.cpu.get_capabilities()``: AVX512-BF16 or AMX-BF16 on x86-64, the BF16 extension on
  AArch64); ``fp32`` elsewhere, because a CPU without those instructions emulates bf16 and is slower
  than in fp32;
- **CUDA**: ``bf16`` on devices that compute it natively (compute capability 8.0 and newer), ``fp16``
  with a gradient scaler on 7.x (tensor cores without bf16), ``fp32`` below;
- anything else (MPS, XPU, ...): ``fp32``.

``channels_last: auto`` is on for the CPU (oneDNN's convolutions run NHWC natively, in fp32 and
bf16 alike) and on CUDA with bf16 or fp16 (tensor cores take NHWC without a reorder per layer); off
elsewhere. Measured on the FCN CamVid training step (``benchmarks/precision_speed.py``, 2-core Xeon
with AVX512-BF16 and AMX, torch 2.14.1): NHWC took 0.92x the NCHW time in fp32 and 0.81x in bf16.

What stays in fp32 under autocast, and why (``tests/models/test_precision.py`` checks each model's
bf16 forward and training step against fp32):

- every loss (`contextseg.losses`: cross entropy on ``logits.float()``; the Affinity Loss and
  the context prior's sigmoid attention run with autocast off): a sum over every pixel of a batch
  loses its low digits in bf16's 8-bit mantissa;
- softmax and normalisation over long axes: OCR's spatial gather normalises each region over all
  ``H x W`` pixels in fp32 (`SpatialGather`);
- the Encoding layer's residuals and soft-assignment (autocast off in
  `Encoding`): ``||x - d||^2`` expanded cancels in half precision;
- batch-norm statistics: the running mean and variance are fp32 buffers, and PyTorch's CPU and CUDA
  kernels accumulate a bf16 batch's statistics in fp32;
- the weights and optimizer state themselves (autocast casts per operation; the master weights stay
  fp32), test-time logits before the argmax and resize (`inference`).
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass

import torch

__all__ = ["PRECISIONS", "Precision", "autocast_context", "cpu_has_native_bf16", "inference_precision", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86-64's two, AArch64's FEAT_BF16


@functools.lru_cache(maxsize=None)
def _cpu_capabilities() -> dict:
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # a torch without the query: assume nothing
        return {}


def cpu_has_native_bf16() -> tuple[bool, str]:
    """``(True, "avx512_bf16, amx_bf16")`` when this CPU computes bfloat16 natively, as torch
    reports it; ``(False, "")`` otherwise."""
    capabilities = _cpu_capabilities()
    found = [flag for flag in _NATIVE_BF16_FLAGS if capabilities.get(flag)]
    return bool(found), ", ".join(found)


@dataclass(frozen=True)
class Precision:
    """A resolved choice: ``precision`` in fp32 | bf16 | fp16, ``channels_last``, and ``reason``
    (one line: what was asked and what decided it)."""

    precision: str
    channels_last: bool
    reason: str

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> str:
        return f"precision {self.precision}, {'channels_last' if self.channels_last else 'contiguous (NCHW)'} ({self.reason})"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last, "reason": self.reason}


def _auto_precision(device: torch.device) -> tuple[str, str]:
    if device.type == "cpu":
        native, flags = cpu_has_native_bf16()
        if native:
            return "bf16", f"this CPU computes bf16 natively ({flags})"
        return "fp32", "this CPU has no native bf16 (AVX512-BF16, AMX or ARM BF16), which it would emulate slowly"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return "bf16", f"CUDA compute capability {major}.{minor} computes bf16 natively"
        if major >= 7:
            return "fp16", f"CUDA compute capability {major}.{minor}: fp16 tensor cores, no bf16"
        return "fp32", f"CUDA compute capability {major}.{minor} has no tensor cores"
    return "fp32", f"no mixed precision is chosen automatically on {device.type}"


def resolve_precision(precision: str, channels_last: bool | str, device: torch.device | str) -> Precision:
    """The run's `Precision` for ``device``: ``auto`` values follow the hardware (module
    docstring), explicit ones are kept as given."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if channels_last not in (True, False, "auto"):
        raise ValueError(f"channels_last must be true, false or auto, got {channels_last!r}")
    if precision == "auto":
        resolved, why = _auto_precision(device)
        reason = f"auto: {why}"
    else:
        resolved, reason = precision, "set explicitly"
    if channels_last == "auto":
        channels_last = device.type == "cpu" or (device.type == "cuda" and resolved in ("bf16", "fp16"))
        reason += f"; channels_last auto: {'on' if channels_last else 'off'} for {device.type} {resolved}"
    return Precision(resolved, bool(channels_last), reason)


def autocast_context(device: torch.device, precision: str):
    """A zero-argument context factory for a resolved ``precision`` (fp32: no autocast)."""
    if precision == "fp32":
        return nullcontext
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"autocast_context takes a resolved precision (fp32, bf16 or fp16), got {precision!r}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=torch.device(device).type, dtype=dtype)


def inference_precision(model: torch.nn.Module, device: torch.device | str, precision: str = "auto"):
    """``(Precision, autocast factory)`` for running ``model`` on ``device`` at ``precision``
    (``auto``: the training rule above, applied to inference), with the model moved to the chosen
    memory format. A model whose weights are not float32 (cast to float64 or a half type by its
    user) runs in its own dtype: autocast would recast it."""
    chosen = resolve_precision(precision, "auto", device)
    if next(model.parameters()).dtype != torch.float32 and chosen.precision != "fp32":
        chosen = Precision("fp32", False, f"the weights are {next(model.parameters()).dtype}: computed in their own dtype")
    model.to(memory_format=chosen.memory_format)
    return chosen, autocast_context(device, chosen.precision)
