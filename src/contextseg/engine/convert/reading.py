"""What every converter shares: the error, reading a state dict through the one torch-file reader,
and loading a converted state dict into a model or refusing it with the tensors named."""

from __future__ import annotations

import os

import torch

from ..checkpoints.files import read_torch_file

__all__ = ["ConversionError", "read_state_dict", "check_and_load", "tensor_of"]


class ConversionError(ValueError):
    """A checkpoint that does not match the layout it is converted from; the message names tensors."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (read by `read_torch_file`, ``weights_only=True``),
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


def tensor_of(state: dict, key: str, source: str, ndim: int, what: str) -> torch.Tensor:
    """``state[key]``, a tensor of ``ndim`` dimensions (``what`` it is, for the message), or a
    ConversionError naming the tensor: missing, not a tensor, 0-d or of another rank."""
    value = state.get(key)
    if value is None:
        raise ConversionError(f"{source} has no tensor {key} ({what})")
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConversionError(f"{source}: tensor {key} ({what}) has shape {shape}; a {ndim}-d tensor is expected")
    return value


def check_and_load(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, origin: dict[str, str] | None = None) -> None:
    """Load ``state`` into ``model`` or refuse naming every problem; ``origin`` gives the file's
    own name of each converted key."""
    own = model.state_dict()
    origin = origin or {}

    def named(key: str) -> str:
        return f"{origin[key]} (-> {key})" if origin.get(key, key) != key else key

    not_tensors = sorted(named(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"{source}: {not_tensors[:3]} are not tensors")
    # a float tensor where an integer one belongs (or the reverse) would be cast silently; half precision is a cast worth keeping
    kinds = [f"{named(k)}: {str(state[k].dtype).replace('torch.', '')} in the file, {str(own[k].dtype).replace('torch.', '')} expected"
             for k in sorted(set(own) & set(state))
             if state[k].is_floating_point() != own[k].is_floating_point() and not k.endswith("num_batches_tracked")]  # a counter, unused in eval
    if kinds:
        raise ConversionError(f"{source}: tensors of the wrong kind {kinds[:3]}")
    bad = [named(k) for k in sorted(state) if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if bad:
        raise ConversionError(f"{source}: tensors with NaN or infinite values {bad[:3]}")
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
