"""The package's import structure: no import runs back up to the package root, no cycles, a fixed
order of layers, and a CLI that starts without the heavy libraries.

Every module under toklab/ is read with `ast` (nothing is imported), so an import inside a function
counts as much as one at the top: it runs whenever that function does.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "toklab"

# Lowest first. A module may import modules of its own layer or of a lower one, never of a higher
# one. Patterns are fnmatch globs over dotted module names; every module must match exactly one.
LAYERS: list[tuple[str, list[str]]] = [
    ("leaves", ["toklab.errors", "toklab._version", "toklab.text", "toklab.files", "toklab.network",
                "toklab.progress", "toklab.stats", "toklab.cache", "toklab.tables", "toklab.outputs",
                "toklab.html"]),
    ("corpus", ["toklab.corpus", "toklab.corpus.*"]),
    # leaf model modules: segmenters may use them (e.g. the entropy transformer reuses the GPT blocks)
    ("model", ["toklab.gpt", "toklab.gpt.flops", "toklab.gpt.model", "toklab.gpt.blt"]),
    ("segmenters", ["toklab.segmenters", "toklab.segmenters.*"]),
    ("measures", ["toklab.measures", "toklab.fairness", "toklab.audit"]),
    ("training", ["toklab.gpt.data", "toklab.gpt.train", "toklab.gpt.distributed"]),
    ("analyses", ["toklab.comparison", "toklab.filter", "toklab.filter.*", "toklab.reports", "toklab.plots",
                  "toklab.view", "toklab.html_report", "toklab.datatrove"]),
    ("pretrain", ["toklab.pretrain"]),
    ("study", ["toklab.study"]),
    ("entry points", ["toklab.cli", "toklab.__main__", "toklab"]),
]

HEAVY = ("torch", "pandas", "matplotlib")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The module an ImportFrom names, with relative imports resolved against `here`."""
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, str]]:
    """(imported toklab module, line, how) for every import in the file: top-level, inside
    functions, under TYPE_CHECKING, and the literal dynamic ones (`importlib.import_module("...")`,
    entry-point style "module:Attr" strings such as the registry's built-in kinds)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "toklab" or alias.name.startswith("toklab."):
                    found.append((alias.name, node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, is_package)
            if source != "toklab" and not source.startswith("toklab."):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                # `from package import submodule` imports the submodule, not a name of the package
                target = sub if sub in known else source
                found.append((target, node.lineno, f"from {source} import {alias.name}"))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            value = node.args[0].value
            if called in {"import_module", "__import__"} and isinstance(value, str) and value.startswith("toklab"):
                found.append((value, node.lineno, f"{called}({value!r})"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            module, colon, attr = node.value.partition(":")
            if colon and attr.isidentifier() and module in known:
                found.append((module, node.lineno, f"dynamic {node.value!r}"))
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Module -> the toklab modules it imports, and where each edge comes from (for messages)."""
    modules = all_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    where: dict[tuple[str, str], str] = {}
    for name, path in modules.items():
        for target, line, how in imports_of(name, path, known):
            graph[name].add(target)
            where.setdefault((name, target), f"{path.relative_to(PACKAGE.parent)}:{line}: {how}")
    return graph, where


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue  # a string naming its own module is no import
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt in graph and state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(name: str) -> int:
    hits = [i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    assert len(hits) == 1, f"{name} must belong to exactly one layer in LAYERS (it matches {len(hits)}): place it"
    return hits[0]


def test_every_module_is_parsed_and_placed() -> None:
    modules = all_modules()
    assert "toklab.cli" in modules and "toklab.segmenters.registry" in modules
    for name in modules:
        layer_of(name)


def test_nothing_imports_the_package_root() -> None:
    graph, where = import_graph()
    offenders = [where[(name, "toklab")] for name in sorted(graph) if "toklab" in graph[name] and name != "toklab"]
    assert not offenders, "import the defining module, not the package root (toklab/__init__ is a lazy facade):\n" + "\n".join(offenders)


def test_no_import_cycles() -> None:
    graph, where = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = "\n".join(where[(a, b)] for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle: {' -> '.join(cycle)}\n{steps}")


def test_layers_only_import_downwards() -> None:
    graph, where = import_graph()
    upward = []
    for name in sorted(graph):
        for target in sorted(graph[name]):
            if target in graph and layer_of(target) > layer_of(name):
                upward.append(f"{where[(name, target)]}  ({LAYERS[layer_of(name)][0]} -> {LAYERS[layer_of(target)][0]})")
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


def test_the_checks_see_a_back_import(tmp_path: Path) -> None:
    """The parser reports function-level, relative and dynamic imports (so the checks above can fail)."""
    package = tmp_path / "toklab"
    (package / "sub").mkdir(parents=True)
    source = "def f():\n    from toklab import __version__\n    from .. import low\n    return 'toklab.low:Thing'\n"
    (package / "sub" / "mod.py").write_text(source)
    known = {"toklab", "toklab.low", "toklab.sub", "toklab.sub.mod"}
    found = {target for target, _, _ in imports_of("toklab.sub.mod", package / "sub" / "mod.py", known)}
    assert found == {"toklab", "toklab.low"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_cli_starts_without_heavy_libraries() -> None:
    code = f"import sys, toklab.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing toklab.cli loaded: {result.stdout.strip()}"


def test_import_toklab_loads_no_subsystem() -> None:
    code = "import sys, toklab; print(' '.join(sorted(m for m in sys.modules if m.startswith('toklab'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["toklab", "toklab._version"]
