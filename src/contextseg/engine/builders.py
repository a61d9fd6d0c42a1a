"""Build datasets and models from a `Config` (shared by train, eval, predict and export)."""

from __future__ import annotations

from ..data import DATASETS, build_dataset
from ..data.base import DatasetError, median_frequency_weights
from ..data.transforms import EvalTransform, TrainTransform
from ..models import Segmentor, create_model, get_model_class
from ..modules.common import feature_size
from .config import Config, ConfigError
from .precision import autocast_context

__all__ = ["train_transform", "build_train_dataset", "build_eval_dataset", "build_model", "feature_size", "size_warnings", "class_balance_weights", "autocast_context"]


def _dataset(cfg: Config, split: str, transforms):
    if cfg.data.name not in DATASETS:
        build_dataset(cfg.data.name, cfg.data.root, split)  # its own error: the valid names
    try:
        dataset = build_dataset(cfg.data.name, cfg.data.root, split, transforms=transforms, **cfg.data.kwargs)
        len(dataset)
    except (DatasetError, FileNotFoundError, ConfigError):
        raise  # they name the file or folder already
    except (TypeError, ValueError, OverflowError) as exc:  # an unknown entry of data.kwargs, or a value of the wrong type or range
        raise ConfigError(f"dataset {cfg.data.name!r} (split {split!r}, data.kwargs {cfg.data.kwargs!r}) cannot be built: {' '.join(str(exc).split())[:200]}") from None
    dataset.cache = cfg.data.cache
    return dataset


def _base_size(cfg: Config, dataset) -> tuple[int, int] | None:
    base = cfg.data.base_size or getattr(dataset, "base_size", None)
    return tuple(base) if base else None


def train_transform(cfg: Config, dataset, with_positions: bool = False) -> TrainTransform:
    """mmsegmentation's joint training pipeline for ``dataset`` (its base size and ignore index)."""
    return TrainTransform(
        crop_size=tuple(cfg.data.crop_size),
        base_size=_base_size(cfg, dataset),
        ratio_range=tuple(cfg.data.ratio_range),
        cat_max_ratio=cfg.data.cat_max_ratio,
        flip_prob=cfg.data.flip_prob,
        photometric=cfg.data.photometric,
        ignore_index=dataset.ignore_index,
        with_positions=with_positions,
    )


def build_train_dataset(cfg: Config, with_positions: bool = False):
    dataset = _dataset(cfg, cfg.data.train_split, None)
    dataset.transforms = train_transform(cfg, dataset, with_positions)
    return dataset


def size_warnings(cfg: Config, dataset) -> list[str]:
    """What is odd about the training images' sizes for this crop: tiny images, or a crop larger
    than every image even at the largest rescale (then crops are mostly padding)."""
    sizes = dataset.image_sizes()
    if not sizes:
        return []
    warnings = []
    tiny = [hw for hw in sizes if min(hw) < 8]
    if tiny:
        warnings.append(f"{len(tiny)} training image(s) are smaller than 8 pixels (e.g. {tiny[0][0]}x{tiny[0][1]}); they become almost all padding")
    base = _base_size(cfg, dataset)
    ratio = max(cfg.data.ratio_range)
    biggest = []
    for h, w in sizes:
        scale = ratio * (min(max(base) / max(h, w), min(base) / min(h, w)) if base else 1.0)
        biggest.append((h * scale, w * scale))
    crop_h, crop_w = cfg.data.crop_size
    if all(h < crop_h and w < crop_w for h, w in biggest):
        warnings.append(
            f"data.crop_size {crop_h}x{crop_w} is larger than every training image even at the largest rescale "
            f"(largest {int(max(h for h, _ in biggest))}x{int(max(w for _, w in biggest))}): crops are mostly padding"
        )
    return warnings


def build_eval_dataset(cfg: Config, split: str | None = None, with_positions: bool = False):
    dataset = _dataset(cfg, split or cfg.data.val_split, None)
    dataset.transforms = EvalTransform(base_size=_base_size(cfg, dataset), with_positions=with_positions, antialias=cfg.evaluate.antialias)
    return dataset


def class_balance_weights(cfg: Config, dataset) -> list[float] | None:
    """The class weights ``data.class_balance`` asks for, from ``dataset``'s masks (or None)."""
    if cfg.data.class_balance is None:
        return None
    return median_frequency_weights(dataset, 0.5 if cfg.data.class_balance == "sqrt_median_frequency" else 1.0)


def build_model(cfg: Config, num_classes: int, ignore_index: int = 255, class_weight: list[float] | None = None) -> Segmentor:
    """The model of ``cfg.model`` for ``num_classes``.

    Options tied to the training crop (`Segmentor.crop_options`: CPNet's ``prior_size``, the
    crop's feature size) follow from ``data.crop_size`` at the backbone's output stride: a config
    that leaves one out gets it derived; one that states another value is refused naming both.
    """
    options = dict(cfg.model)
    name = options.pop("name")
    given = options.pop("num_classes", None)
    if given is not None and int(given) != num_classes:
        raise ConfigError(f"model.num_classes={given} but dataset {cfg.data.name!r} has {num_classes} classes")
    options.setdefault("ignore_index", ignore_index)
    if class_weight is not None:
        if options.get("class_weight") is not None:
            raise ConfigError(f"model.class_weight and data.class_balance={cfg.data.class_balance!r} both set class weights; keep one")
        options["class_weight"] = class_weight
    cls = get_model_class(name)
    stated = {k: options[k] for k in cls.crop_options(cfg.data.crop_size, 8) if options.get(k) is not None}
    for key, value in cls.crop_options(cfg.data.crop_size, options.get("output_stride", 8)).items():
        options.setdefault(key, value)
        if options[key] is None:
            options[key] = value
    model = create_model(name, num_classes=num_classes, **options)
    for key, expected in cls.crop_options(cfg.data.crop_size, model.backbone.output_stride).items():
        used = list(options[key]) if isinstance(options[key], (list, tuple)) else options[key]
        if used != list(expected):
            what = f"model.{key}={used}" if key in stated else f"the derived {key} {used}"
            raise ConfigError(
                f"{what} does not match data.crop_size={list(cfg.data.crop_size)} at output stride "
                f"{model.backbone.output_stride}, which needs {key}={list(expected)}; "
                f"leave model.{key} out to derive it from the crop"
            )
    return model

