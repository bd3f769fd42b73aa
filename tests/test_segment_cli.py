"""`stcn segment` end to end on real frames, and its one-line errors."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import torch
from clihelp import one_error, stcn
from conftest import seeded_state_dict
from PIL import Image

from stcn.data.images import read_mask


def segment(weights, frames, first_mask, out, *extra, **options) -> subprocess.CompletedProcess:
    """`stcn segment` of one video; `options`: those of clihelp.stcn."""
    return stcn("segment", "--weights", weights, "--frames", frames, "--first-mask", first_mask, "--out", out, *extra,
                **options)  # fmt: skip


def test_segment_folder_writes_palette_pngs(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    out = tmp_path / "out"
    r = segment(weights_file, frames, masks / "00000.png", out, "--overlay", tmp_path / "preview.mp4",
                "--max-memory-frames", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"{i:05d}.png" for i in range(8)]
    assert Image.open(out / "00003.png").mode == "P"
    assert np.array_equal(read_mask(out / "00000.png"), read_mask(masks / "00000.png"))
    cap = cv2.VideoCapture(str(tmp_path / "preview.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


def test_segment_video_file(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    video, mask = tmp_path / "clip.mp4", tmp_path / "first.png"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (426, 240))  # codec wants even sizes
    for f in sorted(frames.glob("*.jpg"))[:4]:
        writer.write(cv2.imread(str(f))[:, :426])
    writer.release()
    Image.fromarray(read_mask(masks / "00000.png")[:, :426]).save(mask)
    r = segment(weights_file, video, mask, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"{i:05d}.png" for i in range(4)]


def test_mask_size_mismatch(weights_file, small_blackswan, davis_root, tmp_path):
    frames, _ = small_blackswan
    r = segment(weights_file, frames, davis_root / "Annotations/480p/blackswan/00000.png", tmp_path / "o")
    one_error(r, "854x480", "427x240", alone=True)


def test_corrupt_and_missing_frames(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    (frames / "00004.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    r = segment(weights_file, frames, masks / "00000.png", tmp_path / "o")
    one_error(r, "corrupt", "00004.jpg", alone=True)
    r = segment(weights_file, tmp_path / "nowhere", masks / "00000.png", tmp_path / "o")
    one_error(r, "nowhere", alone=True)


def test_empty_first_mask(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros_like(read_mask(masks / "00000.png"))).save(empty)
    r = segment(weights_file, frames, empty, tmp_path / "o")
    one_error(r, "no object", alone=True)


@pytest.mark.parametrize("bad", ["shape", "garbage"])
def test_bad_checkpoint(official_entries, small_blackswan, tmp_path, bad):
    frames, masks = small_blackswan
    path = tmp_path / "bad.pth"
    if bad == "shape":
        state = seeded_state_dict(official_entries)
        state["decoder.compress.conv1.weight"] = torch.zeros(512, 512, 3, 3)
        torch.save(state, path)
    else:
        path.write_bytes(b"\x00" * 100)
    r = segment(path, frames, masks / "00000.png", tmp_path / "o")
    one_error(r, "decoder.compress.conv1.weight" if bad == "shape" else "bad.pth", alone=True)


def test_one_video_prints_progress_lines_on_a_non_terminal(weights_file, small_blackswan, tmp_path):
    """`stcn segment` on one folder of frames, stderr a pipe: a plain `frames done/total, FPS` line every period."""
    frames, masks = small_blackswan
    r = segment(weights_file, frames, masks / "00000.png", tmp_path / "out",
                quiet=False, STCN_PROGRESS_PERIOD="0", STCN_QUIET="0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("segment frames: ")]
    assert [line.split(": ")[1].split(" ")[0] for line in lines[:8]] == [f"{i}/8" for i in range(1, 9)]
    assert "frames/s" in lines[0] and lines[-1].endswith("— done")
    quiet = segment(weights_file, frames, masks / "00000.png", tmp_path / "q", "--quiet",
                    quiet=False, STCN_PROGRESS_PERIOD="0", STCN_QUIET="0")  # fmt: skip
    assert quiet.returncode == 0 and "frames/s" not in quiet.stderr


def test_mask_255_is_void_unless_told_it_is_an_object(weights_file, small_blackswan, tmp_path):
    """A first mask whose object is id 255: DAVIS' void by default (one line naming the flag); with
    `--mask-255 object` it is object 255, segmented exactly as the same mask with id 1 (one channel, not 255)."""
    frames, masks = small_blackswan
    ones = read_mask(masks / "00000.png")
    assert set(np.unique(ones)) == {0, 1}
    as_255 = tmp_path / "255.png"
    Image.fromarray(np.where(ones == 1, 255, 0).astype(np.uint8)).save(as_255)
    one_error(segment(weights_file, frames, as_255, tmp_path / "v"), "no object", "--mask-255 object", alone=True)
    assert not (tmp_path / "v").exists()
    one_error(segment(weights_file, frames, as_255, tmp_path / "v", "--mask-255", "both"), "--mask-255", alone=True)

    r = segment(weights_file, frames, as_255, tmp_path / "255", "--mask-255", "object")
    assert r.returncode == 0, r.stderr
    r = segment(weights_file, frames, masks / "00000.png", tmp_path / "1")
    assert r.returncode == 0, r.stderr
    for one in sorted((tmp_path / "1").glob("*.png")):
        got, want = read_mask(tmp_path / "255" / one.name), read_mask(one)
        assert np.array_equal(got, np.where(want == 1, 255, 0)), one.name
    assert (read_mask(tmp_path / "255" / "00007.png") == 255).any()
