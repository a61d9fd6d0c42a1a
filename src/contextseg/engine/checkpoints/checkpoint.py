"""Checkpoints: written atomically, read with ``weights_only=True`` (they are untrusted input)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import MAX_DEPTH, too_deep
from .files import atomic_write, check_safetensors_file, ensure_writable_folder, read_torch_file

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "model_state", "find_resume", "nonfinite_tensors", "remove_stale_temporaries", "ensure_writable_folder"]


def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Dotted names of every floating tensor in ``state`` (nested dicts, lists, tuples) that holds
    a NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        return [prefix or "<tensor>"] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in nonfinite_tensors(v, f"{prefix}[{i}]")]
    return []


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.pt.*.tmp`` files a process killed while saving left in ``folder``."""
    removed = []
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and an atomic rename.

    A crash mid-write leaves the previous checkpoint intact; readers never see a partial file; a
    failed write (a full disk) is `WriteFailed` naming ``path``.
    Weights that hold NaN or infinity are never written: ``FloatingPointError`` names them.
    """
    path = Path(path)
    bad = nonfinite_tensors({k: state[k] for k in ("model", "ema", "optimizer") if k in state})
    if bad:
        raise FloatingPointError(
            f"refusing to save {path} at iteration {state.get('iteration', '?')}: non-finite values in "
            f"{', '.join(bad[:3])}{f' and {len(bad) - 3} more tensors' if len(bad) > 3 else ''}"
        )
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a contextseg checkpoint (or a ``.safetensors`` state dict, returned as ``{"model": ...}``)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        check_safetensors_file(path, "checkpoint")  # a forged header length is refused before safetensors reads it
        return {"model": load_file(str(path), device=str(map_location))}
    ckpt = read_torch_file(path, "checkpoint", map_location=map_location)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{str(path)!r} is not a contextseg checkpoint: it holds a {type(ckpt).__name__}, not a dict with model weights")
    deep = too_deep(ckpt)  # before any code walks it recursively (a checkpoint is under 10 levels deep)
    if deep is not None:
        raise ValueError(f"{str(path)!r} is not a contextseg checkpoint: its {deep!r} entry is nested deeper than {MAX_DEPTH} levels")
    return ckpt


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of ``model`` without a DDP ``module.`` wrapper, in the standard (NCHW) layout
    whatever the training's memory format: the file reads the same into any model, and converts to
    safetensors, which refuses channels_last strides."""
    return {k: v.contiguous() for k, v in getattr(model, "module", model).state_dict().items()}


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in types ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_resume(work_dir: Path, resume: str | bool | None) -> Path | None:
    """The checkpoint to resume from: ``auto`` = ``work_dir/last.pt`` if present; a path; or None."""
    if resume in (None, False, "false", "no", "none", ""):
        return None
    if resume in (True, "auto"):
        last = work_dir / "last.pt"
        if last.is_dir():
            raise ValueError(f"{last} is a folder, not a checkpoint; move it away to resume or start this run")
        return last if last.is_file() else None
    path = Path(resume)
    if path.is_dir():
        raise ValueError(f"train.resume={str(path)!r} is a folder (a saved model or a run folder?); give the last.pt a training wrote")
    if not path.is_file():
        if path.exists():
            raise ValueError(f"train.resume: {str(path)!r} is not a regular file (a FIFO, socket or device); give the last.pt a training wrote")
        raise FileNotFoundError(f"train.resume: checkpoint {str(path)!r} does not exist")
    return path
