"""S2M from strokes: the trainer learns on real frames, the stage script runs, `stcn segment --first-scribble`
(single and batch) segments a real video from strokes, and its one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import invoke, one_error, stcn
from conftest import DAVIS, REPO, mini_davis, shrink_sequence
from PIL import Image
from skimage.morphology import skeletonize

from stcn.data.images import read_mask
from stcn.interactive.s2m import S2M
from stcn.interactive.simulate import box_fill, first_round, iou, simulate, stroke_in
from stcn.interactive.train_s2m import S2MTrainConfig, evaluate_heldout, train_s2m, training_samples
from stcn.interactive.weights import load_strict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# about a minute on a loaded 2-core machine: 64 px crops of 120p real frames, first rounds only, mostly of one
# video (blackswan), so that 20 iterations fit it: the held-out frames are its other frames
TINY = dict(iterations=20, batch_size=4, lr=3e-3, crop=64, size=120, empty_prob=1.0, frame_step=4, eval_size=120,
            eval_step=2, eval_offset=1, exclude_heldout=False, log_every=1)  # fmt: skip


def tiny_data(dst: Path) -> tuple[Path, Path]:
    """Real DAVIS frames at 214x120, 8 per sequence: dog-agility (train; every 4th frame used), blackswan (val),
    and a static image folder of blackswan's even frames (the sample's layout: `<video>_<frame>.jpg|png`)."""
    davis = mini_davis(dst / "davis", {"dog-agility": "train", "blackswan": "val"}, 8, 0.25)
    static = dst / "static"
    static.mkdir()
    for jpg in sorted((davis / "JPEGImages/480p/blackswan").glob("*.jpg"))[::2]:
        shutil.copy(jpg, static / f"blackswan_{jpg.name}")
        mask = read_mask(davis / "Annotations/480p/blackswan" / f"{jpg.stem}.png")
        Image.fromarray(np.where(mask == 1, 255, 0).astype(np.uint8)).save(static / f"blackswan_{jpg.stem}.png")
    return davis, static


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[S2MTrainConfig, dict]:
    tmp = tmp_path_factory.mktemp("s2m")
    davis, static = tiny_data(tmp)
    cfg = S2MTrainConfig(out=str(tmp / "model"), davis=str(davis), static=str(static), **TINY)
    return cfg, train_s2m(cfg, progress=False)


def test_simulated_strokes_lie_on_the_right_side(davis_root):
    gt = read_mask(davis_root / "Annotations/480p/blackswan/00000.png") == 1
    for seed in range(5):
        rng = np.random.default_rng(seed)
        first = first_round(gt, rng)
        assert first.positive.any() and not (first.positive & ~gt).any() and not first.current.any()
        act = simulate(gt, rng, empty_prob=0.0)
        assert act.current.any() and not np.array_equal(act.current, gt)  # an erroneous mask
        assert not (act.positive & ~gt).any() and not (act.negative & gt).any()
        assert act.positive.any() or act.negative.any()
    assert iou(box_fill(first.positive), gt) > 0.1 and not stroke_in(np.zeros_like(gt), rng).any()


def test_trainer_learns_on_real_frames(trained):
    cfg, result = trained
    assert result["last_loss"] < 0.8 * result["first_loss"], result
    by = {(r["round"], r["method"]): r["iou"] for r in result["rows"]}
    assert by[("first", "trained")] > by[("first", "stand-in")] + 0.05, by
    assert result["heldout_sequences"] == ["blackswan"] and result["heldout_frames"] == 4  # the odd frames
    assert result["train_images"] == 4 + 2 and result["train_images_from_heldout_videos"] == 4
    kept, _, seen = training_samples(dataclasses.replace(cfg, exclude_heldout=True))
    assert len(kept) == 2 and seen == 0  # the static images of the held-out video are dropped
    assert all(s.image.parent.name == "dog-agility" for s in kept)
    # the weights load strictly into S2M (the tensor names of MiVOS's s2m.pth) and score the same again
    model = load_strict(S2M(), Path(cfg.out) / "weights.pth", "S2M").eval()
    again = evaluate_heldout(model, cfg)
    assert again["rows"] == result["rows"]
    assert json.loads((Path(cfg.out) / "evaluation.json").read_text())["rows"] == result["rows"]
    assert (Path(cfg.out) / "dvclive/plots/metrics/train/loss.tsv").is_file()


def env() -> dict[str, str]:
    keep = ("PYTHONPATH", "HOME", "PATH")
    return {"STCN_PROGRESS_PERIOD": "0", "OMP_NUM_THREADS": "1", "COLUMNS": "200",
            **{k: v for k, v in os.environ.items() if k in keep}}  # fmt: skip


def stroke_png(mask_path: Path, out: Path) -> np.ndarray:
    """An RGB strokes PNG (green = the object) along the skeleton of the object, as a person would draw it."""
    gt = read_mask(mask_path) == 1
    stroke = skeletonize(gt)
    rgb = np.zeros((*gt.shape, 3), np.uint8)
    rgb[stroke] = (0, 255, 0)
    Image.fromarray(rgb).save(out)
    return stroke


@pytest.fixture
def video(tmp_path) -> tuple[Path, Path]:
    seq = "blackswan"
    return shrink_sequence(DAVIS / "JPEGImages/480p" / seq, DAVIS / "Annotations/480p" / seq, tmp_path / seq, 5, 0.25)


def test_first_scribble_segments_the_video(trained, weights_file, video, tmp_path):
    cfg, _ = trained
    frames, masks = video
    stroke = stroke_png(masks / "00000.png", tmp_path / "strokes.png")
    s2m = Path(cfg.out) / "weights.pth"
    out = tmp_path / "out"
    r = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-scribble", tmp_path / "strokes.png",
             "--s2m", s2m, "--out", out, env=env())  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"S2M: {s2m}" in r.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(5)]
    first = read_mask(out / "00000.png")
    assert (first[stroke] == 1).mean() > 0.9  # the object lies under its stroke
    assert 0 < (first == 1).mean() < 0.9


def test_strokes_naming_object_255_run_s2m_once(trained, video):
    """mask_from_strokes maps ids to dense channels: strokes of object 255 run S2M on one channel and give the
    mask of the same strokes named object 1, relabelled."""
    from stcn.interactive.scribbles import scribbles_from_png
    from stcn.interactive.strokes import mask_from_strokes

    cfg, _ = trained
    frames, masks = video
    s2m = load_strict(S2M(), Path(cfg.out) / "weights.pth", "S2M").eval()
    calls = []
    original = s2m.object_probability
    s2m.object_probability = lambda image, mask, *rest: calls.append(mask.shape[0]) or original(image, mask, *rest)
    gt = read_mask(masks / "00000.png")
    rgb = np.array(Image.open(frames / "00000.jpg").convert("RGB"))
    wide = np.where(skeletonize(gt == 1), 255, 0).astype(np.uint16)
    wide[:, 0] = 256  # a background stroke
    Image.fromarray(wide).save(video[0].parent / "s255.png")
    s255 = scribbles_from_png(video[0].parent / "s255.png", (gt.shape[1], gt.shape[0]))
    got = mask_from_strokes(s2m, rgb, s255)
    one = mask_from_strokes(s2m, rgb, np.where(s255 == 255, 1, s255))
    assert calls == [1, 1] and (one == 1).any()
    assert np.array_equal(got, np.where(one == 1, 255, 0))


def test_batch_uses_strokes_where_a_mask_is_missing(trained, weights_file, tmp_path):
    cfg, _ = trained
    root, masks = tmp_path / "videos", tmp_path / "masks"
    for seq in ("blackswan", "car-shadow"):
        frames, ann = shrink_sequence(DAVIS / "JPEGImages/480p" / seq, DAVIS / "Annotations/480p" / seq,
                                      tmp_path / "src" / seq, 3, 0.25)  # fmt: skip
        shutil.copytree(frames, root / seq)
        masks.mkdir(exist_ok=True)
        if seq == "blackswan":
            stroke = stroke_png(ann / "00000.png", masks / "blackswan.strokes.png")
        else:
            shutil.copy(ann / "00000.png", masks / "car-shadow.png")
            Image.new("L", (9, 9)).save(masks / "car-shadow.strokes.png")  # the mask wins over strokes
    out = tmp_path / "out"
    r = stcn("segment", "--weights", weights_file, "--frames", root, "--first-mask", masks, "--out", out,
             "--s2m", Path(cfg.out) / "weights.pth", env=env())  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("S2M: ") == 1
    assert (read_mask(out / "blackswan/00000.png")[stroke] == 1).mean() > 0.9
    assert np.array_equal(read_mask(out / "car-shadow/00000.png"), read_mask(masks / "car-shadow.png"))
    (masks / "blackswan.strokes.png").unlink()
    shutil.rmtree(out / "blackswan")
    r = stcn("segment", "--weights", weights_file, "--frames", root, "--first-mask", masks, "--out", out, env=env())
    assert r.returncode == 1 and "blackswan.strokes.png" in r.stderr  # the names it looked for


def user_error(*args) -> str:
    """Run `stcn ARGS` in this process; the message of the UserError it raises (the CLI prints it as one line)."""
    from stcn.errors import UserError

    r = invoke(*args)
    assert isinstance(r.exception, UserError), (r.exception, r.output)
    return str(r.exception)


def test_first_scribble_one_line_errors(weights_file, video, tmp_path):
    frames, masks = video
    base = ("segment", "--weights", weights_file, "--frames", frames, "--out", tmp_path / "o")
    big = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(big)
    r = stcn(*base, "--first-scribble", big, env=env())
    one_error(r, "big.png", "300x200", "214x120", alone=True)  # as the CLI prints it
    bg = tmp_path / "bg.png"
    Image.new("L", (214, 120), 255).save(bg)
    assert "bg.png" in (e := user_error(*base, "--first-scribble", bg)) and "no object" in e
    blank = tmp_path / "blank.png"
    Image.new("L", (214, 120), 0).save(blank)
    assert "no strokes" in (e := user_error(*base, "--first-scribble", blank)) and "blank.png" in e
    assert "--first-scribble" in user_error(*base) and "--first-mask" in user_error(*base)
    assert "one of" in user_error(*base, "--first-scribble", bg, "--first-mask", masks / "00000.png")
    assert "--first-scribble takes one PNG" in user_error(*base, "--first-scribble", tmp_path)
    assert "not found" in (e := user_error(*base, "--first-scribble", tmp_path / "none.png")) and "none.png" in e
    assert "nope.pth" in user_error(*base, "--first-scribble", bg, "--s2m", tmp_path / "nope.pth")
    assert "--s2m is for strokes" in user_error(*base, "--first-mask", masks / "00000.png", "--s2m", bg)
    assert not (tmp_path / "o").exists()


def test_stand_in_is_announced(weights_file, video, tmp_path):
    frames, masks = video
    stroke_png(masks / "00000.png", tmp_path / "strokes.png")
    r = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-scribble", tmp_path / "strokes.png",
             "--out", tmp_path / "out", env=env())  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("S2M: seeded stand-in") and r.stderr.count("seeded stand-in") == 2, r.stderr
    # the untrained stand-in finds nothing under these strokes: one line says so, nothing is written
    assert r.returncode == 2 and len(lines) == 2 and lines[1].startswith("error: S2M found no object"), r.stderr
    assert "strokes.png" in lines[1] and not (tmp_path / "out").exists()


def test_stage_script_writes_weights_and_report(tmp_path):
    """pipelines/train_s2m.py with the sample profile's params, shortened, on the bundled stand-ins."""
    from stcn.data.fetch.sources import build_bundled
    from stcn.registry import parse_registry

    params = __import__("yaml").safe_load((REPO / "params.yaml").read_text())
    registry = parse_registry(params["datasets"], "params.yaml")
    for name in ("davis17", "static"):
        build_bundled(registry.dataset(name), tmp_path / "data" / name)
    params["train_s2m"].update(iterations=2, crop=32, size=48, eval_size=48, eval_step=25)
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    r = subprocess.run([sys.executable, str(REPO / "pipelines/train_s2m.py")], cwd=tmp_path, capture_output=True,
                       text=True, env=env())  # fmt: skip
    assert r.returncode == 0, r.stderr
    load_strict(S2M(), tmp_path / "models/s2m/weights.pth", "S2M")
    report = (tmp_path / "reports/s2m.md").read_text()
    assert "| first |" in report and "| correction |" in report and "profile: `sample`" in report
    metrics = json.loads((tmp_path / "reports/s2m.json").read_text())["s2m_heldout_iou"]
    assert set(metrics) == {f"{r}_{m}" for r in ("first", "correction") for m in ("trained", "stand_in", "baseline")}
    assert torch.load(tmp_path / "models/s2m/weights.pth", weights_only=True).keys() == S2M().state_dict().keys()
