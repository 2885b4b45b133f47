"""The house's arrows, checked on the source: which room may import which.

Every import statement counts — module level, inside functions, under
``if TYPE_CHECKING:`` — because a late import is still a dependency: it only
hides the arrow from a reader. See ../shared/DESIGN.md for the rooms.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("farm", "kinds", "pipelines", "serve", "cluster")


def modules() -> dict[str, Path]:
    """Dotted module name → file, for every Python file of the project's packages."""
    found: dict[str, Path] = {}
    for room in ROOMS:
        for path in sorted((REPO / room).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(module: str) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, at module level) for every import in ``module``'s file."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from farm import assets` imports the module farm.assets
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in MODULES else base, id(node) in top_level


def violations(prefix: str, banned: re.Pattern[str]) -> list[str]:
    return [f"{MODULES[m].relative_to(REPO)}:{line} imports {name}"
            for m in MODULES if m == prefix or m.startswith(prefix + ".")
            for line, name, _ in imports(m) if banned.match(name)]


def test_the_walker_sees_late_and_type_checking_imports(tmp_path: Path) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from farm.db import Job\ndef f():\n    import farm.storage\n"
    MODULES["pipelines._probe_only"] = tmp_path / "probe.py"
    MODULES["pipelines._probe_only"].write_text(source)
    try:
        found = [(line, name, top) for line, name, top in imports("pipelines._probe_only")]
    finally:
        del MODULES["pipelines._probe_only"]
    assert (3, "farm.db", False) in found and (5, "farm.storage", False) in found


def test_pipelines_reach_the_farm_only_through_the_door() -> None:
    banned = re.compile(r"^farm\.(db|storage|api|settings)(\.|$)|^farm\.[a-z_.]*service(\.|$)")
    assert violations("pipelines", banned) == []


def test_serve_imports_nothing_from_the_farm() -> None:
    assert violations("serve", re.compile(r"^(farm|pipelines|kinds)(\.|$)")) == []


def test_kinds_are_plain_pydantic() -> None:
    banned = re.compile(r"^(farm|pipelines|serve|cluster|fastapi|starlette|sqlalchemy|ray|torch|diffusers|vllm)(\.|$)")
    assert violations("kinds", banned) == []


def test_the_openai_protocol_has_no_web_framework() -> None:
    assert "farm.openai" in MODULES
    assert violations("farm.openai", re.compile(r"^(fastapi|starlette|farm\.api)(\.|$)")) == []


def test_the_control_plane_imports_no_pipeline_or_engine_at_import_time() -> None:
    found = [f"{MODULES[m].relative_to(REPO)}:{line} imports {name}"
             for m in MODULES if m.startswith("farm.")
             for line, name, top in imports(m) if top and re.match(r"^(pipelines|serve)(\.|$)", name)]
    assert found == []


def _cycles() -> list[list[str]]:
    graph = {m: sorted({name for _, name, _ in imports(m) if name in MODULES and name != m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def test_no_import_circles() -> None:
    """No two modules need each other (today's farm.jobs.kinds ⇄ specs and openai errors ⇄ upstream included)."""
    assert _cycles() == []
