"""Safe zip/tar extraction: every member must land inside the target folder.

Absolute names, `..` components, symlinks and hard links (the datasets have none; a chain of links
can escape any textual check) and device files are refused with a UserError naming the member; tar
members go through tarfile's `data` filter as well. A truncated or corrupt archive is a UserError
naming the archive. Nothing outside the target is ever written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from stcn.errors import UserError

CHUNK = 1 << 20
MAX_RATIO = 50  # extracted / archive size; real datasets are JPEG/PNG (ratio ~1), a zip bomb is ~1000
MIN_CAP = 64 << 20  # small archives may always expand to this much
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(path: str | Path) -> str:
    """'zip' or 'tar', from the name, else from the first bytes."""
    name = str(path).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    with open(path, "rb") as f:
        head = f.read(4)
    return "zip" if head.startswith(b"PK") else "tar"


def _check_name(name: str, archive: Path) -> str:
    """The member name as a relative POSIX path, or a UserError if it could escape."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UserError(f"archive {archive} has a member with an absolute path: {name!r}")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"archive {archive} has a member escaping the target folder: {name!r}")
    return "/".join(parts)


def _inside(dest: Path, path: str, name: str, archive: Path) -> Path:
    """`dest/path` after resolving any symlinks so far; must stay within `dest`."""
    target = Path(os.path.realpath(dest / path))
    root = Path(os.path.realpath(dest))
    if target != root and root not in target.parents:
        raise UserError(f"archive {archive} has a member escaping the target folder: {name!r}")
    return dest / path


def _write(src, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    with open(path, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def check_expansion(archive: Path, dest: Path, declared: int, needed: int | None = None) -> None:
    """Refuse an archive declaring more than MAX_RATIO x its own size (a zip bomb), or `needed` bytes
    still to write (default: all it declares) when `dest` has less free space, before writing them."""
    cap = max(MAX_RATIO * archive.stat().st_size, MIN_CAP)
    if declared > cap:
        raise UserError(
            f"archive {archive} would expand to {_mb(declared)}, over {MAX_RATIO}x its size: refused (zip bomb?)"
        )
    needed = declared if needed is None else needed
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise UserError(f"not enough space to extract {archive}: {_mb(needed)} more needed, {_mb(free)} free in {dest}")


def _write_error(e: OSError, member: str, archive: Path, dest: Path) -> UserError:
    """One line for a failed write (disk full, read-only, a file where a folder must go)."""
    return UserError(f"cannot extract {member} from {archive} into {dest}: {e.strerror or e}")


def extract_zip(archive: Path, dest: Path, log: Callable[[str], None] = lambda _: None) -> int:
    """Extract a zip safely into `dest`; returns the number of files."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"truncated or corrupt zip archive: {archive} ({e})") from None
    count = 0
    with zf:
        check_expansion(archive, dest, sum(info.file_size for info in zf.infolist()))
        for info in zf.infolist():
            rel = _check_name(info.filename, archive)
            if not rel:
                continue
            path = _inside(dest, rel, info.filename, archive)
            mode = info.external_attr >> 16
            try:
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                elif stat.S_ISLNK(mode):
                    raise UserError(f"archive {archive} has a symlink (refused, links can escape): {info.filename!r}")
                else:
                    with zf.open(info) as src:
                        _write(src, path)
                    count += 1
            except (zipfile.BadZipFile, EOFError, zlib.error) as e:
                raise UserError(f"truncated or corrupt zip archive: {archive} (member {info.filename}: {e})") from None
            except OSError as e:
                raise _write_error(e, info.filename, archive, dest) from None
    return count


def extract_tar(archive: Path, dest: Path, log: Callable[[str], None] = lambda _: None) -> int:
    """Extract a (possibly compressed) tar safely into `dest`; returns the number of files."""
    count, declared = 0, 0
    members = tar_members(archive)
    with contextlib.closing(members):  # the tar is closed as soon as a member is refused
        for tar, info in members:
            rel = _check_name(info.name, archive)
            if not rel:
                continue
            _inside(dest, rel, info.name, archive)
            if info.issym() or info.islnk():
                kind = "symlink" if info.issym() else "hard link"
                raise UserError(f"archive {archive} has a {kind} (refused, links can escape): {info.name!r}")
            if not (info.isdir() or info.isfile()):
                raise UserError(f"archive {archive} has an unsupported member type (device/fifo): {info.name!r}")
            declared += info.size
            check_expansion(archive, dest, declared, info.size)  # a tar lists its sizes only member by member
            try:
                tar.extract(info, dest, filter="data")
            except tarfile.FilterError as e:
                raise UserError(f"archive {archive} has an unsafe member {info.name!r}: {e}") from None
            except (tarfile.ReadError, EOFError, zlib.error, OSError) as e:
                if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
                    raise _write_error(e, info.name, archive, dest) from None
                raise UserError(f"truncated or corrupt tar archive: {archive} (member {info.name}: {e})") from None
            if info.isfile():
                if (dest / rel).stat().st_size != info.size:
                    raise UserError(f"truncated or corrupt tar archive: {archive} (member {info.name} cut off)")
                count += 1
    return count


def tar_members(archive: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The open tar and each of its members in order (none kept in memory), then the end marker checked.

    A tar that cannot be opened, a garbled header or a missing end marker is a UserError naming the archive and
    the last good member."""
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115
    except (tarfile.ReadError, OSError, EOFError) as e:
        raise UserError(f"truncated or corrupt tar archive: {archive} ({e})") from None
    last = "(start)"
    with tar:
        while True:
            try:
                info = tar.next()
            except (tarfile.ReadError, EOFError, OSError, zlib.error) as e:
                raise UserError(f"truncated or corrupt tar archive: {archive} (after member {last}: {e})") from None
            if info is None:
                break
            tar.members.clear()
            last = info.name
            yield tar, info
        _check_end(tar, archive, last)


def _check_end(tar: tarfile.TarFile, archive: Path, last: str) -> None:
    """tarfile stops quietly at a missing/garbled header; require the zero end-of-archive block."""
    try:
        tar.fileobj.seek(tar.offset)
        block = tar.fileobj.read(tarfile.BLOCKSIZE)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"truncated or corrupt tar archive: {archive} (after member {last}: {e})") from None
    if block != bytes(tarfile.BLOCKSIZE):
        raise UserError(f"truncated or corrupt tar archive: {archive} (no end marker after member {last})")


def safe_extract(archive: str | Path, dest: str | Path, log: Callable[[str], None] = lambda _: None) -> int:
    """Extract a zip or tar into `dest` (created); refuses members that would escape it."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise UserError(f"archive not found: {archive}")
    dest.mkdir(parents=True, exist_ok=True)
    kind = archive_kind(archive)
    log(f"extracting {archive.name} ({kind})")
    return extract_zip(archive, dest, log) if kind == "zip" else extract_tar(archive, dest, log)


def check_complete(path: str | Path) -> bool | None:
    """Open a downloaded file by its name's format: True if it is a complete zip/tar/torch zip checkpoint
    (central directory / every header and the end marker present), None when there is no format to check.

    A truncated or corrupt archive is a UserError naming it.
    """
    path = Path(path)
    name = path.name.lower().removesuffix(".part")
    with open(path, "rb") as f:
        torch_zip = name.endswith((".pth", ".pt")) and f.read(2) == b"PK"  # torch.save's format is a zip
    if name.endswith(".zip") or torch_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                size = path.stat().st_size
                for info in zf.infolist():
                    if info.header_offset + info.compress_size > size:
                        raise zipfile.BadZipFile(f"member {info.filename} lies past the end of the file")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise UserError(f"truncated or corrupt zip archive: {path} ({e})") from None
        return True
    if name.endswith(TAR_SUFFIXES):
        for _ in tar_members(path):  # every header readable, and the end marker present
            pass
        return True
    return None
