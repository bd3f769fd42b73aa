"""Storage at the bottom of `stcn.data`: where bytes come from (local files, HTTP(S), S3) and how.

`fetch`, `shards` and `stream` import this module; it imports nothing of theirs.

- S3 settings: endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
  (`s3_env` captures them for worker processes); `storage_options(url)` gives fsspec options.
- Limits: listing, existence and index calls (`s3_options`, `check_filesystem`) have bounded deadlines:
  an endpoint that accepts connections and never answers is a one-line error naming it well within 60 s
  (botocore's defaults retry for minutes). Worst case per request: s3fs tries it RETRIES times, each one
  botocore attempt of at most `connect_timeout` or `read_timeout`: 2 x 8 s; an existence check may take
  two requests (HEAD, then a listing): about 35 s in all. Shard reads (`S3_CONFIG`): two attempts of at
  most 10 s without a byte each (s3fs's own retry loop: 2 more), within 60 s.
- Transport: `open_shard(url)` opens a shard for one sequential read (S3: consecutive 8 MiB range GETs read
  ahead by a background thread, `s3_stream`; STCN_S3_READ=ranges uses s3fs range reads instead);
  `open_range(url, start, length)` reads one byte range. `fetched_bytes()` counts the bytes this
  process took from storage through both (benchmarks and tests compare it with the bytes used).
"""

from __future__ import annotations

import io
import os
import queue
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from stcn.errors import UserError

# --- limits --------------------------------------------------------------------------------
CHECK_CONFIG = {"connect_timeout": 5, "read_timeout": 8, "retries": {"max_attempts": 1, "mode": "standard"}}
RETRIES = 2


def endpoint() -> str:
    """The S3 endpoint in use, for messages."""
    return os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def s3_options() -> dict[str, Any]:
    """fsspec/s3fs options with bounded timeouts and retries (endpoint from AWS_ENDPOINT_URL when set)."""
    options: dict[str, Any] = {"config_kwargs": CHECK_CONFIG}
    if os.environ.get("AWS_ENDPOINT_URL"):
        options["client_kwargs"] = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    return options


def bounded(fs: Any) -> Any:
    """`fs` with s3fs's own retry loop shortened (a no-op for other file systems)."""
    if getattr(fs, "protocol", None) and "s3" in fs.protocol and hasattr(fs, "retries"):
        fs.retries = RETRIES
    return fs


def check_filesystem() -> Any:
    """A fresh s3fs filesystem for quick metadata calls (credentials and region from the environment)."""
    import s3fs

    return bounded(s3fs.S3FileSystem(skip_instance_cache=True, **s3_options()))


# --- transport -----------------------------------------------------------------------------
HTTP_TIMEOUT = 30.0
# shard reads: two attempts of at most 10 s without a byte each (s3fs's own retry loop: 2 more), so a server
# that stops answering fails within 60 s with one line naming shard and endpoint
S3_CONFIG: dict[str, Any] = {
    "connect_timeout": 5, "read_timeout": 10, "retries": {"total_max_attempts": 2, "mode": "standard"},
}  # fmt: skip


def _checksum_on_request_only() -> None:
    """Validate response checksums only when asked for (botocore >= 1.36 validates them by default): S3-compatible
    servers such as rclone send an uploaded object's whole-object CRC32 with a range GET too, which botocore then
    rejects ("Expected checksum ... did not match"), so range reads of objects uploaded by a current botocore
    (s3fs, `dvc push`) would fail there."""
    try:
        from botocore.config import Config
    except ImportError:  # no S3 support installed: nothing to configure
        return
    if "response_checksum_validation" in Config.OPTION_DEFAULTS:
        for config in (S3_CONFIG, CHECK_CONFIG):  # shard reads, and fsspec opens (BL30K segment scans, listings)
            config["response_checksum_validation"] = "when_required"


_checksum_on_request_only()
S3_BLOCK = 16 << 20
S3_BUFFER = 1 << 20
S3_AHEAD = 64 << 20  # bytes of a shard read ahead per open S3 stream
S3_RANGE = 8 << 20  # bytes per GET of a streamed S3 shard (what an early close still reads)
# STCN_S3_READ=stream (default): consecutive range GETs read ahead (s3_stream); =ranges: s3fs range
# reads of S3_BLOCK with its read-ahead cache (the former reader, kept for comparison)
S3_READ_VAR = "STCN_S3_READ"
AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_VARS += ("AWS_REGION", "AWS_DEFAULT_REGION", S3_READ_VAR)
_S3: dict[tuple, Any] = {}


_FETCHED = [0]  # bytes this process read from storage through open_shard / open_range


def fetched_bytes() -> int:
    """Bytes this process has read from storage (files, HTTP, S3) through this module so far."""
    return _FETCHED[0]


def _count(n: int) -> None:
    _FETCHED[0] += n


class _Counted(io.RawIOBase):
    """A raw reader that counts the bytes it hands out in `fetched_bytes`."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        _count(n or 0)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _counted(raw: Any) -> BinaryIO:
    return io.BufferedReader(_Counted(raw), buffer_size=S3_BUFFER)


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for a URL: for s3:// bounded timeouts and retries, the endpoint from AWS_ENDPOINT_URL."""
    if url.startswith(("s3://", "s3a://")):
        return s3_options()
    return {}


def is_url(path: str) -> bool:
    """True for `scheme://...` locations other than file://."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path)) and not path.startswith("file://")


def s3_env() -> dict[str, str]:
    """The AWS_* settings of this process, captured so worker processes use the same ones."""
    return {k: os.environ[k] for k in AWS_VARS if os.environ.get(k)}


def s3_filesystem(env: dict[str, str] | None = None) -> Any:
    """An s3fs filesystem for this process configured from `env` (default: `s3_env()`)."""
    import s3fs

    env = s3_env() if env is None else env
    cache_key = (os.getpid(), tuple(sorted(env.items())))
    if cache_key not in _S3:
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        _S3[cache_key] = s3fs.S3FileSystem(
            key=env.get("AWS_ACCESS_KEY_ID"),
            secret=env.get("AWS_SECRET_ACCESS_KEY"),
            token=env.get("AWS_SESSION_TOKEN"),
            endpoint_url=env.get("AWS_ENDPOINT_URL"),
            client_kwargs={"region_name": region} if region else {},
            config_kwargs=S3_CONFIG,
            skip_instance_cache=True,
        )
        bounded(_S3[cache_key])  # s3fs's own retry loop shortened too
    return _S3[cache_key]


def s3_client(env: dict[str, str] | None = None) -> Any:
    """A boto3 S3 client for this process configured from `env` (default: `s3_env()`)."""
    import boto3
    from botocore.config import Config

    env = s3_env() if env is None else env
    cache_key = ("boto3", os.getpid(), tuple(sorted(env.items())))
    if cache_key not in _S3:
        _S3[cache_key] = boto3.session.Session().client(
            "s3",
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            endpoint_url=env.get("AWS_ENDPOINT_URL"),
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(**S3_CONFIG),
        )
    return _S3[cache_key]


class _ReadAhead(io.RawIOBase):
    """A raw file over a sequence of HTTP bodies (the ranged GETs of one S3 object) that a background
    thread reads up to `ahead` bytes in advance, so the transfer overlaps with decoding in this process.

    Closing early stops the thread after it has read the rest of the current body (at most S3_RANGE
    bytes): every byte the server sent is read and counted in `fetched_bytes`, none left in flight."""

    def __init__(self, bodies: Iterator[Any], ahead: int, chunk: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead // chunk))
        self._buf, self._pos, self._eof = b"", 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(bodies, chunk), daemon=True)
        self._thread.start()

    def _fill(self, bodies: Iterator[Any], chunk: int) -> None:
        try:
            for body in bodies:
                try:
                    while data := body.read(chunk):
                        _count(len(data))
                        if not self._stop.is_set():
                            self._queue.put(data)
                finally:
                    body.close()
                if self._stop.is_set():
                    return
            self._queue.put(b"")
        except Exception as e:  # handed to the reader, raised there
            self._queue.put(e)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._buf):
            if self._eof:
                return 0
            item = self._queue.get()
            if isinstance(item, Exception):
                raise item
            if not item:
                self._eof = True
                return 0
            self._buf, self._pos = item, 0
        n = min(len(buffer), len(self._buf) - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock the reader thread so it can finish
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)
        super().close()


def s3_stream(url: str, env: dict[str, str] | None = None) -> BinaryIO:
    """The S3 object as consecutive range GETs of S3_RANGE bytes (no HEAD) that a background thread
    reads up to S3_AHEAD bytes ahead of the consumer (benchmarks/stream.py measures it)."""
    from botocore.exceptions import ClientError

    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    client = s3_client(env)

    def get(start: int) -> dict[str, Any]:
        return client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + S3_RANGE - 1}")

    try:
        first = get(0)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise FileNotFoundError(url) from None
        if code in ("416", "InvalidRange"):  # an empty object
            return io.BytesIO(b"")  # type: ignore[return-value]
        raise
    match = re.search(r"/(\d+)$", first.get("ContentRange") or "")
    size = int(match.group(1)) if match else int(first.get("ContentLength") or 0)

    def bodies() -> Iterator[Any]:
        yield first["Body"]
        for start in range(S3_RANGE, size, S3_RANGE):
            yield get(start)["Body"]

    return io.BufferedReader(_ReadAhead(bodies(), S3_AHEAD, S3_BUFFER), buffer_size=S3_BUFFER)


def _scheme(url: str) -> str:
    scheme = urlparse(url).scheme
    return "" if len(scheme) <= 1 else scheme  # "C:" is a drive, not a scheme


def _reason(e: BaseException) -> str:
    return str(e.args[0]) if e.args else type(e).__name__


def open_shard(url: str, env: dict[str, str] | None = None) -> BinaryIO:
    """Open a shard for streaming (S3 configured by `env`, default the AWS_* variables);
    a missing shard or an unreachable server is a one-line UserError naming the URL."""
    scheme = _scheme(url)
    try:
        if scheme in ("", "file"):
            return _counted(io.FileIO(urlparse(url).path if scheme else url, "rb"))
        if scheme in ("s3", "s3a") and (s3_env() if env is None else env).get(S3_READ_VAR, "stream") == "stream":
            return s3_stream(url, env)
        if scheme in ("s3", "s3a"):
            return _counted(s3_filesystem(env).open(url, "rb", block_size=S3_BLOCK, cache_type="readahead"))
        if scheme in ("http", "https"):
            return _counted(urllib.request.urlopen(url, timeout=HTTP_TIMEOUT))
    except FileNotFoundError:
        raise UserError(f"shard not found: {url}") from None
    except urllib.error.HTTPError as e:
        raise UserError(
            f"shard not found: {url} (HTTP {e.code})" if e.code == 404 else f"cannot read shard {url}: {e}"
        ) from None
    except Exception as e:  # connection refused, timeouts, permissions, bad credentials
        endpoint = (s3_env() if env is None else env).get("AWS_ENDPOINT_URL") or "AWS S3"
        where = f" at {endpoint}" if scheme in ("s3", "s3a") else ""
        raise UserError(f"cannot read shard {url}{where}: {_reason(e)}") from None
    raise UserError(f"unsupported shard URL scheme {scheme!r}: {url} (use a path, http(s):// or s3://)")


def check_shards(urls: list[str]) -> None:
    """Fail fast (one line, naming the URL) when a shard is missing or its server unreachable."""
    s3_dirs: dict[str, set[str]] = {}
    for url in dict.fromkeys(urls):
        scheme = _scheme(url)
        if scheme in ("", "file"):
            if not Path(urlparse(url).path if scheme else url).is_file():
                raise UserError(f"shard not found: {url}")
        elif scheme in ("s3", "s3a"):
            s3_dirs.setdefault(url.rsplit("/", 1)[0], set()).add(url)
        else:
            open_shard(url).close()
    for folder, wanted in s3_dirs.items():
        try:
            listed = {f"s3://{p}" for p in check_filesystem().ls(folder, refresh=True)}
        except FileNotFoundError:
            listed = set()
        except Exception as e:
            where = f"{sorted(wanted)[0]} at {endpoint()}"
            raise UserError(f"cannot reach S3 for {where}: {_reason(e)}") from None
        listed |= {u.replace("s3://", "s3a://", 1) for u in listed}
        for url in sorted(wanted):
            if url not in listed:
                raise UserError(f"shard not found: {url}")


RANGE_GAP = 64 << 10  # ranges closer than this are fetched by one request (tar headers between members)


def coalesce(ranges: list[tuple[int, int]], gap: int = RANGE_GAP) -> list[tuple[int, int]]:
    """(start, length) ranges merged where they overlap or lie less than `gap` bytes apart, in order."""
    spans: list[list[int]] = []
    for start, length in sorted(ranges):
        if spans and start <= spans[-1][1] + gap:
            spans[-1][1] = max(spans[-1][1], start + length)
        else:
            spans.append([start, start + length])
    return [(a, b - a) for a, b in spans]


def _get_range(url: str, start: int, length: int, env: dict[str, str] | None) -> bytes:
    scheme = _scheme(url)
    if scheme in ("", "file"):
        with open(urlparse(url).path if scheme else url, "rb") as f:
            f.seek(start)
            data = f.read(length)
    elif scheme in ("s3", "s3a"):
        parsed = urlparse(url)
        end = start + length - 1
        reply = s3_client(env).get_object(
            Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Range=f"bytes={start}-{end}"
        )
        data = reply["Body"].read()
    elif scheme in ("http", "https"):
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{start + length - 1}"})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as reply:
            data = reply.read()
    else:
        raise UserError(f"unsupported URL scheme {scheme!r}: {url} (use a path, http(s):// or s3://)")
    _count(len(data))
    return data


def read_ranges(url: str, ranges: list[tuple[int, int]], env: dict[str, str] | None = None) -> list[bytes]:
    """The bytes of each (start, length) range of `url`, fetched by one request per group of nearby ranges
    (`coalesce`): a reader of a few members of a large tar fetches about their bytes, not the whole object.
    A short read (the object is smaller than the index says) or an unreachable store is a one-line UserError."""
    spans = {}
    try:
        for start, length in coalesce(ranges):
            spans[start] = _get_range(url, start, length, env)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"not found: {url}") from None
    except Exception as e:
        if "NoSuchKey" in str(e) or "404" in str(e):
            raise UserError(f"not found: {url}") from None
        where = f" at {endpoint()}" if _scheme(url) in ("s3", "s3a") else ""
        raise UserError(f"cannot read {url}{where}: {_reason(e)}") from None
    out = []
    starts = sorted(spans)
    for start, length in ranges:
        base = starts[_bisect_right(starts, start) - 1]
        data = spans[base][start - base : start - base + length]
        if len(data) != length:
            raise UserError(f"truncated: {url} ends before byte {start + length}")
        out.append(data)
    return out


def _bisect_right(values: list[int], x: int) -> int:
    import bisect

    return bisect.bisect_right(values, x)
