"""Stream STCN training batches from WebDataset shards on local disk, HTTP(S) or S3.

Sources: a shard path/URL, a brace pattern (`shards/davis/train-{000000..000003}.tar`), or a
dataset folder/prefix holding `index.json` (its `split` shards); several sources may be given
as a list or joined by `::`; `SOURCE*5` weights a source 5x (the stage 2/3 mix "DAVIS x5 +
YouTube-VOS" is `["s3://b/davis*5", "s3://b/youtube"]`). S3 endpoint and credentials come from
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.

Two modes (`make_loader(mode=...)`):
    "resampled"  for DDP training (use this in the trainer): each rank gets a disjoint part of
                 every source, the same number of shards each (`rank_share`); every worker of a
                 rank draws its part's shards with replacement (weights applied) and stops after exactly
                 ceil(samples_per_rank / (batch_size * num_workers)) batches (`with_epoch`), so
                 all ranks take the same number of steps and none waits at the end of an epoch.
    "once"       every (weighted-repeated) sample exactly once per epoch: shards are shuffled
                 per epoch identically on all ranks, then split by rank (`split_by_node`) and by
                 worker (`split_by_worker`). Ranks may get unequal counts: for evaluation/tests.
Rank and world size come from torch.distributed when initialised, else RANK / WORLD_SIZE.

Runtime control: `StreamLoader.set_max_skip(n)` writes a shared-memory value that the
DataLoader worker processes read for every sample (the max_skip curriculum), and each
`iter(loader)` advances a shared epoch counter that re-seeds all randomness as
(seed, rank, worker, epoch) — so runs are reproducible and epochs differ.
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import multiprocessing as mp
import os
import queue
import random
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import braceexpand
import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from stcn.data import s3_limits
from stcn.data.shards.store import shard_urls
from stcn.data.stream.samples import BL30K, VideoRecipe, static_training_sample, video_training_sample
from stcn.errors import UserError

KINDS = ("static", "bl30k", "video")  # a training stage number stands for its recipe's kind (stcn.train.recipe)
SHUFFLE_BUFFER = {"static": 256, "bl30k": 8, "video": 8}  # raw samples held per worker (videos are MBs)
HTTP_TIMEOUT = 30.0
# shard reads: two attempts of at most 10 s without a byte each (s3fs's own retry loop: 2 more), so a server
# that stops answering fails within 60 s with one line naming shard and endpoint
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 10, "retries": {"total_max_attempts": 2, "mode": "standard"}}
S3_BLOCK = 16 << 20
S3_BUFFER = 1 << 20
S3_AHEAD = 64 << 20  # bytes of a shard read ahead per open S3 stream
# STCN_S3_READ=stream (default): whole-object streaming GETs read ahead (s3_stream); =ranges: s3fs range
# reads of S3_BLOCK with its read-ahead cache (the former reader, kept for comparison)
S3_READ_VAR = "STCN_S3_READ"
AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_VARS += ("AWS_REGION", "AWS_DEFAULT_REGION", S3_READ_VAR)
_S3: dict[tuple, Any] = {}
Sources = str | Path | Sequence[str | Path]


# --- URLs ----------------------------------------------------------------------------------
def split_weight(spec: str) -> tuple[str, float]:
    """`PATTERN*5` -> (`PATTERN`, 5.0); no suffix -> weight 1."""
    m = re.fullmatch(r"(.+)\*([0-9]*\.?[0-9]+)", spec.strip())
    pattern, weight = (m.group(1), float(m.group(2))) if m else (spec.strip(), 1.0)
    if weight <= 0:
        raise UserError(f"source weight must be positive: {spec!r}")
    return pattern, weight


def source_groups(urls: Sources, split: str = "train") -> list[tuple[list[str], float]]:
    """(shard URLs, weight) per source, from patterns, dataset folders and `*weight` suffixes."""
    specs = str(urls).split("::") if isinstance(urls, str | Path) else [str(u) for u in urls]
    groups = []
    for spec in specs:
        pattern, weight = split_weight(spec)
        if pattern.endswith(".tar") or "{" in pattern:
            found = list(braceexpand.braceexpand(pattern))
        else:  # a dataset folder / prefix with index.json
            found = shard_urls(pattern, split)
        groups.append((found, weight))
    if not any(found for found, _ in groups):
        raise UserError(f"no shards in {urls!r}")
    return groups


def expand_sources(urls: Sources, split: str = "train") -> tuple[list[str], list[float]]:
    """Shard URLs and their source weights (see `source_groups`), flattened."""
    groups = source_groups(urls, split)
    return [u for found, _ in groups for u in found], [w for found, w in groups for _ in found]


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
        s3_limits.bounded(_S3[cache_key])  # s3fs's own retry loop shortened too
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
    """A raw file over a stream that a background thread reads up to `ahead` bytes in advance
    (the GET body of an S3 object), so the transfer overlaps with decoding in this process."""

    def __init__(self, body: Any, ahead: int, chunk: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead // chunk))
        self._buf, self._pos, self._eof = b"", 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(body, chunk), daemon=True)
        self._thread.start()

    def _fill(self, body: Any, chunk: int) -> None:
        try:
            while not self._stop.is_set():
                data = body.read(chunk)
                self._queue.put(data)
                if not data:
                    break
        except Exception as e:  # handed to the reader, raised there
            self._queue.put(e)
        finally:
            body.close()

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
    """The whole S3 object as one streaming GET (no HEAD, no range requests) that a background
    thread reads up to S3_AHEAD bytes ahead of the consumer (benchmarks/stream.py measures it)."""
    from botocore.exceptions import ClientError

    parsed = urlparse(url)
    try:
        body = s3_client(env).get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket"):
            raise FileNotFoundError(url) from None
        raise
    return io.BufferedReader(_ReadAhead(body, S3_AHEAD, S3_BUFFER), buffer_size=S3_BUFFER)


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
            return open(urlparse(url).path if scheme else url, "rb")
        if scheme in ("s3", "s3a") and (s3_env() if env is None else env).get(S3_READ_VAR, "stream") == "stream":
            return s3_stream(url, env)
        if scheme in ("s3", "s3a"):
            return s3_filesystem(env).open(url, "rb", block_size=S3_BLOCK, cache_type="readahead")
        if scheme in ("http", "https"):
            return urllib.request.urlopen(url, timeout=HTTP_TIMEOUT)
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
            listed = {f"s3://{p}" for p in s3_limits.check_filesystem().ls(folder, refresh=True)}
        except FileNotFoundError:
            listed = set()
        except Exception as e:
            where = f"{sorted(wanted)[0]} at {s3_limits.endpoint()}"
            raise UserError(f"cannot reach S3 for {where}: {_reason(e)}") from None
        listed |= {u.replace("s3://", "s3a://", 1) for u in listed}
        for url in sorted(wanted):
            if url not in listed:
                raise UserError(f"shard not found: {url}")


def read_shard(url: str, stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """Samples (raw bytes per field) of one opened shard; a corrupt shard is a UserError naming it."""
    try:
        files = wds.tariterators.tar_file_expander([{"url": url, "stream": stream}])
        yield from wds.tariterators.group_by_keys(files)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"corrupt or unreadable shard {url}: {_reason(e)}") from None
    finally:
        stream.close()


def _gopen_s3(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> BinaryIO:
    if mode != "rb":
        raise UserError(f"s3 shards are read-only here: {url}")
    return open_shard(url)


# lets plain `webdataset.WebDataset("s3://...")` read S3 once this module is imported
importlib.import_module("webdataset.gopen").gopen_schemes.setdefault("s3", _gopen_s3)


# --- pipeline ------------------------------------------------------------------------------
def rank_and_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed if initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_and_count() -> tuple[int, int]:
    """(DataLoader worker id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class SharedState:
    """Values shared with DataLoader worker processes: the current max_skip and epoch."""

    def __init__(self, max_skip: int) -> None:
        self._max_skip = mp.Value("i", int(max_skip), lock=False)
        self._epoch = mp.Value("i", -1, lock=False)

    @property
    def max_skip(self) -> int:
        return self._max_skip.value

    @max_skip.setter
    def max_skip(self, value: int) -> None:
        if int(value) < 1:
            raise UserError(f"max_skip must be at least 1, got {value}")
        self._max_skip.value = int(value)

    @property
    def epoch(self) -> int:
        return max(0, self._epoch.value)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.value = int(value)


def worker_rng(seed: int, rank: int, epoch: int, salt: int) -> np.random.Generator:
    """The generator of this DataLoader worker for one epoch and purpose (`salt`)."""
    worker, _ = worker_and_count()
    return np.random.default_rng([seed, rank, worker, epoch, salt])


def rank_share(groups: list[tuple[list[str], float]], rank: int, world: int) -> list[tuple[str, float, int, int]]:
    """This rank's disjoint, equal part of every source for resampled training, as (url, weight,
    part, parts): the rank keeps samples i of the shard with i % parts == part. A source's first
    world * (n // world) shards are split by shard (parts 1); the n % world left over are split by
    sample (every rank reads them and keeps every world-th sample). Weights keep the sources' mix."""
    share = []
    for found, weight in groups:
        whole = len(found) - len(found) % world
        share += [(u, weight, 0, 1) for u in found[rank:whole:world]]
        share += [(u, weight, rank, world) for u in found[whole:]]
    return share


class ShardList(IterableDataset):
    """Yields `dict(url=..., part=..., parts=...)` for this rank and worker.

    "resampled": shards of this rank's disjoint share (`rank_share`) drawn with replacement by
    weight; "once": every (weight-repeated) shard once, shuffled alike on all ranks, then split.
    """

    def __init__(
        self,
        groups: list[tuple[list[str], float]],
        mode: str,
        seed: int,
        rank: int,
        world: int,
        state: SharedState,
    ) -> None:
        super().__init__()
        self.groups, self.mode, self.seed = groups, mode, seed
        self.rank, self.world, self.state = rank, world, state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.state.epoch
        if self.mode == "resampled":
            share = rank_share(self.groups, self.rank, self.world)
            rng = worker_rng(self.seed, self.rank, epoch, 1)
            p = np.asarray([w for _, w, _, _ in share]) / sum(w for _, w, _, _ in share)
            while True:
                url, _, part, parts = share[rng.choice(len(share), p=p)]
                yield {"url": url, "part": part, "parts": parts, "share": len(share)}
        order = [u for found, w in self.groups for u in found for _ in range(int(w))]
        np.random.default_rng([self.seed, epoch]).shuffle(order)  # same order on every rank
        worker, workers = worker_and_count()
        mine = order[self.rank :: self.world][worker::workers]  # split_by_node, then split_by_worker
        yield from ({"url": u, "part": 0, "parts": 1} for u in mine)


def opened_ahead(src: Iterator[dict[str, Any]], env: dict[str, str]) -> Iterator[tuple[dict[str, Any], BinaryIO]]:
    """(item, its opened shard), opening the next shard before the current one is handed out, so an
    S3 shard downloads (`s3_stream` reads ahead) while the samples of the one before are decoded."""
    ahead = None
    try:
        for item in src:
            opened = (item, open_shard(item["url"], env))
            if ahead is not None:
                current, ahead = ahead, None
                yield current
            ahead = opened
        if ahead is not None:
            current, ahead = ahead, None
            yield current
    finally:
        if ahead is not None:
            ahead[1].close()


class ReadShards:
    """Open each shard and yield its samples (raw bytes per field) of the item's part; failures name the shard.

    Holds the AWS_* settings of the process that built the pipeline: worker processes started
    by a forkserver do not see environment changes made after the server started.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        empty: set[str] = set()  # shards that hold no sample of this rank's part
        for item, stream in opened_ahead(src, self.env):
            samples = read_shard(item["url"], stream)
            got = False
            for sample in itertools.islice(samples, item["part"], None, item["parts"]):
                got = True
                yield sample
            if not got and "share" in item:
                empty.add(item["url"])
                if len(empty) == item["share"]:  # resampling would spin forever
                    raise UserError(
                        f"no training samples for this rank in its {len(empty)} shard(s) (e.g. {sorted(empty)[0]}): "
                        "fewer samples than ranks; use fewer ranks or re-shard smaller"
                    )


class Shuffle:
    """A per-worker, per-epoch seeded sample shuffle buffer (webdataset's `shuffle`)."""

    def __init__(self, size: int, seed: int, rank: int, state: SharedState) -> None:
        self.size, self.seed, self.rank, self.state = size, seed, rank, state

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        if self.size <= 1:
            yield from src
            return
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 2)
        py_rng = random.Random(int(rng.integers(2**63)))
        yield from wds.shuffle(self.size, max(1, self.size // 2), rng=py_rng)(src)


def static_subset(raw: dict[str, Any]) -> str:
    """The dataset a static shard sample comes from: `static/BIG_small` -> `BIG_small` (else "")."""
    try:
        source = json.loads(raw.get("json") or b"{}").get("source") or ""
    except ValueError:
        return ""
    return source.split("/", 1)[1] if "/" in source else ""


class RepeatBySubset:
    """Yield each static sample `repeats[its dataset]` times (default once): the release's stage-0
    mixture `[fss, DUTS-TR, DUTS-TE, ecssd] + [BIG_small, HRSOD_small] * 5` concatenates the
    high-resolution sets five times; the shuffle buffer after this spreads the copies out."""

    def __init__(self, repeats: dict[str, int]) -> None:
        self.repeats = {k: int(v) for k, v in repeats.items()}

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for raw in src:
            for _ in range(self.repeats.get(static_subset(raw), 1)):
                yield raw


class ToTrainingSample:
    """Map raw shard samples to training samples with the stage's augmentation recipe."""

    def __init__(self, kind: str, crop: int, seed: int, rank: int, state: SharedState) -> None:
        self.kind, self.crop, self.seed, self.rank, self.state = kind, crop, seed, rank, state
        scale = BL30K.crop_scale if kind == "bl30k" else VideoRecipe.crop_scale
        self.recipe = VideoRecipe(crop=crop, crop_scale=scale, bl30k=kind == "bl30k")

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 3)
        worker, _ = worker_and_count()
        skipped = SkipCounter()
        for raw in src:
            try:
                if self.kind == "static":
                    sample = static_training_sample(raw, rng, self.crop)
                else:
                    sample = video_training_sample(raw, rng, self.state.max_skip, self.recipe)
            except CORRUPT_SAMPLE as e:
                skipped.add(raw, e)
                continue
            skipped.good += 1
            sample["info"] |= {"rank": self.rank, "worker": worker, "url": raw.get("__url__"), "skipped": skipped.count}
            yield sample


# what a corrupt JPEG/PNG/JSON payload raises while a sample is decoded (PIL: OSError/SyntaxError/ValueError)
CORRUPT_SAMPLE = (UserError, OSError, ValueError, SyntaxError, KeyError, EOFError)
MAX_CORRUPT = 100  # skipped samples of one worker, when more than half of all it saw: the data is broken


class SkipCounter:
    """Counts the corrupt samples a worker skipped, logging one line naming each one's shard and key."""

    def __init__(self) -> None:
        self.count, self.good = 0, 0

    def add(self, raw: dict[str, Any], error: BaseException) -> None:
        self.count += 1
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = f"sample {raw.get('__key__')!r} of shard {raw.get('__url__')}"
        print(f"warning: skipped corrupt {where}: {reason}", file=sys.stderr, flush=True)
        if self.count >= MAX_CORRUPT and self.count > self.good:
            raise UserError(f"{self.count} of {self.count + self.good} samples are corrupt (last: {where}): {reason}")


def skipped_samples(info: list[dict[str, Any]], seen: dict[tuple, int]) -> int:
    """Update `seen` ((rank, worker) -> skipped so far) from a batch's `info`; the total skipped."""
    for item in info:
        key = (item.get("rank"), item.get("worker"))
        seen[key] = max(seen.get(key, 0), int(item.get("skipped", 0)))
    return sum(seen.values())


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors along a new batch dimension; `info` becomes a list of dicts."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "info"}
    batch["info"] = [s["info"] for s in samples]
    return batch


def data_kind(stage: int | str) -> str:
    """The data kind of a stream: a kind name, or a training stage number (its recipe's kind)."""
    if stage in KINDS:
        return stage
    if isinstance(stage, int):
        from stcn.train.recipe import get_stage

        return get_stage(stage).data
    raise UserError(f"unknown training stage {stage!r} (expected 0-3, 'static', 'bl30k' or 'video')")


def make_dataset(
    urls: Sources,
    stage: int | str,
    batch_size: int,
    *,
    seed: int = 0,
    mode: str = "resampled",
    samples_per_rank: int | None = None,
    num_workers: int = 0,
    max_skip: int = 5,
    crop: int = 384,
    split: str = "train",
    shuffle_buffer: int | None = None,
    check: bool = True,
    state: SharedState | None = None,
    repeats: dict[str, int] | None = None,
) -> wds.DataPipeline:
    """The per-rank WebDataset pipeline yielding collated batches (see `make_loader`)."""
    kind = data_kind(stage)
    if mode not in ("resampled", "once"):
        raise UserError(f"unknown stream mode {mode!r} (expected 'resampled' or 'once')")
    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    groups = source_groups(urls, split)
    weights = sorted({w for _, w in groups})
    if mode == "once" and any(w != int(w) for w in weights):
        raise UserError(f"'once' mode repeats sources a whole number of times; got weights {weights}")
    if check:
        check_shards([u for found, _ in groups for u in found])
    rank, world = rank_and_world()
    state = state or SharedState(max_skip)
    buffer = SHUFFLE_BUFFER[kind] if shuffle_buffer is None else shuffle_buffer
    if repeats and kind != "static":
        raise UserError(f"per-dataset repeats apply to static images (stage 0), not to {kind!r} samples")
    pipeline = wds.DataPipeline(
        ShardList(groups, mode, seed, rank, world, state),
        ReadShards(s3_env()),
        *([RepeatBySubset(repeats)] if repeats else []),
        Shuffle(buffer, seed, rank, state),
        ToTrainingSample(kind, crop, seed, rank, state),
        wds.batched(batch_size, collation_fn=collate, partial=mode == "once"),
    )
    if mode == "resampled":
        if not samples_per_rank or samples_per_rank < 1:
            raise UserError("resampled mode needs samples_per_rank (samples each rank yields per epoch)")
        per_worker = -(-samples_per_rank // (batch_size * max(1, num_workers)))
        pipeline = pipeline.with_epoch(nbatches=per_worker)
    pipeline.state = state
    return pipeline


class StreamLoader:
    """A DataLoader over `make_dataset` with runtime control of max_skip and the epoch."""

    def __init__(self, dataset: wds.DataPipeline, loader: DataLoader, batches: int | None) -> None:
        self.dataset, self.loader, self.batches = dataset, loader, batches
        self.state: SharedState = dataset.state
        self._next_epoch = 0

    @property
    def max_skip(self) -> int:
        return self.state.max_skip

    def set_max_skip(self, value: int) -> None:
        """Change max_skip; workers use it for every sample drawn from now on (prefetched
        batches, at most `num_workers * prefetch_factor`, were drawn with the old value)."""
        self.state.max_skip = value

    def set_epoch(self, epoch: int) -> None:
        """Make the next `iter()` run epoch `epoch` (default: one more than the last)."""
        self._next_epoch = epoch

    def __len__(self) -> int:
        if self.batches is None:
            raise TypeError("the number of batches of a 'once' stream is not known in advance")
        return self.batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.state.epoch = self._next_epoch
        self._next_epoch += 1
        try:
            yield from self.loader
        except UserError as e:  # re-raised from a worker with its traceback: keep one line
            raise UserError(_last_line(str(e))) from None


def _last_line(message: str) -> str:
    marker = "UserError: "
    lines = [ln for ln in message.splitlines() if marker in ln]
    return lines[-1].split(marker, 1)[1] if lines else message.splitlines()[0]


def init_worker(_: int) -> None:
    """DataLoader worker setup: one OpenCV and one torch thread per worker process."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(
    urls: Sources,
    stage: int | str,
    batch_size: int,
    num_workers: int = 2,
    seed: int = 0,
    *,
    mode: str = "resampled",
    samples_per_rank: int | None = None,
    max_skip: int = 5,
    crop: int = 384,
    split: str = "train",
    shuffle_buffer: int | None = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    check: bool = True,
    mp_context: str = "forkserver",
    repeats: dict[str, int] | None = None,
) -> StreamLoader:
    """A loader of batched training tensors for `stage` (0 static, 1 BL30K, 2/3 DAVIS/YouTube-VOS).

    Batches hold `rgb` (B, 3, 3, crop, crop), `gt`/`sec_gt` (B, 3, 1, crop, crop), `cls_gt`
    (B, 3, crop, crop), `first_frame_gt` (B, 2, 1, crop, crop), `selector` (B, 2), `info` (list).
    In "resampled" mode each rank yields `ceil(samples_per_rank / (batch_size * workers))`
    batches per worker per epoch; `check` verifies up front that every shard exists; `repeats`
    ({dataset: n}, stage 0) yields the static samples of those datasets n times (`RepeatBySubset`).
    Workers start by "forkserver": a forked worker deadlocks when the parent has already used
    OpenCV's (or OpenMP's) thread pool, which training code does; scripts need a `__main__` guard.
    """
    state = SharedState(max_skip)
    dataset = make_dataset(
        urls, stage, batch_size, seed=seed, mode=mode, samples_per_rank=samples_per_rank,
        num_workers=num_workers, max_skip=max_skip, crop=crop, split=split,
        shuffle_buffer=shuffle_buffer, check=check, state=state, repeats=repeats,
    )  # fmt: skip
    extra = {}
    if num_workers > 0:
        if mp_context == "forkserver":  # workers fork from a server that has this module imported
            mp.set_forkserver_preload(["__main__", __name__])
        extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor, "multiprocessing_context": mp_context}
    loader = DataLoader(
        dataset, batch_size=None, num_workers=num_workers, worker_init_fn=init_worker, pin_memory=pin_memory, **extra
    )
    batches = dataset.nsamples * max(1, num_workers) if mode == "resampled" else None
    return StreamLoader(dataset, loader, batches)
