"""No import cycles in any package, counting imports inside functions too (a deferred import only
hides a cycle); `if TYPE_CHECKING:` imports are not run, so they do not count. Also the layering rule:
gateway never imports training or evaluation."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("abgate", "gateway", "evaluation", "training", "simulator", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[int, str, str | None]]:
    """(level, module, name) of every run-time import statement, wherever it is."""
    found: list[tuple[int, str, str | None]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((0, a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.extend((node.level, node.module or "", a.name) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for level, target, name in _imports(ast.parse(path.read_text(), str(path))):
            if level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (level - 1)]
                target = ".".join([*base, target] if target else base)
            candidates = [f"{target}.{name}", target] if name else [target]
            for c in candidates:
                if c in mods:
                    if c != mod:
                        graph[mod].add(c)
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles (strongly connected modules):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_finds_a_deferred_import_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    from z import w\n")
    assert [m for _, m, _ in _imports(tree)] == ["x", "z"]


def test_gateway_never_imports_training_or_evaluation() -> None:
    graph = import_graph()
    bad = sorted((m, t) for m, ts in graph.items() if m.split(".")[0] == "gateway" for t in ts
                 if t.split(".")[0] in ("training", "evaluation"))
    assert bad == []
