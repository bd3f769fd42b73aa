"""What shard, merge and the loader read is checked: split lists, part indexes, BL30K member indexes,
sizes and part counts, corrupt payloads inside shards (one line naming the file, never a traceback)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from clihelp import one_error, stcn
from conftest import own_videos

from stcn.data.fetch.sources import DAVIS_MINI
from stcn.data.shards.inputs import davis_pending
from stcn.data.shards.writer import write_shards
from stcn.data.stream.loader import make_loader


@pytest.mark.parametrize("entry", ["absolute", "../../../victim"])
def test_split_file_entry_outside_the_root_is_refused(tmp_path: Path, weights_file: Path, entry: str) -> None:
    """Item 4: a split list naming `/abs/seq` or `../../x` never makes evaluate write into that folder."""
    root = tmp_path / "root"
    shutil.copytree(DAVIS_MINI, root)
    victim = tmp_path / "victim"  # another sequence with its own ground truth
    shutil.copytree(DAVIS_MINI / "JPEGImages/480p/blackswan", victim)
    for png in (DAVIS_MINI / "Annotations/480p/blackswan").glob("*.png"):
        shutil.copy(png, victim / png.name)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in victim.iterdir()}
    name = str(victim) if entry == "absolute" else entry
    (root / "ImageSets/2017/val.txt").write_text(f"blackswan\n{name}\n")
    out = tmp_path / "out"
    res = stcn("evaluate", "--weights", weights_file, "--dataset", "generic", "--root", root, "--out", out,
               "--max-frames", "2", "--device", "cpu")  # fmt: skip
    one_error(res, repr(name), "is not a valid name", "val.txt")
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in victim.iterdir()} == before
    res = stcn("shard", "generic", "--root", root, "--split", "val", "--out", tmp_path / "shards")
    one_error(res, repr(name), "is not a valid name")


def test_parts_from_different_inputs_do_not_merge(tmp_path: Path) -> None:
    """Item 5: part 1/2 made from a copy without one video: merge refuses instead of a video twice, one missing."""
    from stcn.data.shards.build import shard_generic

    full, fewer, out = own_videos(tmp_path / "full"), own_videos(tmp_path / "fewer", drop="blackswan"), tmp_path / "out"
    shard_generic(full, str(out), part="0/2", workers=1)
    shard_generic(fewer, str(out), part="1/2", workers=1)
    res = stcn("shard", "merge", "--out", out, "--parts", "2")
    one_error(res, "part parts/1-of-2", "different input listing")
    assert not (out / "index.json").exists()
    shard_generic(full, str(out), part="1/2", workers=1)  # the same input: merges
    assert stcn("shard", "merge", "--out", out, "--parts", "2").returncode == 0
    assert json.loads((out / "index.json").read_text())["totals"]["samples"] == 4


def test_an_empty_part_is_a_valid_part(tmp_path: Path) -> None:
    """Item 13: `--part 0/5` on 4 videos writes an empty finished part, so `merge --parts 5` succeeds."""
    root, out = own_videos(tmp_path / "own"), tmp_path / "out"
    res = stcn("shard", "generic", "--root", root, "--out", out, "--part", "0/5", "--workers", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "parts/0-of-5/index.json").read_text())["splits"]["train"]["shards"] == []
    from stcn.data.shards.build import shard_generic

    for i in range(1, 5):
        shard_generic(root, str(out), part=f"{i}/5", workers=1)
    res = stcn("shard", "merge", "--out", out, "--parts", "5")
    assert res.returncode == 0, res.stderr[-2000:]
    index = json.loads((out / "index.json").read_text())
    assert index["totals"]["samples"] == 4 and index["splits"]["train"]["parts"] == 5


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda index: {"splits": "x"}, "`splits` must be a mapping"),
        (lambda index: _rename(index, "../../../../../etc/passwd"), "'../../../../../etc/passwd' is not a valid"),
        (lambda index: _rename(index, 7), "7 is not a valid shard name"),
        (lambda index: {**index, "splits": {"train": {**index["splits"]["train"], "shard_size_bytes": "big"}}},
         "shard_size_bytes must be a positive integer"),
    ],
)  # fmt: skip
def test_merge_validates_part_indexes(tmp_path: Path, damage, needle: str) -> None:
    """Item 12: a part index of the wrong types or with a shard name leaving the folder is one line."""
    from stcn.data.shards.build import shard_generic

    root, out = own_videos(tmp_path / "own"), tmp_path / "out"
    for i in range(2):
        shard_generic(root, str(out), part=f"{i}/2", workers=1)
    part = out / "parts/1-of-2/index.json"
    part.write_text(json.dumps(damage(json.loads(part.read_text()))))
    one_error(stcn("shard", "merge", "--out", out, "--parts", "2"), "corrupt part index", str(part), needle)
    assert not (out / "index.json").exists()


def _rename(index: dict, name: object) -> dict:
    entry = index["splits"]["train"]
    return {**index, "splits": {"train": {**entry, "shards": [{**entry["shards"][0], "name": name}]}}}


@pytest.mark.parametrize("size", ["nan", "inf", "-inf", "1e300"])
def test_shard_size_not_finite_is_one_line(tmp_path: Path, size: str) -> None:
    """Item 11: `--shard-size-mb nan/inf` is one line, not a ValueError / OverflowError traceback."""
    res = stcn(
        "shard", "generic", "--root", own_videos(tmp_path / "own"), "--out", tmp_path / "o", "--shard-size-mb", size
    )
    one_error(res, f"--shard-size-mb must be positive, got {float(size)} (a finite number of MiB)")


def test_tampered_bl30k_member_index_is_one_line(tmp_path: Path) -> None:
    """Issue 30 item 12 (and 14): a negative segment or kind in members.npz wrapped around (read another tar's
    bytes), an offset past the segment's end was read too; now one line naming the index and the row."""
    import numpy as np

    from stcn.data.fetch.sources import bundled_bl30k_segments, write_tar

    segments = [write_tar(tmp_path / f"BL30K_{c}.tar", m) for c, m in zip("ab", bundled_bl30k_segments(), strict=True)]
    index = tmp_path / "members.npz"
    args = ["shard", "bl30k", "--segments", *segments, "--index", index, "--workers", "1"]
    res = stcn(*args, "--out", tmp_path / "o", "--part", "0/2")
    assert res.returncode == 0 and index.is_file(), res.stderr[-2000:]
    good = dict(np.load(index))
    damages = [("seg", -1, "seg -1 is outside 0..1"), ("kind", -2, "kind -2 is outside 0..1"),
               ("vid", 10**6, "vid 1000000 is outside"), ("off", 10**9, "lie outside its segment")]  # fmt: skip
    for column, value, needle in damages:
        bad = {**good, column: good[column].copy()}
        bad[column][0] = value
        np.savez_compressed(index, **bad)
        res = stcn(*args, "--out", tmp_path / "p", "--part", "1/2")
        one_error(res, f"corrupt BL30K index {index}", needle)
        assert not (tmp_path / "p").exists() or not list((tmp_path / "p").rglob("*.tar"))


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda e: {**e, "shards": [e["shards"][0], e["shards"][0]]}, "is listed twice"),
        (lambda e: {**e, "shards": [{**e["shards"][0], "samples": 10**12}]}, "1000000000000 samples cannot fit in"),
        (lambda e: {k: v for k, v in e.items() if k != "input_sha256"}, "input_sha256 must be a string, got None"),
    ],
)
def test_merge_refuses_duplicate_shards_and_impossible_counts(tmp_path: Path, damage, needle: str) -> None:
    """Issue 30 item 12: merge copied `samples: 10**12` and a shard listed twice into the merged index."""
    from stcn.data.shards.build import shard_generic

    root, out = own_videos(tmp_path / "own"), tmp_path / "out"
    for i in range(2):
        shard_generic(root, str(out), part=f"{i}/2", workers=1)
    part = out / "parts/0-of-2/index.json"
    index = json.loads(part.read_text())
    index["splits"]["train"] = damage(index["splits"]["train"])
    part.write_text(json.dumps(index))
    one_error(stcn("shard", "merge", "--out", out, "--parts", "2"), "corrupt part index", str(part), needle)
    assert not (out / "index.json").exists()


def test_huge_part_counts_are_one_line(tmp_path: Path) -> None:
    """Issue 30 item 13: `--part 0/99999999999999999999` and `merge --parts 10000000` ran out of memory."""
    root = own_videos(tmp_path / "own")
    res = stcn("shard", "generic", "--root", root, "--out", tmp_path / "o", "--part", "0/99999999999999999999")
    one_error(res, "--part must be I/N with 0 <= I < N <= 4096", "'0/99999999999999999999'")
    one_error(stcn("shard", "merge", "--out", tmp_path / "o", "--parts", 10**7), "--parts must be a whole number",
              "10000000")  # fmt: skip
    assert not (tmp_path / "o").exists()


def _rewrite_shard(path: Path, change) -> None:
    """Rewrite a shard tar with `change(name, data)` applied to every member's bytes."""
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            data = change(info.name, data)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_payloads_in_shards_are_skipped_named_and_counted(tmp_path, capfd):
    videos = davis_pending(DAVIS_MINI, 2017, "val")  # blackswan, car-shadow, libby: one shard each
    write_shards(videos, str(tmp_path / "s"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
    shards = sorted((tmp_path / "s").glob("*.tar"))
    assert len(shards) == 3
    _rewrite_shard(shards[0], lambda name, data: b"\xff\xd8 not a jpeg" if name.endswith(".jpg") else data)
    _rewrite_shard(shards[1], lambda name, data: b"{not json" if name.endswith(".json") else data)
    loader = make_loader(tmp_path / "s", "video", batch_size=1, num_workers=0, mode="once", crop=64, shuffle_buffer=0)
    batches = list(loader)
    assert [i["name"] for b in batches for i in b["info"]] == ["libby"]
    assert batches[0]["info"][0]["skipped"] in (0, 1, 2)  # corrupt samples skipped by this worker before it
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("warning: skipped corrupt")]
    assert len(warnings) == 2
    warnings.sort(key=lambda line: "car-shadow" in line)  # the shard order is shuffled
    assert "'blackswan'" in warnings[0] and shards[0].name in warnings[0]
    assert "'car-shadow'" in warnings[1] and shards[1].name in warnings[1]
