"""Masks and videos that would silently give wrong results are errors naming the file: 16-bit ids above
255, several RGB colours, truncated MP4s, frames of different sizes, corrupt frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from clihelp import one_error, stcn
from PIL import Image

from stcn.data.fetch.sources import DAVIS_MINI
from stcn.data.images import PALETTE, read_mask
from stcn.errors import UserError
from stcn.eval.davis_score import score_davis
from stcn.inference.video import video_frames


def _blackswan_labels() -> np.ndarray:
    return read_mask(DAVIS_MINI / "Annotations" / "480p" / "blackswan" / "00000.png")


def _save_16bit(labels: np.ndarray, path: Path) -> Path:
    Image.fromarray(labels.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return path


def test_16bit_mask_with_ids_above_255_is_an_error_naming_it(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    labels = read_mask(masks / "00000.png").astype(np.int32)
    labels[:, : labels.shape[1] // 2] *= 300  # ids 1 (right half of the swan) and 300 (left half)
    mask = _save_16bit(labels, tmp_path / "first16.png")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out", tmp_path / "o")
    one_error(res, "first16.png", "ids above 255", alone=True)


def test_16bit_mask_with_small_ids_keeps_every_object(tmp_path):
    labels = _blackswan_labels().copy()
    labels[:, :400][labels[:, :400] == 1] = 2
    assert read_mask(_save_16bit(labels, tmp_path / "m.png")).tolist() == labels.tolist()
    binary = _save_16bit((labels > 0) * 65535, tmp_path / "b.png")  # a 0/65535 binary mask: one object
    assert np.array_equal(read_mask(binary), (labels > 0).astype(np.uint8))


def test_rgb_masks_with_several_colours(tmp_path):
    labels = _blackswan_labels().copy()
    labels[:, :400][labels[:, :400] == 1] = 2
    rgb = np.array(PALETTE, np.uint8).reshape(256, 3)[labels]
    Image.fromarray(rgb).save(tmp_path / "davis_colours.png")
    assert np.array_equal(read_mask(tmp_path / "davis_colours.png"), labels)  # DAVIS colours: their ids
    rgb[labels == 2] = (10, 200, 30)
    Image.fromarray(rgb).save(tmp_path / "other.png")
    with pytest.raises(UserError, match="colour mask .*other.png has 2 colours"):
        read_mask(tmp_path / "other.png")


def test_score_reads_16bit_predictions_with_their_ids(tmp_path):
    gt = DAVIS_MINI / "Annotations" / "480p" / "blackswan"
    pred = tmp_path / "pred" / "blackswan"
    pred.mkdir(parents=True)
    for p in sorted(gt.glob("*.png")):
        labels = read_mask(p).astype(np.int32)
        if p.stem == "00010":
            labels[:20, :20] = 2  # an object the ground truth does not have
        _save_16bit(labels, pred / p.name)
    with pytest.raises(UserError, match="prediction of 'blackswan' has object id 2"):
        score_davis(DAVIS_MINI, 2017, "val", tmp_path / "pred", progress=False)


def _faststart(path: Path) -> None:
    """Move an MP4's `moov` box before `mdat` (as web-optimised files have it), fixing the chunk offsets."""
    data = bytearray(path.read_bytes())
    boxes, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        boxes.append((data[i + 4 : i + 8].decode(), bytes(data[i : i + size])))
        i += size
    moov = bytearray(dict(boxes)["moov"])

    def shift(start: int, end: int) -> None:
        j = start
        while j < end:
            size, kind = int.from_bytes(moov[j : j + 4], "big"), moov[j + 4 : j + 8]
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(j + 8, j + size)
            elif kind == b"stco":
                for k in range(int.from_bytes(moov[j + 12 : j + 16], "big")):
                    at = j + 16 + 4 * k
                    moov[at : at + 4] = (int.from_bytes(moov[at : at + 4], "big") + len(moov)).to_bytes(4, "big")
            j += size

    shift(8, len(moov))
    order = [b for k, b in boxes if k == "ftyp"] + [bytes(moov)] + [b for k, b in boxes if k not in ("ftyp", "moov")]
    path.write_bytes(b"".join(order))


def test_truncated_mp4_with_its_index_first_is_an_error(small_blackswan, tmp_path):
    frames, _ = small_blackswan
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (426, 240))
    for f in sorted(frames.glob("*.jpg")):
        writer.write(cv2.imread(str(f))[:, :426])
    writer.release()
    _faststart(video)
    assert len(list(video_frames(video))) == 8  # whole: every frame
    video.write_bytes(video.read_bytes()[: int(video.stat().st_size * 0.7)])
    with pytest.raises(UserError, match=r"truncated or damaged video: .*clip.mp4 \(decoded [0-7] of its 8 frames\)"):
        list(video_frames(video))


def test_frames_of_different_sizes_are_an_error(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    Image.open(frames / "00001.jpg").resize((300, 200)).save(frames / "00001.jpg")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png",
                "--out", tmp_path / "o")  # fmt: skip
    one_error(res, "frame 00001 is 300x200 but the first frame is 427x240", alone=True)
