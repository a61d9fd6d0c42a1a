"""What every converter shares: the error, reading a state dict through the one torch-file reader,
and loading a converted state dict into a model or refusing it with the tensors named."""

from __future__ import annotations

import os

import torch

from ..checkpoints.files import read_torch_file

__all__ = ["ConversionError", "read_state_dict", "check_and_load"]


class ConversionError(ValueError):
    """A checkpoint that does not match the layout it is converted from; the message names tensors."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (read by :func:`read_torch_file`, ``weights_only=True``),
    unwrapped from a ``state_dict``/``model`` entry and from DataParallel's ``module.`` prefix."""
    state = read_torch_file(path, "checkpoint", error=ConversionError)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{str(path)!r} holds no state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_and_load(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, origin: dict[str, str] | None = None) -> None:
    """Load ``state`` into ``model`` or refuse naming every problem; ``origin`` gives the file's
    own name of each converted key."""
    own = model.state_dict()
    origin = origin or {}

    def named(key: str) -> str:
        return f"{origin[key]} (-> {key})" if origin.get(key, key) != key else key

    missing = sorted(set(own) - set(state))
    unexpected = sorted(named(k) for k in set(state) - set(own))
    shapes = [f"{named(k)}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} expected" for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if unexpected:
            parts.append(f"unmapped tensors {unexpected[:5]}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
        if missing:
            parts.append(f"tensors the file lacks {missing[:5]}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if shapes:
            parts.append(f"mismatched shapes {shapes[:3]}")
        raise ConversionError(f"{source} does not match the layout it is converted from: " + "; ".join(parts))
    model.load_state_dict(state)
