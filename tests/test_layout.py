"""kinject's layout: one package per stage or layer, imports only going down, and no import cycle.

Each package's ``__init__`` docstring says what it may import; ``MAY_IMPORT`` holds the same, so an import that
runs back up (or sideways between faces) fails here before it ties two layers together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kinject"
BELOW_EVERY_VERB = {"models", "runs", "settings", "runtime"}
MAY_IMPORT = {
    "runtime": set(),
    "settings": {"runtime"},
    "runs": {"settings", "runtime"},
    "models": {"runs", "settings", "runtime"},
    "sources": {"settings", "runtime"},
    "augment": BELOW_EVERY_VERB,
    "corpus": {"sources", "augment"} | BELOW_EVERY_VERB,
    "eval": {"augment"} | BELOW_EVERY_VERB,
    "serving": BELOW_EVERY_VERB,
    "sharing": {"eval", "sources"} | BELOW_EVERY_VERB,
    "training": {"eval", "corpus", "augment"} | BELOW_EVERY_VERB,
}
FACES = {"cli", "web"}
MAY_IMPORT |= {face: set(MAY_IMPORT) for face in FACES}
ENTRY_POINTS = {"__init__.py", "__main__.py"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The kinject modules ``path`` imports, at its top or inside a function (relative imports resolved)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("kinject")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.startswith("kinject"):
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names if _exists(f"{base}.{alias.name}")}
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_nothing_but_the_entry_points_at_the_top_level():
    assert {p.name for p in PACKAGE.glob("*.py")} == ENTRY_POINTS
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == set(MAY_IMPORT)


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent != PACKAGE], ids=lambda p: _module(p))
def test_a_package_imports_only_what_lies_below_it(path):
    own = _module(path).split(".")[1]
    others = {m.split(".")[1] for m in _imports(path) if m.count(".") >= 1} - {own}
    assert others <= MAY_IMPORT[own], f"{_module(path)} imports {sorted(others - MAY_IMPORT[own])} from above"


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_every_package_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "May import" in doc, f"kinject/{package}/__init__.py does not say what it may import"


def test_no_import_cycle():
    graph = {_module(p): {m for m in _imports(p) if _exists(m)} for p in MODULES}
    for module in list(graph):  # importing kinject.a.b from outside kinject.a runs kinject.a's __init__ first
        parents = {m.rsplit(".", 1)[0] for m in graph[module] if m.count(".") > 1}
        graph[module] |= {p for p in parents if not module.startswith(p + ".") and p != module}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            if imported != module:
                visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
