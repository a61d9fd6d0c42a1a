"""The one export rule of the method packages (``modules``, ``losses``, ``heads``, ``models``).

A package's ``__init__`` calls `export_modules`: every module of the package is imported (so
that a model file's ``@register_model`` runs without anyone naming the file) and every name in a
module's ``__all__`` becomes a name of the package. Adding a method therefore edits no shared file:
its new files declare ``__all__`` and are found. This module imports nothing of contextseg and sits
below every floor of the layout.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable

__all__ = ["export_modules"]


def export_modules(package: str, path: Iterable[str], namespace: dict[str, Any]) -> list[str]:
    """Import each module of ``package`` (found on its ``__path__`` ``path``, in name order, modules
    whose name starts with ``_`` skipped) and bind the names of its ``__all__`` in ``namespace``
    (the package's ``globals()``). Returns the package's ``__all__``: the union, in that order.

    A name exported by two modules, or one that is also a module's name (it would hide the module:
    ``import package.name as m`` would bind the object), is an ``ImportError`` naming both, so
    that nothing is ever silently shadowed."""
    owners: dict[str, str] = {}
    found = sorted((i.name for i in pkgutil.iter_modules(list(path)) if not i.name.startswith("_")))
    for module_name in found:
        module = importlib.import_module(f"{package}.{module_name}")
        for name in getattr(module, "__all__", ()):
            if name in owners:
                raise ImportError(f"{package}: {name!r} is exported by both {package}.{owners[name]} and {package}.{module_name}")
            if name in found:
                raise ImportError(f"{package}.{module_name} exports {name!r}, the name of the module {package}.{name}: rename one")
            owners[name] = module_name
            namespace[name] = getattr(module, name)
    return list(owners)
