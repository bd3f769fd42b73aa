"""Outputs: never the same as, inside or holding an input; whole or not at all; unwritable, read-only or
full targets are one line; what killed runs left is removed by the next run."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from clihelp import one_error, stcn
from conftest import dead_pid, png_frames
from fullfs import read_only_dir, tiny_fs  # noqa: F401  (pytest fixtures)

from stcn.data.fetch.sources import DAVIS_MINI
from stcn.errors import UserError
from stcn.eval.davis_score import score_davis


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_evaluate_into_the_ground_truth_is_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 5: `evaluate --out ROOT/Annotations/480p` overwrote the ground truth (then scored 100.0)."""
    root = tmp_path / "davis"
    shutil.copytree(DAVIS_MINI, root)
    before = _hashes(root)
    for out in (root / "Annotations/480p", root, tmp_path):
        res = stcn("evaluate", "--weights", weights_file, "--dataset", "generic", "--root", root, "--out", out,
                   "--max-frames", "2", "--device", "cpu")  # fmt: skip
        one_error(res, f"--out {out}", f"the input --root {root}")
        assert _hashes(root) == before
    res = stcn("evaluate", "--weights", weights_file, "--dataset", "generic", "--root", root, "--out",
               weights_file.parent, "--max-frames", "2", "--device", "cpu")  # fmt: skip
    one_error(res, f"--out {weights_file.parent} holds the input --weights {weights_file}")


def test_segment_into_its_frames_is_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 6: `segment --frames DIR --out DIR` (PNG frames) overwrote the frames with masks; also an
    --out inside the frames, the mask's own folder, and batch mode's --out in the masks folder."""
    from PIL import Image

    frames = png_frames(tmp_path / "frames")
    mask = tmp_path / "first" / "00000.png"
    mask.parent.mkdir()
    Image.open(DAVIS_MINI / "Annotations/480p/blackswan/00000.png").resize((214, 120), Image.NEAREST).save(mask)
    before, mask_before = _hashes(frames), _hashes(mask.parent)
    cases = [(frames, "is the input --frames"), (frames / "masks", "lies inside the input --frames"),
             (mask.parent, "holds the input --first-mask"), (tmp_path, "holds the input --frames")]  # fmt: skip
    for out, how in cases:
        res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out", out,
                   "--device", "cpu")  # fmt: skip
        one_error(res, f"--out {out} {how}")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out",
               tmp_path / "ok", "--overlay", frames / "00000.png", "--device", "cpu")  # fmt: skip
    one_error(res, f"--overlay {frames / '00000.png'} lies inside the input --frames {frames}")
    batch = tmp_path / "videos"
    shutil.copytree(frames, batch / "blackswan")
    res = stcn("segment", "--weights", weights_file, "--frames", batch, "--first-mask", mask.parent, "--out",
               mask.parent / "predicted", "--device", "cpu")  # fmt: skip
    one_error(res, f"lies inside the input --first-mask {mask.parent}")
    assert _hashes(frames) == before and _hashes(mask.parent) == mask_before
    assert not (tmp_path / "ok").exists()


def test_batch_videos_of_one_name_are_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 7 (batch): `a/` and `a.mp4` would both be written to OUT/a: refused before any writing."""
    from stcn.inference.overlay import OverlayWriter

    batch = tmp_path / "videos"
    frames = png_frames(batch / "blackswan")
    writer = OverlayWriter(batch / "blackswan.mp4")
    import numpy as np
    from PIL import Image

    for png in sorted(frames.iterdir()):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        writer.add(rgb, np.zeros(rgb.shape[:2], np.uint8))
    writer.close()
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(DAVIS_MINI / "Annotations/480p/blackswan/00000.png", masks / "blackswan.png")
    res = stcn("segment", "--weights", weights_file, "--frames", batch, "--first-mask", masks, "--out",
               tmp_path / "out", "--device", "cpu")  # fmt: skip
    one_error(res, str(batch / "blackswan"), str(batch / "blackswan.mp4"), str(tmp_path / "out" / "blackswan"))
    assert not (tmp_path / "out").exists()


def test_app_exports_of_two_videos_never_share_a_folder(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 7: "dog agility" and "dog_agility" both became OUT/dog_agility (masks mixed, the overlay
    replaced); now each video keeps its own folder, and exporting one video again reuses its folder."""
    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.session import Session
    from stcn.interactive.weights import load_fusion, load_s2m

    root = tmp_path / "root"
    for name, n in (("dog agility", 2), ("dog_agility", 3)):
        png_frames(root / name, n)
    settings = InferenceSettings(resolution=64, mem_every=2)
    session = Session(load_model(weights_file), load_s2m(None, 0), load_fusion(None), settings, tmp_path / "out",
                      root, models="test")  # fmt: skip
    exported = {}
    for name in ("dog agility", "dog_agility", "dog agility"):
        session.open(path=name)
        session.export()
        assert session.wait()["job"]["state"] == "done"
        exported.setdefault(name, set()).add(session.status()["exported"]["masks"])
    first, second = exported["dog agility"], exported["dog_agility"]
    assert len(first) == 1 and len(second) == 1 and first != second  # one folder per video, reused
    assert len(list(Path(next(iter(first))).glob("*.png"))) == 2
    assert len(list(Path(next(iter(second))).glob("*.png"))) == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dog_agility", "dog_agility-2"]


def test_interact_and_train_outputs_over_inputs_are_refused(tmp_path: Path, weights_file: Path, interact_round,
                                                            video_shards: Path) -> None:  # fmt: skip
    """Issue 30 item 7: `interact --out FRAMES` and `train --out` holding its --init weights are refused."""
    swan, swan_png = interact_round.video("blackswan", 3)
    before = _hashes(swan)
    one_error(interact_round(swan, swan_png, swan), f"--out {swan} is the input --frames {swan}")
    assert _hashes(swan) == before
    run = tmp_path / "run"
    run.mkdir()
    init = run / "weights.pth"
    shutil.copy(weights_file, init)
    res = stcn("train", "--stage", "3", "--data", video_shards, "--out", run, "--init", init, "--iterations", 1,
               "--batch-size", "1", "--crop", "64", "--device", "cpu", "--num-workers", "0")  # fmt: skip
    one_error(res, f"--out {run} holds the input --init {init}")
    assert init.read_bytes() == weights_file.read_bytes() and sorted(p.name for p in run.iterdir()) == ["weights.pth"]


def test_segment_rerun_removes_what_a_killed_run_left(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 15: a killed single-video `stcn segment` left `.OUT.<pid>.tmp/` and a successful re-run kept
    it; now the re-run removes the temporaries of dead processes (a live one's stays)."""
    from PIL import Image

    frames = png_frames(tmp_path / "frames")
    mask = tmp_path / "first.png"
    Image.open(DAVIS_MINI / "Annotations/480p/blackswan/00000.png").resize((214, 120), Image.NEAREST).save(mask)
    dead, live = tmp_path / f".out.{dead_pid()}.tmp", tmp_path / f".out.{os.getpid()}.tmp"
    for half in (dead, live):
        half.mkdir()
        (half / "00000.png").write_bytes(b"half")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out",
               tmp_path / "out", "--device", "cpu")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not dead.exists() and live.is_dir() and len(list((tmp_path / "out").glob("*.png"))) == 3


def test_failed_segment_leaves_no_output_folder(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    (frames / "00005.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png",
                "--out", tmp_path / "out", "--overlay", tmp_path / "preview" / "out.mp4")  # fmt: skip
    one_error(res, "corrupt", "00005.jpg", alone=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no out/, no temporary folder
    preview = tmp_path / "preview"
    assert not preview.exists() or not any(preview.iterdir())  # no preview video, finished or partial


def test_score_csvs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    root = tmp_path / "davis"
    for sub in ("JPEGImages", "Annotations"):
        for seq in ("blackswan", "car-shadow", "libby"):
            for p in sorted((DAVIS_MINI / sub / "480p" / seq).iterdir())[:4]:
                (root / sub / "480p" / seq).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, root / sub / "480p" / seq / p.name)
    shutil.copytree(DAVIS_MINI / "ImageSets", root / "ImageSets")
    shutil.copytree(root / "Annotations" / "480p", tmp_path / "pred")  # perfect predictions
    score_davis(root, 2017, "val", tmp_path / "pred", out_dir=tmp_path / "scores", progress=False)
    before = (tmp_path / "scores" / "global_results-val.csv").read_text()

    def full_disk(self, path, **kw):
        Path(path).write_text("J&F-Mean,J-Me")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(UserError, match="cannot write .*global_results-val.csv: No space left on device"):
        score_davis(root, 2017, "val", tmp_path / "pred", out_dir=tmp_path / "scores", progress=False)
    assert (tmp_path / "scores" / "global_results-val.csv").read_text() == before
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == [
        "global_results-val.csv", "per-sequence_results-val.csv"]  # fmt: skip


def test_segment_out_is_a_file_or_read_only_is_one_line(weights_file, small_blackswan, read_only_dir, tmp_path):  # noqa: F811
    frames, masks = small_blackswan
    args = ["segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png", "--out"]
    (tmp_path / "taken").write_text("x")
    one_error(stcn(*args, tmp_path / "taken"), "taken exists and is a file", alone=True)
    one_error(stcn(*args, read_only_dir / "out"), "cannot write", "read-only/out", alone=True)


def test_download_to_read_only_is_one_line(read_only_dir):  # noqa: F811
    res = stcn("download", "davis17", "--source", "bundled", "--to", read_only_dir / "d")
    one_error(res, "cannot write into --to", "read-only/d", alone=True)


def test_shard_on_a_full_disk_is_one_line(tiny_fs, tmp_path):  # noqa: F811
    small = tiny_fs(300_000)
    if not tiny_fs.mounted:
        pytest.skip("needs a real small file system (root may mount a tmpfs)")
    res = stcn("shard", "davis", "--root", DAVIS_MINI, "--split", "val", "--out", small / "shards")
    one_error(res, "cannot write shards to", "No space left on device", alone=True)
