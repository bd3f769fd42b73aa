"""Weights that survive Google Drive: the real gdown against a local stand-in Drive (tests/drive_server.py: HTTPS
behind a CONNECT proxy, reached through requests' HTTPS_PROXY / REQUESTS_CA_BUNDLE), and a registry file listing
several sources (Drive id, HTTP URL, more URLs) tried in order, each copy verified by the file's checksum."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch
from drive_server import LARGE, stand_in_drive
from localhttp import serving

from stcn.data.fetch.download import download_dataset, fetch
from stcn.errors import NeedsInternet, UserError


def checkpoint(n: int, seed: int) -> bytes:
    """A real torch checkpoint (torch.save's zip format) of about 4 n bytes."""
    buf = io.BytesIO()
    torch.save({"w": torch.randn(n, generator=torch.Generator().manual_seed(seed))}, buf)
    return buf.getvalue()


@pytest.fixture
def drive(tmp_path: Path, monkeypatch) -> Iterator:
    with stand_in_drive(tmp_path / "drive") as d:
        for key, value in d.env().items():
            monkeypatch.setenv(key, value)
        yield d


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """A local HTTP server: path -> (content type, body); (base URL, that mapping)."""
    pages: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path not in pages:
                self.send_error(404)
                return
            kind, body = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as base:
        yield base, pages


def test_gdown_follows_the_confirm_page_and_a_quota_page_is_one_line_and_never_saved(drive, tmp_path):
    big, small = checkpoint(LARGE // 2, 0), checkpoint(10, 1)
    assert len(big) > LARGE > len(small)
    drive.files = {"big-id": ("stcn.pth", big), "small-id": ("s2m.pth", small)}
    drive.over_quota = {"popular-id"}
    out = tmp_path / "out"
    assert fetch("gdrive://big-id", out / "stcn.pth").read_bytes() == big
    assert fetch("gdrive://small-id", out / "s2m.pth").read_bytes() == small
    confirmed = [r for r in drive.requests if r.startswith("drive.usercontent.google.com /download?id=big-id")]
    assert len(confirmed) == 1 and "confirm=t" in confirmed[0]  # through the virus-scan page's form, with its token
    assert not any("usercontent" in r and "small-id" in r for r in drive.requests)  # a small file comes at once
    with pytest.raises(UserError) as e:
        fetch("gdrive://popular-id", out / "fusion.pth")
    assert str(e.value).startswith("Google Drive quota exceeded for id popular-id: too many users")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in out.iterdir() if "fusion" in p.name) == []  # nothing saved, not even a .part
    with pytest.raises(UserError, match="Google Drive download failed for id missing-id"):
        fetch("gdrive://missing-id", out / "missing.pth")


def registry(path: Path, files: str) -> Path:
    path.write_text(f"datasets: {{}}\nweights:\n  weights:\n    files:\n{files}")
    return path


def test_sources_are_tried_in_order_each_verified_by_its_checksum(drive, web, tmp_path):
    """stcn.pth: Drive over quota, then an HTTP URL answering a sign-in page, then a mirror with other bytes (wrong
    checksum), then the right copy. s2m.pth: its Drive id works, so nothing else is asked."""
    base, pages = web
    real, other, s2m = checkpoint(LARGE // 2, 2), checkpoint(LARGE // 2, 3), checkpoint(LARGE // 2, 4)
    drive.over_quota = {"stcn-id"}
    drive.files = {"s2m-id": ("s2m.pth", s2m)}
    pages["/signin/stcn.pth"] = ("text/html", b"<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    pages["/stale/stcn.pth"] = ("application/octet-stream", other)
    pages["/mirror/stcn.pth"] = ("application/octet-stream", real)
    pages["/mirror/s2m.pth"] = ("application/octet-stream", s2m)
    sha = hashlib.sha256(real).hexdigest()
    conf = registry(
        tmp_path / "registry.yaml",
        f"""\
      - {{name: stcn.pth, gdrive: stcn-id, http: "{base}/signin/stcn.pth", checksum: "sha256:{sha}",
          urls: ["{base}/stale/stcn.pth", "{base}/mirror/stcn.pth"], place: null, marker: null}}
      - {{name: s2m.pth, gdrive: s2m-id, urls: ["{base}/mirror/s2m.pth"], place: null, marker: null}}
""",
    )
    logs: list[str] = []
    to = download_dataset("weights", to=tmp_path / "models", registry=conf, log=logs.append)
    assert (to / "stcn.pth").read_bytes() == real and (to / "s2m.pth").read_bytes() == s2m
    tried = [line for line in logs if "trying" in line]
    assert len(tried) == 3, tried  # quota -> web page -> checksum mismatch -> the mirror
    assert "quota exceeded for id stcn-id" in tried[0] and tried[0].endswith(f"trying {base}/signin/stcn.pth")
    assert "is a web page, not the file" in tried[1] and "checksum mismatch" in tried[2]
    assert not any("s2m" in line for line in tried)
    assert (to / "stcn.pth.corrupt").read_bytes() == other  # the wrong copy is moved aside, never kept as stcn.pth
    # a re-run verifies what it has and asks no source again
    asked = len(drive.requests)
    download_dataset("weights", to=tmp_path / "models", registry=conf, log=logs.append)
    assert len(drive.requests) == asked


def test_every_source_failing_is_one_line_naming_each(drive, web, tmp_path):
    base, pages = web
    drive.over_quota = {"stcn-id"}
    pages["/signin/stcn.pth"] = ("text/html", b"<html><body>Sign in</body></html>")
    conf = registry(
        tmp_path / "registry.yaml",
        f"""\
      - {{name: stcn.pth, gdrive: stcn-id, http: "{base}/signin/stcn.pth", urls: ["{base}/gone/stcn.pth"],
          place: null, marker: null}}
""",
    )
    with pytest.raises(UserError) as e:
        download_dataset("weights", to=tmp_path / "models", registry=conf)
    text = str(e.value)
    assert text.startswith("stcn.pth: every source failed (gdrive://stcn-id: Google Drive quota exceeded")
    assert f"{base}/signin/stcn.pth: " in text and "web page" in text and f"{base}/gone/stcn.pth: " in text
    assert "HTTP 404" in text and "\n" not in text
    assert not (tmp_path / "models" / "stcn.pth").exists()
    # none reachable at all (no internet): NeedsInternet, which the optional download_pretrained stage skips on
    conf = registry(
        tmp_path / "offline.yaml",
        """\
      - {name: stcn.pth, http: "http://host.invalid/stcn.pth", urls: ["http://also.invalid/b/stcn.pth"],
          place: null, marker: null}
""",
    )
    with pytest.raises(NeedsInternet, match="no source reachable"):
        download_dataset("weights", to=tmp_path / "offline", registry=conf)


def test_a_registry_file_s_urls_are_checked(tmp_path):
    conf = registry(tmp_path / "registry.yaml", "      - {name: a.pth, urls: [not-a-url]}\n")
    with pytest.raises(UserError, match="urls must be a list of URLs"):
        download_dataset("weights", to=tmp_path / "m", registry=conf)
