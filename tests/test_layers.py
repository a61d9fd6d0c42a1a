"""The layout shows the architecture: imports only point down the floors, and no import circles.

cli -> engine -> models -> heads -> losses -> modules, with data, backbones and metrics at the
bottom. Every import in the package (function-level ones included) is read with ``ast``.
"""

import ast
from pathlib import Path

import contextseg

PACKAGE = Path(contextseg.__file__).parent
FLOORS = {"cli": 6, "engine": 5, "models": 4, "heads": 3, "losses": 2, "modules": 1, "data": 0, "backbones": 0, "metrics": 0, "exports": 0}


def module_name(path: Path) -> str:
    parts = ["contextseg", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``contextseg`` module that ``path`` imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("contextseg")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("contextseg"):
                modules = {f"{target}.{a.name}" for a in node.names}
                found |= {m for m in modules if _exists(m)} or {target}
    return found


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def floor(name: str) -> tuple[str, int] | None:
    parts = name.split(".")
    if len(parts) < 2 or parts[1] not in FLOORS:
        return None
    return parts[1], FLOORS[parts[1]]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_only_point_down():
    wrong = []
    for source, targets in graph().items():
        here = floor(source)
        if here is None:  # the package root and __main__ sit above every floor
            continue
        for target in targets:
            there = floor(target)
            if target == "contextseg" or (there is not None and there[0] != here[0] and there[1] >= here[1]):
                wrong.append(f"{source} imports {target}")
    assert not wrong, "imports that run up or across a floor:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    # a package's __init__ importing its own modules is how packages work, not a circle
    real = [c for c in cycles if not all(part.startswith(c.split(" -> ")[0]) for part in c.split(" -> ")[1:])]
    assert not real, "import circles:\n" + "\n".join(real)
