"""Outputs never over inputs: the one rule every command that writes a folder applies before it writes anything.

An output folder (or file) may not be, contain or lie inside an input (frames, masks, ground truth, weights,
training data), and two inputs may not map to one output. Paths are compared resolved (symlinks followed, `..`
removed), so another spelling of an input is caught too. Violations are one-line UserErrors naming both paths.
Used by `stcn evaluate` (and its DVC stage), `stcn segment` (one video and batch), `stcn interact`, `stcn train`
and the app's export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from stcn.atomic import check_output_folder
from stcn.errors import UserError

Inputs = Mapping[str, "str | Path | None | Iterable[str | Path]"]


def _paths(value: object) -> list[Path]:
    """The local paths an input option holds (None: none; a list: each; URLs and s3:// are not local)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _paths(v)]
    text = str(value)
    if "://" in text:
        return []
    if "{" in text:  # a shard pattern `dir/train-{000000..000009}.tar`: its folder
        return [Path(text.split("{", 1)[0]).parent]
    return [Path(text)]


def relation(out: str | Path, path: str | Path) -> str | None:
    """How the output `out` stands to the input `path`: "is", "holds", "lies inside", or None (apart)."""
    o, p = Path(out).resolve(), Path(path).resolve()
    if o == p:
        return "is"
    if o in p.parents:
        return "holds"
    if p in o.parents:
        return "lies inside"
    return None


def check_output(out: str | Path, inputs: Inputs, what: str = "--out") -> Path:
    """`out` resolved; a one-line UserError when it is, holds or lies inside one of `inputs` (option -> path(s)),
    or cannot be written (stcn.atomic.check_output_folder)."""
    for option, value in inputs.items():  # overwriting an input is the graver mistake: named first
        for path in _paths(value):
            how = relation(out, path)
            if how is not None:
                raise UserError(f"{what} {out} {how} the input {option} {path}: writing there would overwrite "
                                "input; choose an output apart from the inputs")  # fmt: skip
    check_output_folder(out, what)
    return Path(out).resolve()


def check_distinct(targets: Mapping[str, str | Path], what: str = "output") -> None:
    """A one-line UserError when two inputs (the keys) map to one output (the values, compared resolved)."""
    seen: dict[Path, str] = {}
    for source, target in targets.items():
        key = Path(target).resolve()
        if key in seen:
            raise UserError(f"{seen[key]} and {source} would both be written to the {what} {target}; rename one")
        seen[key] = source


SOURCE = "source.json"  # in an export folder: which input it was made from


def claim_folder(parent: str | Path, name: str, source: str, inputs: Inputs) -> Path:
    """The folder `parent/name` for the outputs of `source` (an input's resolved path or a sample's name), or
    `parent/name-2`, `-3`, ... when that one holds the outputs of another input: two inputs never share a folder.
    The folder is created holding SOURCE, and checked against `inputs` like any output."""
    parent = Path(parent)
    for n in range(1, 1000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        check_output(folder, inputs, "export folder")
        record = folder / SOURCE
        if folder.exists():
            try:
                owner = json.loads(record.read_text()).get("source")
            except (OSError, ValueError, AttributeError):
                owner = None  # an export of unknown origin: not ours to overwrite
            if owner == source:
                return folder
            continue
        folder.mkdir(parents=True)
        tmp = folder / f".{SOURCE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"source": source}) + "\n")
        os.replace(tmp, record)
        return folder
    raise UserError(f"{parent} holds exports named {name}, {name}-2 ... {name}-999 of other videos; use another --out")
