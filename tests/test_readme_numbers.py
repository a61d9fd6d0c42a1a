"""The README's numbers stay true: the embedded default, trained as the README says, lands within the
spread the README states (mean +- 3 std over its seeds), and the Quick start's ``explain`` commands
draw its context from what it trained. Catches the next drift of the default's recipe, the trainer
or the evaluation that nobody re-measured, and a default that has no context to show."""

import json
import re
import shlex
from pathlib import Path

from PIL import Image

import pytest

from contextseg.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def stated_default() -> tuple[float, float]:
    match = re.search(r"The embedded default \(`contextseg train`.*?reaches\s+\*\*([\d.]+) ± ([\d.]+)\*\* mIoU", README.read_text(), re.S)
    assert match, "README no longer states the default's mIoU as **mean ± std**"
    return float(match.group(1)), float(match.group(2))


def test_the_readme_states_the_default_with_its_spread():
    mean, std = stated_default()
    assert 0 < std < 5 and 30 < mean < 90


def quickstart_commands(text: str | None = None) -> list[list[str]]:
    """The ``contextseg ...`` commands of the Quick start block (install to picture) of the README."""
    match = re.search(r"<!-- test:quickstart -->\s*```bash\n(.*?)```", text if text is not None else README.read_text(), re.S)
    assert match, "README has no bash block after <!-- test:quickstart -->"
    parts = [part.strip() for line in match.group(1).splitlines() for part in line.split("&&")]
    return [shlex.split(part)[1:] for part in parts if part.startswith("contextseg ")]


def test_the_embedded_default_is_a_context_model_explain_can_draw():
    """The Quick start's model has a context module: explain returns its maps (random weights here;
    the slow test below draws them from the trained default)."""
    import numpy as np
    import torch

    import contextseg as cs
    from contextseg.engine.builders import build_model
    from contextseg.engine.config import load_config

    torch.manual_seed(0)
    model = build_model(load_config(None), 9)
    assert type(model).has_context_maps(), type(model).__name__
    scene = np.random.default_rng(0).integers(0, 256, (96, 192, 3), dtype=np.uint8)
    assert cs.explain(model, scene)["maps"]


def test_the_quickstart_block_goes_from_install_to_picture():
    """One block to paste: it installs, trains, and explains what it trained (the run folder); the
    guide's copy is the same block."""
    text = README.read_text()
    block = re.search(r"<!-- test:quickstart -->\s*```bash\n(.*?)```", text, re.S).group(1)
    assert block.splitlines()[0].startswith("pip install")
    commands = quickstart_commands(text)
    assert [c[0] for c in commands] == ["train", "data", "explain"]
    assert commands[0] == ["train"] and commands[2][commands[2].index("--checkpoint") + 1] == "runs/default_synthetic"
    guide = (README.parent / "docs" / "get-started.md").read_text()
    assert re.search(r"<!-- test:quickstart -->\s*```bash\n(.*?)```", guide, re.S).group(1) == block


@pytest.mark.slow  # the default's 650 iterations: about 110 s on two cores
def test_the_default_trains_to_the_readme_number_and_shows_its_context(tmp_path, monkeypatch):
    mean, std = stated_default()
    monkeypatch.chdir(tmp_path)  # the Quick start's relative paths: runs/default_synthetic, scenes, explain
    assert main(["train", "train.seed=0"]) == 0
    run = tmp_path / "runs" / "default_synthetic"
    miou = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"val"' in line][-1]["mIoU"] * 100
    assert abs(miou - mean) <= 3 * std, f"the default reached {miou:.2f} mIoU; the README states {mean} ± {std}: re-measure and update it"

    for command in quickstart_commands()[1:]:  # trained above with its seed
        assert main(command) == 0, command
    pictures = sorted((tmp_path / "explain").glob("*.png"))
    assert pictures, "the Quick start's explain drew nothing for the default"
    assert any("attention" in p.name for p in pictures), [p.name for p in pictures]
    with Image.open(pictures[0]) as picture:
        assert picture.width > 200 and picture.height > 100
