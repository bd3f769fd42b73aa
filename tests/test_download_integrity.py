"""A download is complete only when its length or checksum says so; a resume never splices another
file; `--to` never deletes what the download did not create (a lying local HTTP server)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_download import FRAME, Served, _davis_zip, http_server  # noqa: F401  (pytest fixture)

from stcn.data.fetch.download import download_dataset, fetch
from stcn.data.fetch.sources import bl30k_members, bundled_videos, write_tar
from stcn.errors import UserError


def _bl30k_tar(path: Path) -> Path:
    return write_tar(path, bl30k_members(bundled_videos(with_multi_object=False))[:40])


def test_truncated_body_without_length_is_not_accepted_then_resumes(http_server: Served, tmp_path: Path):  # noqa: F811
    data = _bl30k_tar(http_server.root / "BL30K_a.tar").read_bytes()
    http_server.mode = "no-length"  # first response: no Content-Length, connection closed at half the file
    dest = tmp_path / "BL30K_a.tar"
    with pytest.raises(UserError, match="incomplete download of BL30K_a.tar.*re-run to resume"):
        fetch(f"{http_server.url}/BL30K_a.tar", dest, retries=0)
    assert not dest.exists() and not (tmp_path / "BL30K_a.tar.sha256").exists()
    assert (tmp_path / "BL30K_a.tar.part").stat().st_size == len(data) // 2
    fetch(f"{http_server.url}/BL30K_a.tar", dest)  # resumes: the 206 states the total
    assert dest.read_bytes() == data and http_server.requests[-1] == f"bytes={len(data) // 2}-"


def test_truncated_torch_weights_without_length_are_not_accepted(http_server: Served, tmp_path: Path):  # noqa: F811
    torch.save({"w": torch.arange(50_000.0)}, http_server.root / "stcn.pth")
    http_server.mode = "no-length"
    with pytest.raises(UserError, match="incomplete download of stcn.pth .*truncated or corrupt zip"):
        fetch(f"{http_server.url}/stcn.pth", tmp_path / "stcn.pth", retries=0)
    dest = fetch(f"{http_server.url}/stcn.pth", tmp_path / "stcn.pth")
    assert torch.equal(torch.load(dest, weights_only=True)["w"], torch.arange(50_000.0))


def test_cli_download_of_truncated_tar_is_an_error_not_ready(http_server: Served, tmp_path: Path):  # noqa: F811
    _bl30k_tar(http_server.root / "BL30K_a.tar")
    http_server.mode = "no-length"
    cmd = [sys.executable, "-m", "stcn.cli", "download", "bl30k", "--source", "http", "--url", http_server.url + "/"]
    res = subprocess.run([*cmd, "--to", str(tmp_path / "bl30k")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "incomplete download of BL30K_a.tar" in res.stderr and "ready" not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_file_without_length_needs_a_checksum(http_server: Served, tmp_path: Path):  # noqa: F811
    data = FRAME.read_bytes()
    (http_server.root / "f.jpg").write_bytes(data)
    http_server.mode, http_server.dropped = "no-length", True  # whole body, but no length stated
    with pytest.raises(UserError, match="cannot tell whether f.jpg .* is complete"):
        fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", retries=0)
    sha = hashlib.sha256(data).hexdigest()
    assert fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", checksum=sha).read_bytes() == data


@pytest.mark.parametrize("mode", ["drop", "ignore-if-range"])
def test_resume_after_the_file_changed_is_not_spliced(http_server: Served, tmp_path: Path, mode: str):  # noqa: F811
    old, new = FRAME.read_bytes(), FRAME.with_name("00001.jpg").read_bytes()
    (http_server.root / "f.jpg").write_bytes(old)
    http_server.mode = "drop"
    with pytest.raises(UserError, match="re-run to resume"):
        fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", retries=0)
    (http_server.root / "f.jpg").write_bytes(new)  # the server's file changed between the attempts
    http_server.mode = mode  # honours If-Range (sends all of the new file) or ignores it (206 with a new ETag)
    assert fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg").read_bytes() == new


def test_truncated_archive_recorded_by_an_older_run_is_downloaded_again(http_server: Served, tmp_path: Path):  # noqa: F811
    data = _bl30k_tar(http_server.root / "BL30K_a.tar").read_bytes()
    dest = tmp_path / "BL30K_a.tar"
    dest.write_bytes(data[: len(data) // 2])  # what older versions accepted and recorded
    dest.with_name("BL30K_a.tar.sha256").write_text(f"{hashlib.sha256(dest.read_bytes()).hexdigest()}  x\n")
    fetch(f"{http_server.url}/BL30K_a.tar", dest)
    assert dest.read_bytes() == data


def test_download_refuses_a_foreign_non_empty_target(http_server: Served, tmp_path: Path):  # noqa: F811
    _davis_zip(http_server.root / "DAVIS-2017-trainval-480p.zip")
    notes = tmp_path / "t" / "JPEGImages" / "480p" / "mine" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("my notes")
    with pytest.raises(UserError, match="not empty and was not created by `stcn download davis17`"):
        download_dataset("davis17", source="http", url=http_server.url + "/", to=tmp_path / "t")
    assert notes.read_text() == "my notes" and http_server.requests == []
    cmd = [sys.executable, "-m", "stcn.cli", "download", "davis17", "--source", "bundled", "--to", str(tmp_path / "t")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not empty" in res.stderr
    assert sorted(p.name for p in (tmp_path / "t").rglob("*")) == ["480p", "JPEGImages", "mine", "notes.txt"]


def test_reinstall_into_our_own_target_keeps_files_the_user_added(http_server: Served, tmp_path: Path):  # noqa: F811
    _davis_zip(http_server.root / "DAVIS-2017-trainval-480p.zip")
    target = download_dataset("davis17", source="http", url=http_server.url + "/", to=tmp_path / "t")
    notes = target / "JPEGImages" / "480p" / "blackswan" / "notes.txt"
    notes.write_text("my notes")
    (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracted").unlink()  # force a re-extraction
    download_dataset("davis17", source="http", url=http_server.url + "/", to=target)
    assert notes.read_text() == "my notes"
    assert (target / "JPEGImages" / "480p" / "blackswan" / "00000.jpg").read_bytes() == FRAME.read_bytes()
    with pytest.raises(UserError, match="holds the davis17 download, not davis16"):
        download_dataset("davis16", source="bundled", to=target)


def test_files_downloaded_by_an_earlier_version_count_as_ours(http_server: Served, tmp_path: Path):  # noqa: F811
    target = tmp_path / "w"
    target.mkdir()
    (target / "stcn.pth").write_bytes(b"old weights")  # kept files with their records, no marker yet
    (target / "stcn.pth.sha256").write_text(f"{hashlib.sha256(b'old weights').hexdigest()}  stcn.pth\n")
    for name in ("stcn.pth", "stcn_s03.pth", "s2m.pth", "fusion_stcn.pth"):
        torch.save({"name": name}, http_server.root / name)
    download_dataset("pretrained", source="http", url=http_server.url + "/", to=target)
    assert (target / "stcn_s03.pth").is_file() and (target / ".stcn-download").read_text() == "pretrained\n"
