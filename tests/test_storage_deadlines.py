"""An S3 endpoint that accepts and never answers is one line naming it: its deadlines are enforced (a
missing one hangs, and the hang guard fails the test; no wall-clock limit a busy machine can miss)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from clihelp import one_error

from stcn.errors import UserError

HANG_GUARD_S = 900  # far past every deadline of stcn/data/storage.py: only a missing deadline reaches it


@pytest.fixture
def black_hole():
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("data", ["s3://bucket/shards", "s3://bucket/shards/train-000000.tar"])
def test_training_against_a_silent_s3_endpoint_is_one_line_naming_it(black_hole, tmp_path, data):
    env = {**os.environ, "AWS_ENDPOINT_URL": black_hole, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_DEFAULT_REGION": "us-east-1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "stcn.cli", "train", "--stage", "2", "--data", data, "--out", str(tmp_path / "run"),
           "--init", "random", "--iterations", "2", "--device", "cpu", "--num-workers", "0"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    one_error(res, black_hole.removeprefix("http://"), alone=True)


@pytest.mark.parametrize("reader", ["stream", "ranges"])
def test_shard_read_from_a_silent_s3_endpoint_is_one_line_naming_it(black_hole, reader):
    """Past the start-up checks (an endpoint that stops answering mid-training): opening a shard is bounded too."""
    from stcn.data.stream.loader import S3_READ_VAR, open_shard

    env = {"AWS_ENDPOINT_URL": black_hole, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_DEFAULT_REGION": "us-east-1", S3_READ_VAR: reader}  # fmt: skip
    pool = ThreadPoolExecutor(1)
    try:
        with pytest.raises(UserError, match=f"cannot read shard s3://bucket/train-000000.tar at {black_hole}") as e:
            pool.submit(lambda: open_shard("s3://bucket/train-000000.tar", env).read(1)).result(HANG_GUARD_S)
    finally:
        pool.shutdown(wait=False)  # a hung read (no deadline) has failed the test already: do not wait for it
    assert "\n" not in str(e.value)
