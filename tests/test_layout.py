"""The layout README's architecture section draws: no import cycles in core (an import inside a function
counts), pages reach core only through each concern's front module, core never imports Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONTS = {f"core.{concern}.api" for concern in ("store", "intake", "model", "serving", "jobs")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in (ROOT / "core").rglob("*.py")}


def imported(path: Path) -> set[str]:
    """The modules of core that a file imports, wherever the import stands (module level, function, branch)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != here:
            found.add(name)
    return found


def test_core_has_no_import_cycles():
    graph = {name: imported(path) for name, path in MODULES.items()}
    cycles, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        for other in sorted(graph[node]):
            visit(other, trail + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_pages_reach_core_only_through_the_front_modules():
    reached = {page.name: imported(page) for page in sorted((ROOT / "pages").glob("*.py"))}
    reached["app.py"] = imported(ROOT / "app.py")
    stray = {page: sorted(mods - FRONTS) for page, mods in reached.items() if mods - FRONTS}
    assert not stray, f"pages importing core modules other than {sorted(FRONTS)}: {stray}"


def test_core_never_imports_streamlit():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] == "streamlit" for m in modules), f"{name} imports Streamlit"
