"""The vectorised DAVIS scorer against a naive official-style loop (kept here), on the bundled real masks."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stcn.data.folders import davis_sequences
from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
from stcn.eval.davis_score import GLOBAL_COLUMNS, score_davis, score_sequence
from stcn.eval.metrics import (
    boundary_map,
    boundary_radius,
    disk,
    f_measure,
    frame_measures,
    jaccard,
    seg2bmap,
    statistics,
)

BUNDLED = Path(__file__).resolve().parent.parent / "stcn" / "data" / "bundled"
MINI = BUNDLED / "davis-mini"
TENNIS = BUNDLED / "davis17-multiobject-sample"
SEQS = ["blackswan", "car-shadow", "libby"]


# --- naive reference: the official davis2017-evaluation structure, one call per object and frame ---


def naive_bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of one 2-D mask (official `_seg2bmap` rule)."""
    seg = seg.astype(bool)
    east, south, southeast = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    southeast[:-1, :-1] = seg[1:, 1:]
    b = seg ^ east | seg ^ south | seg ^ southeast
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = 0
    return b


def naive_f(fg: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary F-measure of one frame, official edge cases."""
    radius = math.ceil(bound_th * np.linalg.norm(fg.shape))
    r = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(r, r)
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.uint8)
    fg_b, gt_b = naive_bmap(fg), naive_bmap(gt)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.sum(fg_b * gt_dil) / float(n_fg)
        recall = np.sum(gt_b * fg_dil) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def naive_j(gt: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """IoU per frame of (T, H, W) stacks; 1 for an empty union."""
    gt, seg = gt.astype(bool), seg.astype(bool)
    inter = np.sum(gt & seg, axis=(-2, -1))
    union = np.sum(gt | seg, axis=(-2, -1))
    j = inter / np.maximum(union, 1)
    j[union == 0] = 1
    return j


def naive_stats(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, Recall, Decay of one object's per-frame values."""
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean, recall, decay = np.nanmean(values), np.nanmean(values > 0.5), np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    ids = np.ones((n, *labels.shape)) * np.arange(1, n + 1)[:, None, None, None]
    return ids == labels[None]


def naive_score(root: Path, year: str, split: str, predictions: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official semi-supervised evaluation as straightforward loops: (global, per-object) tables."""
    j_rows, f_rows, names = [], [], []
    for seq in davis_sequences(root, year, split):
        stems = list(seq.annotations)
        gt = np.stack([np.array(Image.open(seq.annotations[s])) for s in stems]).astype(float)
        res = np.stack([np.array(Image.open(predictions / seq.name / f"{s}.png")) for s in stems[1:-1]])
        res = res.astype(float)
        if str(year) == "2016":
            has_ids = ((gt > 0) & (gt < 255)).any()
            gt = ((gt > 0) & (gt < 255) if has_ids else gt == 255)[None].astype(float)
            gt_masks, res_masks = gt[:, 1:-1] > 0, (res > 0)[None]
        else:
            gt[gt == 255] = 0
            gt_masks = _one_hot(gt, int(gt[0].max()))[:, 1:-1]
            res_masks = _one_hot(res, int(res.max()))
            assert len(res_masks) <= len(gt_masks), "prediction has more objects than the ground truth"
            pad = np.zeros((len(gt_masks) - len(res_masks), *res_masks.shape[1:]), dtype=bool)
            res_masks = np.concatenate([res_masks, pad])
        for k in range(len(gt_masks)):
            j = naive_j(gt_masks[k], res_masks[k])
            f = np.array([naive_f(res_masks[k, t], gt_masks[k, t]) for t in range(gt_masks.shape[1])])
            j_rows.append(naive_stats(j))
            f_rows.append(naive_stats(f))
            names.append(f"{seq.name}_{k + 1}")
    jm, jr, jd = np.mean(j_rows, axis=0)
    fm, fr, fd = np.mean(f_rows, axis=0)
    cols = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    global_df = pd.DataFrame([[(jm + fm) / 2, jm, jr, jd, fm, fr, fd]], columns=cols)
    per_object = pd.DataFrame({"Sequence": names, "J-Mean": [r[0] for r in j_rows], "F-Mean": [r[0] for r in f_rows]})
    return global_df, per_object


def write_predictions(out: Path, transform, seqs=SEQS) -> Path:
    """Write transform(gt labels) for every annotated frame of the bundled val sequences."""
    for seq in seqs:
        for png in sorted((MINI / "Annotations" / "480p" / seq).glob("*.png")):
            write_mask(out / seq / png.name, transform(read_mask(png)))
    return out


def tennis_root(tmp: Path) -> Path:
    """A 3-frame DAVIS root of the real tennis sample (00000, 00001, 00000 again); scored frame: 00001."""
    root = tmp / "davis"
    for kind, ext in (("Annotations", "png"), ("JPEGImages", "jpg")):
        src, dst = TENNIS / kind / "480p" / "tennis", root / kind / "480p" / "tennis"
        dst.mkdir(parents=True)
        for i, name in enumerate(["00000", "00001", "00000"]):
            shutil.copy(src / f"{name}.{ext}", dst / f"0000{i}.{ext}")
    for year in ("2016", "2017"):
        (root / "ImageSets" / year).mkdir(parents=True)
        (root / "ImageSets" / year / "val.txt").write_text("tennis\n")
    return root


def tennis_predictions(tmp: Path, labels: np.ndarray) -> Path:
    for i in range(3):
        write_mask(tmp / "pred" / "tennis" / f"0000{i}.png", labels)
    return tmp / "pred"


def test_disk_is_the_skimage_disk():
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert int(disk(3).sum()) == 29 and int(disk(8).sum()) == 197
    assert boundary_radius((480, 854)) == 8


def test_seg2bmap_matches_official_rule():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 13, 17)) > 0.5
    masks[0] = True  # a full mask has no boundary: the image border is not one
    real = read_mask(MINI / "Annotations" / "480p" / "libby" / "00010.png") > 0
    for m in [*masks, real]:
        assert np.array_equal(seg2bmap(m), naive_bmap(m))
    assert np.array_equal(seg2bmap(masks), np.stack([naive_bmap(m) for m in masks]))
    for m in [*masks, real, np.zeros((1, 1), bool), np.ones((1, 5), bool)]:  # the scorer's OpenCV gradient
        assert np.array_equal(boundary_map(m.view(np.uint8)) > 0, naive_bmap(m))


def test_frame_measures_match_naive_per_object():
    """One frame of two objects, one of them touching the image border, one absent: J and F as the oracle's."""
    gt = read_mask(TENNIS / "Annotations/480p/tennis/00000.png")
    gt[gt == 255] = 0
    pred = np.roll(gt, (3, -5), axis=(0, 1))
    pred[:40, :60] = 1  # object 1 spills into the image corner
    kernel = disk(boundary_radius(gt.shape))
    j, f = frame_measures(gt, pred, 3, kernel)
    for k in (1, 2):
        assert j[k - 1] == naive_j(gt[None] == k, pred[None] == k)[0]
        assert f[k - 1] == naive_f(pred == k, gt == k)
    assert j[2] == f[2] == 1  # object 3 is in neither map


@pytest.mark.parametrize("seq", SEQS)
def test_j_and_f_match_naive_on_real_masks(seq):
    gt = np.stack([read_mask(p) > 0 for p in sorted((MINI / "Annotations/480p" / seq).glob("*.png"))[:12]])
    kernel = np.ones((7, 7), np.uint8)
    preds = [
        np.roll(gt, (4, -7), axis=(1, 2)),
        np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in gt]),
        np.zeros_like(gt),
    ]
    for pred in preds:
        assert np.allclose(jaccard(gt, pred), naive_j(gt, pred), rtol=0, atol=1e-12)
        naive = [naive_f(p, g) for p, g in zip(pred, gt, strict=True)]
        assert np.allclose(f_measure(gt, pred), naive, rtol=0, atol=1e-12)
    assert np.all(jaccard(gt, preds[2]) == 0) and np.all(f_measure(gt, preds[2]) == 0)
    empty = np.zeros_like(gt)
    assert np.all(jaccard(empty, empty) == 1) and np.all(f_measure(empty, empty) == 1)


@pytest.mark.parametrize("n", [1, 3, 7, 48, 101])
def test_statistics_match_naive(n):
    values = np.random.default_rng(n).random((4, n))
    values[1, :: max(2, n // 3)] = np.nan
    mean, recall, decay = statistics(values)
    for k in range(4):
        np.testing.assert_allclose([mean[k], recall[k], decay[k]], naive_stats(values[k]), atol=1e-12)


def test_no_objects_and_empty_stacks():
    gt = np.zeros((4, 9, 11), np.uint8)
    j, f = score_sequence(gt, gt, 0)
    assert j.shape == f.shape == (0, 4)
    assert jaccard(gt[:0] > 0, gt[:0] > 0).shape == f_measure(gt[:0] > 0, gt[:0] > 0).shape == (0,)
    j, f = score_sequence(gt, gt, 2)  # objects absent from gt and prediction: J = F = 1
    assert (j == 1).all() and (f == 1).all()


def test_perfect_prediction_scores_one(tmp_path):
    preds = write_predictions(tmp_path, lambda m: m)
    g, per = score_davis(MINI, 2017, "val", preds, progress=False)
    assert list(g.columns) == GLOBAL_COLUMNS
    assert g.iloc[0].to_dict() == {c: (0.0 if "Decay" in c else 1.0) for c in GLOBAL_COLUMNS}
    assert per["Sequence"].tolist() == [f"{s}_1" for s in SEQS]
    assert (per[["J-Mean", "F-Mean"]] == 1).all().all()


def test_empty_prediction_scores_zero(tmp_path):
    g, _ = score_davis(MINI, 2017, "val", write_predictions(tmp_path, np.zeros_like), progress=False)
    # no predicted boundary while the gt has one: P = 1, R = 0, so F = 0 on every frame
    expected = {c: 0.0 for c in GLOBAL_COLUMNS}
    assert g.iloc[0].to_dict() == expected


@pytest.mark.parametrize("year", ["2016", "2017"])
def test_shifted_and_eroded_match_naive(tmp_path, year):
    kernel = np.ones((9, 9), np.uint8)
    for name, fn in {
        "shift": lambda m: np.roll(m, (5, 11), axis=(0, 1)),
        "erode": lambda m: cv2.erode(m, kernel),
    }.items():
        preds = write_predictions(tmp_path / name, fn)
        g, per = score_davis(MINI, year, "val", preds, progress=False)
        g_ref, per_ref = naive_score(MINI, year, "val", preds)
        np.testing.assert_allclose(g.to_numpy(), g_ref.to_numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(per.iloc[:, 1:].to_numpy(float), per_ref.iloc[:, 1:].to_numpy(float), atol=1e-9)
        assert 0 < g.iloc[0, 0] < 1


def test_void_counts_as_background(tmp_path):
    root = tennis_root(tmp_path)
    gt = read_mask(TENNIS / "Annotations/480p/tennis/00001.png")
    clean = np.where(gt == 255, 0, gt)
    _, per = score_davis(root, 2017, "val", tennis_predictions(tmp_path / "a", clean), progress=False)
    assert per["Sequence"].tolist() == ["tennis_1", "tennis_2"]
    assert (per[["J-Mean", "F-Mean"]] == 1).all().all()
    on_void = np.where(gt == 255, 1, gt)
    preds = tennis_predictions(tmp_path / "b", on_void)
    g, per = score_davis(root, 2017, "val", preds, progress=False)
    n1, n_void = int((gt == 1).sum()), int((gt == 255).sum())
    assert per["J-Mean"].tolist() == pytest.approx([n1 / (n1 + n_void), 1.0], abs=1e-12)
    np.testing.assert_allclose(g.to_numpy(), naive_score(root, "2017", "val", preds)[0].to_numpy(), atol=1e-9)
    with pytest.raises(UserError, match="object id 255"):  # void written into a prediction is an object id
        score_davis(root, 2017, "val", tennis_predictions(tmp_path / "c", gt), progress=False)


def test_2016_binarises(tmp_path):
    root = tennis_root(tmp_path)
    gt = read_mask(TENNIS / "Annotations/480p/tennis/00001.png")
    swapped = np.select([gt == 1, gt == 2], [2, 1], 0).astype(np.uint8)
    preds = tennis_predictions(tmp_path, swapped)
    g16, per16 = score_davis(root, 2016, "val", preds, progress=False)
    assert per16["Sequence"].tolist() == ["tennis_1"] and g16["J-Mean"][0] == 1.0
    g17, _ = score_davis(root, 2017, "val", preds, progress=False)
    assert g17["J-Mean"][0] < 0.1
    # DAVIS-2016's own 0/255 masks: 255 is the object there
    for i in range(3):
        path = root / "Annotations/480p/tennis" / f"0000{i}.png"
        cv2.imwrite(str(path), np.where(read_mask(path) == 1, 255, 0).astype(np.uint8))
        write_mask(preds / "tennis" / f"0000{i}.png", (gt == 1).astype(np.uint8))
    assert score_davis(root, 2016, "val", preds, progress=False)[0]["J-Mean"][0] == 1.0


def test_user_errors(tmp_path):
    root = tennis_root(tmp_path)
    gt = read_mask(TENNIS / "Annotations/480p/tennis/00001.png")
    with pytest.raises(UserError, match="object id 3"):
        score_davis(root, 2017, "val", tennis_predictions(tmp_path / "a", np.where(gt == 2, 3, gt % 255)))
    preds = tennis_predictions(tmp_path / "b", gt % 255)
    (preds / "tennis" / "00001.png").unlink()
    with pytest.raises(UserError, match="missing prediction: .*00001.png"):
        score_davis(root, 2017, "val", preds)
    write_mask(preds / "tennis" / "00001.png", np.zeros((240, 427), np.uint8))
    with pytest.raises(UserError, match="size"):
        score_davis(root, 2017, "val", preds)
    with pytest.raises(UserError, match="year"):
        score_davis(root, 2018, "val", preds)
    with pytest.raises(UserError, match="split list"):
        score_davis(root, 2017, "test-dev", preds)
    with pytest.raises(UserError, match="predictions folder"):
        score_davis(root, 2017, "val", tmp_path / "nope")


def test_parallel_sequences_give_the_same_tables(tmp_path):
    preds = write_predictions(tmp_path, lambda m: np.roll(m, (5, 11), axis=(0, 1)))
    g1, per1 = score_davis(MINI, 2017, "val", preds, progress=False, processes=1)
    g2, per2 = score_davis(MINI, 2017, "val", preds, progress=False, processes=2)
    assert g1.equals(g2) and per1.equals(per2)  # bit-identical, same order
    g_ref, _ = naive_score(MINI, 2017, "val", preds)
    np.testing.assert_allclose(g2.to_numpy(), g_ref.to_numpy(), rtol=0, atol=1e-9)


def test_scorer_sizes_its_pools_by_the_free_cores(monkeypatch):
    """A busy machine gets one scoring process (extra ones only queue); a quiet one, one per usable core."""
    from stcn.eval import davis_score

    monkeypatch.setattr(davis_score, "usable_cores", lambda: 4)
    for load, expected in ((0.0, 4), (1.4, 3), (3.6, 1), (12.0, 1)):
        monkeypatch.setattr(davis_score.os, "getloadavg", lambda load=load: (load, load, load))
        assert davis_score.free_cores() == expected
