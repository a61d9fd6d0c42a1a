"""The documentation site builds offline with no warning and no broken link (``mkdocs build --strict``),
and its model zoo names every config."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    page = (tmp_path / "site" / "methods" / "ccnet" / "index.html").read_text()
    assert "CrissCrossAttention" in page  # the API reference is generated from the docstrings
    assert "fonts.googleapis" not in (tmp_path / "site" / "index.html").read_text()  # nothing fetched when read


def test_the_model_zoo_names_every_config_and_every_method_has_a_page():
    import contextseg as cs

    zoo = (ROOT / "docs" / "model-zoo.md").read_text()
    configs = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "configs").glob("*/*.yaml")) if p.parent.name != "_base_"]
    missing = [c for c in configs if f"`{c}`" not in zoo]
    assert not missing, f"configs without a row in docs/model-zoo.md: {missing}"
    methods = [n for n in cs.list_models() if cs.models.get_model_class(n).has_context_maps()]
    assert not [m for m in methods if not (ROOT / "docs" / "methods" / f"{m}.md").is_file()], "a context method without docs/methods/<name>.md"
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f"methods/{m}.md" in nav for m in methods)
