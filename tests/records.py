"""Generated test records: what a new method adds to the tests besides its own files.

Each record is one file, so adding a method adds files and rewrites none of another method's:

    python tests/records.py resolved                   # a record for every config that has none yet
    python tests/records.py resolved --update CONFIG   # rewrite CONFIG's record (its values changed on purpose)
    python tests/records.py mmseg MODEL                # in mmsegmentation's venv: MODEL's mmseg checkpoint layout
    python tests/records.py tables                     # the method tables of README.md and the docs

- ``tests/engine/data/resolved/<method>/<config>.json`` (and ``default.json``): the config's
  resolved values (``load_config(path).to_dict()``). ``tests/test_configs.py`` holds every config to
  its record, so a change to a shared base that moves another recipe's values fails there.
- ``tests/engine/data/mmseg_<model>.json``: ``{"config", "tensors"}``, the ``state_dict()`` names and
  shapes of mmsegmentation 1.2.2's model built from the zoo config of ``MODEL``'s ``mmseg_layout``
  (19 classes, random weights). It needs mmsegmentation, so it runs in that library's own venv (the
  one of ``benchmarks/mmseg_parity.py``); ``--config`` and ``--name`` record another zoo config of
  the same model (OCRNet on HRNet-W18: ``--config ocrnet/ocrnet_hr18_4xb2-80k_cityscapes-512x1024.py
  --name ocrnet_hr18``).
- The method tables between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` in
  ``README.md``, ``docs/index.md``, ``docs/get-started.md`` and ``docs/converting.md``: each model's line from its class
  (``description``: "Name: the idea (authors, venue)"; ``context_modules``; the head's keyword
  options with their defaults) and its CamVid result from ``configs/<name>/README.md`` (a line
  ``CamVid val mIoU (...): 51.9 ± 0.4, seeds 0-2.``). ``tests/test_docs.py`` fails when a block differs
  from what this writes. The changelog's unreleased additions are the files of ``changelog.d/``
  (a new method adds ``changelog.d/<name>.md``), collected into ``CHANGELOG.md`` the same way.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "engine" / "data"
RESOLVED = DATA / "resolved"
COMMAND = "python tests/records.py"


def shipped_configs() -> list[Path]:
    """Every recipe of ``configs/`` (``_base_/`` holds shared sections, not recipes)."""
    return sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name != "_base_")


def resolved_record_path(config: Path | None) -> Path:
    """Where a config's record lives: ``resolved/<method folder>/<stem>.json``; None: the embedded default."""
    if config is None:
        return RESOLVED / "default.json"
    return RESOLVED / config.parent.name / f"{config.stem}.json"


def resolved_values(config: Path | None) -> dict:
    from contextseg.engine.config import load_config

    return load_config(config).to_dict()


def dump(values: dict) -> str:
    return json.dumps(values, indent=1, sort_keys=True) + "\n"


def write_resolved(configs: list[Path | None], update: bool) -> list[Path]:
    written = []
    for config in configs:
        path = resolved_record_path(config)
        if path.exists() and not update:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(resolved_values(config)))
        written.append(path)
    return written


def write_mmseg_layout(model: str, config: str | None, name: str | None) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mmseg_parity import build_mmseg  # imports mmcv_ops_standin first: mmcv-lite has no compiled ops

    from contextseg.models import get_model_class

    layout = get_model_class(model).mmseg_layout
    if layout is None and config is None:
        raise SystemExit(f"{model} declares no mmseg_layout; give --config")
    config = config or layout.config
    net = build_mmseg(config)
    tensors = {k: list(v.shape) for k, v in net.state_dict().items()}
    path = DATA / f"mmseg_{name or model}.json"
    path.write_text(json.dumps({"config": config, "tensors": tensors}, indent=1) + "\n")
    return path


TABLE_FILES = ("README.md", "docs/index.md", "docs/get-started.md", "docs/converting.md", "CHANGELOG.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)
CAMVID = re.compile(r"^CamVid val mIoU[^:]*: (?:(?P<none>not measured)|(?P<miou>.+?), seeds? (?P<seeds>[\d, -]+))\.$", re.M)


def _models():
    import contextseg as cs

    return [(name, cs.models.get_model_class(name)) for name in cs.list_models()]


def _split_description(name: str, cls) -> tuple[str, str]:
    """``"CPNet: context prior map ... (Yu et al., CVPR 2020)"`` -> (the idea, the paper)."""
    match = re.fullmatch(r"[^:]+: (?P<idea>.+) \((?P<paper>[^()]+)\)", cls.description)
    if not match:
        raise SystemExit(f"{name}: description must read 'Name: the idea (authors, venue)', got {cls.description!r}")
    return match["idea"], match["paper"]


def methods_table(linked: bool) -> str:
    rows = ["| model | what it computes | paper | context modules (`contextseg.modules`) |", "| --- | --- | --- | --- |"]
    for name, cls in _models():
        idea, paper = _split_description(name, cls)
        page = ROOT / "docs" / "methods" / f"{name}.md"
        label = f"[`{name}`](methods/{name}.md)" if linked and page.is_file() else f"`{name}`"
        modules = ", ".join(f"`{m}`" for m in cls.context_modules) or "(a baseline)"
        rows.append(f"| {label} | {idea} | {paper} | {modules} |")
    return "\n".join(rows) + "\n"


def options_table() -> str:
    import inspect

    from contextseg.heads.base import DecodeHead
    from contextseg.models.segmentor import Segmentor

    shared = set(inspect.signature(DecodeHead.__init__).parameters) | set(inspect.signature(Segmentor.__init__).parameters)
    rows = ["| model | options (defaults) |", "| --- | --- |"]
    for name, cls in _models():
        params = [*inspect.signature(cls.head_cls.__init__).parameters.values(), *inspect.signature(cls.__init__).parameters.values()]
        options = [f"`{p.name}` ({p.default!r})" for p in params
                   if p.name not in shared and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty]
        rows.append(f"| `{name}` | {', '.join(options) or '(none)'} |")
    return "\n".join(rows) + "\n"


def camvid_table() -> str:
    rows = ["| model | CamVid val mIoU | seeds |", "| --- | --- | --- |"]
    for name, _ in _models():
        readme = ROOT / "configs" / name / "README.md"
        match = CAMVID.search(readme.read_text()) if readme.is_file() else None
        if not match:
            raise SystemExit(f"configs/{name}/README.md needs a line 'CamVid val mIoU (...): 51.9 ± 0.4, seeds 0-2.' "
                             "(or ': not measured.' before its recipe is trained)")
        rows.append(f"| `{name}` | {match['miou'] if not match['none'] else 'not measured'} | {match['seeds'] or ''} |")
    return "\n".join(rows) + "\n"


def mmseg_zoo_table() -> str:
    """Every model with an ``mmseg_layout``: its zoo config, ``--model`` and the zoo's published mIoU."""
    rows = ["| zoo config | `--model` | zoo mIoU |", "| --- | --- | --- |"]
    for name, cls in _models():
        layout = cls.mmseg_layout
        if layout is not None:
            published = f"{layout.zoo_miou:.2f}" if layout.zoo_miou is not None else "not published"
            rows.append(f"| `{Path(layout.config).stem}` | `{name}` | {published} |")
    return "\n".join(rows) + "\n"


def unreleased_changes() -> str:
    """The entries of ``changelog.d/*.md`` (one file per change, named after what it adds: a new
    method's is ``changelog.d/<name>.md``), in name order: the changelog's unreleased additions."""
    entries = [p.read_text().strip() + "\n" for p in sorted((ROOT / "changelog.d").glob("*.md")) if p.name != "README.md"]
    return "".join(entries)


def generated_blocks() -> dict[str, str]:
    return {"methods": methods_table(linked=False), "methods-linked": methods_table(linked=True),
            "options": options_table(), "camvid": camvid_table(), "mmseg-zoo": mmseg_zoo_table(), "changelog.d": unreleased_changes()}


def write_tables(check: bool = False) -> list[str]:
    """Rewrite every generated block (``check``: only report the files whose blocks differ)."""
    blocks, stale = generated_blocks(), []
    for name in TABLE_FILES:
        path = ROOT / name
        text = path.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + blocks[m["name"]] + m.group(4), text)
        if new != text:
            stale.append(name)
            if not check:
                path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("resolved", help="resolved-config records (a new config's record; --update rewrites)")
    p.add_argument("configs", nargs="*", help="configs/<method>/<name>.yaml or 'default' (default: every config and the embedded default)")
    p.add_argument("--update", action="store_true", help="rewrite existing records of the named configs")
    p = sub.add_parser("mmseg", help="mmsegmentation checkpoint layout of a model (run in mmsegmentation's venv)")
    p.add_argument("model")
    p.add_argument("--config", help="another zoo config than the model's mmseg_layout.config")
    p.add_argument("--name", help="the record's name (default: the model's)")
    sub.add_parser("tables", help="the method tables of README.md, docs/index.md and docs/get-started.md")
    args = parser.parse_args(argv)
    if args.what == "tables":
        for name in write_tables():
            print(f"wrote {name}")
    elif args.what == "resolved":
        if args.update and not args.configs:
            parser.error("--update rewrites the records of the configs named, never all of them at once")
        configs = [None if c == "default" else (ROOT / c).resolve().relative_to(ROOT) for c in args.configs] or [*shipped_configs(), None]
        configs = [None if c is None else ROOT / c for c in configs]
        for path in write_resolved(configs, args.update):
            print(f"wrote {path.relative_to(ROOT)}")
    else:
        print(f"wrote {write_mmseg_layout(args.model, args.config, args.name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
