"""`stcn segment --frames ROOT --first-mask MASKS --out OUT`: many videos, one model load, resume, bad videos."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
from clihelp import ENV, one_error, stcn
from conftest import DAVIS, shrink_sequence
from PIL import Image

from stcn.data.images import read_mask


def segment(weights, frames, masks, out, *extra) -> subprocess.CompletedProcess:
    """`stcn segment` with its progress lines (every video's, at once) and a small environment."""
    args = ["segment", "--weights", weights, "--frames", frames, "--first-mask", masks, "--out", out, *extra]
    env = {"STCN_PROGRESS_PERIOD": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200",
           **{k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")}}  # fmt: skip
    return stcn(*args, env=env, quiet=False)


def make_root(tmp_path):
    """ROOT: blackswan (folder, DAVIS mask layout), car-shadow (folder, <video>.png), clip (mp4), broken (folder)."""
    root, masks = tmp_path / "videos", tmp_path / "masks"
    for name, n in (("blackswan", 4), ("car-shadow", 3), ("broken", 3)):
        src = DAVIS / "JPEGImages/480p" / name.replace("broken", "libby")
        frames, ann = shrink_sequence(src, DAVIS / "Annotations/480p" / src.name, tmp_path / "src" / name, n, 0.25)
        shutil.copytree(frames, root / name)
        if name == "blackswan":
            shutil.copytree(ann, masks / name)
        else:
            shutil.copy(ann / "00000.png", masks / f"{name}.png")
    (root / "broken" / "00001.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    frames = sorted((root / "blackswan").glob("*.jpg"))
    h, w = cv2.imread(str(frames[0])).shape[:2]
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w // 2 * 2, h // 2 * 2))
    for f in frames:
        writer.write(cv2.imread(str(f))[: h // 2 * 2, : w // 2 * 2])
    writer.release()
    Image.fromarray(read_mask(masks / "blackswan" / "00000.png")[: h // 2 * 2, : w // 2 * 2]).save(masks / "clip.png")
    return root, masks


def test_batch_segments_every_video_skips_bad_and_resumes(weights_file, tmp_path):
    root, masks = make_root(tmp_path)
    out = tmp_path / "out"
    (out / ".clip.partial").mkdir(parents=True)  # a leftover of an interrupted run is redone
    r = segment(weights_file, root, masks, out)
    assert r.returncode == 1, r.stderr
    assert "broken" in r.stderr and "00001.jpg" in r.stderr and "1 of 4 videos failed" in r.stderr
    for name, n in (("blackswan", 4), ("car-shadow", 3), ("clip", 4)):
        assert sorted(p.name for p in (out / name).glob("*.png")) == [f"{i:05d}.png" for i in range(n)], name
    assert np.array_equal(read_mask(out / "blackswan/00000.png"), read_mask(masks / "blackswan/00000.png"))
    assert not (out / "broken").exists() and not list(out.glob(".*"))  # no half-written output
    for line in ("blackswan", "car-shadow", "clip"):  # summary table: frames, objects, FPS per video
        assert any(line in row and "done" in row for row in r.stderr.splitlines()), r.stderr
    assert "[4/4 videos" in r.stderr  # overall progress in the per-video progress lines

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    shutil.copy(root / "car-shadow" / "00000.jpg", root / "broken" / "00001.jpg")  # repair the bad video
    r = segment(weights_file, root, masks, out)
    assert r.returncode == 0, r.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before  # complete videos were not redone
    assert r.stderr.count("skipped (complete)") == 3
    assert sorted(p.name for p in (out / "broken").glob("*.png")) == [f"{i:05d}.png" for i in range(3)]


def test_batch_missing_mask_and_empty_root(weights_file, tmp_path):
    root, masks = make_root(tmp_path)
    (masks / "car-shadow.png").unlink()
    r = segment(weights_file, root, masks, tmp_path / "out")
    assert r.returncode == 1 and "no first-frame mask for car-shadow" in r.stderr, r.stderr
    (tmp_path / "empty").mkdir()
    r = segment(weights_file, tmp_path / "empty", masks, tmp_path / "out2")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no videos"), r.stderr


def test_unknown_precision_is_a_one_line_error(weights_file, tmp_path):
    r = segment(weights_file, tmp_path, tmp_path, tmp_path / "out", "--precision", "fp16", "--device", "cpu")
    assert one_error(r) == "error: unknown precision 'fp16' on cpu; choose one of auto, fp32, fast, bf16"
    r = stcn("evaluate", "--weights", weights_file, "--dataset", "davis17", "--root", tmp_path, "--out",
             tmp_path.parent / f"{tmp_path.name}-o", "--precision", "half", "--device", "cpu")  # fmt: skip
    assert one_error(r) == "error: unknown precision 'half' on cpu; choose one of auto, fp32, fast, bf16"


def test_batch_mask_255_object(weights_file, tmp_path):
    """Batch mode takes `--mask-255 object` too: a <video>.png naming object 255 and another with ids 1 and 255."""
    root, masks = make_root(tmp_path)
    shutil.rmtree(root / "broken")
    (masks / "broken.png").unlink()
    for name in ("car-shadow", "clip"):
        mask = read_mask(masks / f"{name}.png")
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(masks / f"{name}.png")
    two = read_mask(masks / "blackswan" / "00000.png").copy()
    two[: two.shape[0] // 3][two[: two.shape[0] // 3] == 0] = 255  # the top third's background: object 255
    Image.fromarray(two).save(masks / "blackswan" / "00000.png")
    r = segment(weights_file, root, masks, tmp_path / "void")
    assert r.returncode == 1 and "2 of 3 videos failed: car-shadow, clip" in r.stderr, r.stderr  # void only
    assert "error: car-shadow: " in r.stderr and "for object 255 use `--mask-255 object`" in r.stderr, r.stderr
    r = segment(weights_file, root, masks, tmp_path / "out", "--mask-255", "object")
    assert r.returncode == 0, r.stderr
    for name in ("car-shadow", "clip"):
        assert set(np.unique(read_mask(tmp_path / "out" / name / "00001.png"))) <= {0, 255}
        assert (read_mask(tmp_path / "out" / name / "00001.png") == 255).any(), name
    assert np.array_equal(read_mask(tmp_path / "out/blackswan/00000.png"), two)
    assert {1, 255} <= set(np.unique(read_mask(tmp_path / "out/blackswan/00003.png")))


def test_batch_error_lines_do_not_wrap_at_80_columns(tmp_path: Path, weights_file: Path) -> None:
    """A failed video's `error:` line in a log (no terminal, no COLUMNS) stays one line whatever its length."""
    from conftest import DAVIS, shrink_sequence

    root, masks = tmp_path / ("videos-with-a-rather-long-folder-name-" * 2), tmp_path / "masks"
    for name in ("blackswan", "libby"):
        frames, ann = shrink_sequence(DAVIS / "JPEGImages/480p" / name, DAVIS / "Annotations/480p" / name,
                                      tmp_path / "src" / name, 2, 0.25)  # fmt: skip
        shutil.copytree(frames, root / name)
        masks.mkdir(exist_ok=True)
        shutil.copy(ann / "00000.png", masks / f"{name}.png")
    bad = root / "libby" / "00001.jpg"
    bad.write_bytes(b"\xff\xd8 truncated jpeg")
    env = {k: v for k, v in ENV.items() if k not in ("COLUMNS", "LINES")}
    res = stcn("segment", "--weights", weights_file, "--frames", root, "--first-mask", masks, "--out",
               tmp_path / "out", env={**env, "STCN_PROGRESS_PERIOD": "0", "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert res.returncode == 1, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: libby")]
    assert len(errors) == 1 and str(bad) in errors[0] and len(errors[0]) > 80, res.stderr
