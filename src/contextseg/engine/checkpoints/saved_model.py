"""Trained models in and out of Python: ``load``, ``save_pretrained``, ``from_pretrained``.

A *saved model* is a folder with ``model.safetensors`` (the weights) and ``config.json`` (how to
build the model again, its classes and palette, the normalisation, the test scale, the training
crop and the evaluation settings) - the layout the Hugging Face Hub serves. A *checkpoint* is what
``contextseg train`` writes (``last.pt``/``best.pt``). :func:`load` reads either and returns a
:class:`~contextseg.models.Segmentor` in eval mode whose ``meta`` carries all of the above, so that
``model.predict(photo)`` segments an image as the evaluation did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import Segmentor, create_model
from .checkpoint import load_checkpoint, nonfinite_tensors
from ..config import Config, ConfigError, apply_overrides, read_yaml

__all__ = ["load", "save_pretrained", "from_pretrained", "load_checkpoint_model", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Segmentor:
    """A trained model from a ``contextseg train`` checkpoint (``.pt``) or a saved-model folder,
    in eval mode, with its classes, palette, normalisation and inference settings in ``model.meta``."""
    path = Path(path)
    if path.is_dir():
        return from_pretrained(path, device)
    return load_checkpoint_model(path, device)[0]


def load_checkpoint_model(path: str | os.PathLike, device: str | torch.device = "cpu", config: str | None = None, overrides: list[str] | None = None) -> tuple[Segmentor, Config, dict]:
    """``(model, resolved config, checkpoint dict)`` of a training checkpoint. ``config`` (a YAML
    whose data/evaluate sections replace the checkpoint's) and ``overrides`` adjust the config."""
    from ..builders import build_model

    if Path(path).is_dir():
        return _saved_model_with_config(Path(path), device, config, overrides)
    path = str(path)
    ckpt = load_checkpoint(path, map_location="cpu")
    if "config" not in ckpt or "classes" not in ckpt:
        raise ConfigError(f"checkpoint {path!r} carries no config/classes; it was not written by contextseg train")
    raw = dict(ckpt["config"])
    if config is not None:
        user = read_yaml(config)
        for key in ("data", "evaluate"):
            if key in user:
                raw[key] = user[key]
    cfg = Config.from_dict(apply_overrides(raw, overrides or []), source=f"checkpoint {path}")
    weights = ckpt.get("ema", ckpt.get("model"))  # the evaluated weights: the EMA when training kept one
    if not isinstance(weights, dict):
        raise ConfigError(f"checkpoint {path!r} holds no model weights")
    bad = nonfinite_tensors(weights)
    if bad:
        raise ConfigError(f"checkpoint {path!r} holds non-finite weights ({', '.join(bad[:3])}): it comes from a diverged run and cannot be used")
    cfg.model = {**cfg.model, "pretrained_backbone": None}  # the checkpoint holds every weight
    model = build_model(cfg, len(ckpt["classes"]))
    _load_weights(model, weights, path)
    base = cfg.data.base_size or ckpt.get("base_size")
    model.meta.update(
        classes=list(ckpt["classes"]),
        palette=[list(c) for c in ckpt.get("palette", [])],
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        base_size=list(base) if base else None,
        crop_size=list(cfg.data.crop_size),
        inference={k: getattr(cfg.evaluate, k) for k in ("mode", "crop_size", "stride", "scales", "flip")},
    )
    return model.to(device).eval(), cfg, ckpt


def _saved_model_with_config(folder: Path, device, config: str | None, overrides: list[str] | None) -> tuple[Segmentor, Config, dict]:
    """A saved-model folder read like a checkpoint: ``config`` (data/evaluate/train sections) and
    ``overrides`` say what to evaluate on; without them the model keeps its own settings."""
    model = from_pretrained(folder, device)
    model_section = {k: v for k, v in model.meta["model"].items() if k != "num_classes"}
    raw: dict = {"name": folder.name, "model": model_section}
    if config is not None:
        user = read_yaml(config)
        raw.update({k: user[k] for k in ("data", "evaluate", "train") if k in user})
    cfg = Config.from_dict(apply_overrides(raw, overrides or []), source=f"saved model {folder}")
    if config is not None or overrides:
        model.meta["inference"] = {k: getattr(cfg.evaluate, k) for k in ("mode", "crop_size", "stride", "scales", "flip")}
    ckpt = {"classes": model.meta.get("classes") or [str(k) for k in range(model.num_classes)], "palette": model.meta.get("palette", []), "config": cfg.to_dict()}
    return model, cfg, ckpt


def save_pretrained(model: Segmentor, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` to ``directory`` (created if needed)."""
    from safetensors.torch import save_file

    if "model" not in model.meta:
        raise ValueError("save_pretrained needs a model built by contextseg.create_model or loaded by contextseg.load (it records how to rebuild it)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "library": "contextseg"})
    config = {"contextseg": _version(), **{k: v for k, v in model.meta.items()}}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=1, default=_jsonable))
    return directory


def from_pretrained(source: str | os.PathLike, device: str | torch.device = "cpu", revision: str | None = None) -> Segmentor:
    """A saved model from a local folder, or from a Hugging Face Hub repository id (``user/name``)
    when the ``huggingface_hub`` package is installed (``pip install "contextseg[hub]"``)."""
    from safetensors.torch import load_file

    folder = Path(source)
    if not folder.is_dir():
        folder = _download(str(source), revision)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a saved model: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(config_path)!r} is not valid JSON: {exc}") from None
    kwargs = dict(meta.get("model") or {})
    if "name" not in kwargs or "num_classes" not in kwargs:
        raise ValueError(f"{str(config_path)!r} has no model section with name and num_classes")
    model = create_model(kwargs.pop("name"), **kwargs)
    _load_weights(model, load_file(str(folder / WEIGHTS_NAME)), str(folder / WEIGHTS_NAME))
    model.meta.update({k: v for k, v in meta.items() if k not in ("model", "contextseg")})
    return model.to(device).eval()


def _load_weights(model: Segmentor, weights: dict, source: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{source!r} does not fit the model its config describes: {first}") from None


def _download(repo_id: str, revision: str | None) -> Path:
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise FileNotFoundError(f"{repo_id!r} is neither a saved-model folder nor a Hub repository id (user/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"loading {repo_id!r} from the Hugging Face Hub needs huggingface_hub: pip install 'contextseg[hub]'") from None
    return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in config.json")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contextseg")
    except PackageNotFoundError:
        return "unknown"
