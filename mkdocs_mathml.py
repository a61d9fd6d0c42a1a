"""mkdocs hook: equations become MathML when the site is built.

A page writes TeX between ``$...$`` (inline) or ``$$...$$`` (display); ``pymdownx.arithmatex`` in
its generic mode marks them (and leaves code alone), and this hook converts each one with
``latex2mathml``, so the equations render in every current browser with no script, no font file and
no network. A formula latex2mathml cannot read stops the build, naming the page and the formula.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_DISPLAY = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.S)
_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.S)


def _mathml(tex: str, display: str, where: str) -> str:
    tex = html.unescape(tex).strip()
    try:
        mathml = convert(tex, display=display)
    except Exception as exc:  # latex2mathml raises several types; the build must say which formula
        raise ValueError(f"{where}: cannot convert the formula {tex!r} to MathML: {type(exc).__name__} {exc}") from exc
    unknown = re.findall(r">(\\[A-Za-z]+)<", mathml)  # a command latex2mathml does not know is kept as text
    if unknown:
        raise ValueError(f"{where}: cannot convert the formula {tex!r} to MathML: unknown command {unknown[0]}")
    return mathml


def on_page_content(content: str, page, config, files) -> str:
    where = page.file.src_uri
    content = _DISPLAY.sub(lambda m: _mathml(m.group(1), "block", where), content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline", where), content)
