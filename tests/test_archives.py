"""Archive extraction: links (and chains of links) are refused, members pass the data filter, a bomb is
refused before writing, a full disk is one line and leaves nothing half-extracted."""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from fullfs import read_only_dir, tiny_fs  # noqa: F401  (pytest fixtures)

from stcn.data.fetch.archives import safe_extract
from stcn.data.fetch.download import download_dataset
from stcn.data.fetch.sources import DAVIS_MINI
from stcn.errors import UserError


def _zip_symlinks(path: Path, links: list[tuple[str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_zip_symlink_chain_cannot_escape(tmp_path: Path):
    archive = _zip_symlinks(tmp_path / "a.zip", [("a", "."), ("b", "a/..")])
    with pytest.raises(UserError, match="symlink .*'a'"):
        safe_extract(archive, tmp_path / "t")
    assert not any(p.is_symlink() for p in (tmp_path / "t").rglob("*"))


def test_tar_symlink_chain_cannot_escape(tmp_path: Path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for name, link in [("a", "."), ("b", "a/..")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    with pytest.raises(UserError, match="symlink .*'a'"):
        safe_extract(tmp_path / "a.tar", tmp_path / "t")
    assert not any(p.is_symlink() for p in (tmp_path / "t").rglob("*"))


def test_tar_members_go_through_the_data_filter(tmp_path: Path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        info = tarfile.TarInfo("d/run.sh")
        info.size, info.mode = 4, 0o6777  # setuid, setgid, world-writable
        tar.addfile(info, io.BytesIO(b"echo"))
    assert safe_extract(tmp_path / "a.tar", tmp_path / "t") == 1
    assert stat.S_IMODE((tmp_path / "t" / "d" / "run.sh").stat().st_mode) & 0o6002 == 0


def test_zip_bomb_is_refused_before_writing(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as f:
        for _ in range(100):
            f.write(bytes(1 << 20))
    assert (tmp_path / "bomb.zip").stat().st_size < 1 << 20
    with pytest.raises(UserError, match=r"bomb.zip would expand to 104.9 MB, over 50x its size"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "t")
    assert list((tmp_path / "t").iterdir()) == []


def _small_davis_zip(path: Path) -> Path:
    """A DAVIS-layout zip of the first 12 real blackswan frames and masks (~1 MB)."""
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        for sub in ("JPEGImages", "Annotations"):
            for p in sorted((DAVIS_MINI / sub / "480p" / "blackswan").iterdir())[:12]:
                zf.write(p, f"DAVIS/{sub}/480p/blackswan/{p.name}")
    return path


def test_full_disk_during_extraction_is_one_line_and_cleans_up(
    tiny_fs,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
):
    archive = _small_davis_zip(tmp_path / "mirror" / "DAVIS-2017-trainval-480p.zip")
    small = tiny_fs(archive.stat().st_size * 3 // 2)  # room for the download, not for its extraction
    target = small / "d"
    with pytest.raises(UserError, match="not enough space to extract .*DAVIS-2017-trainval-480p.zip"):
        download_dataset("davis17", source="file", url=str(archive.parent), to=target)
    assert not (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracting").exists()
    assert not (target / "JPEGImages").exists()
    # free space reported wrongly (another writer filled the disk meanwhile): the write itself fails
    plenty = shutil.disk_usage(tmp_path)._replace(free=1 << 40)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: plenty)
    with pytest.raises(UserError, match="cannot extract DAVIS/.* No space left on device") as e:
        download_dataset("davis17", source="file", url=str(archive.parent), to=target)
    assert "\n" not in str(e.value)
    assert not (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracting").exists()


def test_zip_with_a_file_and_a_folder_of_the_same_name_is_one_line(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("data", b"a file")
        zf.writestr("data/x.txt", b"and a folder")
    with pytest.raises(UserError, match="cannot extract data/x.txt from .*a.zip"):
        safe_extract(tmp_path / "a.zip", tmp_path / "t")
