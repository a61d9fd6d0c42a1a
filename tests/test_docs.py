"""The documentation site builds offline with no warning and no broken link (``mkdocs build --strict``),
and its model zoo names every config."""

import re
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
    zoo = (tmp_path / "site" / "model-zoo" / "index.html").read_text()
    assert "<!-- every-recipe -->" not in zoo and "configs/danet/danet_r18_camvid.yaml data.root=/path/to/camvid" in zoo
    home = (tmp_path / "site" / "index.html").read_text()
    assert all(f'href="methods/{p.stem}/"' in home for p in (ROOT / "docs" / "methods").glob("*.md"))  # the derived nav


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


def _hook(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_zoo_and_the_nav_follow_the_repository():
    """The model zoo's every-recipe table and the nav's Methods section are derived when the site is
    built (mkdocs_derived.py), so a new method or recipe edits neither; each context method needs its
    page, named in the message when it is missing."""
    import contextseg as cs

    derived = _hook("mkdocs_derived")
    assert derived.MARKER in (ROOT / "docs" / "model-zoo.md").read_text()
    table = derived.every_recipe_table(ROOT)
    configs = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "configs").glob("*/*.yaml")) if p.parent.name != "_base_"]
    assert all(f"| `{c}` |" in table for c in configs) and table.count("\n") == len(configs) + 2
    assert "| `configs/fcn/fcn_r18_camvid.yaml` | FCN on real CamVid (11 classes; 367 train / 101 val frames of 480x360), ResNet-18-D from random init, for a 2-core CPU | `contextseg train configs/fcn/fcn_r18_camvid.yaml data.root=/path/to/camvid` |" in table
    assert "`torchrun --nproc-per-node 4 -m contextseg train configs/ccnet/ccnet_r101d_4x2_60k_cityscapes_769x769.yaml data.root=/path/to/cityscapes`" in table
    methods = [n for n in cs.list_models() if cs.models.get_model_class(n).has_context_maps()]
    missing = [m for m in methods if not (ROOT / "docs" / "methods" / f"{m}.md").is_file()]
    assert not missing, f"context methods without a page: add docs/methods/<name>.md for {missing}"
    nav = [path for page in derived.method_pages(ROOT / "docs") for path in page.values()]
    assert {f"methods/{m}.md" for m in methods} <= set(nav) and {"CPNet": "methods/cpnet.md"} in derived.method_pages(ROOT / "docs")


def test_the_method_tables_are_generated_from_the_models(records):
    """README.md, docs/index.md and docs/get-started.md hold their method tables between
    `<!-- generated: NAME -->` markers, written by `python tests/records.py tables` from each model's
    class (description, context modules, head options) and its configs/<name>/README.md (CamVid
    result): a new model appears in all of them without a hand edit, and a stale table fails here."""
    import contextseg as cs

    stale = records.write_tables(check=True)
    assert not stale, f"method tables that differ from the models: {stale}; `python tests/records.py tables` rewrites them"
    blocks = {m["name"]: m["body"] for name in records.TABLE_FILES for m in records.BLOCK.finditer((ROOT / name).read_text())}
    assert set(blocks) == {"methods", "methods-linked", "options", "camvid", "mmseg-zoo", "changelog.d"}, sorted(blocks)
    changelog = (ROOT / "CHANGELOG.md").read_text().lower()
    for name in cs.list_models():
        cls = cs.models.get_model_class(name)
        assert all(f"`{name}`" in body for key, body in blocks.items() if key not in ("changelog.d", "mmseg-zoo")), name
        assert (f"| `{name}` |" in blocks["mmseg-zoo"]) == (cls.mmseg_layout is not None), name
        title = re.split(r"[:\s]", cls.description, maxsplit=1)[0].lower()  # "DeepLabV3+: ..." -> deeplabv3+
        assert any(re.search(rf"(?<!\w){re.escape(word)}(?![\w+])", changelog) for word in (name, title)), (
            f"CHANGELOG.md never names {name}: add changelog.d/{name}.md (one bullet) and run `python tests/records.py tables`")
        assert all(hasattr(cs.modules, m) for m in cls.context_modules), (name, cls.context_modules)
        assert bool(cls.context_modules) == cls.has_context_maps(), f"{name}: a context method names its context modules, a baseline none"
