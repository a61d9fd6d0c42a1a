"""Trained models in and out of Python: ``load``, ``save_pretrained``, ``from_pretrained``.

A *saved model* is a folder with ``model.safetensors`` (the weights) and ``config.json`` (how to
build the model again, its classes and palette, the normalisation, the test scale, the training
crop and the evaluation settings) - the layout the Hugging Face Hub serves. A *checkpoint* is what
``contextseg train`` writes (``last.pt``/``best.pt``). `load` reads either and returns a
`Segmentor` in eval mode whose ``meta`` carries all of the above, so that
``model.predict(photo)`` segments an image as the evaluation did.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any, Sequence

import torch

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import Segmentor, create_model
from ...models.inference import INFERENCE_SETTINGS
from .checkpoint import load_checkpoint, nonfinite_tensors
from ...data.io import OutputRefused, check_output
from .files import atomic_write, check_safetensors_file, write_atomic
from ..config import Config, ConfigError, apply_overrides, json_load, check_eval_settings, check_model_options, check_size, path_component_problem, read_yaml, version_differences, without_unknown_keys
from ..log import get_logger

log = get_logger("saved_model")

__all__ = ["load", "run_checkpoint", "save_pretrained", "check_saved_model_target", "from_pretrained", "load_checkpoint_model", "check_model_meta", "load_weights_checked", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SAVE_ID = "save_id"  # in config.json and in the weights' copy of it: the two files come from one save
EMBEDDED_CONFIG = "contextseg_config"  # the safetensors metadata key holding config.json's text


def run_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself, or for a run folder (a ``train.work_dir``: ``best.pt`` and/or ``last.pt``, no
    ``config.json``) its ``best.pt``, else its ``last.pt`` (a run stopped before its first evaluation),
    with a line saying which."""
    path = Path(path)
    if not path.is_dir() or (path / CONFIG_NAME).exists():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            log.info("%s is a run folder: using its %s%s", path, name, "" if name == "best.pt" else " (it has no best.pt yet: no evaluation has run)")
            return path / name
    if (path / "config.yaml").is_file():
        raise FileNotFoundError(f"run folder {str(path)!r} holds no checkpoint yet (neither best.pt nor last.pt): train it further, or give a checkpoint")
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Segmentor:
    """A trained model from a ``contextseg train`` checkpoint (``.pt``), a run folder (its ``best.pt``,
    else ``last.pt``) or a saved-model folder, in eval mode, with its classes, palette, normalisation
    and inference settings in ``model.meta``."""
    path = run_checkpoint(path)
    if path.is_dir() or (not path.exists() and _looks_like_hub_id(str(path))):
        return from_pretrained(path, device)
    return load_checkpoint_model(path, device)[0]


def load_checkpoint_model(path: str | os.PathLike, device: str | torch.device = "cpu", config: str | None = None, overrides: list[str] | None = None) -> tuple[Segmentor, Config, dict]:
    """``(model, resolved config, checkpoint dict)`` of a training checkpoint. ``config`` (a YAML
    whose data/evaluate sections replace the checkpoint's) and ``overrides`` adjust the config."""
    from ..builders import build_model

    path = run_checkpoint(path)
    if Path(path).is_dir():
        return _saved_model_with_config(Path(path), device, config, overrides)
    path = str(path)
    ckpt = load_checkpoint(path, map_location="cpu")
    if "config" not in ckpt or "classes" not in ckpt:
        raise ConfigError(f"checkpoint {path!r} carries no config/classes; it was not written by contextseg train")
    if not isinstance(ckpt["config"], dict):
        raise ConfigError(f"checkpoint {path!r}: its config is a {type(ckpt['config']).__name__}, not the mapping contextseg train stores")
    raw = dict(ckpt["config"])
    unknown, missing = version_differences(raw)
    if unknown or missing:  # another contextseg version wrote it: the model still predicts
        log.warning("checkpoint %s was written by another contextseg version: %s%s", path,
                    f"config keys this version does not know are ignored ({', '.join(unknown)})" if unknown else "",
                    ("; " if unknown and missing else "") + (f"keys it lacks take this version's defaults ({', '.join(missing)})" if missing else ""))
        raw = without_unknown_keys(raw)
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
    if not isinstance(ckpt["classes"], (list, tuple)) or not ckpt["classes"]:
        raise ConfigError(f"checkpoint {path!r}: classes must be a non-empty list of names, got {ckpt['classes']!r}")
    model = build_model(cfg, len(ckpt["classes"]))
    load_weights_checked(model, weights, path)
    base = cfg.data.base_size or ckpt.get("base_size")
    meta = {
        "classes": list(ckpt["classes"]),
        "palette": [list(c) for c in ckpt.get("palette") or []] if isinstance(ckpt.get("palette") or [], (list, tuple)) else ckpt["palette"],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "base_size": list(base) if isinstance(base, (list, tuple)) else base,
        "crop_size": list(cfg.data.crop_size),
        "inference": {k: getattr(cfg.evaluate, k) for k in INFERENCE_SETTINGS},
        # what it was scored on: `contextseg eval --checkpoint SAVED_FOLDER` evaluates the same way
        "data": {"name": cfg.data.name, "root": cfg.data.root, "val_split": cfg.data.val_split, "kwargs": dict(cfg.data.kwargs),
                 "base_size": list(base) if isinstance(base, (list, tuple)) else base, "crop_size": list(cfg.data.crop_size)},
    }
    check_model_meta({"model": model.meta["model"], **meta}, f"checkpoint {path}", model)
    model.meta.update(meta)
    return model.to(device).eval(), cfg, ckpt


def _saved_model_with_config(folder: Path, device, config: str | None, overrides: list[str] | None) -> tuple[Segmentor, Config, dict]:
    """A saved-model folder read like a checkpoint: ``config`` (data/evaluate/train sections) and
    ``overrides`` say what to evaluate on; without them the model keeps its own settings."""
    model = from_pretrained(folder, device)
    model_section = {k: v for k, v in model.meta["model"].items() if k != "num_classes"}
    # the settings it was scored with: its dataset (when saved from a training checkpoint), test scale, crop and inference
    data = dict(model.meta.get("data") or {})
    data.setdefault("base_size", model.meta.get("base_size"))
    data.setdefault("crop_size", model.meta.get("crop_size"))
    name = folder.resolve().name  # "." and ".." as their folder's own name; a name no run folder could have is left out
    raw: dict = {"name": name if not path_component_problem(name) else None, "model": model_section, "data": {k: v for k, v in data.items() if v is not None},
                 "evaluate": dict(model.meta.get("inference") or {})}
    if config is not None:
        user = read_yaml(config)
        raw.update({k: user[k] for k in ("data", "evaluate", "train") if k in user})
    cfg = Config.from_dict(apply_overrides(raw, overrides or []), source=f"saved model {folder}")
    if config is not None or overrides:
        model.meta["inference"] = {k: getattr(cfg.evaluate, k) for k in INFERENCE_SETTINGS}
    ckpt = {"classes": model.meta.get("classes") or [str(k) for k in range(model.num_classes)], "palette": model.meta.get("palette", []), "config": cfg.to_dict()}
    return model, cfg, ckpt


def check_saved_model_target(directory: str | os.PathLike, overwrite: bool, option: str = "--out", inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Where a command writes a saved model: a new or empty folder, or (with ``overwrite``) a saved
    model contextseg wrote, its two files and nothing else; a folder holding other files (a run, a
    dataset) or a ``config.json``/``model.safetensors`` contextseg did not write is refused, and so is
    an input of the command. Refusals are `OutputRefused`."""
    directory = Path(directory)
    if os.path.lexists(directory) and (directory.is_symlink() or not directory.is_dir()):
        raise OutputRefused(f"{option} {str(directory)!r} is a file, not a folder; a saved model is a folder ({WEIGHTS_NAME} + {CONFIG_NAME})")
    present = sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) if directory.is_dir() else []
    others = [name for name in present if name not in (WEIGHTS_NAME, CONFIG_NAME)]
    if others:
        raise OutputRefused(f"{option} {str(directory)!r} holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                            "write a saved model into a new or empty folder")
    for name in present:  # a file contextseg did not write (a config.json of another tool): never replaced
        check_output(directory / name, option, True, inputs)
    if present and not overwrite:
        raise OutputRefused(f"{option} {str(directory)!r} holds a saved model contextseg wrote; add --overwrite to replace it")


def save_pretrained(model: Segmentor, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` to ``directory`` (created if needed)."""
    from safetensors.torch import save_file

    if "model" not in model.meta:
        raise ValueError("save_pretrained needs a model built by contextseg.create_model or loaded by contextseg.load (it records how to rebuild it)")
    directory = Path(directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):  # a saved model's own files are replaced, never a file of someone else
        check_output(directory / name, "save_pretrained's directory", overwrite=True)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = {"contextseg": _version(), **{k: v for k, v in model.meta.items() if k != SAVE_ID}, SAVE_ID: secrets.token_hex(8)}
    text = json.dumps(config, indent=1, default=_jsonable)
    # The weights file is the unit: it carries its config, so a kill between the two renames (new
    # weights beside the old config.json) still loads as the new model, never as a mix.
    with atomic_write(directory / WEIGHTS_NAME) as tmp:  # each file whole or not at all
        save_file(weights, str(tmp), metadata={"format": "pt", "library": "contextseg", EMBEDDED_CONFIG: text})
    write_atomic(directory / CONFIG_NAME, text)
    return directory


def _config_for_weights(config_path: Path, weights_path: Path) -> dict:
    """The config that belongs to ``weights_path``: ``config.json`` when it comes from the same save
    (the same ``save_id``, so a hand edit of it is kept), else the copy stored in the weights file
    (a save killed between its two files, or a config.json copied from another model), with a
    warning; saved models written before the copy existed use ``config.json``."""
    from safetensors import safe_open

    meta = _read_json(config_path)
    check_safetensors_file(weights_path, "saved model weights")  # a forged header length is refused before safetensors reads it
    try:
        with safe_open(str(weights_path), "pt") as f:
            embedded = (f.metadata() or {}).get(EMBEDDED_CONFIG)
    except Exception as exc:  # safetensors' own errors: a header that is not JSON, a truncated file
        raise ValueError(f"cannot read {str(weights_path)!r}: {' '.join(str(exc).split())[:200]}") from None
    if embedded is None:
        return meta
    try:
        own = json_load(embedded)  # nesting bounded: the metadata is the file's, not ours
    except ConfigError as exc:
        raise ValueError(f"cannot read {str(weights_path)!r}: its stored config: {exc}") from None
    if isinstance(meta, dict) and isinstance(own, dict) and meta.get(SAVE_ID) == own.get(SAVE_ID):
        return meta
    log.warning("%s does not belong to %s (it comes from another save, or a save was interrupted between the two files); "
                "using the config stored in the weights file", config_path, weights_path.name)
    return own


def _read_json(path: Path) -> Any:
    try:
        return json_load(path.read_bytes())  # nesting bounded by MAX_DEPTH before Python parses it
    except ConfigError as exc:
        raise ValueError(f"{str(path)!r} cannot be a saved model's config: {exc}") from None


def from_pretrained(source: str | os.PathLike, device: str | torch.device = "cpu", revision: str | None = None) -> Segmentor:
    """A saved model from a local folder, or from a Hugging Face Hub repository id (``user/name``)
    when the ``huggingface_hub`` package is installed (``pip install "contextseg[hub]"``)."""
    from safetensors.torch import load_file

    folder = Path(source)
    if not folder.is_dir():
        if folder.exists():
            raise FileNotFoundError(f"{str(folder)!r} is a file; a saved model is a folder with {CONFIG_NAME} and {WEIGHTS_NAME} (a .pt checkpoint loads with contextseg.load)")
        folder = _download(str(source), revision)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a saved model: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it")
    meta = _config_for_weights(config_path, folder / WEIGHTS_NAME)
    source_name = f"saved model {config_path}"
    check_model_meta(meta, source_name)
    kwargs = dict(meta["model"])
    kwargs["pretrained_backbone"] = None  # the saved weights replace every pretrained one: never a file or the network
    try:
        model = create_model(kwargs.pop("name"), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source_name}: its model section cannot be built: {' '.join(str(exc).split())[:300]}") from None
    check_model_meta(meta, source_name, model)
    try:
        weights = load_file(str(folder / WEIGHTS_NAME))
    except Exception as exc:  # safetensors' own errors: a header that is not JSON, a truncated file
        raise ValueError(f"cannot read {str(folder / WEIGHTS_NAME)!r}: {' '.join(str(exc).split())[:200]}") from None
    load_weights_checked(model, weights, str(folder / WEIGHTS_NAME))
    model.meta.update({k: v for k, v in meta.items() if k not in ("model", "contextseg", SAVE_ID)})
    return model.to(device).eval()


def _numbers(value: Any, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def check_model_meta(meta: Any, source: str, model: Segmentor | None = None) -> None:
    """What a saved model's ``config.json`` (or a checkpoint's classes/palette) says, checked with the
    schema and ranges of YAML configs before it is used: a ``model`` mapping with ``name`` and
    ``num_classes``; ``classes`` (one name per class), ``palette`` (one ``[r, g, b]`` in 0..255 per
    class), ``mean``/``std`` (three finite numbers, std > 0), ``base_size``/``crop_size`` (two
    integers; a tied model's crop at least its output stride), ``inference`` (an ``evaluate`` section). With
    ``model`` (built from it) the sizes are checked against it, and for a model tied to its crop
    (CPNet) the crop against its prior. ``ConfigError`` naming ``source`` and the key otherwise."""
    if not isinstance(meta, dict):
        raise ConfigError(f"{source}: must be a JSON object (model, classes, palette, ...), got {type(meta).__name__}")
    section = meta.get("model")
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise ConfigError(f"{source}: model must be a mapping with a name and num_classes, got {section!r}"[:300])
    check_model_options(section, f"{source}: model")  # every number in its range (num_classes, widths, ...)
    k = section.get("num_classes")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{source}: model.num_classes must be a positive integer, got {k!r}")
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != k or not all(isinstance(c, str) for c in classes)):
        raise ConfigError(f"{source}: classes must be a list of {k} names (model.num_classes), got {str(classes)[:120]}")
    palette = meta.get("palette")
    if palette:  # [] or null: the default palette
        if (not isinstance(palette, list) or len(palette) != k
                or not all(_numbers(c, 3) and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)):
            raise ConfigError(f"{source}: palette must be {k} colours (one per class), each three integers 0..255, got {str(palette)[:120]}")
    for key in ("mean", "std"):
        if key in meta and not _numbers(meta[key], 3):
            raise ConfigError(f"{source}: {key} must be three finite numbers (R, G, B), got {meta[key]!r}"[:300])
    if "std" in meta and any(v <= 0 for v in meta["std"]):
        raise ConfigError(f"{source}: std must be three positive numbers, got {meta['std']!r}")
    # the smallest crop: one output cell for a model tied to its crop (CPNet's prior), else a pixel
    minimum = model.backbone.output_stride if model is not None and type(model).crop_options((64, 64), 8) else 1
    check_size(meta.get("base_size"), f"{source}: base_size")
    check_size(meta.get("crop_size"), f"{source}: crop_size", minimum)
    inference = meta.get("inference")
    if meta.get("data") is not None and not isinstance(meta["data"], dict):
        raise ConfigError(f"{source}: data must be a mapping (the dataset section it was evaluated with), got {meta['data']!r}"[:300])
    if inference is not None:
        ev = check_eval_settings(inference, f"{source}: inference")
        if ev.crop_size is not None:
            check_size(ev.crop_size, f"{source}: inference.crop_size", minimum)
    if model is not None and meta.get("crop_size") is not None:
        cls, stride = type(model), model.backbone.output_stride
        for key, expected in cls.crop_options(meta["crop_size"], stride).items():
            stated = section.get(key)
            if stated is not None and list(stated) != list(expected):
                raise ConfigError(f"{source}: crop_size {meta['crop_size']} needs model.{key}={list(expected)} at output stride {stride}, but model.{key} is {stated!r}")


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def _looks_like_hub_id(text: str) -> bool:
    """``user/name`` as the Hugging Face Hub spells repository ids, and not a local path: no file
    suffix of a checkpoint, and its first part is not a folder here (``runs/x`` is a missing run)."""
    if not _HUB_ID.match(text) or text.endswith((".pt", ".pth", ".bin", ".safetensors", ".json")) or ".." in text:
        return False
    return not Path(text.split("/")[0]).exists()


def load_weights_checked(model: Segmentor, weights: dict, source: str) -> None:
    """``weights`` into ``model``, refused naming the tensor unless each has the model's own dtype
    and finite values (a cast on load would hide a half-precision or integer file), and the keys
    and shapes fit."""
    own = model.state_dict()
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{source!r}: {key} is a {type(value).__name__}, not a tensor")
        if key in own and value.dtype != own[key].dtype:
            raise ConfigError(f"{source!r}: tensor {key} is {str(value.dtype).replace('torch.', '')}, the model expects {str(own[key].dtype).replace('torch.', '')}")
    bad = nonfinite_tensors(weights)
    if bad:
        raise ConfigError(f"{source!r} holds non-finite weights ({', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''}): it comes from a diverged run and cannot be used")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{source!r} does not fit the model its config describes: {first}") from None


def _download(repo_id: str, revision: str | None) -> Path:
    """A Hub repository's saved model, only for a string that is a Hub id (`_looks_like_hub_id`)
    with the ``hub`` extra installed; anything else is a missing local path."""
    if not _looks_like_hub_id(repo_id):
        raise FileNotFoundError(f"saved model {repo_id!r} does not exist (neither a local folder nor a Hub repository id user/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"saved model {repo_id!r} does not exist here; as a Hugging Face Hub id it needs the hub extra: pip install 'contextseg[hub]'") from None
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as exc:  # offline, unknown repository, gated, revision missing
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise FileNotFoundError(f"saved model {repo_id!r} is not a local folder and could not be fetched from the Hugging Face Hub: {reason}") from None


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
