"""The one validator for names that come from input and become paths, stage names or shell words.

Grammar (`NAME`): a letter or digit, then letters, digits, `_`, `.` and `-`; at most 128 characters; no `..`.
So a name is one path component that is never `.`/`..`, never hidden, never absolute, holds no separator,
no space and no shell metacharacter. Dataset names (registry), file names of a dataset's `files`, sequence
names in split files (`ImageSets/<year>/<split>.txt`), shard names in part indexes and the frame names an
interactive state file records all pass `check_name`.

`inside(root, path)` resolves a path built from input and refuses it when it leaves `root` (a `..`, an
absolute path, a symlink pointing out).
"""

from __future__ import annotations

import re
from pathlib import Path

from stcn.errors import UserError

MAX_LENGTH = 128
GRAMMAR = "[A-Za-z0-9][A-Za-z0-9_.-]* (at most 128 characters, no '..')"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_name(value: object) -> bool:
    """True when `value` is a string of the name grammar."""
    return isinstance(value, str) and len(value) <= MAX_LENGTH and bool(_NAME.fullmatch(value)) and ".." not in value


def check_name(value: object, what: str) -> str:
    """`value` when it is a name of the grammar, else a one-line UserError naming `what` and the value."""
    if not is_name(value):
        raise UserError(f"{what}: {value!r} is not a valid name (allowed: {GRAMMAR})")
    return value  # type: ignore[return-value]


def check_relative(value: object, what: str) -> str:
    """A relative path of names joined by `/` (e.g. `parts/0-of-2/train-000000.tar`), or `.`; else a UserError."""
    if value == ".":
        return value
    if not isinstance(value, str) or not value or not all(is_name(p) for p in value.split("/")):
        raise UserError(f"{what}: {value!r} is not a relative path of valid names (each: {GRAMMAR})")
    return value


def inside(root: str | Path, path: str | Path, what: str) -> Path:
    """`root / path` resolved; a UserError naming `what` when it is not inside the resolved `root`."""
    base = Path(root).resolve()
    full = (base / path).resolve()
    if full != base and base not in full.parents:
        raise UserError(f"{what}: {str(path)!r} leads outside {root}")
    return full
