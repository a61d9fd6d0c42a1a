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
    check_api_reference(tmp_path / "site")
    check_method_pages(tmp_path / "site")


def check_method_pages(site: Path) -> None:
    """Each method page renders its equations as MathML (no TeX or dollar sign left as text), and
    every picture on it sits in a figure with a caption."""
    import re

    problems = []
    for page in sorted((site / "methods").glob("*/index.html")):
        text = page.read_text()
        body = re.sub(r"<pre.*?</pre>|<code.*?</code>|<math.*?</math>", "", text, flags=re.S)
        body = body[body.index('id="equations"'): body.index('id="api"')] if 'id="api"' in body else body
        name = page.parent.name
        if "<math" not in text[text.index('id="equations"'):]:
            problems.append(f"{name}: no MathML equation")
        if "$" in body or "arithmatex" in body or "\\(" in body:
            problems.append(f"{name}: TeX left as text")
        for img in re.finditer(r"<img[^>]*>", text):
            before, after = text[: img.start()], text[img.end():]
            if before.rfind("<figure") <= before.rfind("</figure>") or "<figcaption>" not in after[: after.find("</figure>")]:
                problems.append(f"{name}: a picture without a caption ({img.group(0)[:80]})")
    assert not problems, problems


def test_a_formula_the_converter_cannot_read_stops_the_build_naming_it():
    pytest.importorskip("latex2mathml")
    sys.path.insert(0, str(ROOT))
    try:
        import mkdocs_mathml
    finally:
        sys.path.pop(0)
    assert "<mi>P</mi>" in mkdocs_mathml._mathml("P", "inline", "methods/cpnet.md")
    for tex in ("x^", "\\left( x", "\\sigmoid(x)"):  # a missing superscript, a missing \\right, an unknown command
        with pytest.raises(ValueError, match=r"methods/cpnet\.md: cannot convert the formula"):
            mkdocs_mathml._mathml(tex, "block", "methods/cpnet.md")


def check_api_reference(site: Path) -> None:
    """Every function of ``contextseg.__all__`` has an entry with its docstring on the API page, and
    no page shows a raw reST role (``:class:`...```) or a literal-block marker (``::``) as text."""
    import html
    import re

    import contextseg

    page = (site / "api" / "index.html").read_text()
    page = page[: page.index('id="models"')]  # the "Top level" section, before the per-package ones
    functions = [n for n in contextseg.__all__ if callable(getattr(contextseg, n)) and not isinstance(getattr(contextseg, n), type(contextseg))]
    assert functions, contextseg.__all__
    missing = []
    for name in functions:
        first = " ".join(getattr(contextseg, name).__doc__.replace("`", "").split())[:30]  # as rendered: markup gone
        if not re.search(rf'id="[\w.]*\.{name}"', page) or first not in " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split()):
            missing.append(name)
    raw = []
    for path in site.rglob("*.html"):
        text = re.sub(r"<pre.*?</pre>", "", path.read_text(), flags=re.S)  # a code block may show any text
        raw += [f"{path.relative_to(site)}: {m.group(0)}" for m in re.finditer(r":(?:class|func|mod|meth|attr|exc|data):(?:`|<code)|\w::\s*</p>", text)]
    assert not missing and not raw, (f"contextseg.__all__ names without a top-level entry and its docstring on the API page: {missing}; "
                                     "raw reST in the built site:\n" + "\n".join(raw[:20]))


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
