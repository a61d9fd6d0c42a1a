"""Experiment configuration: YAML files mapped one-to-one onto dataclasses and ``create_model``.

A config has four sections:

```yaml
model:     # the keywords of contextseg.create_model (name + options)
data:      # DataConfig: dataset, splits, training-transform options, loader
train:     # TrainConfig: schedule, optimiser, precision, checkpoints
evaluate:  # EvalConfig: whole/slide inference, scales, flip
```

``key=value`` overrides use dotted keys (``train.max_iters=20``); values are parsed as YAML
(``[1, 2]``, ``null``, ``true``, ``1e-4``). The resolved config (every default filled in) is what a
checkpoint stores; dumping it and loading it back gives the same experiment.

Inheritance, as mmsegmentation's ``_base_``: ``_base_: other.yaml`` (or a list of files; paths
relative to the file that names them) reads the bases first, then this file on top:

- mappings merge key by key, recursively; anything else (a number, a string, a list) in the child
  replaces the base's value;
- ``_delete_: true`` inside a child mapping drops the base's mapping there instead of merging;
- several bases merge in order, each on top of the previous;
- ``name`` is never inherited: a config is named by its own ``name`` or its file name;
- a base that (through its own bases) names the file again is an error naming the chain.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fnmatch
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.io import YAML_MARK
from ..data.text import is_printable
from ..models.inference import MAX_SCALE
from ..models.inference import check_scales as scale_rule

__all__ = [
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "Config",
    "load_config",
    "default_config_path",
    "apply_overrides",
    "ConfigError",
    "read_yaml",
    "merge_configs",
    "check_eval_settings",
    "check_scales",
    "check_size",
    "MAX_SCALE",
]


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says where and why."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_DEPTH = 64  # nesting of any config, metadata or checkpoint entry (a real one is under 8 levels deep)


def _compose_node(loader: "_Loader", parent, index):
    """Compose one YAML node, refusing a document nested deeper than ``MAX_DEPTH`` before Python's
    recursion limit is reached."""
    loader._depth = getattr(loader, "_depth", 0) + 1
    try:
        if loader._depth > MAX_DEPTH:
            mark = loader.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: the YAML is nested too deeply (deeper than {MAX_DEPTH} levels)")
        return yaml.SafeLoader.compose_node(loader, parent, index)
    finally:
        loader._depth -= 1


_Loader.compose_node = _compose_node


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys are plain values, each written once: a duplicated key (YAML keeps the
    last one silently) is an error naming the key and both lines."""
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # ``<<: *base`` merges; the keys after it override on purpose
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain name, not a {key_node.id}")
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"line {line}: key {key!r} appears twice in the same mapping (first at line {seen[key]}); keep one")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

MAX_YAML_NODES = 100_000  # values in a config once aliases are expanded ("billion laughs" bound)


def expanded_shape(value: Any, containers: tuple[type, ...] = (dict, list)) -> tuple[int, int] | None:
    """``(values, depth)`` of ``value`` with every shared object counted at each use (a YAML alias, a
    pickle's memo: a few hundred bytes can name one list a billion times), in time linear in the
    distinct objects and without recursion; None for an object that contains itself. ``values``
    counts every container and leaf; ``depth`` the containers on the longest path."""
    def children(item):
        return list(item.values()) if isinstance(item, dict) else list(item)

    memo: dict[int, tuple[int, int]] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        if not isinstance(item, containers):
            continue
        key = id(item)
        if done:
            open_.discard(key)
            kids = [memo[id(c)] if isinstance(c, containers) else (1, 0) for c in children(item)]
            memo[key] = (1 + sum(k[0] for k in kids), 1 + max((k[1] for k in kids), default=0))
            continue
        if key in memo:
            continue
        if key in open_:
            return None
        open_.add(key)
        stack.append((item, True))
        stack.extend((c, False) for c in children(item) if isinstance(c, containers) and id(c) not in memo)
    return memo.get(id(value), (1, 0))


def _expanded_shape(value: Any) -> tuple[int, int]:
    """`expanded_shape` of a YAML document; a recursive alias, more than ``MAX_YAML_NODES`` values
    or more than ``MAX_DEPTH`` levels is a ConfigError."""
    shape = expanded_shape(value)
    if shape is None:
        raise ConfigError("a YAML alias refers to the mapping or list that contains it (a recursive structure)")
    if shape[0] > MAX_YAML_NODES:
        raise ConfigError(f"the YAML expands to more than {MAX_YAML_NODES} values through its aliases; a config is far smaller")
    if shape[1] > MAX_DEPTH:
        raise ConfigError(f"the YAML is nested too deeply through its aliases (deeper than {MAX_DEPTH} levels)")
    return shape


def yaml_load(text: str):
    """Parse YAML text as a config value: floats as YAML 1.2 reads them, duplicate keys refused,
    alias expansion bounded by ``MAX_YAML_NODES``, nesting by ``MAX_DEPTH`` (aliases expanded).
    Errors are ``ConfigError`` (or ``yaml.YAMLError`` for text that is not YAML)."""
    try:
        value = yaml.load(text, Loader=_Loader)
        _expanded_shape(value)
    except RecursionError:  # not reached within MAX_DEPTH; kept as a last guard
        raise ConfigError(f"the YAML is nested too deeply (deeper than {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # an integer of more than 4300 digits: Python refuses to convert it
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"a number in it is too long to be read ({' '.join(str(exc).split())[:120]})") from None
    return value


_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_load(text: str | bytes) -> Any:
    """Parse JSON (a saved model's config.json, the config stored in its weights, a log line) with
    its nesting bounded by ``MAX_DEPTH``, checked on the text before Python parses it. Every
    problem is a one-line ``ConfigError``: not JSON, nested too deeply, a number too long to read."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("it is not UTF-8 text") from None
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"its JSON is nested deeper than {MAX_DEPTH} levels (at character {token.start()})")
        elif bracket in ("]", "}"):
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"it is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"a number in its JSON is too long to be read ({' '.join(str(exc).split())[:120]})") from None
    except RecursionError:  # not reached within MAX_DEPTH; kept as a last guard
        raise ConfigError(f"its JSON is nested deeper than {MAX_DEPTH} levels") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The key (of a mapping at the top) under which ``value`` (plain data: a checkpoint entry, a
    config read from a file) nests mappings, lists and tuples more than ``limit`` levels deep, or
    None. Measured by `expanded_shape` (without recursion, shared objects once), so that the
    recursive checks that follow never meet Python's recursion limit; an object that contains
    itself is infinitely deep."""
    containers = (dict, list, tuple)
    shape = expanded_shape(value, containers)
    if shape is not None and shape[1] <= limit:
        return None
    if isinstance(value, dict):
        for key, entry in value.items():
            shape = expanded_shape(entry, containers)
            if shape is None or shape[1] > limit - 1:
                return str(key)
    return "<top>"


@dataclass
class DataConfig:
    name: str = "synthetic"  # a name of contextseg.data.build_dataset
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    kwargs: dict = field(default_factory=dict)  # extra dataset constructor options
    base_size: list[int] | None = None  # (long, short) base scale; None = the dataset's own
    crop_size: list[int] = field(default_factory=lambda: [512, 512])  # (h, w)
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    num_workers: int = 2
    cache: bool = False  # keep decoded samples in memory (uint8) after their first read
    class_balance: str | None = None  # class weights of the cross entropies from the training masks: median_frequency | sqrt_median_frequency


@dataclass
class TrainConfig:
    max_iters: int = 80000
    batch_size: int = 16  # global images per optimizer step: split over the torchrun processes and accumulate_steps
    accumulate_steps: int = 1  # micro-batches whose gradients are summed before each optimizer step
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    schedule: str = "poly"  # poly: lr * (1 - it / max_iters) ** power | cosine: half a cosine from lr to min_lr
    min_lr: float | None = None  # schedule floor; None = 1e-4 * lr
    power: float = 0.9
    momentum: float = 0.9  # SGD
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW
    weight_decay: float = 1e-4
    norm_weight_decay: float | None = None  # weight decay of norm layers and biases; None = weight_decay
    warmup_iters: int = 0
    warmup_ratio: float = 0.1  # LR factor at iteration 0 of a linear warm-up
    head_lr_mult: float = 1.0  # LR multiplier of every parameter outside the backbone
    paramwise: list[dict] = field(default_factory=list)  # [{pattern: glob on parameter names, lr_mult, weight_decay}]
    grad_clip: float | None = None
    ema: float | None = None  # decay of an exponential moving average of the weights, used for evaluation (e.g. 0.999)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto: bf16 on CPUs and GPUs that compute it natively, fp16 on older tensor-core GPUs, fp32 elsewhere (engine/precision.py)
    channels_last: bool | str = "auto"  # NHWC memory format: true | false | auto (on for the CPU, and on CUDA with bf16/fp16)
    compile: bool = False  # torch.compile the training forward (docs/benchmarks.md: what it gives here)
    sync_bn: bool = True  # SyncBatchNorm when distributed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    log_interval: int = 10
    eval_interval: int = 4000
    checkpoint_interval: int = 500  # last.pt every this many iterations, and at every evaluation
    work_dir: str | None = None  # None = runs/<config name>
    resume: str | bool | None = "auto"  # auto | false | path to a checkpoint


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide
    crop_size: list[int] | None = None  # slide window (h, w); None = data.crop_size
    stride: list[int] | None = None  # slide stride; None = 2/3 of the window
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    antialias: bool = True  # antialiased test-image resize; false = mmcv's cv2 bilinear, as mmseg's test pipeline (eval --mmseg-compat)


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "evaluate": EvalConfig}


@dataclass
class Config:
    name: str
    model: dict
    data: DataConfig
    train: TrainConfig
    evaluate: EvalConfig

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    files_read = ()  # the YAML files this config was read from (load_config sets it): never written over

    def dump(self) -> str:
        """The resolved config as YAML, marked as written by contextseg on its first line."""
        return f"{YAML_MARK} (a resolved config)\n" + yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def work_dir(self) -> Path:
        return Path(self.train.work_dir or Path("runs") / self.name)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<config>") -> "Config":
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a config is a mapping with sections model/data/train/evaluate, got {type(raw).__name__}")
        known = {"name", "model", *_SECTIONS}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key(s) {_suggest(unknown, known)}")
        if not isinstance(raw.get("model") or {}, dict):
            raise ConfigError(f"{source}: model must be a mapping (name + options), got {raw['model']!r}")
        model = dict(raw.get("model") or {})
        bad = _nonfinite_numbers(raw)
        if bad:
            raise ConfigError(f"{source}: {bad[0][0]}={bad[0][1]!r}: every number in a config must be finite")
        huge = _huge_integers(raw)
        if huge:
            key, value = min(huge, key=lambda item: item[0])
            raise _out_of_range(f"{source}: {key}", value, _bound_of(key))
        check_model_options(model, f"{source}: model")
        if "name" not in model:
            raise ConfigError(f"{source}: model.name is required (one of contextseg.list_models())")
        sections = {key: _build_section(cls_, raw.get(key) or {}, f"{source}: {key}") for key, cls_ in _SECTIONS.items()}
        _check(sections["data"], sections["train"], sections["evaluate"], source)
        name = raw.get("name") or f"{model['name']}_{sections['data'].name}"
        if isinstance(name, (dict, list, tuple, bool)):
            raise ConfigError(f"{source}: name must be text (the run's folder name under runs/), got {_shown(name)}")
        check_path_component(str(name), f"{source}: name", "the run's folder under runs/, e.g. my_run; train.work_dir chooses any folder")
        for key in ("train_split", "val_split"):
            check_path_component(getattr(sections["data"], key), f"{source}: data.{key}", "a folder of the dataset, e.g. train")
        return cls(name=str(name), model=model, **sections)


MAX_NAME_BYTES = 255  # the longest file name of Linux, macOS and Windows file systems


def path_component_problem(value: str) -> str | None:
    """Why ``value`` cannot be one folder name inside a parent (None if it can): empty, ``.`` or
    ``..``, a path separator (an absolute path, ``../x``), a NUL, control or format character, or
    more than 255 bytes."""
    if not value.strip():
        return "it is empty"
    if value in (".", ".."):
        return f"{value!r} names a folder itself or its parent, not one inside it"
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if any(sep in value for sep in separators):
        return "it holds a path separator, so it would leave its parent folder"
    if "\x00" in value:
        return "it holds a NUL character"
    if not is_printable(value):
        return "it holds a control or format character"
    if len(value.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes, the longest file name"
    return None


def check_path_component(value: Any, where: str, expected: str) -> None:
    """``value`` is text usable as one folder name inside its parent (see `path_component_problem`);
    ConfigError naming ``where`` and the value otherwise, saying what is ``expected``."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be text ({expected}), got {_shown(value)}")
    problem = path_component_problem(value)
    if problem:
        raise ConfigError(f"{where}={_clipped(value)} cannot be a folder name: {problem}; expected one plain name ({expected})")


def version_differences(raw: dict) -> tuple[list[str], list[str]]:
    """``(unknown, missing)`` dotted keys of a stored config (a checkpoint's) against this version's
    schema: what another contextseg version wrote that this one does not know, and what this one
    has that it lacks. Only the data/train/evaluate sections and the top level are compared (the
    model section is checked when the model is built)."""
    unknown = sorted(set(raw) - {"name", "model", *_SECTIONS})
    missing = []
    for key, cls_ in _SECTIONS.items():
        section = raw.get(key)
        if not isinstance(section, dict):
            continue
        fields = {f.name for f in dataclasses.fields(cls_)}
        unknown += [f"{key}.{k}" for k in sorted(set(section) - fields)]
        missing += [f"{key}.{k}" for k in sorted(fields - set(section))]
    return unknown, missing


def without_unknown_keys(raw: dict) -> dict:
    """``raw`` less the keys `version_differences` calls unknown."""
    unknown = set(version_differences(raw)[0])
    out = {k: v for k, v in raw.items() if k not in unknown}
    for key in _SECTIONS:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if f"{key}.{k}" not in unknown}
    return out


def _suggest(bad: set[str], valid: set[str]) -> str:
    parts = []
    for key in sorted(bad):
        close = difflib.get_close_matches(key, sorted(valid), n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(parts) + f"; valid keys: {', '.join(sorted(valid))}"


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list, tuple), "dict": (dict,), "None": (type(None),)}


def _type_ok(value, annotation: str) -> bool:
    """Whether ``value`` is of the dataclass field type ``annotation`` (``int``, ``float | None``,
    ``list[int]``, ...): a bool is no number, an int is a float, and every element of a list must
    be of the element type."""
    for part in (p.strip() for p in annotation.split("|")):
        base, _, inner = part.partition("[")
        allowed = _TYPES.get(base, ())
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            continue
        if inner and not all(_type_ok(v, inner.rstrip("]")) for v in value):
            continue
        return True
    return False


def _build_section(cls_, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls_)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_suggest(unknown, set(fields))}")
    for key, value in values.items():
        annotation = str(fields[key].type)
        if not _type_ok(value, annotation):
            raise ConfigError(f"{where}.{key} must be {annotation}, got {_shown(value)}")
    return cls_(**values)


def _nonfinite_numbers(value: Any, prefix: str = "") -> list[tuple[str, float]]:
    """``(dotted key, value)`` of every NaN or infinite number in a raw config."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _nonfinite_numbers(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, (list, tuple)):
        return [bad for i, v in enumerate(value) for bad in _nonfinite_numbers(v, f"{prefix}[{i}]")]
    return []


def check_scales(scales, where: str) -> list[float]:
    """Test-time scales by the one rule (`contextseg.models.inference.check_scales`), as a
    ConfigError naming ``where``."""
    message = f"{where}={_shown(scales)} is out of range: expected a non-empty list of numbers in (0, {MAX_SCALE:g}]"
    if not isinstance(scales, (list, tuple)):
        raise ConfigError(message)
    try:
        return scale_rule(scales)
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise ConfigError(message) from None


def check_eval_settings(values: Any, where: str) -> "EvalConfig":
    """An ``evaluate`` section (a config's, or a saved model's ``inference``) with its types and
    ranges checked exactly as a YAML config's."""
    ev = _build_section(EvalConfig, values, where)
    _check_eval(ev, where)
    return ev


def check_size(value: Any, where: str, minimum: int = 1) -> None:
    """Two integers in ``[minimum, MAX_SIDE]`` (an image size (h, w) or (long, short)), or None."""
    _pair(value, where)
    if value is not None and min(value) < minimum:
        raise ConfigError(f"{where}={_shown(value)} is out of range: expected two integers in [{minimum}, {MAX_SIDE}] for this model")


def _check_eval(ev: "EvalConfig", where: str) -> None:
    _check_numbers(ev, "evaluate", where)
    if ev.mode not in ("whole", "slide"):
        raise ConfigError(f"{where}.mode must be 'whole' or 'slide', got {ev.mode!r}")


MAX_SIDE = 16384  # the longest image side, crop or window anywhere (a larger one is a typo that would allocate terabytes)
MAX_ITERS = 100_000_000  # iterations of one training (80k is a full Cityscapes schedule; 1e8 would run for years)
MAX_BATCH = 65_536  # images per optimizer step
MAX_WORKERS = 256  # data loader processes
MAX_CLASSES = 10_000  # classes of one model (ADE20K-full has 3688)
MAX_WIDTH = 8192  # channels of one layer of a head (a ResNet's widest feature has 2048)


@dataclass(frozen=True)
class Bound:
    """The values a numeric config key takes: a number (or ``integer``) in ``[low, high]`` (or an
    open end); ``count`` numbers of it (a list) when ``count`` is set, a non-empty list when it is
    ``0``; ``note`` says what the numbers are (``(h, w)``)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    count: int | None = None
    note: str = ""

    def holds(self, value: Any) -> bool:
        """Whether one number is in range (never converts it: a 400-digit integer is compared exactly)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(value, int)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (value > self.low if self.low_open else value >= self.low) and (value < self.high if self.high_open else value <= self.high)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is one number in range, or the list of them this key takes."""
        if self.count is None:
            return self.holds(value)
        return (isinstance(value, (list, tuple)) and (len(value) == self.count if self.count else len(value) > 0)
                and all(self.holds(v) for v in value))

    def describe(self) -> str:
        interval = f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        many = {None: "", 0: "a non-empty list of ", 2: "two ", 3: "three "}.get(self.count, f"{self.count} ")
        kind = ("integers" if self.integer else "numbers") if self.count is not None else ("an integer" if self.integer else "a number")
        return f"{many}{kind} in {interval}" + (f" {self.note}" if self.note else "")


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


_SIDE = Bound(1, MAX_SIDE, integer=True, count=2)
_ITERS = Bound(1, MAX_ITERS, integer=True)

# Every numeric key of the data/train/evaluate sections (a test proves none is missing): the
# range a value must lie in, checked for YAML configs, checkpoints' configs and saved models alike.
NUMBER_RANGES: dict[str, Bound] = {
    "data.base_size": dataclasses.replace(_SIDE, note="(long, short)"),
    "data.crop_size": dataclasses.replace(_SIDE, note="(h, w)"),
    "data.ratio_range": Bound(0, MAX_SCALE, low_open=True, count=2, note="(low, high)"),
    "data.cat_max_ratio": Bound(0, 1, low_open=True),
    "data.flip_prob": Bound(0, 1),
    "data.num_workers": Bound(0, MAX_WORKERS, integer=True),
    "train.max_iters": _ITERS,
    "train.batch_size": Bound(1, MAX_BATCH, integer=True),
    "train.accumulate_steps": Bound(1, MAX_BATCH, integer=True),
    "train.lr": Bound(0, 10, low_open=True),
    "train.min_lr": Bound(0, 10),
    "train.power": Bound(0, 10, low_open=True),
    "train.momentum": Bound(0, 1, high_open=True),
    "train.betas": Bound(0, 1, high_open=True, count=2),
    "train.weight_decay": Bound(0, 1),
    "train.norm_weight_decay": Bound(0, 1),
    "train.warmup_iters": Bound(0, MAX_ITERS, integer=True),
    "train.warmup_ratio": Bound(0, 1, low_open=True),
    "train.head_lr_mult": Bound(0, 1000),
    "train.paramwise.lr_mult": Bound(0, 1000),
    "train.paramwise.weight_decay": Bound(0, 1),
    "train.grad_clip": Bound(0, 1e6, low_open=True),
    "train.ema": Bound(0, 1, low_open=True, high_open=True),
    "train.seed": Bound(0, 2**32 - 1, integer=True),
    "train.log_interval": _ITERS,
    "train.eval_interval": _ITERS,
    "train.checkpoint_interval": _ITERS,
    "evaluate.crop_size": dataclasses.replace(_SIDE, note="(h, w)"),
    "evaluate.stride": dataclasses.replace(_SIDE, note="(h, w)"),
    "evaluate.scales": Bound(0, MAX_SCALE, low_open=True, count=0),
}

# Numeric model options (create_model keywords), by name and then by the registry's name patterns;
# a test proves every numeric option of every registered model has one of these.
_WIDTH = Bound(1, MAX_WIDTH, integer=True)
MODEL_OPTION_RANGES: dict[str, Bound] = {
    "num_classes": Bound(1, MAX_CLASSES, integer=True),
    "ignore_index": Bound(0, 65535, integer=True),
    "output_stride": Bound(8, 32, integer=True),
    "in_index": Bound(-8, 7, integer=True),
    "kernel_size": Bound(1, 63, integer=True),
    "bottleneck_kernel": Bound(1, 63, integer=True),
    "dropout": Bound(0, 1, high_open=True),
    "ohem_thresh": Bound(0, 1, low_open=True),
    "ohem_min_kept": Bound(0, 1_000_000_000, integer=True),
    "gather_scale": Bound(0, 1000, low_open=True),
    "query_scale": Bound(1, 64, integer=True),
    "recurrence": Bound(1, 64, integer=True),
    "prior_groups": _WIDTH,
    "hanet_rows": Bound(1, MAX_SIDE, integer=True),
    "prior_size": Bound(1, MAX_SIDE, integer=True),
    "pool_scales": Bound(1, MAX_SIDE, integer=True),
    "pool_sizes": Bound(1, MAX_SIDE, integer=True),
    "dilations": Bound(1, 1024, integer=True),
    "class_weight": Bound(0, 1e6),
}
_MODEL_OPTION_PATTERNS: tuple[tuple[str, Bound], ...] = (
    ("*channels", _WIDTH),
    ("*reduction", _WIDTH),
    ("num_*", Bound(1, 1024, integer=True)),
    ("*_weight", Bound(0, 1000)),
)
# any other number anywhere in a config (a dataset option, a registered model's own option)
_ANY_NUMBER = Bound(-(2**63), 2**63 - 1)


def model_option_bound(name: str) -> Bound | None:
    """The range of the numeric model option ``name``: its own, or its name pattern's; None if neither."""
    if name in MODEL_OPTION_RANGES:
        return MODEL_OPTION_RANGES[name]
    return next((bound for pattern, bound in _MODEL_OPTION_PATTERNS if fnmatch.fnmatchcase(name, pattern)), None)


def numeric_fields() -> list[str]:
    """``section.key`` of every data/train/evaluate field whose type admits a number."""
    out = []
    for section, cls_ in _SECTIONS.items():
        for f in dataclasses.fields(cls_):
            parts = {p.strip().partition("[")[2].rstrip("]") or p.strip() for p in str(f.type).split("|")}
            if parts & {"int", "float"}:
                out.append(f"{section}.{f.name}")
    return out


def _shown(value: Any) -> str:
    """``repr(value)``, with an integer too long to print whole (Python refuses more than 4300
    digits) shown by its length: error messages quote what they refuse, whatever its size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        digits = int(value.bit_length() * math.log10(2)) + 1
        digits -= abs(value) < 10 ** (digits - 1)
        return f"{'-' if value < 0 else ''}<an integer of {digits} digits>"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_shown(k)}: {_shown(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _out_of_range(where: str, value: Any, bound: Bound) -> ConfigError:
    return ConfigError(f"{where}={_shown(value)} is out of range: expected {bound.describe()}")


def _check_value(key: str, value: Any, bound: Bound, where: str) -> None:
    if value is not None and not bound.accepts(value):
        raise _out_of_range(where, value, bound)


def _check_numbers(section: Any, name: str, where: str) -> None:
    """Every numeric field of one built section (``data``, ``train``, ``evaluate``) in its range."""
    for f in dataclasses.fields(section):
        key = f"{name}.{f.name}"
        if key == "evaluate.scales":  # the one test-time scale rule (models.inference.check_scales), same range
            check_scales(section.scales, f"{where}.scales")
        elif key in NUMBER_RANGES:
            _check_value(key, getattr(section, f.name), NUMBER_RANGES[key], f"{where}.{f.name}")


def check_model_options(model: Any, where: str) -> None:
    """Every number among the model options (``model.channels``, ``model.num_classes``, lists such
    as ``model.pool_scales``) in its range (`MODEL_OPTION_RANGES`; any other option's numbers
    in 64 bits). ``where`` names the section, e.g. ``config.yaml: model``."""
    if not isinstance(model, dict):
        return
    for key, value in model.items():
        bound = model_option_bound(str(key)) or _ANY_NUMBER
        numbers = list(_numbers_in(value))
        if any(not bound.holds(v) for v in numbers):
            raise _out_of_range(f"{where}.{key}", value, bound)


def _numbers_in(value: Any):
    """Every number (not a bool) in ``value`` and the lists it holds, iteratively."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            yield item


def _huge_integers(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every key whose value holds an integer beyond 64 bits: no config
    value is that large, and printing one (over 4300 digits) or converting it (to a float, to a
    tensor) would fail."""
    out = []
    stack: list[tuple[str, Any, Any]] = [(prefix, value, value)]
    while stack:
        key, top, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v, v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((key, top, v) for v in item)
        elif isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**63:
            out.append((key, top))
    return out


def _bound_of(key: str) -> Bound:
    """The range of a dotted config key (a field, a model option), or any 64-bit number."""
    if key in NUMBER_RANGES:
        return NUMBER_RANGES[key]
    section, _, name = key.partition(".")
    if section == "model" and "." not in name:
        return model_option_bound(name) or _ANY_NUMBER
    return _ANY_NUMBER


def _pair(value, where: str) -> None:
    if value is not None and not _SIDE.accepts(value):
        raise ConfigError(f"{where}={_shown(value)} is out of range: expected {_SIDE.describe()}")


def _check(data: DataConfig, train: TrainConfig, ev: EvalConfig, source: str) -> None:
    _check_numbers(data, "data", f"{source}: data")
    _check_numbers(train, "train", f"{source}: train")
    _check_eval(ev, f"{source}: evaluate")
    if data.ratio_range[0] > data.ratio_range[1]:
        raise ConfigError(f"{source}: data.ratio_range must be (low, high) with low <= high, got {data.ratio_range!r}")
    if data.class_balance not in (None, "median_frequency", "sqrt_median_frequency"):
        raise ConfigError(f"{source}: data.class_balance must be median_frequency, sqrt_median_frequency or null, got {data.class_balance!r}")
    if train.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"{source}: train.optimizer must be 'sgd' or 'adamw', got {train.optimizer!r}")
    if train.schedule not in ("poly", "cosine"):
        raise ConfigError(f"{source}: train.schedule must be 'poly' or 'cosine', got {train.schedule!r}")
    if train.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"{source}: train.precision must be auto, fp32, bf16 or fp16, got {train.precision!r}")
    if train.channels_last not in (True, False, "auto"):  # the type check has refused numbers
        raise ConfigError(f"{source}: train.channels_last must be true, false or auto, got {train.channels_last!r}")
    for rule in train.paramwise:
        if not isinstance(rule, dict) or not isinstance(rule.get("pattern"), str) or set(rule) - {"pattern", "lr_mult", "weight_decay"}:
            raise ConfigError(f"{source}: each train.paramwise rule is {{pattern, lr_mult?, weight_decay?}}, got {_shown(rule)}")
        for key in ("lr_mult", "weight_decay"):
            if key in rule:
                bound = NUMBER_RANGES[f"train.paramwise.{key}"]
                if not bound.holds(rule[key]):
                    raise ConfigError(f"{source}: train.paramwise {rule['pattern']!r} {key}={_shown(rule[key])} is out of range: expected {bound.describe()}")


def _clipped(text: str, limit: int = 100) -> str:
    """``repr(text)``, its middle left out when it is longer than ``limit`` (a 5000-digit value)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit - 20]) + f"...({len(text)} characters)"


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {_clipped(item)} must look like section.key=value (e.g. train.max_iters=20)")
    key, value = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {_clipped(item)} has an empty key")
    try:
        parsed = yaml_load(value) if value.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"override {_clipped(item)}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {_clipped(item)}: cannot parse the value as YAML ({exc})") from None
    return path, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of ``raw`` with every ``a.b.c=value`` override set."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {_clipped(item)}: {part!r} is not a section")
        key = ".".join(path)
        if (isinstance(node.get(path[-1]), dict) or (len(path) == 1 and path[0] in ("model", *_SECTIONS))) and not isinstance(value, dict):
            raise ConfigError(f"override {_clipped(item)} would replace the section {key} by {_shown(value)}; set its keys instead, e.g. {key}.KEY=VALUE")
        node[path[-1]] = value
    return raw


def default_config_path() -> Path:
    """The embedded default: a small model on the synthetic street scenes, a few CPU minutes."""
    return Path(str(resources.files("contextseg") / "configs" / "default.yaml"))


def read_yaml(path: str | Path, files: list[Path] | None = None) -> dict:
    """A YAML config file as a dict, with its ``_base_`` files merged in (see the module docstring);
    ``files``, when given, receives every file read (the config and its bases, resolved)."""
    return _read_with_bases(Path(path), (), files if files is not None else [])


def _read_one(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a folder; give a YAML file")
    if not path.is_file():
        if path.exists():  # a device, a pipe, a socket: reading could block or never end
            raise ConfigError(f"config {str(path)!r} is not a regular file (a device, pipe or socket); give a YAML file")
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml_load(path.read_text())
    except ConfigError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not text (YAML expected)") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r}: the top level must be a mapping with sections model/data/train/evaluate, got {type(raw).__name__}")
    return raw


MAX_BASE_DEPTH = 32  # _base_ files inheriting from each other; mmsegmentation's deepest chain is 3


def _read_with_bases(path: Path, chain: tuple[Path, ...], files: list[Path]) -> dict:
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:  # a symbolic link loop (RuntimeError before Python 3.13)
        raise ConfigError(f"config {str(path)!r} cannot be resolved: {' '.join(str(exc).split()) or 'a symbolic link loop'}") from None
    if len(chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"_base_ files inherit more than {MAX_BASE_DEPTH} levels deep (from {chain[0]}); flatten the chain")
    if resolved in chain:
        raise ConfigError("_base_ files name each other in a circle: " + " -> ".join(str(p) for p in (*chain, resolved)))
    raw = _read_one(path)
    files.append(resolved)
    bases = raw.pop("_base_", None)
    if bases is None:
        return raw
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of file names (none empty), got {bases!r}")
    merged: dict = {}
    for base in bases:
        inherited = _read_with_bases(path.parent / base, (*chain, resolved), files)
        inherited.pop("name", None)  # a config is named by itself, never by its base
        merged = merge_configs(merged, inherited)
    return merge_configs(merged, raw)


def merge_configs(base: dict, child: dict) -> dict:
    """``child`` on top of ``base``: mappings merge recursively, other values replace, and
    ``_delete_: true`` in a child mapping replaces the base's mapping whole."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            delete = value.pop("_delete_", False)
            if not isinstance(delete, bool):
                raise ConfigError(f"{key}._delete_ must be true or false (replace the base's {key} section whole, or merge into it), got {delete!r}")
            if not delete and isinstance(out.get(key), dict):
                out[key] = merge_configs(out[key], value)
            else:
                out[key] = merge_configs({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (the embedded default when ``path`` is None) and apply overrides."""
    path = Path(path) if path is not None else default_config_path()
    files: list[Path] = []
    raw = read_yaml(path, files)
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides or [])
    cfg = Config.from_dict(raw, source=str(path))
    cfg.files_read = tuple(files)  # the config and its _base_ files: what a run must never write over
    return cfg
