"""Sharding the real bundled DAVIS frames (DAVIS 2016/2017, CC BY-NC 4.0) into WebDataset tars."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest
import webdataset as wds
from clihelp import one_error, stcn
from conftest import own_davis_folder
from PIL import Image
from s3_server import s3_server  # noqa: F401  (pytest fixture)

from stcn.data.fetch.download import download_dataset
from stcn.data.fetch.sources import DAVIS_MINI, bl30k_members, bundled_videos, write_tar
from stcn.data.shards.build import shard_bl30k, shard_davis, shard_generic, shard_static, shard_youtube
from stcn.data.shards.format import INDEX, decode_mask, decode_static_sample, decode_video_sample, unsafe_key
from stcn.data.shards.parallel import merge_parts
from stcn.data.shards.store import shard_urls
from stcn.errors import UserError
from stcn.registry import load_registry

BL30K = load_registry().dataset("bl30k")  # its segment files
MB = 2**-20  # shard sizes below are given in MiB


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """davis17 / youtube19 / static / bl30k stand-ins built from the bundled sample."""
    root = tmp_path_factory.mktemp("bundled")
    for name in ("davis17", "youtube19", "static", "bl30k"):
        download_dataset(name, source="bundled", to=root / name)
    return root


def _read(url: str) -> list[dict]:
    return list(wds.WebDataset(url, shardshuffle=False, empty_check=False))


def _shards(out: Path, split: str) -> list[Path]:
    return [Path(u) for u in shard_urls(str(out), split)]


def _digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.parametrize("check", ["header", "full"])
def test_davis_shards_hold_original_bytes(bundled: Path, tmp_path: Path, check: str) -> None:
    root = bundled / "davis17"
    index = shard_davis(root, str(tmp_path / "s"), year=2017, split="val", shard_size_mb=6, check=check, workers=2)
    entry = index["splits"]["val"]
    assert entry["complete"] and entry["totals"]["samples"] == 3 and entry["totals"]["shards"] >= 2
    seen = []
    for url in _shards(tmp_path / "s", "val"):
        for raw in _read(str(url)):
            v = decode_video_sample(raw)
            name = v.meta["video"]
            seen.append(name)
            frames = sorted((root / "JPEGImages" / "480p" / name).glob("*.jpg"))
            assert v.stems == [p.stem for p in frames] == v.meta["annotated"]
            for stem, data, path in zip(v.stems, v.frames, frames, strict=True):
                assert data == path.read_bytes()
                assert v.masks[stem] == (root / "Annotations" / "480p" / name / f"{stem}.png").read_bytes()
            assert v.meta["size"] == [480, 854] and v.meta["source"] == "davis2017/val"
            objects = [1, 2] if name == "tennis" else [1]
            assert v.meta["objects"] == (objects if check == "full" else None)  # labels need decoding
    assert seen == ["blackswan", "car-shadow", "libby"]
    sizes = {s["name"]: s["bytes"] for s in entry["shards"]}
    assert all(sizes[p.name] == p.stat().st_size for p in _shards(tmp_path / "s", "val"))
    assert decode_mask(v.masks["00000"]).max() == 1


def test_deterministic_byte_identical(bundled: Path, tmp_path: Path) -> None:
    for out in ("a", "b"):
        shard_davis(bundled / "davis17", str(tmp_path / out), split="val", shard_size_mb=6)
    a, b = _shards(tmp_path / "a", "val"), _shards(tmp_path / "b", "val")
    assert [p.name for p in a] == [p.name for p in b] and _digests(a) == _digests(b)
    with tarfile.open(a[0]) as tar:
        info = tar.getmembers()[0]
    assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)
    assert info.name == "blackswan.json"


def test_resume_after_interrupt_and_damaged_shard(bundled: Path, tmp_path: Path, monkeypatch) -> None:
    shard_davis(bundled / "davis17", str(tmp_path / "ref"), split="val", shard_size_mb=5)
    ref = _digests(_shards(tmp_path / "ref", "val"))
    import stcn.data.shards.inputs as inputs

    real, calls = inputs.video_sample_members, []

    def dying(*args, **kw):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while reading the 3rd video (2nd shard still open)
        return real(*args, **kw)

    monkeypatch.setattr(inputs, "video_sample_members", dying)
    with pytest.raises(KeyboardInterrupt):
        shard_davis(bundled / "davis17", str(tmp_path / "out"), split="val", shard_size_mb=5, workers=1)
    monkeypatch.setattr(inputs, "video_sample_members", real)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == [INDEX, "val-000000.tar"]  # no partial shard visible
    assert not json.loads((tmp_path / "out" / INDEX).read_text())["splits"]["val"]["complete"]
    logs = []
    shard_davis(bundled / "davis17", str(tmp_path / "out"), split="val", shard_size_mb=5, log=logs.append)
    assert "val: resuming after 1 complete shards (1 samples)" in logs
    assert _digests(_shards(tmp_path / "out", "val")) == ref
    # a damaged shard is rewritten from there on
    victim = tmp_path / "out" / "val-000001.tar"
    victim.write_bytes(victim.read_bytes()[:1000])
    logs.clear()
    shard_davis(bundled / "davis17", str(tmp_path / "out"), split="val", shard_size_mb=5, log=logs.append)
    assert "val: resuming after 1 complete shards (1 samples)" in logs
    assert _digests(_shards(tmp_path / "out", "val")) == ref


def _repeated_bl30k(path: Path, copies: int) -> Path:
    videos = [(f"{name}-{k}", frames) for k in range(copies) for name, frames in bundled_videos()]
    return write_tar(path, bl30k_members(sorted(videos)))


def _spool(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty TMPDIR of its own for a shard subprocess (its workers hand samples over there), and the
    environment that names it."""
    spool = tmp_path / "tmpdir"
    spool.mkdir()
    return spool, {**os.environ, "TMPDIR": str(spool)}


def test_killed_subprocess_resumes_to_identical_shards(tmp_path: Path) -> None:
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=8)
    shard_bl30k([seg], str(tmp_path / "ref"), shard_size_mb=4)
    cmd = [sys.executable, "-m", "stcn.cli", "shard", "bl30k", "--segments", str(seg), "--out", str(tmp_path / "out"),
           "--shard-size-mb", "4", "--workers", "2"]  # fmt: skip
    spool, env = _spool(tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    index = tmp_path / "out" / INDEX
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if index.exists() and len(json.loads(index.read_text() or "{}").get("shards", [])) >= 3:
            workers = psutil.Process(proc.pid).children()
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert workers, "the run had no worker processes"
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "worker processes outlived their killed writer"
    assert not list(spool.iterdir()), "the workers of the killed writer left its spool behind"
    assert not json.loads(index.read_text())["splits"]["train"]["complete"]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert "train: resuming after" in run.stderr and not list(spool.iterdir())
    assert _digests(_shards(tmp_path / "out", "train")) == _digests(_shards(tmp_path / "ref", "train"))
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _samples(out: Path) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """Every sample of the train split (key, sorted fields with bytes), in shard order."""
    return [(r["__key__"], sorted((k, v) for k, v in r.items() if not k.startswith("__")))
            for url in _shards(out, "train") for r in _read(str(url))]  # fmt: skip


@pytest.mark.parametrize("check", ["header", "full"])
def test_workers_write_the_shards_of_one_process(tmp_path: Path, check: str) -> None:
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=2)
    shard_bl30k([seg], str(tmp_path / "one"), shard_size_mb=4, check=check, workers=1)
    shard_bl30k([seg], str(tmp_path / "two"), shard_size_mb=4, check=check, workers=2)
    one = _shards(tmp_path / "one", "train")
    assert len(one) >= 3 and _digests(one) == _digests(_shards(tmp_path / "two", "train"))


def test_killed_worker_of_a_part_resumes_and_parts_merge_to_a_single_run(tmp_path: Path) -> None:
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=8)
    shard_bl30k([seg], str(tmp_path / "single"), shard_size_mb=4, workers=1)
    shard_bl30k([seg], str(tmp_path / "ref"), shard_size_mb=4, workers=1, part="1/2")
    cmd = [sys.executable, "-m", "stcn.cli", "shard", "bl30k", "--segments", str(seg), "--out", str(tmp_path / "out"),
           "--shard-size-mb", "4", "--workers", "2", "--part", "1/2"]  # fmt: skip
    spool, env = _spool(tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    index = tmp_path / "out" / "parts" / "1-of-2" / INDEX
    deadline, killed = time.monotonic() + 60, None
    while time.monotonic() < deadline and proc.poll() is None and killed is None:
        children = psutil.Process(proc.pid).children()
        if children and index.exists() and json.loads(index.read_text() or "{}").get("shards"):
            killed = children[-1].pid
            os.kill(killed, signal.SIGKILL)  # one worker process, not the writer
        time.sleep(0.01)
    assert killed, "the run finished before a worker could be killed"
    others = [c for c in children if c.pid != killed]
    err = proc.communicate(timeout=60)[1]
    _gone, alive = psutil.wait_procs(others, timeout=10)
    assert not alive, "the other worker outlived the failed run"
    assert proc.returncode == 2 and err.strip().splitlines()[-1].startswith("error: a shard worker process died"), err
    assert not json.loads(index.read_text())["splits"]["train"]["complete"]
    assert not list(spool.iterdir()), "the failed run left its spool behind"
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert "train: resuming after" in run.stderr and not list(spool.iterdir())
    assert _digests(_shards(tmp_path / "out" / "parts" / "1-of-2", "train")) == _digests(
        _shards(tmp_path / "ref" / "parts" / "1-of-2", "train")
    )
    shard_bl30k([seg], str(tmp_path / "out"), shard_size_mb=4, workers=2, part="0/2")
    merged = subprocess.run([sys.executable, "-m", "stcn.cli", "shard", "merge", "--out", str(tmp_path / "out"),
                             "--parts", "2"], capture_output=True, text=True, check=True)  # fmt: skip
    assert "train: 40 samples" in merged.stderr
    assert _samples(tmp_path / "out") == _samples(tmp_path / "single")


def test_process_group_kill_leaves_a_spool_that_the_resumed_run_removes(tmp_path: Path) -> None:
    """A SIGKILL of the whole process group (writer and workers at once, as a scheduler does) leaves no
    process to clean up; the resumed run removes the dead run's spool before it starts its own."""
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=8)
    cmd = [sys.executable, "-m", "stcn.cli", "shard", "bl30k", "--segments", str(seg), "--out", str(tmp_path / "out"),
           "--shard-size-mb", "4", "--workers", "2"]  # fmt: skip
    spool, env = _spool(tmp_path)
    live = spool / "stcn-shard-1-live"  # a spool of a live writer (pid 1) sharing this TMPDIR: kept
    live.mkdir()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    index = tmp_path / "out" / INDEX
    deadline, killed = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None:
        if index.exists() and json.loads(index.read_text() or "{}").get("shards"):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    assert killed and proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    time.sleep(1)  # the killed group is gone (no worker survives to clean up)
    left = [p for p in spool.iterdir() if p != live]
    assert [p.name.split("-")[2] for p in left] == [str(proc.pid)], "the killed run left no spool to test with"
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert "train: resuming after" in run.stderr
    assert list(spool.iterdir()) == [live]


def test_streamed_bl30k_spools_in_its_work_folder_and_a_resume_removes_old_ones(bundled: Path, tmp_path: Path) -> None:
    from stcn.data.shards import parallel
    from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

    names, fetch = segment_fetcher(BL30K, "file", str(bundled / "bl30k"), lambda _: None)
    work, roots = tmp_path / "work", []
    stale = work / "stcn-shard-4242-old"  # left by a killed run of this stage
    (stale / "x").parent.mkdir(parents=True)
    (stale / "x").write_bytes(b"0" * 1000)
    real = parallel.tempfile.mkdtemp
    parallel.tempfile.mkdtemp = lambda **kw: roots.append(kw["dir"]) or real(**kw)
    try:
        shard_bl30k_streamed(names[:2], fetch, str(tmp_path / "out"), work, shard_size_mb=4, workers=2)
    finally:
        parallel.tempfile.mkdtemp = real
    assert roots and {Path(r) for r in roots} == {work}
    assert sorted(p.name for p in work.iterdir()) == ["state.json"]


def test_default_workers_keep_the_spool_under_its_limit() -> None:
    from stcn.data.shards.parallel import SPOOL_LIMIT, in_flight

    assert in_flight(64, 0, SPOOL_LIMIT) == 256  # nothing read yet
    assert in_flight(64, 23 << 20, SPOOL_LIMIT) * (23 << 20) <= SPOOL_LIMIT  # BL30K-sized videos
    assert in_flight(64, 23 << 20, None) == 256  # --workers 64: the user asked for it
    assert in_flight(2, 2 << 30, SPOOL_LIMIT) == 1


def test_parts_are_balanced_by_bytes_when_sizes_are_known() -> None:
    from stcn.data.shards.parallel import part_bounds

    assert part_bounds([100] + [1] * 9, 2) == [0, 1, 10]  # by count: [0, 5, 10], 104 vs 5 bytes
    assert part_bounds([50, 1, 1, 1, 1, 1, 1, 1, 1, 50], 2) == [0, 5, 10]
    assert part_bounds([1] * 10, 3) == [0, 3, 7, 10]
    assert part_bounds([0, 5, 5], 2) == [0, 1, 3]  # a size unknown: by count
    assert part_bounds([], 2) == [0, 0, 0]
    assert part_bounds([10, 10], 4)[-1] == 2  # more parts than samples: some are empty


def test_a_part_run_reads_the_stored_index_and_fetches_little_of_the_other_parts(tmp_path: Path, s3_server) -> None:  # noqa: F811
    """Index once (the scan fetches every byte; part runs load the small index instead); parts are balanced by
    bytes; a part run over S3 fetches its own videos' bytes and < 5 % of the other part's (counted at a proxy
    in front of the rclone server)."""
    from s3_server import ByteCountingProxy

    from stcn.data.shards.bl30k import Bl30kIndex
    from stcn.data.shards.build import bl30k_member_index
    from stcn.data.shards.parallel import part_bounds

    seg = _repeated_bl30k(s3_server.root / "test-bucket" / "BL30K_a.tar", copies=4)
    url, index_url = "s3://test-bucket/BL30K_a.tar", "s3://test-bucket/bl30k-index.npz"
    logs: list[str] = []
    scanned = bl30k_member_index([url], index_url, logs.append)  # the one scan: writes the index
    assert f"member index written to {index_url}" in logs
    videos = [(name, scanned.video_bytes(rows)) for name, rows in scanned.groups()]
    sizes = [b for _, b in videos]
    for parts in (2,):  # 20 videos of 2-6 MB: finer splits are too coarse-grained to be within 10 %
        bounds = part_bounds(sizes, parts)
        per_part = [sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        assert max(per_part) / (sum(per_part) / parts) <= 1.1, per_part
    bounds = part_bounds(sizes, 2)
    own, other = sum(sizes[: bounds[1]]), sum(sizes[bounds[1] :])
    proxy = ByteCountingProxy(s3_server.endpoint_url)
    try:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint_url  # restored by the fixture's monkeypatch
        logs.clear()
        index = shard_bl30k([url], str(tmp_path / "out"), shard_size_mb=4, part="0/2", index=index_url,
                            workers=1, log=logs.append)  # fmt: skip
        fetched = proxy.received
    finally:
        proxy.stop()
    assert f"reading the member index {index_url}" in logs and not any("indexing" in m for m in logs)
    assert index["splits"]["train"]["totals"]["samples"] == bounds[1]
    assert own <= fetched < own + 0.05 * other, (fetched, own, other)
    # the same index re-read for a segment of another size is refused
    with open(seg, "ab") as f:
        f.write(bytes(1024))
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a new process: no listing cached from the runs above
    time.sleep(1.5)  # past the server's 1 s directory cache
    with pytest.raises(UserError, match="BL30K segment s3://test-bucket/BL30K_a.tar has changed since"):
        Bl30kIndex.load(index_url, [url])


def test_merge_needs_every_part_finished(tmp_path: Path) -> None:
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=1)
    shard_bl30k([seg], str(tmp_path / "out"), part="0/3")
    with pytest.raises(UserError, match=r"part parts/1-of-3 of 'train' is missing or unfinished"):
        merge_parts(str(tmp_path / "out"), "train", 3)
    with pytest.raises(UserError, match="--part must be I/N"):
        shard_bl30k([seg], str(tmp_path / "out"), part="3/3")


def test_header_check_catches_truncated_and_foreign_files(davis_copy: Path, tmp_path: Path) -> None:
    mask = davis_copy / "Annotations" / "480p" / "libby" / "00003.png"
    mask.write_bytes(mask.read_bytes()[:-30])
    with pytest.raises(UserError, match=f"corrupt mask PNG: {mask} \\(no IEND"):
        shard_davis(davis_copy, str(tmp_path / "s"), split="val", check="header")
    frame = davis_copy / "JPEGImages" / "480p" / "blackswan" / "00001.jpg"
    Image.open(frame).save(frame, format="PNG")  # a PNG under a .jpg name
    with pytest.raises(UserError, match=f"not a JPEG \\(PNG\\): {frame}"):
        shard_davis(davis_copy, str(tmp_path / "s"), split="val", check="header")
    with pytest.raises(UserError, match="unknown check level 'fast'"):
        shard_davis(davis_copy, str(tmp_path / "s"), split="val", check="fast")


def test_youtube_subset(bundled: Path, tmp_path: Path) -> None:
    listed = tmp_path / "subset.txt"
    listed.write_text("libby\nblackswan\n")
    index = shard_youtube(bundled / "youtube19", str(tmp_path / "s"), subset=listed)
    assert index["totals"]["samples"] == 2
    keys = [k for k, _ in _samples(tmp_path / "s")]
    assert keys == ["blackswan", "libby"]
    listed.write_text("libby\nnot-there\n")
    with pytest.raises(UserError, match="1 video\\(s\\) of .*subset.txt are not in .*, e.g. not-there"):
        shard_youtube(bundled / "youtube19", str(tmp_path / "s2"), subset=listed)
    shipped = Path(__file__).parent.parent / "stcn" / "data" / "youtube_train_subset.txt"
    assert len(shipped.read_text().split()) == 3464


def test_bl30k_members_far_apart_across_segments(bundled: Path, tmp_path: Path) -> None:
    members = bl30k_members(bundled_videos())
    random.Random(0).shuffle(members)  # frames and masks of a video scattered over three segments
    thirds = [members[i::3] for i in range(3)]
    segs = [write_tar(tmp_path / f"BL30K_{c}.tar", part) for c, part in zip("abc", thirds, strict=True)]
    shard_bl30k(segs, str(tmp_path / "scattered"), shard_size_mb=8)
    grouped = sorted((bundled / "bl30k").glob("BL30K_*.tar"))
    shard_bl30k(grouped, str(tmp_path / "grouped"), shard_size_mb=8)
    out = _shards(tmp_path / "scattered", "train")
    assert _digests(out) == _digests(_shards(tmp_path / "grouped", "train"))
    videos = dict(bundled_videos())
    for url in out:
        for raw in _read(str(url)):
            v = decode_video_sample(raw)
            frames = videos[unsafe_key(v.key)]
            assert v.meta["source"] == "bl30k" and v.stems == [s for s, _, _ in frames]
            assert v.frames == [j.read_bytes() for _, j, _ in frames]
            assert [v.masks[s] for s in v.stems] == [p.read_bytes() for _, _, p in frames]


def test_youtube_and_static(bundled: Path, tmp_path: Path) -> None:
    shard_youtube(bundled / "youtube19", str(tmp_path / "yt"), split="valid")
    (raw,) = [r for r in _read(str(_shards(tmp_path / "yt", "valid")[0])) if r["__key__"] == "blackswan"]
    v = decode_video_sample(raw)
    assert len(v.frames) == 50 and v.meta["annotated"] == ["00000"] and v.meta["required"][:2] == ["00000", "00005"]
    shard_youtube(bundled / "youtube19", str(tmp_path / "yt"), split="train")
    assert decode_video_sample(_read(str(_shards(tmp_path / "yt", "train")[0]))[0]).meta["source"] == "youtube/train"
    index = shard_static(bundled / "static", str(tmp_path / "st"))
    assert index["totals"]["samples"] == len(list((bundled / "static").rglob("*.jpg")))
    s = decode_static_sample(_read(str(_shards(tmp_path / "st", "train")[0]))[0])
    assert s.meta["name"] == "BIG_small/blackswan_00040" and s.key == "BIG_small~2Fblackswan_00040"
    assert s.meta["source"] == "static/BIG_small"
    assert s.jpg == (bundled / "static" / "BIG_small" / "blackswan_00040.jpg").read_bytes()


def test_s3_output_matches_local_and_resumes(bundled: Path, tmp_path: Path, s3_server) -> None:  # noqa: F811
    shard_davis(bundled / "davis17", str(tmp_path / "local"), split="val", shard_size_mb=5)
    url = "s3://test-bucket/shards/davis17"
    shard_davis(bundled / "davis17", url, split="val", shard_size_mb=5)
    urls = shard_urls(url, "val")
    assert urls[0] == "s3://test-bucket/shards/davis17/val-000000.tar"
    stored = s3_server.root / "test-bucket" / "shards" / "davis17"
    remote = [stored / u.rsplit("/", 1)[1] for u in urls]
    assert _digests(remote) == _digests(_shards(tmp_path / "local", "val"))
    import fsspec

    fsspec.filesystem("s3", **s3_server.storage_options()).rm(urls[-1])  # lost object: only it is rewritten
    logs = []
    shard_davis(bundled / "davis17", url, split="val", shard_size_mb=5, log=logs.append)
    assert f"val: resuming after {len(remote) - 1} complete shards ({len(remote) - 1} samples)" in logs
    assert _digests(remote) == _digests(_shards(tmp_path / "local", "val"))
    assert sorted(p.name for p in stored.iterdir()) == sorted([INDEX, *(p.name for p in remote)])


# --- bad input: one UserError naming the culprit ----------------------------------------------------
@pytest.fixture
def davis_copy(tmp_path: Path) -> Path:
    root = tmp_path / "davis"
    shutil.copytree(DAVIS_MINI, root)
    return root


def test_corrupt_jpeg(davis_copy: Path, tmp_path: Path) -> None:
    bad = davis_copy / "JPEGImages" / "480p" / "libby" / "00007.jpg"
    bad.write_bytes(bad.read_bytes()[:20_000])
    with pytest.raises(UserError, match=f"corrupt JPEG: {bad}"):
        shard_davis(davis_copy, str(tmp_path / "s"), split="val")


def test_mask_size_differs_from_frame(davis_copy: Path, tmp_path: Path) -> None:
    bad = davis_copy / "Annotations" / "480p" / "dog-agility" / "00003.png"
    Image.open(bad).resize((427, 240), Image.NEAREST).save(bad)
    with pytest.raises(UserError, match=f"mask size 240x427 differs from its frame 480x854: {bad}"):
        shard_davis(davis_copy, str(tmp_path / "s"), split="train")


def test_static_image_without_mask(bundled: Path, tmp_path: Path) -> None:
    root = tmp_path / "static"
    shutil.copytree(bundled / "static", root)
    lone = root / "fss" / "car-shadow" / "11.png"  # fss/<class>/<n>.png, as in the real archive
    lone.unlink()
    with pytest.raises(UserError, match=f"image without a mask.*{lone.with_suffix('.jpg')}"):
        shard_static(root, str(tmp_path / "s"))


def test_bad_shard_size_fails_before_reading_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "BL30K_a.tar"  # would fail later, in the index pass over the segments
    for size in (0, -1):
        with pytest.raises(UserError, match=f"--shard-size-mb must be positive, got {size}"):
            shard_bl30k([missing], str(tmp_path / "s"), shard_size_mb=size)
        with pytest.raises(UserError, match="--shard-size-mb must be positive"):
            shard_static(tmp_path / "nowhere", str(tmp_path / "s"), shard_size_mb=size)


def test_bl30k_frame_without_mask(tmp_path: Path) -> None:
    members = [m for m in bl30k_members(bundled_videos()) if m[0] != "BL30K/Annotations/libby/00004.png"]
    seg = write_tar(tmp_path / "BL30K_a.tar", members)
    with pytest.raises(UserError, match=f"frame without a mask: {seg}:BL30K/JPEGImages/libby/00004.jpg"):
        shard_bl30k([seg], str(tmp_path / "s"))


def test_bl30k_corrupt_jpeg_names_member(tmp_path: Path) -> None:
    members = bl30k_members(bundled_videos())
    i = [n for n, _ in members].index("BL30K/JPEGImages/car-shadow/00002.jpg")
    members[i] = (members[i][0], members[i][1].read_bytes()[:5000])
    seg = write_tar(tmp_path / "BL30K_a.tar", members)
    with pytest.raises(UserError, match=f"corrupt JPEG: {seg}:BL30K/JPEGImages/car-shadow/00002.jpg"):
        shard_bl30k([seg], str(tmp_path / "s"))


def test_bl30k_duplicate_member_across_segments(tmp_path: Path) -> None:
    members = bl30k_members(bundled_videos())
    a = write_tar(tmp_path / "BL30K_a.tar", members)
    b = write_tar(tmp_path / "BL30K_b.tar", [m for m in members if m[0] == "BL30K/Annotations/libby/00009.png"])
    with pytest.raises(UserError, match=f"duplicate BL30K member: {b}:BL30K/Annotations/libby/00009.png"):
        shard_bl30k([a, b], str(tmp_path / "s"))


@pytest.mark.parametrize("where", ["mid-member", "member boundary"])
def test_bl30k_truncated_segment(bundled: Path, tmp_path: Path, where: str) -> None:
    src = bundled / "bl30k" / "BL30K_a.tar"
    with tarfile.open(src) as tar:
        info = tar.getmembers()[100]
    cut = info.offset_data + (info.size // 2 if where == "mid-member" else -(-info.size // 512) * 512)
    seg = tmp_path / "BL30K_a.tar"
    seg.write_bytes(src.read_bytes()[:cut])
    with pytest.raises(UserError, match=f"truncated .*tar: {seg}"):
        shard_bl30k([seg, bundled / "bl30k" / "BL30K_b.tar"], str(tmp_path / "s"))


def test_cli_bad_root_is_one_line_exit_2(tmp_path: Path) -> None:
    run = stcn("shard", "davis", "--root", tmp_path / "nope", "--out", tmp_path)
    assert one_error(run, alone=True) == (
        f"error: not a DAVIS root (needs JPEGImages[/480p] and Annotations[/480p]): {tmp_path / 'nope'}"
    )


def test_shard_generic_cli_own_davis_folder_without_imagesets_and_youtube_layout(bundled: Path, tmp_path: Path) -> None:
    """`stcn shard generic`: a DAVIS-layout folder without ImageSets/480p (every sequence), and YouTube-VOS."""
    mine = own_davis_folder(bundled / "davis17", tmp_path / "mine", ("dog-agility", "libby"))
    out = tmp_path / "shards"
    run = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "shard", "generic", "--root", str(mine), "--name", "mine",
         "--out", str(out / "mine")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    samples = [decode_video_sample(r) for r in _read(str(_shards(out / "mine", "train")[0]))]
    assert [s.meta["video"] for s in samples] == ["dog-agility", "libby"]
    assert samples[1].meta["source"] == "mine/train" and len(samples[1].frames) == 49
    assert json.loads((out / "mine" / INDEX).read_text())["splits"]["train"]["totals"]["samples"] == 2
    index = shard_generic(bundled / "youtube19", str(out / "yt"), split="train", name="yt")  # layout detected
    videos = list((bundled / "youtube19/train/JPEGImages").iterdir())
    assert index["splits"]["train"]["totals"]["samples"] == len(videos)


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_bl30k_streamed_one_segment_at_a_time_matches_the_full_tars(bundled: Path, tmp_path: Path) -> None:
    from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

    names, fetch = segment_fetcher(BL30K, "file", str(bundled / "bl30k"), lambda _: None)
    work, peaks = tmp_path / "work", []

    def fetch_measured(i: int, dest: Path) -> Path:
        got = fetch(i, dest)
        peaks.append(_du(work))
        return got

    logs: list[str] = []
    index = shard_bl30k_streamed(names[:2], fetch_measured, str(tmp_path / "out"), work, shard_size_mb=4,
                                 log=logs.append)  # fmt: skip
    segs = sorted((bundled / "bl30k").glob("BL30K_*.tar"))
    assert "BL30K_a.tar: 1 complete videos to shard, 4 continue in the next segment" in logs
    # peak: the segment just downloaded + the spill of the videos that continue, never both segments
    assert peaks[0] <= segs[0].stat().st_size + 4096
    assert peaks[1] < segs[0].stat().st_size + segs[1].stat().st_size
    assert sorted(p.name for p in work.iterdir()) == ["state.json"]  # segments and spill deleted
    shard_bl30k(segs, str(tmp_path / "full"), shard_size_mb=4)
    assert index["totals"]["samples"] == 5
    assert sorted(_samples(tmp_path / "out")) == sorted(_samples(tmp_path / "full"))


def test_bl30k_streamed_resumes_to_identical_shards_and_names_a_video_split_after_sharding(tmp_path: Path) -> None:
    from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

    names, fetch = segment_fetcher(BL30K, "bundled", None, lambda _: None)
    shard_bl30k_streamed(names, fetch, str(tmp_path / "ref"), tmp_path / "w1", shard_size_mb=1)

    def dies_on_b(i: int, dest: Path) -> Path:
        if i == 1:
            raise KeyboardInterrupt
        return fetch(i, dest)

    with pytest.raises(KeyboardInterrupt):
        shard_bl30k_streamed(names, dies_on_b, str(tmp_path / "out"), tmp_path / "w2", shard_size_mb=1)
    assert sorted(p.name for p in (tmp_path / "w2").iterdir()) == ["spill-0.tar", "state.json"]
    logs: list[str] = []
    shard_bl30k_streamed(names, fetch, str(tmp_path / "out"), tmp_path / "w2", shard_size_mb=1, log=logs.append)
    assert not any(m.startswith("BL30K_a.tar") for m in logs)  # segment a is not fetched again
    assert _digests(_shards(tmp_path / "out", "train")) == _digests(_shards(tmp_path / "ref", "train"))

    # blackswan is complete in segment a; a later segment holding more of it cannot be sharded this way
    videos = bundled_videos()
    (tmp_path / "src").mkdir()
    a = write_tar(tmp_path / "src" / "BL30K_a.tar", bl30k_members(videos))
    b = write_tar(tmp_path / "src" / "BL30K_b.tar", bl30k_members([("blackswan", [("00099", *videos[0][1][0][1:])])]))
    names, fetch = segment_fetcher(BL30K, "file", str(tmp_path / "src"), lambda _: None)
    with pytest.raises(UserError, match="BL30K video blackswan continues in BL30K_b.tar after it was sharded"):
        shard_bl30k_streamed(names[:2], fetch, str(tmp_path / "o3"), tmp_path / "w3")
    assert a.exists() and b.exists()
    b.write_bytes(write_tar(tmp_path / "x.tar", bl30k_members(videos)[:1]).read_bytes())  # libby's masks lost
    write_tar(a, [m for m in bl30k_members(videos) if m[0] != "BL30K/Annotations/libby/00004.png"])
    with pytest.raises(UserError, match="frame without a mask after the last BL30K segment: BL30K/JPEGImages/libby"):
        shard_bl30k_streamed(names[:1], fetch, str(tmp_path / "o4"), tmp_path / "w4")


def test_s3_output_to_a_missing_bucket_is_one_line(tmp_path: Path, s3_server) -> None:  # noqa: F811
    seg = _repeated_bl30k(tmp_path / "BL30K_a.tar", copies=1)
    with pytest.raises(UserError, match="cannot write s3://no-such-bucket/bl30k/"):
        shard_bl30k([seg], "s3://no-such-bucket/bl30k", workers=1)


def test_shard_dataset_reads_a_registry_entry_by_its_layout(bundled: Path, tmp_path: Path) -> None:
    """`stcn shard dataset NAME`: the registry's layout picks the reader, its `shard.split` the split."""
    from stcn.data.shards.build import shard_dataset

    run = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "shard", "dataset", "davis17", "--root", str(bundled / "davis17"),
         "--out", str(tmp_path / "d17"), "--workers", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    index = json.loads((tmp_path / "d17" / INDEX).read_text())
    assert index["dataset"] == "davis17" and list(index["splits"]) == ["train"]
    direct = shard_generic(bundled / "davis17", str(tmp_path / "g"), layout="davis", name="davis17", workers=1)
    assert _digests(_shards(tmp_path / "d17", "train")) == _digests(_shards(tmp_path / "g", "train"))
    tars = shard_dataset(load_registry().dataset("bl30k"), str(tmp_path / "b"), root=bundled / "bl30k", workers=1)
    assert tars["totals"] == shard_bl30k(sorted((bundled / "bl30k").glob("*.tar")), str(tmp_path / "b2"))["totals"]
    assert direct["totals"]["samples"] == index["totals"]["samples"] > 0
    run = stcn("shard", "dataset", "davis2017", "--out", tmp_path)
    assert one_error(run, alone=True).startswith("error: unknown dataset 'davis2017' (known in ")


def test_every_shard_command_first_removes_dead_writers_spools(tmp_path: Path) -> None:
    """A run killed before DVC re-runs its stage as cached ("cached - skipping run") leaves its spool: the next
    `stcn shard` command of any kind removes spools of dead writers in TMPDIR and keeps those of live ones."""
    spool, env = _spool(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = spool / f"stcn-shard-{int(gone.stdout)}-x"  # that process has exited
    (dead / "7").parent.mkdir()
    (dead / "7").write_bytes(b"0" * 100)
    live = spool / "stcn-shard-1-live"  # pid 1 is alive
    live.mkdir()
    root = Path(__file__).resolve().parent.parent / "stcn" / "data" / "bundled" / "davis-mini"
    run = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "shard", "davis", "--root", str(root), "--out", str(tmp_path / "out"),
         "--workers", "1"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"removed the spool of a killed shard run: {dead}" in run.stderr
    assert list(spool.iterdir()) == [live]
