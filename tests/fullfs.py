"""A small file system for disk-full tests: a real tmpfs where this process may mount one (root), else a
folder whose writes through `shutil.copyfileobj` fail with ENOSPC past the same size (simulated at the file layer)."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest


def _used(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture
def tiny_fs(tmp_path: Path, monkeypatch):
    """`tiny_fs(size)` -> a folder holding at most `size` bytes."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        root = tmp_path / f"tiny{len(mounted)}"
        root.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True)
        if res.returncode == 0:
            mounted.append(root)
            return root
        copy, usage = shutil.copyfileobj, shutil.disk_usage

        def copyfileobj(src, dst, length=0):
            name = Path(getattr(dst, "name", ""))
            if root not in name.parents:
                return copy(src, dst, length) if length else copy(src, dst)
            while chunk := src.read(1 << 16):
                if _used(root) + dst.tell() + len(chunk) > size:
                    raise OSError(errno.ENOSPC, "No space left on device", str(name))
                dst.write(chunk)

        def disk_usage(path):
            if Path(path) == root or root in Path(path).parents:
                return usage(path)._replace(total=size, free=max(0, size - _used(root)))
            return usage(path)

        monkeypatch.setattr(shutil, "copyfileobj", copyfileobj)
        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
        return root

    make.mounted = mounted
    yield make
    for root in mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder nothing can be written into: a read-only tmpfs where this process may mount one (root ignores
    permission bits), else a folder without write permission."""
    root = tmp_path / "read-only"
    root.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(root)], capture_output=True)
    if res.returncode != 0:
        root.chmod(0o555)
    yield root
    if res.returncode == 0:
        subprocess.run(["umount", "-l", str(root)], check=False)
    else:
        root.chmod(0o755)
