"""mkdocs hook: the parts of the site that follow from the repository, so that a new method or recipe
edits no page and no nav.

- The nav's "Methods" section lists every ``docs/methods/<name>.md``, titled by the first word of the
  page's heading (``# CPNet: Context Prior ...`` -> CPNet), in alphabetical order.
- ``<!-- every-recipe -->`` in a page becomes the table of every ``configs/<method>/*.yaml``: the
  first clause of the config's header comment and the command that trains it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MARKER = "<!-- every-recipe -->"
DATASETS = ("pascal_context", "cityscapes", "ade20k", "camvid", "synthetic")


def method_pages(docs: Path = ROOT / "docs") -> list[dict[str, str]]:
    """``[{"CPNet": "methods/cpnet.md"}, ...]`` for every page in ``docs/methods``, by title."""
    pages = []
    for path in sorted((docs / "methods").glob("*.md")):
        heading = next((line for line in path.read_text().splitlines() if line.startswith("# ")), f"# {path.stem}")
        pages.append({re.split(r"[:\s]", heading[2:].strip(), maxsplit=1)[0]: f"methods/{path.name}"})
    return sorted(pages, key=lambda page: next(iter(page)).lower())


def recipe_configs(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "configs").glob("*/*.yaml") if p.parent.name != "_base_")


def first_clause(config: Path) -> str:
    """The header comment up to its first ':' or '. ' outside parentheses: what the recipe is."""
    lines = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if re.match(r"(Train|Launch|Evaluate)\b.*:", text):
            break
        lines.append(text)
    header, depth = " ".join(lines), 0
    for i, char in enumerate(header):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and (char == ":" or (char == "." and header[i + 1: i + 2] in (" ", ""))):
            return header[:i]
    return header


def train_command(config: Path, root: Path = ROOT) -> str:
    name = config.relative_to(root).as_posix()
    dataset = next((d for d in DATASETS if d in config.stem), None)
    root_option = "" if dataset in (None, "synthetic") else f" data.root=/path/to/{dataset}"
    gpus = re.search(r"_(\d+)x\d+_\d+k_", config.stem)
    launcher = f"torchrun --nproc-per-node {gpus.group(1)} -m contextseg" if gpus else "contextseg"
    return f"{launcher} train {name}{root_option}"


def every_recipe_table(root: Path = ROOT) -> str:
    rows = ["| config | what it is | command |", "| --- | --- | --- |"]
    for config in recipe_configs(root):
        rows.append(f"| `{config.relative_to(root).as_posix()}` | {first_clause(config).replace('|', '/')} | `{train_command(config, root)}` |")
    return "\n".join(rows) + "\n"


def on_config(config):
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Methods" in item:
            item["Methods"] = method_pages(Path(config["docs_dir"]))
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace(MARKER, every_recipe_table()) if MARKER in markdown else markdown
