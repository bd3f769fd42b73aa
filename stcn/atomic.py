"""Outputs that appear whole or not at all: write under a temporary name next to the target, rename on success.

Temporary names are `.<name>.<pid>.tmp` in the target's folder (same file system, so the rename is atomic);
files and folders are created with the process umask. A failure removes the temporary and leaves the target
as it was. Write errors (missing permission, read-only or full file system) are one-line UserErrors.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stcn.errors import UserError


def temporary_sibling(path: Path) -> Path:
    """A name next to `path` no other process uses."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Remove the `.<name>.<pid>.tmp` files/folders in `folder` that a killed process left (its pid is gone).

    `names`: only temporaries of these target names (None: of any name). Nothing else is touched; returns
    what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"\.(.+)\.(\d+)\.tmp", entry.name)
        if not m or (names is not None and m.group(1) not in names) or _alive(int(m.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def write_error(path: Path, e: OSError) -> UserError:
    """One line naming what could not be written and why."""
    return UserError(f"cannot write {path}: {e.strerror or e}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file name to write; it is renamed over `path` when the block succeeds."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """`Path.write_text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _move_into(src: Path, dst: Path) -> None:
    """Move the tree `src` into the existing folder `dst` (files replace files of the same name)."""
    for entry in sorted(src.iterdir()):
        out = dst / entry.name
        if entry.is_dir() and out.is_dir():
            _move_into(entry, out)
        else:
            os.replace(entry, out)


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes `out` (renamed whole when `out` does not
    exist yet, else its files are moved into `out`). On failure nothing of it remains."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out} exists and is a file")
    tmp = temporary_sibling(out)
    remove_stale_temporaries(out.parent, [out.name])  # what a killed run into `out` left
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise write_error(out, e) from None
    try:
        yield tmp
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists():
            _move_into(tmp, out)
        else:
            os.replace(tmp, out)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR,
                errno.EISDIR, errno.EEXIST}  # fmt: skip
FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


@contextmanager
def output_errors(what: str | None) -> Iterator[None]:
    """Turn a failed write (disk full, read-only file system, no permission, a file where a folder must
    go) inside the block into one UserError naming `what` is being written (None: only the file system's
    reason and file, for a last-resort handler around a whole command)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (WRITE_ERRNOS if what else FULL_OR_READ_ONLY):
            raise
        name = f" ({e.filename})" if e.filename else ""
        raise UserError(f"{f'cannot write {what}: ' if what else ''}{e.strerror or e}{name}") from None


def check_output_folder(out: str | Path, option: str = "--out") -> Path:
    """What can be checked of an output folder before any work (and any model load): not a file, and its nearest
    existing ancestor a writable folder; else a one-line UserError naming it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} exists and is a file")
    ancestor = out.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option} {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{option} {out}: cannot write in {ancestor} (permission denied)")
    return out
