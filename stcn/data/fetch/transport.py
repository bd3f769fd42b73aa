"""Fetching one file: resumable HTTP(S) with Range, Google Drive (gdown), local / file:// and
s3:// (fsspec) sources; checksummed and atomic (`<name>.part` renamed on success).

A finished file gets `<name>.sha256` (sha256sum format) next to it; a re-run re-verifies the file
against it and skips the download. A checksum mismatch moves the file aside as `<name>.corrupt`.
A file is only declared complete when its length was stated by the source (or its checksum is
known) and, for zip/tar archives, after opening it; a resume is validated against the ETag /
Last-Modified recorded in `<name>.part.validator` (HTTP `If-Range`), so a changed file is never spliced.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import fsspec

from stcn.data.storage import storage_options
from stcn.errors import NeedsInternet, UserError
from stcn.progress import progress_bar

CHUNK = 1 << 20
EXIT_NEEDS_INTERNET = 3
Log = Callable[[str], None]


def parse_checksum(value: str | None) -> tuple[str, str] | None:
    """`sha256:HEX`, `md5:HEX` or a bare hex digest (64 chars sha256, 32 md5) -> (algorithm, hex)."""
    if not value:
        return None
    algo, _, digest = value.rpartition(":")
    digest = digest.strip().lower()
    algo = algo.lower() or {64: "sha256", 32: "md5"}.get(len(digest), "")
    if (
        algo not in ("sha256", "md5")
        or not re.fullmatch(r"[0-9a-f]+", digest)
        or len(digest) != (64 if algo == "sha256" else 32)
    ):
        raise UserError(f"not a sha256/md5 checksum: {value!r}")
    return algo, digest


def file_digests(path: Path) -> dict[str, str]:
    """sha256 and md5 hex digests of a file."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _move_aside(path: Path) -> Path:
    bad = path.with_name(path.name.removesuffix(".part") + ".corrupt")
    os.replace(path, bad)
    return bad


def _verify(path: Path, shown: str, expected: tuple[str, str] | None, recorded: str | None) -> str:
    """sha256 of `path` after checking it against `expected` and a recorded sha256."""
    digests = file_digests(path)
    checks = [("sha256", recorded, "recorded")]
    if expected:
        checks.insert(0, (*expected, "expected"))
    for algo, want, what in checks:
        if want and digests[algo] != want:
            bad = _move_aside(path)
            raise UserError(
                f"checksum mismatch for {shown}: {algo} {digests[algo]} != {what} {want} (moved aside to {bad})"
            )
    return digests["sha256"]


def verified(path: Path, checksum: str | None = None) -> bool:
    """True if `path` exists with a `.sha256` record it still matches (and `checksum`, if given).

    A file that no longer matches is moved aside as `.corrupt` and False is returned.
    """
    rec = record_path(path)
    if not path.is_file() or not rec.is_file():
        return False
    recorded = (rec.read_text().split() or [None])[0]
    try:
        _verify(path, str(path), parse_checksum(checksum), recorded)
        _check_structure(path, str(path))
    except UserError:
        rec.unlink()
        return False
    return True


def _check_structure(path: Path, shown: str, *, length_confirmed: bool = True, checksum: bool = False) -> None:
    """Open an archive before declaring it downloaded (a truncated one is moved aside as `.corrupt`).

    A file whose length the server never stated and whose format cannot be checked is only accepted
    with an expected checksum: a length we did not get is never trusted.
    """
    from stcn.data.fetch.archives import check_complete

    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) and not path.name.lower().removesuffix(".part").endswith(
        (".html", ".htm")
    ):
        bad = _move_aside(path)
        raise UserError(f"{shown} is a web page, not the file (a sign-in, quota or error page; moved aside to {bad})")
    try:
        known = check_complete(path)
    except UserError as e:
        if not length_confirmed:  # cut off before its end: keep the partial file to resume from
            raise UserError(f"incomplete download of {shown}: {e}; re-run to resume") from None
        bad = _move_aside(path)
        raise UserError(f"{e} (from {shown}; moved aside to {bad})") from None
    if known is None and not length_confirmed and not checksum:
        raise UserError(
            f"cannot tell whether {shown} is complete: the server sent no length and the file type cannot be "
            f"checked; pass its checksum (--sha256) or use another source ({path} kept)"
        )


def fetch(
    url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    log: Log = lambda _: None,
) -> Path:
    """Download `url` to `dest` (resuming `dest.part`), verify, record `dest.sha256`, rename.

    `url`: http(s)://..., gdrive://<file id>, s3://bucket/key, file:///path or a local path.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum)
    if verified(dest, checksum):
        log(f"{dest.name}: already downloaded and verified")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if url.startswith(("http://", "https://")):
        confirmed = _fetch_http(url, part, retries=retries, timeout=timeout, log=log)
    elif url.startswith("gdrive://"):
        confirmed = _fetch_gdrive(url.removeprefix("gdrive://"), part, log=log)
    else:
        confirmed = _fetch_fsspec(url, part, log=log)
    _check_structure(part, f"{dest.name} from {url}", length_confirmed=confirmed, checksum=expected is not None)
    sha = _verify(part, f"{dest.name} from {url}", expected, None)
    _validator_path(part).unlink(missing_ok=True)
    os.replace(part, dest)
    record_path(dest).write_text(f"{sha}  {dest.name}\n")
    log(f"{dest.name}: downloaded, sha256 {sha}")
    return dest


def _network_error(url: str, e: BaseException) -> UserError:
    reason = getattr(e, "reason", e)
    if isinstance(reason, socket.gaierror):
        return NeedsInternet(f"cannot resolve the host of {url} (no internet?): {reason}")
    return UserError(f"download failed: {url}: {reason}")


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _mib(size: int) -> int:
    """Bytes in whole MiB, rounded up (a started MiB counts)."""
    return -(-size >> 20)


def _bytes_bar(part: Path, total: int, have: int):
    """Progress of one transfer in MiB (`total` < 0: unknown size)."""
    name = part.name.removesuffix(".part")
    return progress_bar(f"download {name}", _mib(total) if total >= 0 else None, "MiB", start=_mib(have))


def _validator_path(part: Path) -> Path:
    """Where the ETag / Last-Modified (or S3 ETag / mtime) of the file behind `part` is kept."""
    return part.with_name(part.name + ".validator")


def _http_validator(headers) -> str | None:
    """A strong ETag, else Last-Modified: what `If-Range` accepts to prove the file is unchanged."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


class _Changed(Exception):
    """The file behind a partial download changed: restart from zero."""


def _fetch_http(url: str, part: Path, *, retries: int, timeout: float, log: Log) -> bool:
    """Resumable GET: continue `part` with a Range + If-Range request; restart when the server ignores it
    or the file changed. Returns whether the server stated the total length (Content-Length, the total
    of Content-Range, or a terminated chunked body) and `part` has exactly that length."""
    last: BaseException | None = None
    validator = _validator_path(part)
    for attempt in range(retries + 1):
        if attempt and not isinstance(last, _Changed):
            time.sleep(min(0.2 * 2**attempt, 5.0))
        have = part.stat().st_size if part.exists() else 0
        known = validator.read_text() if have and validator.is_file() else None
        if have and not known:
            log(f"{part.name}: no validator (ETag/Last-Modified) for the partial file, restarting")
            have = 0
        headers = {"User-Agent": "stcn-download", **({"Range": f"bytes={have}-", "If-Range": known} if have else {})}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                now = _http_validator(resp.headers)
                length = resp.headers.get("Content-Length")
                chunked = "chunked" in (resp.headers.get("Transfer-Encoding") or "").lower()
                if have and resp.status == 206 and _content_range_start(resp.headers.get("Content-Range")) == have:
                    if now and now != known:  # a server that ignores If-Range but says the file changed
                        part.unlink()
                        validator.unlink(missing_ok=True)
                        raise _Changed(f"{url} changed since the partial download ({known} -> {now})")
                    total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
                    mode = "ab"
                    expected = int(total) if total.isdigit() else have + int(length) if length else -1
                    log(f"{part.name}: resuming at {have} bytes")
                else:
                    if have:
                        log(f"{part.name}: server ignored the Range request or the file changed, restarting")
                    mode, expected = "wb", int(length) if length else -1
                    validator.unlink(missing_ok=True)
                    if now:
                        validator.write_text(now)
                with open(part, mode) as f, _bytes_bar(part, expected, have if mode == "ab" else 0) as bar:
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        bar.update(_mib(f.tell()))
            size = part.stat().st_size
            if expected >= 0 and size != expected:
                raise http.client.IncompleteRead(b"", expected - size)
            return expected >= 0 or chunked
        except _Changed as e:
            last = e
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:
                total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
                if total.isdigit() and int(total) == have:
                    return True  # the partial file was already complete
                part.unlink()
                last = e
                continue
            if e.code < 500 and e.code != 429:
                raise UserError(f"download failed: {url}: HTTP {e.code} {e.reason}") from None
            last = e
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.gaierror):
                raise _network_error(url, e) from None
            last = e
        except (http.client.HTTPException, OSError) as e:
            last = e
        log(f"{part.name}: attempt {attempt + 1} failed ({last!r}); partial file kept")
    size = part.stat().st_size if part.exists() else 0
    raise UserError(
        f"download failed after {retries + 1} attempts: {url} ({last}); re-run to resume {part} ({size} bytes)"
    )


def _fetch_gdrive(file_id: str, part: Path, *, log: Log) -> bool:
    """Google Drive through gdown (which resumes its own partial file)."""
    import gdown

    log(f"{part.name}: Google Drive id {file_id}")
    try:
        gdown.download(id=file_id, output=str(part), quiet=False, resume=True, retries=3)
    except Exception as e:  # gdown raises many types; all are one-line download failures
        cause = e.__cause__ or e.__context__
        if isinstance(cause, socket.gaierror) or "Failed to resolve" in str(e) or "NameResolution" in str(e):
            raise NeedsInternet(f"cannot reach Google Drive for id {file_id} (no internet?)") from None
        text = " ".join(str(e).split())
        if DRIVE_QUOTA in text.lower():
            raise UserError(
                f"Google Drive quota exceeded for id {file_id}: too many users have viewed or downloaded "
                "this file recently (lifted within about 24 hours; or use another source)"
            ) from None
        raise UserError(f"Google Drive download failed for id {file_id}: {text}") from None
    if not part.is_file():
        raise UserError(f"Google Drive download produced no file for id {file_id}")
    return True  # gdown reads through requests/urllib3 2, which raise on a body shorter than its Content-Length


DRIVE_QUOTA = "too many users have viewed or downloaded this file"  # Drive's quota page (gdown quotes it)


def fetch_first(urls: list[str], dest: str | Path, *, checksum: str | None = None, log: Log = lambda _: None) -> Path:
    """`fetch` from the first of `urls` that gives a verified file (checksum, structure, not a web page); each
    failure is logged in one line and the next URL tried. All failing: a UserError naming every URL's reason
    (NeedsInternet when none was reachable)."""
    if not urls:
        raise UserError(f"{Path(dest).name}: no source declared (gdrive, http or urls in the registry)")
    failed: list[tuple[str, UserError]] = []
    for i, url in enumerate(urls):
        try:
            return fetch(url, dest, checksum=checksum, log=log)
        except UserError as e:
            failed.append((url, e))
            if i + 1 < len(urls):
                log(f"{Path(dest).name}: {url} failed: {e}; trying {urls[i + 1]}")
    reasons = "; ".join(f"{url}: {e}" for url, e in failed)
    if len(failed) == 1:
        raise failed[0][1]
    if all(isinstance(e, NeedsInternet) for _, e in failed):
        raise NeedsInternet(f"{Path(dest).name}: no source reachable ({reasons})")
    raise UserError(f"{Path(dest).name}: every source failed ({reasons})")


def _fetch_fsspec(url: str, part: Path, *, log: Log) -> bool:
    """Local path, file:// or s3:// (endpoint from AWS_ENDPOINT_URL); resumes `part` by seeking when the
    source's ETag / mtime and size still match those recorded when `part` was started."""
    have = part.stat().st_size if part.exists() else 0
    validator = _validator_path(part)
    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
        info = fs.info(path)
        total = int(info["size"])
        now = f"{info.get('ETag') or info.get('mtime') or info.get('LastModified') or ''} {total}"
        if have and (have > total or not validator.is_file() or validator.read_text() != now):
            log(f"{part.name}: the source changed or has no record for the partial file, restarting")
            have = 0
        validator.write_text(now)
        if have:
            log(f"{part.name}: resuming at {have} bytes")
        with (
            fs.open(path, "rb") as src,
            open(part, "ab" if have else "wb") as out,
            _bytes_bar(part, total, have) as bar,
        ):
            src.seek(have)
            while chunk := src.read(CHUNK):
                out.write(chunk)
                bar.update(_mib(out.tell()))
    except FileNotFoundError:
        raise UserError(f"source not found: {url}") from None
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"cannot read {url}: {e}") from None
    if part.stat().st_size != total:
        raise UserError(f"incomplete copy of {url}: {part.stat().st_size} of {total} bytes; re-run to resume")
    return True
