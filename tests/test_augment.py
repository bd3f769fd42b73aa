"""Augmentations and shard-sample -> training-sample conversion, on the bundled real DAVIS frames."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stcn.data.images import read_frame, read_mask
from stcn.data.stream.augment import (
    IM_MEAN,
    IM_STD,
    Jitter,
    apply_jitter,
    random_resized_crop_box,
    static_pseudo_video,
    to_float,
    video_frames,
    warp_pair,
)
from stcn.data.stream.samples import (
    BL30K,
    VideoRecipe,
    binary_mask,
    choose_frames,
    frame_stride,
    static_training_sample,
    usable_objects,
    video_training_sample,
)
from stcn.data.stream.tps import random_tps_pair

BUNDLED = Path(__file__).resolve().parent.parent / "stcn" / "data" / "bundled"
DAVIS = BUNDLED / "davis-mini"
TENNIS = BUNDLED / "davis17-multiobject-sample"
CROP = 96  # small crops keep the tests fast; the geometry is the same at 384


def frame(seq: str = "blackswan", stem: str = "00000") -> tuple[np.ndarray, np.ndarray]:
    return read_frame(DAVIS / "JPEGImages/480p" / seq / f"{stem}.jpg"), read_mask(
        DAVIS / "Annotations/480p" / seq / f"{stem}.png"
    )


def raw_video(root: Path, seq: str, rename=lambda s: s, masks=None) -> dict:
    """A raw shard sample dict (as WebDataset yields it) for a bundled sequence."""
    stems = sorted(p.stem for p in (root / "JPEGImages/480p" / seq).glob("*.jpg"))
    names = [rename(s) for s in stems]
    meta = {"video": seq, "frames": names, "annotated": names, "objects": [1], "size": [480, 854], "source": "t"}
    raw = {"__key__": seq, "json": json.dumps(meta).encode()}
    for s, n in zip(stems, names, strict=True):
        raw[f"{n}.jpg"] = (root / "JPEGImages/480p" / seq / f"{s}.jpg").read_bytes()
        raw[f"{n}.png"] = (masks or {}).get(s) or (root / "Annotations/480p" / seq / f"{s}.png").read_bytes()
    return raw


def unnormalise(t: torch.Tensor) -> torch.Tensor:
    return t * torch.tensor(IM_STD)[:, None, None] + torch.tensor(IM_MEAN)[:, None, None]


def agreement(images: list[torch.Tensor], masks: list[np.ndarray]) -> float:
    """Fraction of pixels where the image's mask-painted channel agrees with the warped mask."""
    return min(
        float(((unnormalise(im)[0] > 0.5).numpy() == (m > 0)).mean()) for im, m in zip(images, masks, strict=True)
    )


def painted(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose channels are the mask (255 object, 0 background): aligned by construction."""
    return np.repeat((mask > 0).astype(np.uint8)[..., None] * 255, 3, axis=2)


def test_static_geometry_keeps_image_and_mask_aligned():
    _, mask = frame()
    rng = np.random.default_rng(0)
    for _ in range(5):
        ims, masks = static_pseudo_video(painted(mask), mask, rng, CROP, tps_p=1.0, colour=False)
        assert agreement(ims, masks) > 0.97
        assert all(set(np.unique(m)) <= {0, 1} for m in masks)


def test_video_geometry_keeps_image_and_mask_aligned():
    _, mask = frame("car-shadow")
    rng = np.random.default_rng(1)
    for _ in range(5):
        ims, masks = video_frames([painted(mask)] * 3, [mask] * 3, rng, CROP, colour=False)
        assert agreement(ims, masks) > 0.97


def test_tps_warps_image_and_mask_alike_and_keeps_labels():
    _, mask = frame("libby")
    image = painted(mask)
    im, m = random_tps_pair(image, mask, np.random.default_rng(2), scale=0.05)
    assert im.shape == image.shape and m.shape == mask.shape and m.dtype == mask.dtype
    assert set(np.unique(m)) <= set(np.unique(mask))
    assert ((im[..., 0] > 127) == (m > 0)).mean() > 0.99
    assert (m != mask).any()  # it did move something


def test_warp_pair_prefilters_large_shrinks_without_misalignment():
    _, mask = frame()
    matrix = np.diag([0.25, 0.25, 1.0])  # 854x480 -> 213x120: area pre-shrink path
    im, m = warp_pair(painted(mask), mask, matrix, (120, 213))
    assert ((im[..., 0] > 127) == (m > 0)).mean() > 0.97


def test_colour_ops_and_normalisation():
    image, _ = frame()
    t = to_float(image)
    assert t.shape == (3, 480, 854) and t.min() >= 0 and t.max() <= 1
    grey = apply_jitter(t, ([], True))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    ops, _ = Jitter(0.1, 0.05, 0.05, 0.05).sample(np.random.default_rng(0))
    assert sorted(n for n, _ in ops) == ["brightness", "contrast", "hue", "saturation"]
    assert all(0.9 <= f <= 1.1 for n, f in ops if n == "brightness")
    assert [n for n, _ in Jitter(0.01, 0.01, 0.01, 0).sample(np.random.default_rng(0))[0]].count("hue") == 0


def test_random_resized_crop_box_stays_inside():
    rng = np.random.default_rng(3)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(rng, (480, 854), (0.25, 1.0))
        assert top >= 0 and top + h <= 480 and left >= 0 and left + w <= 854
        assert 0.2 * 480 * 854 <= h * w <= 480 * 854


def test_choose_frames_respects_max_skip_and_reverses():
    rng = np.random.default_rng(4)
    reversed_seen = forward_seen = 0
    for count in (1, 2, 3, 4, 10, 25, 50):
        for skip in (1, 2, 5, 10, 25, 100):
            for _ in range(30):
                idx = choose_frames(count, skip, rng)
                assert len(idx) == 3 and all(0 <= i < count for i in idx)
                gaps = np.diff(idx)
                if count >= 3:
                    assert len(set(idx)) == 3 and (np.all(gaps > 0) or np.all(gaps < 0))
                    assert np.abs(gaps).max() <= skip
                    reversed_seen += gaps[0] < 0
                    forward_seen += gaps[0] > 0
    assert 0.4 < reversed_seen / (reversed_seen + forward_seen) < 0.6


def test_frame_stride():
    assert frame_stride(["00000", "00005", "00010", "00020"]) == 5
    assert frame_stride(["00000", "00001"]) == 1
    assert frame_stride(["a", "b"]) == 1


def test_binary_mask_handles_0_255_and_0_1():
    assert binary_mask(np.array([[0, 255], [128, 127]], np.uint8)).tolist() == [[0, 1], [1, 0]]
    assert binary_mask(np.array([[0, 1], [1, 0]], np.uint8)).tolist() == [[0, 1], [1, 0]]


def test_video_training_sample_shapes_and_values():
    raw = raw_video(DAVIS, "dog-agility")
    s = video_training_sample(raw, np.random.default_rng(5), max_skip=3, recipe=VideoRecipe(crop=CROP))
    assert s["rgb"].shape == (3, 3, CROP, CROP) and s["rgb"].dtype == torch.float32
    assert s["rgb"].min() > -2.2 and s["rgb"].max() < 2.7
    assert s["gt"].shape == s["sec_gt"].shape == (3, 1, CROP, CROP)
    assert set(s["gt"].unique().tolist()) <= {0.0, 1.0} and s["gt"][0].sum() > 0
    assert s["cls_gt"].shape == (3, CROP, CROP) and s["cls_gt"].dtype == torch.long
    assert torch.equal(s["cls_gt"] == 1, s["gt"][:, 0] > 0.5)
    assert s["selector"].tolist() == [1.0, 0.0] and s["sec_gt"].sum() == 0
    assert torch.equal(s["first_frame_gt"], torch.stack([s["gt"][0], s["sec_gt"][0]]))
    gaps = np.abs(np.diff(s["info"]["indices"]))
    assert s["info"]["frames"] == [f"{i:05d}" for i in s["info"]["indices"]] and gaps.max() <= 3


def test_two_objects_and_void_are_handled():
    raw = raw_video(TENNIS, "tennis")
    rng = np.random.default_rng(6)
    selectors = set()
    for _ in range(10):
        s = video_training_sample(raw, rng, max_skip=1, recipe=VideoRecipe(crop=CROP))
        selectors.add(tuple(s["selector"].tolist()))
        assert set(s["cls_gt"].unique().tolist()) <= {0, 1, 2}
        if s["selector"][1] == 1:
            assert torch.equal(s["cls_gt"] == 2, s["sec_gt"][:, 0] > 0.5) and s["sec_gt"][0].sum() > 0
    assert (1.0, 1.0) in selectors


def test_youtube_stride_divides_max_skip():
    raw = raw_video(DAVIS, "dog-agility", rename=lambda s: f"{int(s) * 5:05d}")
    for _ in range(10):
        s = video_training_sample(raw, np.random.default_rng(_), max_skip=10, recipe=VideoRecipe(crop=CROP))
        assert s["info"]["skip"] == 2 and np.abs(np.diff(s["info"]["indices"])).max() <= 2


def test_retries_until_the_first_frame_shows_an_object():
    buf = io.BytesIO()
    Image.new("P", (854, 480), 0).save(buf, format="PNG")
    empty = buf.getvalue()
    stems = [f"{i:05d}" for i in range(25)]
    keep = {"00020"}  # only one frame shows the dog
    raw = raw_video(DAVIS, "dog-agility", masks={s: empty for s in stems if s not in keep})
    s = video_training_sample(raw, np.random.default_rng(7), max_skip=25, recipe=VideoRecipe(crop=CROP))
    assert s["info"]["frames"][0] == "00020" and s["gt"][0].sum() > 0
    none = raw_video(DAVIS, "dog-agility", masks=dict.fromkeys(stems, empty))
    s = video_training_sample(none, np.random.default_rng(8), 5, VideoRecipe(crop=CROP, max_tries=3))
    assert s["gt"].sum() == 0 and s["selector"].tolist() == [1.0, 0.0]


def test_bl30k_object_size_rule():
    big, small = np.zeros((100, 100), np.uint8), np.zeros((100, 100), np.uint8)
    big[:40, :40] = 1
    small[:5, :5] = 1
    assert usable_objects([big, big, big], BL30K) == [1]
    assert usable_objects([small, small, small], BL30K) == []
    assert usable_objects([small, small, small], VideoRecipe()) == [1]
    medium = np.zeros((100, 100), np.uint8)
    medium[:15, :15] = 1  # 225 px: fine if it stays small, not if it is much bigger later
    assert usable_objects([medium, medium, medium], BL30K) == [1]
    assert usable_objects([medium, big, big], BL30K) == []


def test_static_training_sample():
    jpg = (DAVIS / "JPEGImages/480p/blackswan/00000.jpg").read_bytes()
    png = (DAVIS / "Annotations/480p/blackswan/00000.png").read_bytes()
    raw = {"__key__": "x", "json": b'{"name": "x", "source": "t", "size": [480, 854]}', "jpg": jpg, "png": png}
    s = static_training_sample(raw, np.random.default_rng(9), CROP)
    assert s["rgb"].shape == (3, 3, CROP, CROP) and s["gt"].shape == (3, 1, CROP, CROP)
    assert set(s["gt"].unique().tolist()) == {0.0, 1.0} and s["selector"].tolist() == [1.0, 0.0]
    assert torch.equal(s["cls_gt"], s["gt"][:, 0].long())
    again = static_training_sample(raw, np.random.default_rng(9), CROP)
    assert torch.equal(s["rgb"], again["rgb"])  # deterministic given the generator


@pytest.mark.parametrize("crop", [384])
def test_default_crop_size(crop):
    image, mask = frame()
    ims, masks = static_pseudo_video(image, mask, np.random.default_rng(10))
    assert ims[0].shape == (3, crop, crop) and masks[0].shape == (crop, crop)
