"""Which project modules Python files import: the one import walker of compose.py (the stages' code dependencies),
the layer test and the registry checks.

A file's imports are its import statements anywhere (inside functions and `if __name__ == "__main__":` blocks
too; `from X import Y` also as X.Y) and its imports by name: `__import__(NAME)` / `importlib.import_module(NAME)`
with a literal NAME, or, where the name is computed (a loop over a tuple of names, as the CLI's AREAS), every
string literal of the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

DYNAMIC = ("__import__", "import_module")  # a module imported by name: __import__(NAME) / importlib.import_module(NAME)


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module at `path` (a package's `__init__.py`: the package), from `root`."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_main_block(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` (a module run as a script: its entry point, the top layer)."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")  # fmt: skip


def _nodes(tree: ast.AST, main_blocks: bool) -> Iterator[ast.AST]:
    """Every node of `tree`; without the bodies of `if __name__ == "__main__":` unless `main_blocks`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if main_blocks or not is_main_block(node):
            todo.extend(ast.iter_child_nodes(node))


def _dynamic(node: ast.AST) -> ast.expr | None:
    """The name argument of `__import__(...)` / `importlib.import_module(...)`, else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return node.args[0] if called in DYNAMIC else None


def imports(tree: ast.AST, main_blocks: bool = True) -> set[str]:
    """The modules `tree` imports: import statements anywhere, and dynamic imports: a literal name, or, where a
    name is computed (a loop over a tuple of names, as the CLI's AREAS), every string literal of the module."""
    nodes = list(_nodes(tree, main_blocks))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif (name := _dynamic(node)) is not None:
            literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
            strings = [name] if literal else [n for n in nodes if isinstance(n, ast.Constant)]
            found |= {n.value for n in strings if isinstance(n.value, str)}
    return found


def module_file(name: str, root: Path, package: str, script_dir: Path) -> Path | None:
    """The project file of module `name` (a module of `package` under `root`, or a sibling of the entry script in
    `script_dir`), else None."""
    parts = name.split(".")
    base = root if parts[0] == package else script_dir
    for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def project_files(start: Path, root: Path, package: str) -> set[Path]:
    """The project files an entry script runs: itself and every project module it imports, transitively (the
    parent packages' `__init__.py` included)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports(ast.parse(path.read_text(), str(path))):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then a/b/c
                found = module_file(".".join(parts[:i]), root, package, start.parent)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen
