"""Downloads against real local servers (HTTP in a thread, rclone S3), safe extraction, bundled sources.

Data served are the real bundled DAVIS files (DAVIS 2016/2017, CC BY-NC 4.0).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from clihelp import one_error, stcn
from localhttp import serving
from PIL import Image
from s3_server import s3_server  # noqa: F401  (pytest fixture)

from stcn.data.fetch.archives import safe_extract
from stcn.data.fetch.download import NeedsInternet, download_dataset, fetch, resize_youtube_split
from stcn.data.fetch.sources import DAVIS_MINI, bl30k_members, bundled_videos, has_stand_in
from stcn.data.folders import davis_sequences, youtube_sequences
from stcn.errors import UserError
from stcn.registry import load_registry

FRAME = DAVIS_MINI / "JPEGImages" / "480p" / "blackswan" / "00000.jpg"


# --- a real HTTP server: honours Range, ignores it, or drops the connection mid-file -----------
def etag_of(data: bytes) -> str:
    """The strong ETag the test server sends for `data`."""
    return f'"{hashlib.sha256(data).hexdigest()[:16]}"'


class Served:
    def __init__(self, root: Path) -> None:
        self.root, self.mode = root, "range"
        self.bytes, self.requests, self.dropped = 0, [], False


def _handler(state: Served):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            path = state.root / self.path.lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append(rng)
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            etag = etag_of(data)
            if_range = self.headers.get("If-Range")
            if if_range and if_range != etag and state.mode != "ignore-if-range":
                rng = None  # RFC 9110: the file changed, send all of it
            start = 0
            if rng and state.mode != "ignore-range":
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("ETag", etag)
            if state.mode == "no-length":  # body delimited by closing the connection (HTTP/1.0 style)
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            drop = state.mode in ("drop", "no-length") and not state.dropped
            if drop:
                state.dropped = True
                body = body[: len(body) // 2]
            state.bytes += len(body)  # counted before sending: the client may finish before this thread resumes
            self.wfile.write(body)
            if drop:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def http_server(tmp_path: Path):
    state = Served(tmp_path / "www")
    state.root.mkdir()
    with serving(_handler(state)) as state.url:
        yield state


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _davis_zip(path: Path, top: str = "DAVIS") -> Path:
    """A DAVIS-2017-style zip (top folder DAVIS/) of the real bundled sample."""
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(DAVIS_MINI.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(DAVIS_MINI).as_posix()}")
    return path


# --- HTTP --------------------------------------------------------------------------------------
def test_http_download_records_sha256_and_skips_rerun(http_server: Served, tmp_path: Path) -> None:
    (http_server.root / "f.jpg").write_bytes(FRAME.read_bytes())
    out = fetch(f"{http_server.url}/f.jpg", tmp_path / "dl" / "f.jpg", checksum=_sha(FRAME))
    assert out.read_bytes() == FRAME.read_bytes()
    assert (tmp_path / "dl" / "f.jpg.sha256").read_text().split()[0] == _sha(FRAME)
    assert not (tmp_path / "dl" / "f.jpg.part").exists()
    n = len(http_server.requests)
    fetch(f"{http_server.url}/f.jpg", out)
    assert len(http_server.requests) == n  # verified against the record, not fetched again


def test_http_resume_continues_partial_file(http_server: Served, tmp_path: Path) -> None:
    data = FRAME.read_bytes()
    (http_server.root / "f.jpg").write_bytes(data)
    dest = tmp_path / "f.jpg"
    dest.with_name("f.jpg.part").write_bytes(data[:50_000])
    dest.with_name("f.jpg.part.validator").write_text(etag_of(data))
    fetch(f"{http_server.url}/f.jpg", dest, checksum="md5:" + hashlib.md5(data).hexdigest())
    assert dest.read_bytes() == data
    assert http_server.requests == ["bytes=50000-"]
    assert http_server.bytes == len(data) - 50_000


def test_http_server_ignoring_range_restarts(http_server: Served, tmp_path: Path) -> None:
    data = FRAME.read_bytes()
    (http_server.root / "f.jpg").write_bytes(data)
    http_server.mode = "ignore-range"
    dest = tmp_path / "f.jpg"
    dest.with_name("f.jpg.part").write_bytes(data[:50_000])
    dest.with_name("f.jpg.part.validator").write_text(etag_of(data))
    fetch(f"{http_server.url}/f.jpg", dest)
    assert dest.read_bytes() == data and http_server.bytes == len(data)


def test_http_dropped_connection_resumes_where_it_stopped(http_server: Served, tmp_path: Path) -> None:
    data = FRAME.read_bytes()
    (http_server.root / "f.jpg").write_bytes(data)
    http_server.mode = "drop"
    dest = tmp_path / "f.jpg"
    fetch(f"{http_server.url}/f.jpg", dest, checksum=_sha(FRAME))
    assert dest.read_bytes() == data
    assert http_server.requests == [None, f"bytes={len(data) // 2}-"]
    assert http_server.bytes == len(data)  # nothing was sent twice


def test_checksum_mismatch_moves_file_aside(http_server: Served, tmp_path: Path) -> None:
    (http_server.root / "f.jpg").write_bytes(FRAME.read_bytes())
    dest = tmp_path / "f.jpg"
    with pytest.raises(UserError, match="checksum mismatch for f.jpg"):
        fetch(f"{http_server.url}/f.jpg", dest, checksum="0" * 64)
    assert not dest.exists() and not dest.with_name("f.jpg.part").exists()
    assert dest.with_name("f.jpg.corrupt").read_bytes() == FRAME.read_bytes()


def test_corrupted_file_on_disk_is_refetched(http_server: Served, tmp_path: Path) -> None:
    (http_server.root / "f.jpg").write_bytes(FRAME.read_bytes())
    dest = fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg")
    dest.write_bytes(b"garbage")
    fetch(f"{http_server.url}/f.jpg", dest)
    assert dest.read_bytes() == FRAME.read_bytes() and (tmp_path / "f.jpg.corrupt").read_bytes() == b"garbage"


def test_http_404_is_one_line_user_error(http_server: Served, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"HTTP 404.*missing\.zip|missing\.zip.*HTTP 404"):
        fetch(f"{http_server.url}/missing.zip", tmp_path / "m.zip", retries=0)


def test_davis17_over_http_unpacks_into_davis_layout(http_server: Served, tmp_path: Path) -> None:
    _davis_zip(http_server.root / "DAVIS-2017-trainval-480p.zip")
    target = download_dataset("davis17", source="http", url=http_server.url + "/", to=tmp_path / "davis17")
    seqs = davis_sequences(target, 2017, "val")
    assert [s.name for s in seqs] == ["blackswan", "car-shadow", "libby"]
    for p in seqs[0].frames:
        assert p.read_bytes() == (DAVIS_MINI / "JPEGImages" / "480p" / "blackswan" / p.name).read_bytes()
    assert not (target / ".downloads" / "DAVIS-2017-trainval-480p.zip").exists()  # archive removed
    n = len(http_server.requests)
    download_dataset("davis17", source="http", url=http_server.url + "/", to=target)
    assert len(http_server.requests) == n  # already extracted


# --- file:// and s3:// ----------------------------------------------------------------------------
def test_file_mirror_source(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _davis_zip(mirror / "DAVIS-data.zip", top="DAVIS-2016")
    target = download_dataset("davis16", source="file", url=f"file://{mirror}", to=tmp_path / "d16")
    assert [s.name for s in davis_sequences(target, 2016, "train")] == ["dog-agility"]


def test_s3_mirror_source_with_resume(s3_server, tmp_path: Path) -> None:  # noqa: F811
    mirror = s3_server.root / "test-bucket" / "mirror"
    mirror.mkdir()
    weights = {"stcn.pth": FRAME.read_bytes(), "stcn_s03.pth": FRAME.with_name("00001.jpg").read_bytes()}
    weights |= {"s2m.pth": FRAME.with_name("00002.jpg").read_bytes(), "fusion_stcn.pth": b"fusion weights"}
    for name, data in weights.items():
        (mirror / name).write_bytes(data)
    target = tmp_path / "w"
    target.mkdir()
    (target / "stcn.pth.part").write_bytes(weights["stcn.pth"][:1000])  # an interrupted earlier run
    download_dataset("pretrained", source="s3", url="s3://test-bucket/mirror", to=target)
    for name, data in weights.items():
        assert (target / name).read_bytes() == data
        assert (target / f"{name}.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()


def test_source_not_found_names_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nowhere.zip"):
        download_dataset("davis17", source="file", url=str(tmp_path / "nowhere.zip"), to=tmp_path / "d")


# --- extraction -----------------------------------------------------------------------------------
def _zip_with(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        zf.writestr(name, b"evil")
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil-stcn.txt"])
def test_zip_slip_rejected(tmp_path: Path, name: str) -> None:
    archive = _zip_with(tmp_path / "a.zip", name)
    with pytest.raises(UserError, match=r"escaping|absolute") as e:
        safe_extract(archive, tmp_path / "out")
    assert repr(name) in str(e.value)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-stcn.txt").exists()


def _tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 3 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "bad",
    [
        _info("../evil.txt"),
        _info("/abs/evil.txt"),
        _info("link", tarfile.SYMTYPE, "/etc"),
        _info("d/link", tarfile.SYMTYPE, "../../outside"),
        _info("hard", tarfile.LNKTYPE, "../outside"),
    ],
)
def test_tar_slip_rejected(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    archive = _tar_with(tmp_path / "a.tar", [_info("d/ok.txt"), bad, _info("link/evil.txt")])
    with pytest.raises(UserError, match=repr(bad.name)):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "out"]


def test_tar_symlink_is_refused_even_inside_target(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "a.tar", [_info("d/ok.txt"), _info("d/alias", tarfile.SYMTYPE, "ok.txt")])
    with pytest.raises(UserError, match="symlink .*'d/alias'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "d" / "alias").exists()


@pytest.mark.parametrize("cut", [0.5, "boundary"])
def test_truncated_tar_names_archive(tmp_path: Path, cut) -> None:
    members = bl30k_members(bundled_videos()[:1])[:6]
    full = tmp_path / "full.tar"
    with tarfile.open(full, "w") as tar:
        for name, src in members:
            tar.add(src, name)
    data = full.read_bytes()
    if cut == "boundary":  # cut right after a member: tarfile alone would stop silently
        with tarfile.open(full) as tar:
            infos = tar.getmembers()
        size = infos[3].offset_data + -(-infos[3].size // 512) * 512
    else:
        size = int(len(data) * cut)
    (tmp_path / "cut.tar").write_bytes(data[:size])
    with pytest.raises(UserError, match=r"truncated or corrupt tar archive: .*cut\.tar"):
        safe_extract(tmp_path / "cut.tar", tmp_path / "out")


def test_truncated_zip_names_archive(tmp_path: Path) -> None:
    data = _davis_zip(tmp_path / "full.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"truncated or corrupt zip archive: .*cut\.zip"):
        safe_extract(tmp_path / "cut.zip", tmp_path / "out")


# --- bundled sources -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [d.name for d in load_registry() if has_stand_in(d)])
def test_bundled_source_builds_dataset_layout(tmp_path: Path, name: str) -> None:
    target = download_dataset(name, source="bundled", to=tmp_path / name)
    assert "DAVIS" in (target / "BUNDLED_SAMPLE.md").read_text()
    if name in ("davis16", "davis17"):
        year = name[-2:]
        val = [s.name for s in davis_sequences(target, f"20{year}", "val")]
        assert val == ["blackswan", "car-shadow", "libby"]  # every val sequence can be scored (>= 3 frames)
    elif name == "davis17_testdev":
        seqs = davis_sequences(target, 2017, "test-dev")
        assert all(list(s.annotations) == ["00000"] for s in seqs) and len(seqs[0].frames) == 50
    elif name.startswith("youtube"):
        valid = {s.name: s for s in youtube_sequences(target, "valid")}
        assert len(valid["blackswan"].frames) == 50 and list(valid["blackswan"].annotations) == ["00000"]
        assert sorted(valid["blackswan"].required) == [f"{i:05d}" for i in range(0, 50, 5)]
        if name == "youtube19":
            train = youtube_sequences(target, "train_480p")
            assert len(train) == 5 and all(set(s.annotations) == set(s.stems) for s in train)
    elif name == "static":
        jpgs, pngs = sorted(target.rglob("*.jpg")), sorted(target.rglob("*.png"))
        assert len(jpgs) == len(pngs) > 10
        assert set(np.unique(np.asarray(Image.open(pngs[0])))) <= {0, 255}
        # the real archive's layout: fss/<class>/<n>.jpg|png and <set>/<name>.jpg|png
        sets = {p.relative_to(target).parts[0] for p in jpgs}
        assert sets == {"fss", "DUTS-TR", "DUTS-TE", "ecssd", "BIG_small", "HRSOD_small"}
        assert (target / "fss" / "blackswan" / "1.jpg").is_file() and (target / "fss" / "blackswan" / "1.png").is_file()
        assert all(len(p.relative_to(target).parts) == (3 if p.parts[-3] == "fss" else 2) for p in jpgs)
    elif name == "bl30k":
        with tarfile.open(target / "BL30K_a.tar") as a, tarfile.open(target / "BL30K_b.tar") as b:
            names = a.getnames() + b.getnames()
        assert names[0] == "BL30K/JPEGImages/blackswan/00000.jpg" and len(names) == 2 * 166


def test_pretrained_has_no_bundled_source(tmp_path: Path) -> None:
    with pytest.raises(NeedsInternet, match="skipped: pretrained has no bundled source"):
        download_dataset("pretrained", source="bundled", to=tmp_path / "w")
    run = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "download", "pretrained", "--source", "bundled", "--to", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert run.returncode == 3
    assert run.stderr.strip().splitlines() == ["skipped: pretrained has no bundled source (needs internet: "
                                              "--source gdrive|http|file|s3)"]  # fmt: skip


def test_cli_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    run = stcn("download", "davis17", "--source", "file", "--url", tmp_path / "x.zip", "--to", tmp_path / "d")
    assert one_error(run, alone=True) == f"error: source not found: {tmp_path / 'x.zip'}"


# --- YouTube-VOS train resize ----------------------------------------------------------------------
def test_resize_youtube_split_shorter_side_480(tmp_path: Path) -> None:
    src = tmp_path / "train"
    frame = Image.open(FRAME).resize((1280, 720), Image.BICUBIC)
    mask = Image.open(DAVIS_MINI / "Annotations" / "480p" / "blackswan" / "00000.png")
    tall = src / "JPEGImages" / "tall"
    for folder in (src / "JPEGImages" / "v", src / "Annotations" / "v", tall):
        folder.mkdir(parents=True)
    frame.save(src / "JPEGImages" / "v" / "00000.jpg")
    mask.resize((1280, 720), Image.NEAREST).save(src / "Annotations" / "v" / "00000.png")
    frame.transpose(Image.Transpose.ROTATE_90).save(tall / "00000.jpg")
    out = resize_youtube_split(src, tmp_path / "train_480p", workers=1)
    assert Image.open(out / "JPEGImages" / "v" / "00000.jpg").size == (853, 480)
    assert Image.open(out / "JPEGImages" / "tall" / "00000.jpg").size == (480, 853)
    resized = Image.open(out / "Annotations" / "v" / "00000.png")
    assert resized.size == (853, 480) and resized.mode == "P"
    assert set(np.unique(np.asarray(resized))) == set(np.unique(np.asarray(mask)))  # nearest: labels stay labels


def test_bl30k_segments_come_from_google_drive_by_default_and_a_mirror_overrides():
    from stcn.data.fetch.sources import default_source, file_url

    ds = load_registry().dataset("bl30k")
    assert [a.name for a in ds.files] == [f"BL30K_{c}.tar" for c in "abcdef"]
    assert default_source(ds) == "gdrive"
    urls = [file_url(ds, a, "gdrive") for a in ds.files]
    assert urls[0] == "gdrive://1z9V5zxLOJLNt1Uj7RFqaP2FZWKzyXvVc"
    assert urls[-1] == "gdrive://1nawBAazf_unMv46qGBHhWcQ4JXZ5883r"
    assert len(set(urls)) == 6
    assert file_url(ds, ds.files[2], "http", "https://mirror/bl30k/") == "https://mirror/bl30k/BL30K_c.tar"
    import yaml

    paper = yaml.safe_load((Path(__file__).parent.parent / "conf/profile/paper.yaml").read_text())
    assert paper["download"]["source"] is None  # null: each dataset's default source, gdrive for BL30K
