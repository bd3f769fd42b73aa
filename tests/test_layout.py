"""The package layout: no import cycles between stcn modules (imports inside functions included), and imports go
down the layers only (a lower package never imports a higher one)."""

from __future__ import annotations

import ast
from pathlib import Path

from registry_checks import pipelines_importable

pipelines_importable()  # the project's one import walker: pipelines/import_walk.py
from import_walk import imports, is_main_block, module_name  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def import_graph(main_blocks: bool = True) -> dict[str, set[str]]:
    """stcn module -> the stcn modules it imports (anywhere in the file, dynamic imports included).

    `main_blocks`: a module's `if __name__ == "__main__":` block too, as the node `<module>.__main__` (run as a
    script, a module is a separate module, `__main__`: an import of its own module from there is no cycle)."""
    modules = {module_name(p, REPO): p for p in (REPO / "stcn").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name] = {t for t in imports(tree, main_blocks=False) if t in modules and t != name}
        script = [n for n in ast.walk(tree) if is_main_block(n)] if main_blocks else []
        if script:
            found = set().union(*(imports(n) for n in script))
            graph.setdefault(f"{name}.__main__", set()).update({name} | {t for t in found if t in modules})
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
    assert "stcn.cli" in graph["stcn.eval.evaluate.__main__"]  # the script entry of a library module
    assert "stcn.data.fetch.sources" in graph and "stcn.data.fetch.download" in graph
    assert "stcn.data.fetch.sources" in graph["stcn.data.fetch.download"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# the layers, bottom up: a module imports from its own layer or a lower one. Above the library, the command layer:
# the CLI's shared options and error handler, then each area's `commands` module (its `stcn` sub-commands), then
# the entry points: the `stcn` app (stcn.cli, which loads the areas' commands by name), `__main__` modules and
# `if __name__ == "__main__":` blocks. No library module imports the command layer.
LAYERS = (
    ("stcn", "stcn.errors", "stcn.atomic", "stcn.progress", "stcn.registry"),  # shared basics, the registry
    ("stcn.model", "stcn.data"),  # the network; datasets (fetch, shards, stream)
    ("stcn.inference",),  # propagation through a video
    ("stcn.eval", "stcn.interactive", "stcn.train"),  # benchmarks, interactive, training
    ("stcn.reports",),  # tables from their outputs
)
CLI_BASICS = ("stcn.cli.options", "stcn.cli.first_mask")  # what every command module may use
COMMANDS = len(LAYERS) + 1  # the areas' `commands` modules
ENTRY = len(LAYERS) + 2  # the stcn app and the script entry points
KNOWN_UPWARD: set[tuple[str, str]] = set()  # none left


def layer(module: str) -> int:
    """The layer of an stcn module (its longest package prefix in LAYERS); command modules above the library."""
    if module == "stcn.cli" or module.rsplit(".", 1)[-1] == "__main__":
        return ENTRY
    if module.rsplit(".", 1)[-1] == "commands":
        return COMMANDS
    if module in CLI_BASICS:
        return len(LAYERS)
    best = max((p for names in LAYERS for p in names if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, names in enumerate(LAYERS) if best in names)


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one (a library module the command layer)."""
    return {(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)}


def test_imports_go_down_the_layers():
    graph = import_graph(main_blocks=False)
    assert all(layer(m) >= len(LAYERS) or any(m == p or m.startswith(p + ".") for names in LAYERS for p in names)
               for m in graph)  # fmt: skip
    assert set(CLI_BASICS) | {"stcn.cli", "stcn.cli.__main__"} <= set(graph)
    assert layer("stcn.data.stream.loader") < layer("stcn.inference.core") < layer("stcn.eval.evaluate")
    assert layer("stcn.reports") < layer("stcn.cli.options") < layer("stcn.eval.commands") < layer("stcn.cli")
    assert layer("stcn.train.__main__") == layer("stcn.cli.__main__") == ENTRY
    assert upward_imports(graph) <= KNOWN_UPWARD, sorted(upward_imports(graph) - KNOWN_UPWARD)
    # `stcn segment` reaches the interactive area's S2M through the command layer (stcn.cli.first_mask), not directly
    assert not [m for m in graph["stcn.inference.commands"] if m.startswith("stcn.interactive")]


def test_the_layer_test_sees_dynamic_imports():
    """The app loads each area's commands by name (AREAS): edges the cycle and layer checks see."""
    from stcn.cli import AREAS

    graph = import_graph()
    assert set(AREAS) <= graph["stcn.cli"], sorted(set(AREAS) - graph["stcn.cli"])
    code = "import importlib\nimportlib.import_module('stcn.errors')\nm = __import__('stcn.atomic', fromlist=['x'])\n"
    assert imports(ast.parse(code)) >= {"stcn.errors", "stcn.atomic"}
    names = "MODS = ('stcn.reports', 'stcn.errors')\nfor m in MODS:\n    __import__(m)\n"
    assert imports(ast.parse(names)) >= {"stcn.reports", "stcn.errors"}
    assert "stcn.reports" not in imports(ast.parse("X = 'stcn.reports'\n"))  # a string alone is no import


def test_the_layer_check_finds_an_upward_import():
    graph = {"stcn.model.network": {"stcn.inference.core", "stcn.errors"},
             "stcn.eval.commands": {"stcn.cli", "stcn.cli.options", "stcn.inference.commands"},
             "stcn.interactive.core": {"stcn.inference.commands"}, "stcn.cli.options": {"stcn.atomic"}}  # fmt: skip
    assert upward_imports(graph) == {("stcn.model.network", "stcn.inference.core"),
                                     ("stcn.eval.commands", "stcn.cli"),  # the app loads the commands: a cycle
                                     ("stcn.interactive.core", "stcn.inference.commands")}  # fmt: skip


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_data_package_is_split_by_job():
    data = REPO / "stcn" / "data"
    assert {p.name for p in data.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == {
        "fetch", "shards", "stream"
    }  # fmt: skip
    assert sorted(p.name for p in data.glob("*.py")) == ["__init__.py", "commands.py", "folders.py", "images.py",
                                                              "storage.py"]  # fmt: skip


def test_one_error_handler_for_every_entry_point(capsys):
    """`stcn`, `python -m stcn.train` and the pipeline stages report a UserError through stcn.errors.reporting:
    one line on stderr, exit code 2, written once."""
    import pytest

    from stcn.errors import UserError, reporting

    with pytest.raises(SystemExit) as exit_, reporting("error (rank 1)"):
        raise UserError("a cause\nquoted over two lines")
    assert exit_.value.code == 2 and capsys.readouterr().err == "error (rank 1): a cause quoted over two lines\n"
    for entry in ("stcn/cli/__init__.py", "stcn/train/__main__.py", "pipelines/stage.py"):
        text = (REPO / entry).read_text()
        assert "reporting(" in text and "except UserError" not in text, entry
    exits = [p for d in ("stcn", "pipelines") for p in (REPO / d).rglob("*.py") if "exit(2)" in p.read_text()]
    assert exits == [REPO / "stcn" / "errors.py"], exits
