"""Training streams over real shards (bundled DAVIS) from local disk, HTTP and a real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from localhttp import serving_folder
from PIL import Image
from s3_server import s3_server  # noqa: F401  (pytest fixture)

from stcn.data.shards.inputs import davis_pending, static_pending
from stcn.data.shards.writer import write_shards
from stcn.data.stream.loader import ShardList, SharedState, expand_sources, make_loader, rank_share
from stcn.errors import UserError

REPO = Path(__file__).resolve().parent.parent
DAVIS = REPO / "stcn" / "data" / "bundled" / "davis-mini"
CROP = 64  # small crops keep the tests fast; the pipeline is the same at 384


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """shards/davis: 4 video shards (1 real DAVIS video each); shards/static: ~10 static shards
    of 42 real DAVIS frames whose masks are saved half as 0/255 grey, half as 0/1 palette PNGs."""
    out = tmp_path_factory.mktemp("shards")
    videos = davis_pending(DAVIS, 2017, "train") + davis_pending(DAVIS, 2017, "val")
    write_shards(videos, str(out / "davis"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
    static = tmp_path_factory.mktemp("static")
    for i, jpg in enumerate(sorted(DAVIS.glob("JPEGImages/480p/*/*.jpg"))[::4]):
        name = f"{jpg.parent.name}_{jpg.stem}"
        (static / f"{name}.jpg").write_bytes(jpg.read_bytes())
        labels = np.asarray(Image.open(DAVIS / "Annotations/480p" / jpg.parent.name / f"{jpg.stem}.png"))
        mask = Image.fromarray((labels > 0).astype(np.uint8) * (255 if i % 2 else 1), mode="L")
        mask.save(static / f"{name}.png")
    write_shards(
        static_pending(static),
        str(out / "static"),
        dataset="static",
        split="train",
        source="s",
        shard_size_bytes=250_000,
    )
    return out


def names(batches) -> list[str]:
    return [i["name"] for b in batches for i in b["info"]]


def test_video_batches_shapes_dtypes_ranges(shards):
    loader = make_loader(shards / "davis", "video", batch_size=2, num_workers=0, samples_per_rank=4, crop=CROP)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    b = batches[0]
    assert b["rgb"].shape == (2, 3, 3, CROP, CROP) and b["rgb"].dtype == torch.float32
    assert b["gt"].shape == b["sec_gt"].shape == (2, 3, 1, CROP, CROP)
    assert b["cls_gt"].shape == (2, 3, CROP, CROP) and b["cls_gt"].dtype == torch.long
    assert b["first_frame_gt"].shape == (2, 2, 1, CROP, CROP) and b["selector"].shape == (2, 2)
    assert set(b["gt"].unique().tolist()) <= {0.0, 1.0} and set(b["cls_gt"].unique().tolist()) <= {0, 1, 2}
    assert torch.isfinite(b["rgb"]).all() and b["rgb"].min() > -2.2 and b["rgb"].max() < 2.7
    for info in b["info"]:
        assert np.abs(np.diff(info["indices"])).max() <= 5 and info["max_skip"] == 5


def test_static_batches_binary_single_object(shards):
    loader = make_loader(shards / "static", "static", batch_size=3, num_workers=0, samples_per_rank=6, crop=CROP)
    for b in loader:
        assert b["rgb"].shape == (3, 3, 3, CROP, CROP) and b["gt"].shape == (3, 3, 1, CROP, CROP)
        assert set(b["gt"].unique().tolist()) == {0.0, 1.0}
        assert (b["selector"] == torch.tensor([1.0, 0.0])).all() and b["sec_gt"].sum() == 0


def test_max_skip_change_reaches_workers(shards):
    loader = make_loader(
        shards / "davis", "video", batch_size=1, num_workers=2, seed=3, samples_per_rank=400, max_skip=1, crop=CROP
    )
    it = iter(loader)
    before = [next(it)["info"][0] for _ in range(6)]
    assert all(i["max_skip"] == 1 and np.abs(np.diff(i["indices"])).max() == 1 for i in before)
    loader.set_max_skip(20)
    after = [next(it)["info"][0] for _ in range(40)]
    changed = [i for i in after if i["max_skip"] == 20]
    assert {i["worker"] for i in changed} == {0, 1}  # both worker processes saw the new value
    assert all(i["max_skip"] == 20 for i in after[-20:])
    assert max(np.abs(np.diff(i["indices"])).max() for i in changed) > 1
    assert all(np.abs(np.diff(i["indices"])).max() <= 20 for i in changed)
    assert any(i["indices"][0] > i["indices"][1] for i in after) and any(
        i["indices"][0] < i["indices"][1] for i in after
    )
    del it


def test_same_seed_same_batches_new_epoch_new_batches(shards):
    def run(seed):
        loader = make_loader(shards / "davis", "video", 2, num_workers=2, seed=seed, samples_per_rank=4, crop=CROP)
        return [list(loader) for _ in range(2)]

    a, b = run(7), run(7)
    for ea, eb in zip(a, b, strict=True):
        assert all(torch.equal(x["rgb"], y["rgb"]) for x, y in zip(ea, eb, strict=True))
    assert not torch.equal(a[0][0]["rgb"], a[1][0]["rgb"])  # epochs differ
    assert not torch.equal(a[0][0]["rgb"], run(8)[0][0]["rgb"])


def test_weighted_sources(shards):
    d = shards / "davis"
    urls, weights = expand_sources([f"{d}/train-{{000000..000001}}.tar*5", f"{d}/train-{{000002..000003}}.tar"])
    assert weights == [5, 5, 1, 1] and urls[0].endswith("train-000000.tar")
    drawn = ShardList([(urls[:2], 5.0), (urls[2:], 1.0)], "resampled", 0, 0, 1, SharedState(5))
    it = iter(drawn)
    counts = Counter(next(it)["url"] for _ in range(6000))
    heavy = (counts[urls[0]] + counts[urls[1]]) / 6000
    assert abs(heavy - 5 / 6) < 0.03
    once = make_loader(f"{d}/train-000000.tar*2::{d}/train-000001.tar", "video", 1, 0, mode="once", crop=CROP)
    assert Counter(names(once)) == {"dog-agility": 2, "blackswan": 1}


def test_rank_share_splits_shards_then_the_leftover_by_sample():
    five = ([f"s{i}" for i in range(5)], 2.0)
    assert rank_share([five], 0, 2) == [("s0", 2.0, 0, 1), ("s2", 2.0, 0, 1), ("s4", 2.0, 0, 2)]
    assert rank_share([five], 1, 2) == [("s1", 2.0, 0, 1), ("s3", 2.0, 0, 1), ("s4", 2.0, 1, 2)]
    assert rank_share([five, (["t0"], 1.0)], 2, 3) == [
        ("s2", 2.0, 0, 1),
        ("s3", 2.0, 2, 3),
        ("s4", 2.0, 2, 3),
        ("t0", 1.0, 2, 3),
    ]
    assert rank_share([five], 0, 1) == [(f"s{i}", 2.0, 0, 1) for i in range(5)]


def test_resampled_ranks_get_disjoint_data(shards, monkeypatch):
    """Each source is split by shard across ranks; a source with fewer shards than ranks by sample."""
    counts = [s["samples"] for s in json.loads((shards / "static/index.json").read_text())["splits"]["train"]["shards"]]
    assert len(counts) >= 5 and counts[-1] >= 2
    many = [f"{shards}/static/train-{i:06d}.tar" for i in range(len(counts) - 1)]
    single = f"{shards}/static/train-{len(counts) - 1:06d}.tar"
    pattern = f"{shards}/static/train-{{000000..{len(counts) - 2:06d}}}.tar"  # one source of many shards
    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        loader = make_loader(
            [pattern, f"{single}*4"], "static", 2, 0, samples_per_rank=200, crop=CROP, shuffle_buffer=1
        )
        drawn = [(i["url"], i["name"]) for b in loader for i in b["info"]]
        assert len(drawn) == 200
        seen.append(drawn)
    shards_of = [{u for u, _ in drawn if u != single} for drawn in seen]
    samples_of = [{n for u, n in drawn if u == single} for drawn in seen]
    assert shards_of[0] and shards_of[1] and not shards_of[0] & shards_of[1]
    assert shards_of[0] | shards_of[1] == set(many)
    assert samples_of[0] and samples_of[1] and not samples_of[0] & samples_of[1]
    one_sample = f"{shards}/davis/train-000000.tar"  # rank 1 of 2 gets nothing and must say so, not spin
    with pytest.raises(UserError, match="no training samples for this rank"):  # RANK is 1 here
        list(make_loader(one_sample, "video", 1, 0, samples_per_rank=2, crop=CROP))


def test_missing_local_shard_is_one_clear_line(shards):
    bad = f"{shards}/davis/train-{{000000..000009}}.tar"
    with pytest.raises(UserError, match=r"shard not found: .*train-000004\.tar$"):
        make_loader(bad, "video", 1, 0, samples_per_rank=2)
    loader = make_loader(bad, "video", 1, num_workers=2, mode="once", check=False, crop=CROP)
    with pytest.raises(UserError) as err:  # raised inside a worker process
        list(loader)
    assert "\n" not in str(err.value) and "shard not found" in str(err.value) and "train-00000" in str(err.value)


def test_http_shards_exactly_once(shards):
    with serving_folder(shards) as base:
        loader = make_loader(f"{base}/davis/train-{{000000..000003}}.tar", "video", 1, 2, mode="once", crop=CROP)
        assert sorted(names(loader)) == ["blackswan", "car-shadow", "dog-agility", "libby"]
        with pytest.raises(UserError, match=r"shard not found: http://.*/davis/train-000007\.tar"):
            make_loader(f"{base}/davis/train-000007.tar", "video", 1, 0, mode="once")


RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from stcn.data.stream.loader import make_loader
    url, out = sys.argv[1], {}
    once = make_loader(url, "static", 2, num_workers=2, seed=5, mode="once", crop=32, mp_context="fork")
    out["once"] = [[i["name"] for b in once for i in b["info"]] for _ in range(2)]
    out["workers"] = sorted({i["worker"] for b in once for i in b["info"]})
    res = make_loader(url, "static", 2, 2, 5, samples_per_rank=12, crop=32, shuffle_buffer=4, mp_context="fork")
    out["resampled"] = [i["name"] for b in res for i in b["info"]]
    print(json.dumps(out))
    """
)


def run_ranks(url: str, env: dict[str, str], world: int = 2) -> list[dict]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, url],
            env={**os.environ, **env, "RANK": str(r), "WORLD_SIZE": str(world)},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def upload(server, folder: Path, prefix: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**server.storage_options())
    for p in sorted(folder.iterdir()):
        fs.put_file(str(p), f"{prefix}/{p.name}")


def test_s3_two_ranks_two_workers(shards, s3_server):  # noqa: F811
    upload(s3_server, shards / "static", "test-bucket/shards/static")
    index = json.loads((shards / "static" / "index.json").read_text())
    count = sum(s["samples"] for s in index["splits"]["train"]["shards"])
    nshards = len(index["splits"]["train"]["shards"])
    url = f"s3://test-bucket/shards/static/train-{{000000..{nshards - 1:06d}}}.tar"
    r0, r1 = run_ranks(url, s3_server.env())
    for epoch in range(2):  # exactly once per epoch, split across ranks and workers
        seen = r0["once"][epoch] + r1["once"][epoch]
        assert len(seen) == len(set(seen)) == count
        assert r0["once"][epoch] and r1["once"][epoch]
    assert r0["once"][0] != r0["once"][1]  # re-shuffled per epoch
    assert r0["workers"] == r1["workers"] == [0, 1]
    assert len(r0["resampled"]) == len(r1["resampled"]) == 12  # equal counts per rank
    assert not set(r0["resampled"]) & set(r1["resampled"])  # disjoint shards per rank
    # the dataset-folder form (index.json on S3) lists the same shards
    assert len(expand_sources("s3://test-bucket/shards/static")[0]) == nshards


def test_s3_missing_shard_and_plain_webdataset(shards, s3_server):  # noqa: F811
    upload(s3_server, shards / "davis", "test-bucket/davis")
    with pytest.raises(UserError, match=r"shard not found: s3://test-bucket/davis/train-000004\.tar$"):
        make_loader("s3://test-bucket/davis/train-{000000..000009}.tar", "video", 1, 0, samples_per_rank=1)
    # workers of an already running forkserver get the AWS_* settings from the pipeline
    loader = make_loader("s3://test-bucket/davis/train-{000000..000003}.tar", "video", 1, 2, mode="once", crop=CROP)
    assert sorted(names(loader)) == ["blackswan", "car-shadow", "dog-agility", "libby"]
    import webdataset as wds

    ds = wds.WebDataset("s3://test-bucket/davis/train-{000000..000003}.tar", shardshuffle=False)
    assert sorted(s["__key__"] for s in ds) == ["blackswan", "car-shadow", "dog-agility", "libby"]


def test_unreachable_s3_is_one_line_with_the_url(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stcn-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stcn-test-secret")
    with pytest.raises(UserError, match=r"cannot reach S3 for s3://nowhere/x/train-000000\.tar") as err:
        make_loader("s3://nowhere/x/train-{000000..000001}.tar", "video", 1, 2, samples_per_rank=2)
    assert "\n" not in str(err.value)
    loader = make_loader("s3://nowhere/x/train-000000.tar", "video", 1, 2, mode="once", check=False)
    with pytest.raises(UserError, match=r"^cannot read shard s3://nowhere/x/train-000000\.tar"):
        list(loader)


def test_stage0_mixture_repeats_big_and_hrsod_five_times(tmp_path):
    from stcn.data.fetch.sources import build_bundled
    from stcn.registry import load_registry
    from stcn.train.recipe import STAGE0_REPEATS

    root = build_bundled(load_registry().dataset("static"), tmp_path / "static", log=lambda _: None)
    write_shards(static_pending(root), str(tmp_path / "s"), dataset="static", split="train", source="static",
                 shard_size_bytes=1 << 20)  # fmt: skip
    loader = make_loader(tmp_path / "s", "static", 1, 0, mode="once", crop=CROP, repeats=STAGE0_REPEATS)
    counts = Counter(names(loader))
    images = {p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.jpg")}
    assert set(counts) == images
    for name, n in counts.items():
        assert n == (5 if name.split("/")[0] in ("BIG_small", "HRSOD_small") else 1), name
    with pytest.raises(UserError, match="repeats apply to static images"):
        make_loader(tmp_path / "s", "video", 1, 0, mode="once", crop=CROP, repeats=STAGE0_REPEATS)


def test_s3_streamed_and_range_reads_give_the_same_samples(shards, s3_server, monkeypatch):  # noqa: F811
    from stcn.data.stream.loader import open_shard, read_shard

    upload(s3_server, shards / "davis", "test-bucket/davis")
    url = "s3://test-bucket/davis/train-000001.tar"
    streamed = list(read_shard(url, open_shard(url)))
    monkeypatch.setenv("STCN_S3_READ", "ranges")
    ranged = list(read_shard(url, open_shard(url)))
    path = str(shards / "davis" / "train-000001.tar")
    local = list(read_shard(path, open_shard(path)))
    strip = [{k: v for k, v in s.items() if k != "__url__"} for s in streamed]
    assert strip == [{k: v for k, v in s.items() if k != "__url__"} for s in ranged]
    assert strip == [{k: v for k, v in s.items() if k != "__url__"} for s in local] and len(strip) == 1
    monkeypatch.delenv("STCN_S3_READ")
    with pytest.raises(UserError, match="shard not found: s3://test-bucket/davis/train-000099.tar"):
        open_shard("s3://test-bucket/davis/train-000099.tar")
    half = open_shard(url)  # closing a stream read only in part stops its read-ahead thread
    half.read(1000)
    half.close()


def test_video_pool_draws_every_video_equally_and_holds_few():
    """Each video read gives `draws` samples; the pool never holds more than `size` videos; same seed, same order."""
    from stcn.data.stream.pools import VideoPool

    class Held:
        def __init__(self, n):
            self.n, self.peak, self.live = n, 0, set()

        def __iter__(self):
            for i in range(self.n):
                self.live.add(i)
                self.peak = max(self.peak, len(self.live))
                yield {"__key__": i}

    def run(seed):
        src, drawn, left = Held(50), [], Counter()
        for raw in VideoPool(6, 5, seed, 0, SharedState(5))(iter(src)):
            drawn.append(raw["__key__"])
            left[raw["__key__"]] += 1
            if left[raw["__key__"]] == 5:
                src.live.discard(raw["__key__"])
        return drawn, src.peak

    drawn, peak = run(1)
    assert Counter(drawn) == {i: 5 for i in range(50)} and peak <= 6
    assert run(1)[0] == drawn != run(2)[0]
    assert drawn[:5] != [drawn[0]] * 5  # draws of one video are spread among the pool's others


def bytes_ratio(batches, before: int = 0) -> tuple[float, int]:
    """(bytes fetched from storage / bytes of the frames and masks used, samples) over a run's batches."""
    fetched, used, count = {}, 0, 0
    for b in batches:
        for i in b["info"]:
            key = (i["rank"], i["worker"])
            fetched[key] = max(fetched.get(key, 0), i["fetched"] - before)
            used, count = used + i["bytes"], count + 1
    return sum(fetched.values()) / used, count


def test_range_reads_of_an_object_uploaded_with_checksums(s3_server, monkeypatch):  # noqa: F811
    """A current botocore uploads with a whole-object CRC32 that rclone sends back with range GETs too; the part
    runs' range reads (stored index) must not reject it as a checksum mismatch."""
    import s3fs

    from stcn.data.storage import read_ranges

    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    with s3fs.S3FileSystem(**s3_server.storage_options()).open("test-bucket/ck/seg.tar", "wb") as f:
        f.write(data)
    got = read_ranges("s3://test-bucket/ck/seg.tar", [(100, 1000), (2 << 20, 5000)], env=s3_server.env())
    assert got == [data[100:1100], data[2 << 20 : (2 << 20) + 5000]]
    import fsspec

    from stcn.data.storage import storage_options

    for key, value in s3_server.env().items():  # fsspec opens (BL30K segment scans) take the endpoint from here
        monkeypatch.setenv(key, value)
    url = "s3://test-bucket/ck/seg.tar"
    with fsspec.open(url, "rb", **storage_options(url)) as f:
        f.seek(2 << 20)
        assert f.read(5000) == data[2 << 20 : (2 << 20) + 5000]


def test_bytes_fetched_per_video_sample_at_most_twice_the_bytes_used(shards, s3_server):  # noqa: F811
    """Local and S3: a training sample fetches at most 2x the bytes of its 3 frames and masks (one
    sample per video read: ~13x on these 41-frame videos)."""
    from stcn.data.storage import fetched_bytes

    upload(s3_server, shards / "davis", "test-bucket/ratio")
    ratios = {}
    for where in (str(shards / "davis"), "s3://test-bucket/ratio/train-{000000..000003}.tar"):
        for draws in (None, 1):
            before = fetched_bytes()
            loader = make_loader(
                where, "video", 8, 0, seed=4, samples_per_rank=512 if draws is None else 64, crop=CROP,
                draws_per_video=draws,
            )  # fmt: skip
            ratios[where[:2], draws] = bytes_ratio(loader, before)
    assert all(n == 512 for (_, d), (_, n) in ratios.items() if d is None)
    assert all(r <= 2.0 for (_, d), (r, _) in ratios.items() if d is None), ratios
    assert all(r > 8.0 for (_, d), (r, _) in ratios.items() if d == 1), ratios


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """shards/{a,b}: 14 and 6 short videos (5 frames each, real DAVIS frames and masks at 1/4 size) in shards of
    unequal size, with index.json as `stcn shard` writes it."""
    root = tmp_path_factory.mktemp("many")
    sources = sorted((DAVIS / "JPEGImages" / "480p").iterdir())
    for v in range(20):
        seq = sources[v % len(sources)]
        for jpg in sorted(seq.glob("*.jpg"))[v : v + 5]:
            for kind, src, resample in (
                ("JPEGImages", jpg, Image.BILINEAR),
                ("Annotations", DAVIS / "Annotations" / "480p" / seq.name / f"{jpg.stem}.png", Image.NEAREST),
            ):
                out = root / "davis" / kind / "480p" / f"v{v:02d}" / src.name
                out.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(src) as im:
                    im.resize((im.width // 4, im.height // 4), resample).save(out)
    sets = root / "davis" / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("".join(f"v{v:02d}\n" for v in range(14)))
    (sets / "val.txt").write_text("".join(f"v{v:02d}\n" for v in range(14, 20)))
    for name, split in (("a", "train"), ("b", "val")):
        write_shards(davis_pending(root / "davis", 2017, split), str(root / name), dataset=name, split="train",
                     source=name, shard_size_bytes=150_000)  # fmt: skip
    return root


def composition(batches) -> dict:
    """Per-video draws, batches holding a video twice, and consecutive batches sharing a video."""
    drawn = [[i["name"] for i in b["info"]] for b in batches]
    return {
        "counts": Counter(n for b in drawn for n in b),
        "repeated": sum(len(set(b)) < len(b) for b in drawn),
        "shared": sum(bool(set(a) & set(b)) for a, b in zip(drawn, drawn[1:], strict=False)),
        "batches": len(drawn),
    }


def test_video_epochs_cover_every_video_evenly_and_batches_hold_distinct_videos(many):
    """The real loader (2 workers, batch 4): every video of an epoch is drawn floor or ceil of its share (weights
    applied), no batch holds one video twice, consecutive batches share a video at most twice per epoch (when one
    worker's part is longer, its last batches follow each other), epochs differ, and a shorter epoch
    (`set_epoch(i, batches)`) covers its videos evenly too."""
    a = sorted(p.name for p in (many / "a").glob("*.tar"))
    assert len(a) >= 3  # several shards, read in a planned order
    sources = [f"{many}/a*2", str(many / "b")]
    loader = make_loader(
        sources, "video", 4, 2, seed=3, samples_per_rank=4 * 26, crop=CROP, draws_per_video=2, shuffle_buffer=8
    )  # fmt: skip  (a pool of 8 of a worker's ~10 videos)
    epochs = []
    for length in (26, 26, 17):
        loader.set_epoch(len(epochs), length)
        epochs.append(composition(list(loader)))
    for e, length in zip(epochs, (26, 26, 17), strict=True):
        assert e["batches"] == length and e["repeated"] == 0 and e["shared"] <= 2, e
        per_weight = [e["counts"][f"v{v:02d}"] / (2 if v < 14 else 1) for v in range(20)]
        heavy, light = [e["counts"][f"v{v:02d}"] for v in range(14)], [e["counts"][f"v{v:02d}"] for v in range(14, 20)]
        assert max(heavy) - min(heavy) <= 1 and max(light) - min(light) <= 1, e
        assert abs(np.mean(per_weight[:14]) - np.mean(per_weight[14:])) <= 1, e
    again = make_loader(sources, "video", 4, 2, seed=3, samples_per_rank=4 * 26, crop=CROP, draws_per_video=2,
                        shuffle_buffer=8)  # fmt: skip
    first, second = ([i["name"] for b in again for i in b["info"]] for _ in range(2))
    assert first != second and Counter(first) == epochs[0]["counts"]


def test_an_epoch_shorter_than_a_pass_covers_its_part_and_the_pass_covers_all(many):
    """Fewer samples per epoch than videos x draws per read: each epoch reads part of the shards (several draws per
    video read), and the epochs of a pass together draw every video."""
    loader = make_loader(str(many / "a"), "video", 4, 0, seed=1, samples_per_rank=16, crop=CROP, draws_per_video=4)
    seen = Counter()
    for _ in range(2):  # 14 videos x 4 draws: 4 epochs of 16, but each keeps a batch plus a shard of videos: 2
        e = composition(list(loader))
        assert e["batches"] == 4 and e["repeated"] == 0
        assert min(e["counts"].values()) >= 2 and max(e["counts"].values()) - min(e["counts"].values()) <= 1
        seen |= {n: seen[n] + c for n, c in e["counts"].items()}
    assert set(seen) == {f"v{v:02d}" for v in range(14)}


def test_a_heavy_video_is_drawn_all_through_the_epoch_not_last(many, tmp_path):
    """A one-video source weighted x5 beside six videos (the sample profile's DAVIS beside YouTube-VOS): planned for
    5/11 of the draws, it is drawn about as often in each half of the epoch, and the epoch does not end in a run of
    batches of that one video (the pool draws by fraction left, not by draws left)."""
    write_shards(davis_pending(many / "davis", 2017, "train")[:1], str(tmp_path / "one"), dataset="one",
                 split="train", source="one", shard_size_bytes=150_000)  # fmt: skip
    loader = make_loader([f"{tmp_path / 'one'}*5", str(many / "b")], "video", 2, 0, seed=2, samples_per_rank=60,
                         crop=CROP, draws_per_video=4)  # fmt: skip
    for epoch in range(2):
        drawn = [[i["name"] for i in b["info"]] for b in loader]
        heavy = [b.count("v00") for b in drawn]
        assert len(drawn) == 30 and abs(sum(heavy) - 60 * 5 / 11) <= 1, (epoch, drawn)
        assert abs(sum(heavy[:15]) - sum(heavy[15:])) <= 3, (epoch, drawn)  # spread, not front- or back-loaded
        tail = next((i for i, n in enumerate(reversed(heavy)) if n < 2), len(heavy))
        assert tail <= 2, (epoch, drawn)  # batches of the heavy video alone at the end


def test_every_epoch_holds_every_source_in_its_share_when_a_pass_spans_epochs(many):
    """Light videos (x1) get fewer draws an epoch than a read gives, so a pass over them spans 2 epochs; the heavy
    source (x5) needs one: each epoch holds it in its share (30 of 44 draws), and each pass draws every light video."""
    loader = make_loader([f"{many / 'b'}*5", str(many / "a")], "video", 4, 0, seed=5, samples_per_rank=48, crop=CROP,
                         draws_per_video=4)  # fmt: skip
    light = Counter()
    for epoch in range(4):
        drawn = [i["name"] for b in loader for i in b["info"]]
        heavy = sum(n >= "v14" for n in drawn) / len(drawn)
        assert len(drawn) == 48 and abs(heavy - 30 / 44) <= 0.05, (epoch, heavy, Counter(drawn))
        light.update(n for n in drawn if n < "v14")
        if epoch % 2:  # the end of a pass over the light videos
            assert set(light) == {f"v{v:02d}" for v in range(14)}, (epoch, light)
            light = Counter()
