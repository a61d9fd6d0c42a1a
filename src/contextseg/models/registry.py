"""The model registry: a name -> class dict filled by ``@register_model`` in each model's own file
(the package imports every model file, `contextseg.exports`), timm-style ``create_model``."""

from __future__ import annotations

import keyword
import math
import re
from typing import Any

from .segmentor import Segmentor

__all__ = ["MODELS", "create_model", "list_models", "get_model_class", "register_model"]

MODELS: dict[str, type[Segmentor]] = {}


def register_model(name: str, cls: type[Segmentor] | None = None, *, overwrite: bool = False):
    """Add a model to the registry, as a call or a class decorator:

    ```python
    @register_model("mynet")
    class MyNet(Segmentor):
        head_cls = MyHead
    ```

    Every name-based entry point then knows it: ``create_model``, configs (``model.name``), saved
    models, the CLI and the every-model tests. An existing name is refused unless ``overwrite``.

    The name is also the method's folder (``configs/<name>/``), the first word of its recipes' file
    names (``<name>_r18_camvid.yaml``) and its module (``contextseg/models/<name>.py``), so it is
    lowercase letters and digits, starting with a letter, no underscore (the recipes' file names
    separate their fields with ``_``), and not a Python keyword (``nonlocal`` could not be imported):
    ``nonlocalnet``, not ``non_local`` or ``nonlocal``.
    """
    if not (isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9]*", name)) or keyword.iskeyword(name):
        raise ValueError(f"register_model({name!r}): a model name is lowercase letters and digits starting with a letter, "
                         f"without '_' and not a Python keyword (e.g. 'nonlocalnet'), as it names the method's folder, "
                         f"recipe files and module")

    def add(klass: type[Segmentor]) -> type[Segmentor]:
        if not (isinstance(klass, type) and issubclass(klass, Segmentor)):
            raise TypeError(f"register_model({name!r}) needs a Segmentor subclass, got {klass!r}")
        if name in MODELS and MODELS[name] is not klass and not overwrite:
            raise ValueError(f"model {name!r} is already registered ({MODELS[name].__name__}); pass overwrite=True to replace it")
        MODELS[name] = klass
        return klass

    return add(cls) if cls is not None else add


def list_models() -> list[str]:
    """Sorted model names."""
    return sorted(MODELS)


def get_model_class(name: str) -> type[Segmentor]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int, **kwargs: Any) -> Segmentor:
    """Build a model by name: ``create_model("cpnet", num_classes=150, backbone="resnet50d", ...)``.

    Keywords are the segmentor's (``backbone``, ``output_stride``, ``pretrained_backbone``,
    ``aux_head``, ``aux_weight``, ``ohem_thresh``, ...) and the method's head options; an unknown
    keyword is an error that lists the accepted ones.
    """
    cls = get_model_class(name)
    accepted = cls.options()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} got unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(accepted))}"
        )
    _check_option_ranges(name, num_classes, kwargs)
    try:
        model = cls(num_classes=num_classes, **kwargs)
    except RuntimeError as exc:  # a layer that cannot exist with these options (a width that is not positive, ...)
        raise ValueError(f"model {name!r} cannot be built with options {kwargs}: {' '.join(str(exc).split())[:200]}") from None
    # how to build it again (cs.save_pretrained): the name and every keyword, weights aside
    model.meta["model"] = {"name": name, "num_classes": num_classes, **{k: _plain(v) for k, v in kwargs.items() if k != "pretrained_backbone"}}
    return model


def _check_option_ranges(name: str, num_classes: Any, kwargs: dict[str, Any]) -> None:
    """The ranges every method shares, by the option's name: ``num_classes`` and every ``*channels``,
    ``*reduction``, ``num_*`` width or count a positive integer; every ``*_weight`` loss weight a
    finite number >= 0; ``dropout`` a probability. ValueError naming the option."""
    def positive_int(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model {name!r}: {key} must be a positive integer, got {value!r}")

    positive_int("num_classes", num_classes)
    for key, value in kwargs.items():
        if value is None:
            continue
        if key.endswith(("channels", "reduction")) or key.startswith("num_"):
            positive_int(key, value)
        elif key.endswith("_weight") and key != "class_weight":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"model {name!r}: {key} is a loss weight, a finite number >= 0; got {value!r}")
        elif key == "dropout" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
            raise ValueError(f"model {name!r}: dropout is a probability in [0, 1), got {value!r}")


def _plain(value: Any) -> Any:
    """Tuples as lists, so that the keywords round-trip through JSON."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value
