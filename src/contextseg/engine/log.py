"""Logging: the stdlib ``logging`` logger ``contextseg``, quiet on every rank but 0.

The library never configures logging on import. `setup_logging` (called by the CLI and by
`contextseg.engine.train`) attaches two handlers to the ``contextseg`` logger, once: INFO
lines to stdout, warnings and errors to stderr prefixed ``warning:``/``error:``, both behind
`RankZeroFilter`, so that under ``torchrun`` each message is written once. A program that
configures ``logging`` itself gets the records through propagation instead (``propagate`` stays
on when the root logger has handlers). Every record has the control characters of its text escaped
(`EscapeControls`): file names and class names never reach a terminal or a log raw.
Progress bars stay with tqdm.
"""

from __future__ import annotations

import logging
import os
import sys

from ..data.text import printable
from .distributed import get_rank, is_distributed

__all__ = ["logger", "get_logger", "setup_logging", "RankZeroFilter", "EscapeControls"]

logger = logging.getLogger("contextseg")


class EscapeControls(logging.Filter):
    """Escapes the control and format characters of a record's text arguments and message (file
    names, class names, messages quoting them: `contextseg.data.text.printable`) before any
    handler sees it, a program's own handlers included; the newlines of a message of several lines
    (a results table) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_shown(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = printable(record.msg, keep="\n")
        return True


_ESCAPE = EscapeControls()
logger.addFilter(_ESCAPE)


def get_logger(name: str) -> logging.Logger:
    """The ``contextseg.<name>`` child logger (its records escaped by `EscapeControls`)."""
    child = logger.getChild(name)
    if _ESCAPE not in child.filters:
        child.addFilter(_ESCAPE)
    return child


class RankZeroFilter(logging.Filter):
    """Lets a record through on rank 0 only, unless it was logged with ``extra={"all_ranks": True}``.
    Outside a process group (before it is set up, after it is torn down) the rank is torchrun's
    ``RANK`` variable, so that a CLI line said around a training is said once."""

    def filter(self, record: logging.LogRecord) -> bool:
        rank = get_rank() if is_distributed() else int(os.environ.get("RANK", "0") or 0)
        return getattr(record, "all_ranks", False) or rank == 0


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is at the time of the record (pytest's
    capture, a redirected stream), not the one present when logging was set up."""

    def __init__(self, name: str) -> None:
        self._stream_name = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


class _LevelPrefix(logging.Formatter):
    """Warnings and errors start with their level (``warning: ...``), unless logged with
    ``extra={"as_is": True}``: the CLI's error lines, which carry their own ``contextseg CMD: error:``.

    Nothing reaches the terminal raw: the text arguments (file names, class names, config values,
    messages of exceptions) have every control and format character escaped, newlines included
    (`contextseg.data.text.printable`), and so has the whole line but for the newlines of a
    message of several lines (a results table)."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and record.args:
            record = logging.makeLogRecord({**record.__dict__, "args": tuple(_shown(a) for a in record.args)})
        message = printable(super().format(record), keep="\n")
        plain = record.levelno < logging.WARNING or getattr(record, "as_is", False)
        return message if plain else f"{record.levelname.lower()}: {message}"


def _shown(arg):
    """A log argument as shown: text, paths and exceptions (whose messages quote file names) with their
    control characters escaped, the rest as is (numbers keep their ``%d``/``%.2f`` formats)."""
    return printable(arg) if isinstance(arg, (str, os.PathLike, BaseException)) else arg


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Attach the stdout/stderr handlers to the ``contextseg`` logger (idempotent)."""
    if getattr(logger, "_contextseg_handlers", None):
        logger.setLevel(level)
        return logger
    out = _ConsoleHandler("stdout")
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = _ConsoleHandler("stderr")
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_LevelPrefix("%(message)s"))
        handler.addFilter(RankZeroFilter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = logging.getLogger().hasHandlers()
    logger._contextseg_handlers = (out, err)
    return logger
