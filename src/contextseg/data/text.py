"""Text read from files, made safe to show on a terminal or in a log.

Class names (a class list, a palette file, a checkpoint's or a saved model's metadata), file names
found on disk and string values of a YAML or JSON file can hold control characters: an escape
sequence (``\\x1b[...``) that recolours, clears or retitles a terminal, a carriage return that
overwrites the start of a line, a right-to-left override (U+202E) that shows a name reversed, zero
width characters that make two different names look the same. `printable` writes each such
character as its Python escape (``\\x1b``, ``\\u202e``) and leaves every other character, accents
and CJK included, as it is. Every layer that prints or logs such a string uses it (the bottom
layer, so that data, engine and cli can all import it).
"""

from __future__ import annotations

import os
import unicodedata

__all__ = ["printable", "is_printable"]

# C*: Cc (C0 and C1 controls, DEL), Cf (format: bidi overrides and isolates, zero width spaces and
# joiners, soft hyphen, BOM), Cs (lone surrogates: undecodable bytes of a file name), Co (private
# use), Cn (unassigned); Zl and Zp: line and paragraph separators, which break a line like \n.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in _HIDDEN_CATEGORIES


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text, keep: str = "") -> str:
    """``text`` (a ``str``, a path or anything ``str()`` takes) with every control and format
    character written as its escape: ``"road\\x1b[31m"`` -> ``r"road\\x1b[31m"``, U+202E ->
    ``r"\\u202e"``, a newline -> ``r"\\n"``. Characters in ``keep`` (e.g. ``"\\n"`` for a message of
    several lines) stay as they are. Printable text, spaces, accents and CJK included, is returned
    unchanged."""
    text = _as_text(text)
    if text.isprintable():  # the common case: nothing to escape (isprintable is false for every hidden category)
        return text
    return "".join(_escape(ch) if ch not in keep and _hidden(ch) else ch for ch in text)


def is_printable(text) -> bool:
    """Whether `printable` leaves ``text`` unchanged (no control or format character)."""
    return not any(_hidden(ch) for ch in _as_text(text))


def _as_text(text) -> str:
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    return os.fsdecode(text) if isinstance(text, bytes) else str(text)
