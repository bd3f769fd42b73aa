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
from stcn.names import check_name, check_relative, inside
from stcn.progress import progress_bar
from stcn.registry import Dataset, load_registry

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


# --- whole datasets ------------------------------------------------------------------------------
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


def davis16_image_sets(root: Path) -> None:
    """Derive `ImageSets/2016/<split>.txt` (sequence names) from DAVIS 2016's `ImageSets/480p` lists."""
    for split in ("train", "val", "trainval"):
        src, dst = root / "ImageSets" / "480p" / f"{split}.txt", root / "ImageSets" / "2016" / f"{split}.txt"
        if src.is_file() and not dst.exists():
            names = []
            for line in src.read_text().split():
                parts = [p for p in line.split("/") if p]
                if line.startswith("/JPEGImages") and len(parts) >= 3 and parts[2] not in names:
                    names.append(parts[2])
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("".join(f"{n}\n" for n in names))


def _resize_one(args: tuple[Path, Path, int]) -> None:
    from PIL import Image

    src, dst, size = args
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(src) as im:
            w, h = im.size
            if min(w, h) == size:
                dst.write_bytes(src.read_bytes())
                return
            new = (size, round(h * size / w)) if w < h else (round(w * size / h), size)
            if src.suffix.lower() == ".png":  # a mask: labels must stay labels
                im.resize(new, Image.NEAREST).save(dst)
            else:
                im.convert("RGB").resize(new, Image.BICUBIC).save(dst, quality=90)
    except OSError as e:
        raise UserError(f"cannot resize {src}: {e}") from None


def resize_youtube_split(src: str | Path, dst: str | Path, size: int = 480, workers: int | None = None,
                         log: Log = lambda _: None) -> Path:  # fmt: skip
    """Copy a YouTube-VOS split (`JPEGImages/`, `Annotations/`) with the shorter side resized to
    `size` (frames bicubic, masks nearest, palette kept), like the original `train_480p`.
    Written to `dst.tmp` and renamed, so an existing `dst` is complete."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        log(f"{dst} exists: already resized")
        return dst
    if not (src / "JPEGImages").is_dir():
        raise UserError(f"not a YouTube-VOS split folder (no JPEGImages/): {src}")
    tmp = dst.with_name(dst.name + ".tmp")
    jobs = [
        (p, tmp / p.relative_to(src), size)
        for sub in ("JPEGImages", "Annotations")
        for p in sorted((src / sub).rglob("*"))
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    ]
    log(f"resizing {len(jobs)} images of {src} to shorter side {size}")
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            try:
                list(pool.map(_resize_one, jobs, chunksize=64))
            except BrokenProcessPool:
                raise UserError("a resize worker process died (killed or out of memory); re-run it") from None
    else:
        for job in jobs:
            _resize_one(job)
    os.replace(tmp, dst)
    return dst


def download_dataset(
    name: str | Dataset,
    *,
    source: str | None = None,
    to: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    resize: bool = True,
    keep_archives: bool = False,
    log: Log = lambda _: None,
    registry: str | Path | None = None,
) -> Path:
    """Fetch (or build, for `bundled`) dataset `name` into `to` (default `data/<name>`) in its own layout.

    `name`: a registry entry, or its name in the registry file `registry` (see `stcn.registry.load_registry`).
    `source` None (and no `url`): each file from its own sources in the registry, tried in order (Drive id, HTTP
    URL, `urls`), each copy verified against the file's checksum.
    Archives are verified, extracted safely, and removed unless `keep_archives`; BL30K segments and
    weights are kept as files. A YouTube-VOS train split is also resized into `train_480p` (`resize`).
    """
    from stcn.data.fetch.sources import SOURCES, build_bundled, default_source, file_url, has_stand_in, own_sources

    ds = name if isinstance(name, Dataset) else load_registry(registry).dataset(name)
    own = source is None and not url  # every file from its own sources, in order
    source = source or default_source(ds)
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r} (one of: {', '.join(SOURCES)})")
    target = Path(to) if to else Path("data") / check_name(ds.name, "dataset name")
    for art in ds.files:  # names from the registry stay inside the target (checked there too)
        inside(target, Path(check_name(art.name, f"{ds.name}: file name")), f"{ds.name}: file {art.name}")
        if art.place is not None:
            inside(target, check_relative(art.place, f"{ds.name}: file {art.name}: place"), f"{ds.name}: place")
    if sha256 and len(ds.files) > 1:
        raise UserError(f"--sha256 needs a single-file dataset; {ds.name} has {len(ds.files)} files")
    if source != "bundled" and not ds.files:
        raise UserError(f"{ds.name} declares no files to download (registry `files`); only --source bundled")
    if source != "bundled" or has_stand_in(ds):
        claim_target(target, ds.name)
    if source == "bundled":
        build_bundled(ds, target, log)
    else:
        for art in ds.files:
            where = own_sources(art) if own else [file_url(ds, art, source, url)]
            checksum = f"sha256:{sha256}" if sha256 and ":" not in sha256 else sha256 or art.checksum
            if art.place is None:
                fetch_first(where, target / art.name, checksum=checksum, log=log)
            else:
                _install_archive(where, art, target, checksum, keep_archives, log)
        if ds.layout == "davis" and ds.year == 2016:
            davis16_image_sets(target)
    if ds.layout == "youtube" and "train" in ds.splits and resize:
        resize_youtube_split(target / "train", target / "train_480p", log=log)
    return target
