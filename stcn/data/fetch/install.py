"""Installing a downloaded archive into a dataset folder: safe extraction, the dataset root found inside it, merged
into place without touching files the user added; the target folder claimed (`.stcn-download`) so that another
dataset's or the user's folder is never written into."""

from __future__ import annotations

import os
from pathlib import Path

from stcn.data.fetch.transport import Log, fetch_first, record_path
from stcn.errors import UserError


def _find_root(tmp: Path, marker: str | None, archive: str) -> Path:
    """The folder inside an extracted archive that holds the dataset (see `Artifact.marker`)."""
    if marker is None:
        root = tmp
        while True:
            entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
            if len(entries) != 1 or not entries[0].is_dir():
                return root
            root = entries[0]
    level = [tmp]
    for _ in range(5):
        for folder in level:
            if (folder / marker).exists():
                return folder
        level = sorted(p for f in level for p in f.iterdir() if p.is_dir() and p.name != "__MACOSX")
    raise UserError(f"archive {archive} holds no dataset root (no {marker}/ folder inside)")


def _install_archive(urls: list[str], art, target: Path, checksum: str | None, keep: bool, log: Log) -> None:
    """Download an archive into `<target>/.downloads`, extract it safely, move its root into place."""
    import shutil

    from stcn.data.fetch.archives import safe_extract

    downloads = target / ".downloads"
    done = downloads / f"{art.name}.extracted"
    if done.is_file():
        log(f"{art.name}: already extracted into {target / art.place}")
        return
    archive = fetch_first(urls, downloads / art.name, checksum=checksum, log=log)
    tmp = downloads / f"{art.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        safe_extract(archive, tmp, log)
        root = _find_root(tmp, art.marker, str(archive))
        place = target / art.place
        place.mkdir(parents=True, exist_ok=True)
        _merge_into(root, place, str(archive))
    except OSError as e:
        raise UserError(f"cannot install {art.name} into {target}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed extraction leaves nothing half-written behind
    done.write_text(record_path(archive).read_text())
    if not keep:
        archive.unlink()
    log(f"{art.name}: extracted into {place}")


def _merge_into(src: Path, dst: Path, archive: str) -> None:
    """Move the extracted tree `src` into `dst`: a file replaces the same-named file of an earlier
    install; nothing else already in `dst` (files the user added) is touched or deleted."""
    for entry in sorted(src.iterdir()):
        out = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and out.is_dir() and not out.is_symlink():
            _merge_into(entry, out, archive)
        elif out.is_dir() and not out.is_symlink():
            raise UserError(f"cannot install {entry.name} from {archive}: {out} is a folder")
        else:
            os.replace(entry, out)


MARKER = ".stcn-download"  # in a target folder: the dataset `stcn download` installed there
_LEFTOVERS = (".part", ".part.validator", ".sha256", ".corrupt", "STATUS")  # what an interrupted run leaves


def _ours(entry: Path) -> bool:
    """A file an earlier `stcn download` left: a partial download, a record, or a file with its record."""
    return entry.name.endswith(_LEFTOVERS) or record_path(entry).is_file()


def claim_target(target: Path, name: str) -> None:
    """Refuse a non-empty folder that is not an earlier `stcn download` of `name` (never touch user data);
    otherwise mark it as ours."""
    marker = target / MARKER
    if target.exists() and not target.is_dir():
        raise UserError(f"--to {target} is a file, not a folder")
    if marker.is_file():
        owner = marker.read_text().strip()
        if owner != name:
            raise UserError(f"{target} holds the {owner} download, not {name}: use another --to")
        return
    ours = (target / ".downloads").is_dir() or (target / "BUNDLED_SAMPLE.md").is_file()  # earlier versions
    foreign = [p for p in target.iterdir() if not _ours(p)] if target.is_dir() else []
    if foreign and not ours:
        raise UserError(
            f"{target} is not empty and was not created by `stcn download {name}`: "
            "choose a new or empty --to (nothing in it was changed)"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{name}\n")
    except OSError as e:
        raise UserError(f"cannot write into --to {target}: {e.strerror or e}") from None
