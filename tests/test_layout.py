"""The package layout: no import cycles between stcn modules (imports inside functions included), and imports go
down the layers only (a lower package never imports a higher one)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_block(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` (a module run as a script: its entry point, the top layer)."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")  # fmt: skip


def _nodes(tree: ast.AST, main_blocks: bool):
    """Every node of `tree`; without the bodies of `if __name__ == "__main__":` unless `main_blocks`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if main_blocks or not _is_main_block(node):
            todo.extend(ast.iter_child_nodes(node))


def import_graph(main_blocks: bool = True) -> dict[str, set[str]]:
    """stcn module -> the stcn modules it imports (anywhere in the file; `main_blocks`: in its script entry too)."""
    modules = {module_name(p): p for p in (REPO / "stcn").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in _nodes(ast.parse(path.read_text()), main_blocks):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "stcn.data.fetch.sources" in graph and "stcn.data.fetch.download" in graph
    assert "stcn.data.fetch.sources" in graph["stcn.data.fetch.download"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# the layers, bottom up: a module imports from its own layer or a lower one. Each area's `commands` module (its
# `stcn` sub-commands), `__main__` modules and `if __name__ == "__main__":` blocks are entry points, above all.
LAYERS = (
    ("stcn", "stcn.errors", "stcn.atomic", "stcn.progress", "stcn.registry"),  # shared basics, the registry
    ("stcn.model", "stcn.data"),  # the network; datasets (fetch, shards, stream)
    ("stcn.inference",),  # propagation through a video
    ("stcn.eval", "stcn.interactive", "stcn.train"),  # benchmarks, interactive, training
    ("stcn.reports",),  # tables from their outputs
    ("stcn.cli",),  # the command line
)
ENTRY = len(LAYERS)
# upward imports still to remove (issue 20 item 5: the loader will receive the data kind instead)
KNOWN_UPWARD: set[tuple[str, str]] = set()  # none left: the stream loader takes the data kind (issue 20 item 5)


def layer(module: str) -> int:
    """The layer of an stcn module (its longest package prefix in LAYERS); entry-point modules are above all."""
    if module.rsplit(".", 1)[-1] in ("commands", "__main__"):
        return ENTRY
    best = max((p for names in LAYERS for p in names if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, names in enumerate(LAYERS) if best in names)


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one."""
    return {(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)}


def test_imports_go_down_the_layers():
    graph = import_graph(main_blocks=False)
    assert all(any(m == p or m.startswith(p + ".") for names in LAYERS for p in names) for m in graph)
    assert layer("stcn.data.stream.loader") < layer("stcn.inference.core") < layer("stcn.eval.evaluate")
    assert layer("stcn.eval.commands") == ENTRY and layer("stcn.train.__main__") == ENTRY
    assert upward_imports(graph) <= KNOWN_UPWARD, sorted(upward_imports(graph) - KNOWN_UPWARD)


def test_the_layer_check_finds_an_upward_import():
    graph = {"stcn.model.network": {"stcn.inference.core", "stcn.errors"}, "stcn.eval.commands": {"stcn.cli"}}
    assert upward_imports(graph) == {("stcn.model.network", "stcn.inference.core")}


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_data_package_is_split_by_job():
    data = REPO / "stcn" / "data"
    assert {p.name for p in data.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == {
        "fetch", "shards", "stream"
    }  # fmt: skip
    assert sorted(p.name for p in data.glob("*.py")) == ["__init__.py", "commands.py", "folders.py", "images.py",
                                                              "storage.py"]  # fmt: skip
