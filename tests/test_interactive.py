"""Interactive segmentation (MiVOS-STCN): S2M / fusion checkpoints, the interactive core, scribble files,
`stcn interact` and the DAVIS interactive evaluation through the davisinteractive package."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from clihelp import one_error, stcn
from conftest import DAVIS, REPO, mini_davis, seeded_state_dict, shrink_sequence
from PIL import Image

from stcn.data.images import read_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor, pad_to_16, unpad
from stcn.inference.settings import InferenceSettings
from stcn.interactive.core import DAVIS_SCHEDULE, InteractiveCore, attention_affinity, scribble_maps
from stcn.interactive.fusion import FusionNet, LinearFusion
from stcn.interactive.s2m import S2M
from stcn.interactive.scribbles import scribbles_from_png
from stcn.interactive.weights import load_fusion, load_s2m, load_strict, seeded
from stcn.model import STCN, load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEYS = json.loads((REPO / "tests" / "data" / "mivos_state_dicts.json").read_text())


def listed_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors with exactly the names, shapes and dtypes of the original checkpoint's key list."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for e in KEYS[name]:
        if e["dtype"] == "int64":
            out[e["name"]] = torch.zeros(e["shape"], dtype=torch.int64)
        elif e["name"].endswith("running_var"):
            out[e["name"]] = torch.rand(e["shape"], generator=gen) + 0.5
        else:
            out[e["name"]] = torch.randn(e["shape"], generator=gen) * 0.05
    return out


@pytest.mark.parametrize(("name", "model"), [("s2m", S2M), ("fusion_stcn", FusionNet)])
def test_state_dict_layout_is_the_original_checkpoints(name, model):
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model().state_dict().items()]
    assert ours == [(e["name"], e["shape"], e["dtype"]) for e in KEYS[name]]


@pytest.mark.parametrize(("name", "loader"), [("s2m", load_s2m), ("fusion_stcn", load_fusion)])
def test_checkpoint_loads_strictly_and_mismatches_name_the_tensor(tmp_path, name, loader):
    state = listed_state_dict(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = loader(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    first, last = KEYS[name][0]["name"], KEYS[name][-1]["name"]
    broken = {k: v for k, v in state.items() if k != last}
    with pytest.raises(UserError, match=f"missing '{last}'"):
        load_strict(type(model)(), broken, name)
    with pytest.raises(UserError, match="unexpected 'extra.weight'"):
        load_strict(type(model)(), {**state, "extra.weight": torch.zeros(1)}, name)
    bad = dict(state)
    bad[first] = torch.zeros(3, 3)
    with pytest.raises(UserError, match=f"tensor {first} has shape \\[3, 3\\], expected"):
        load_strict(type(model)(), bad, name)


def test_seeded_stand_ins_are_deterministic_and_seed_dependent():
    a, b, c = load_s2m(None, 3), load_s2m(None, 3), load_s2m(None, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.backbone.conv1.weight, c.backbone.conv1.weight)


def test_linear_fusion_is_the_default_without_weights():
    """No fusion_stcn.pth: nc * current + nr * previous; next to the new interaction the new round's
    probabilities, next to the earlier one the previous round's, halfway the mean."""
    fusion = load_fusion(None)
    assert isinstance(fusion, LinearFusion) and not list(fusion.parameters())
    previous, current = torch.rand(2, 5, 7), torch.rand(2, 5, 7)
    image, attention = torch.rand(3, 5, 7), torch.rand(2, 2, 5, 7)
    assert torch.equal(fusion.fuse(image, previous, current, attention, 1.0, 0.0), current)
    assert torch.equal(fusion.fuse(image, previous, current, attention, 0.0, 1.0), previous)
    assert torch.allclose(fusion.fuse(image, previous, current, attention, 0.5, 0.5), (previous + current) / 2)


def test_scribble_maps_split_positive_negative_and_dilate():
    s = np.full((7, 7), -1)
    s[1, 1], s[5, 5], s[3, 5] = 1, 2, 0
    pos, neg = scribble_maps(s, 2)
    assert pos[0].sum() == 9 and pos[0, 0:3, 0:3].all()  # object 1's stroke, dilated 3x3
    assert neg[0, 4:7, 4:7].all() and neg[0, 2:5, 4:7].all() and not neg[0, 0, 0]  # 2 and background
    assert neg[1, 0:3, 0:3].all() and pos[1, 4:7, 4:7].all()


def test_attention_affinity_is_a_softmax_over_the_interacted_frame():
    gen = torch.Generator().manual_seed(0)
    w = attention_affinity(torch.randn(64, 3, 4, generator=gen), torch.randn(64, 2, 5, generator=gen))
    assert w.shape == (12, 10)
    assert torch.allclose(w.sum(0), torch.ones(10))


# --- the core on real frames -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nets(official_entries):
    """Seeded STCN, S2M and fusion; the S2M's last bias is centred on real frames so it yields a mix of fg / bg."""
    stcn = load_weights(STCN(), seeded_state_dict(official_entries)).eval()
    s2m = load_s2m(None, 1)
    images, gt = blackswan(1)
    pos, neg = scribble_maps(strokes(gt[0]), 1)
    with torch.no_grad():
        logits = s2m(torch.cat([images, torch.zeros_like(pos)[None], pos[None], neg[None]], 1))
        s2m.classifier.classifier[3].bias -= logits.median()
    return stcn, s2m, RecordingFusion().eval()


class RecordingFusion(FusionNet):
    """The fusion network (seeded), recording the (nc, nr) of every call."""

    def __init__(self):
        super().__init__()
        self.load_state_dict(seeded(FusionNet(), 2).state_dict())
        self.calls: list[tuple[float, float]] = []

    def fuse(self, image, previous, current, attention, nc, nr):
        self.calls.append((nc, nr))
        return super().fuse(image, previous, current, attention, nc, nr)


def blackswan(n: int, size: tuple[int, int] = (128, 72)) -> tuple[torch.Tensor, np.ndarray]:
    frames = sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[:n]
    images = torch.stack([image_tensor(np.array(Image.open(p).convert("RGB").resize(size))) for p in frames])
    gt = np.stack([read_mask(DAVIS / "Annotations/480p/blackswan" / f"{p.stem}.png") for p in frames])
    gt = np.stack([np.asarray(Image.fromarray(g).resize(size, Image.NEAREST)) for g in gt])
    return images, gt


def strokes(gt: np.ndarray) -> np.ndarray:
    """Object strokes on the ground truth's object, background strokes on the left edge."""
    s = np.full(gt.shape, -1)
    s[gt == 1] = 1
    s[:, :4] = 0
    return s


def test_core_is_deterministic_and_follows_the_davis_schedule(nets):
    images, gt = blackswan(8)
    runs = []
    for _ in range(2):
        core = InteractiveCore(*nets, images, 1, schedule=DAVIS_SCHEDULE)
        labels = [core.interact(3, strokes(gt[3])) for _ in range(3)]
        runs.append((labels, core.last_propagated, core.interacted))
    (labels, propagated, interacted), again = runs
    assert all(np.array_equal(a, b) for a, b in zip(labels, again[0], strict=True))
    assert labels[0].shape == (8, 72, 128) and labels[0].dtype == np.uint8
    for lab in labels[:2]:  # interactions 0 and 1: only the interacted frame gets a mask (S2M's, hard)
        assert 0.05 < lab[3].mean() < 0.95 and not np.delete(lab, 3, axis=0).any()
    (pos, neg), (image, pad) = scribble_maps(strokes(gt[3]), 1), pad_to_16(images[3])
    with torch.no_grad():
        p = unpad(nets[1].object_probability(image, *(pad_to_16(m)[0] for m in (0 * pos, pos, neg)))[0], pad)
    assert np.array_equal(labels[0][3], (p > 1 - p).numpy())  # S2M's mask: background = 1 - p for one object
    assert propagated and interacted == [3]  # interaction 2 propagates
    assert labels[2][[0, 1, 2, 4, 5, 6, 7]].any(axis=(1, 2)).all()


def test_second_round_changes_masks_only_by_fusion_and_propagation_from_the_new_frame(nets):
    stcn, s2m, fusion = nets
    images, gt = blackswan(12)
    core = InteractiveCore(stcn, s2m, fusion, images, 1, schedule=None)
    fusion.calls.clear()
    core.interact(2, strokes(gt[2]))
    assert fusion.calls == []  # no earlier interacted frame bounds the passes: nothing to fuse with
    before = core.prob.clone()
    second = strokes(gt[8])
    second[:, -6:] = 0  # a different interaction: background strokes on the right edge too
    core.interact(8, second)
    assert core.interacted == [2, 8]
    assert torch.equal(core.prob[:, :3], before[:, :3])  # at and before the earlier interaction: untouched
    # backward pass 7..3 is bounded by frame 2 and fused; the forward pass 9..11 runs to the end unfused
    expected = [(abs(2 - i) / 6, abs(8 - i) / 6) for i in range(7, 2, -1)]
    assert fusion.calls == [pytest.approx(call) for call in expected]  # one approx per (nc, nr) pair
    assert not torch.equal(core.prob[:, 3:], before[:, 3:])


def test_memory_is_bounded_on_a_long_video(nets):
    stcn, s2m, fusion = nets
    images, gt = blackswan(50, (64, 36))
    settings = InferenceSettings(mem_every=1, max_memory_frames=3)
    bounded = InteractiveCore(stcn, s2m, fusion, images, 1, settings, schedule=None)
    bounded.interact(0, strokes(gt[0]))
    unbounded = InteractiveCore(stcn, s2m, fusion, images, 1, InferenceSettings(mem_every=1), schedule=None)
    unbounded.interact(0, strokes(gt[0]))
    assert bounded.max_memory_seen == 3
    assert unbounded.max_memory_seen == 49  # frame 49 reads frames 0..48 (the last frame itself never joins)


# --- scribble files and the CLI ----------------------------------------------------------------------
def test_png_scribbles_palette_and_rgb(tmp_path):
    labels = np.zeros((6, 8), np.uint8)
    labels[1, 1], labels[2, 2], labels[4, 4] = 1, 2, 255
    Image.fromarray(labels, "L").save(tmp_path / "l.png")
    s = scribbles_from_png(tmp_path / "l.png", (8, 6))
    assert s[1, 1] == 1 and s[2, 2] == 2 and s[4, 4] == 0 and (s == -1).sum() == 45
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[0, :] = (0, 255, 0)
    rgb[5, :] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    s = scribbles_from_png(tmp_path / "c.png", (16, 12))  # nearest-resized to the frame size
    assert (s[:2] == 1).all() and (s[-2:] == 0).all() and (s[2:-2] == -1).all()
    Image.fromarray(np.zeros((6, 8), np.uint8), "L").save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no strokes in scribble image"):
        scribbles_from_png(tmp_path / "empty.png", (8, 6))


def test_png_scribbles_hold_object_255_in_16_bit_grey(tmp_path):
    """8-bit palette/grey PNGs: 255 = background stroke; 16-bit grey: objects 1..255, 256 = background."""
    wide = np.zeros((6, 8), np.uint16)
    wide[1, 1], wide[2, 2], wide[4, 4] = 255, 1, 256
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode.startswith("I")
    s = scribbles_from_png(tmp_path / "w.png", (8, 6))
    assert s[1, 1] == 255 and s[2, 2] == 1 and s[4, 4] == 0 and (s == -1).sum() == 45
    big = scribbles_from_png(tmp_path / "w.png", (16, 12))  # nearest-resized, ids kept
    assert big[2:4, 2:4].tolist() == [[255, 255], [255, 255]] and (big[8:10, 8:10] == 0).all()
    wide[3, 3] = 257
    Image.fromarray(wide).save(tmp_path / "past.png")
    with pytest.raises(UserError, match=r"holds id 257: ids are 1\.\.255 for objects, 256 for background") as e:
        scribbles_from_png(tmp_path / "past.png", (8, 6))
    assert "\n" not in str(e.value)
    eight = np.zeros((6, 8), np.uint8)
    eight[1, 1], eight[4, 4] = 254, 255
    Image.fromarray(eight, "L").save(tmp_path / "e.png")  # 8-bit: 255 stays the background stroke
    s = scribbles_from_png(tmp_path / "e.png", (8, 6))
    assert s[1, 1] == 254 and s[4, 4] == 0


def centred_s2m_file(tmp_path, frames) -> str:
    """A seeded S2M whose last bias is centred on the first frame (its masks are a mix of object and background,
    not empty as an untrained S2M's): saved as a checkpoint for the CLI."""
    s2m = load_s2m(None, 1)
    image = pad_to_16(image_tensor(np.array(Image.open(frames / "00000.jpg").convert("RGB"))))[0]
    zeros = torch.zeros((1, 1, *image.shape[-2:]))
    with torch.no_grad():
        s2m.classifier.classifier[3].bias -= s2m(torch.cat([image[None], zeros, zeros, zeros], 1)).median()
    torch.save(s2m.state_dict(), tmp_path / "centred_s2m.pth")
    return str(tmp_path / "centred_s2m.pth")


def test_interact_cli_object_255_is_one_channel(tmp_path, weights_file):
    """`stcn interact` maps object ids to dense channels: strokes naming object 255 (16-bit grey, background 256)
    give exactly the masks of the same strokes naming object 1, relabelled; a later round adds object 7 beside it.
    Id 257 is refused in one line, and so is a mask in the output folder that names an id the state lacks."""
    frames, _ = shrink_sequence(
        DAVIS / "JPEGImages/480p/blackswan", DAVIS / "Annotations/480p/blackswan", tmp_path / "seq", 4, 0.1
    )
    w, h = Image.open(frames / "00000.jpg").size
    strokes = np.zeros((h, w), np.uint16)
    strokes[h // 2, w // 3 : 2 * w // 3] = 255
    strokes[:, 0] = 256
    Image.fromarray(strokes).save(tmp_path / "s255.png")
    Image.fromarray(np.where(strokes == 255, 1, strokes)).save(tmp_path / "s1.png")
    s2m = centred_s2m_file(tmp_path, frames)

    def interact(out, scribbles, frame):
        base = ["interact", "--weights", str(weights_file), "--frames", str(frames), "--s2m", s2m, "--out", str(out)]
        return stcn(*base, "--scribbles", str(scribbles), "--frame", str(frame))

    for name in ("s255", "s1"):
        run = interact(tmp_path / name, tmp_path / f"{name}.png", 0)
        assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "s255/interactive.json").read_text())["ids"] == [255]
    ones = [read_mask(tmp_path / "s1" / f"{i:05d}.png") for i in range(4)]
    assert all(m.shape == (h, w) for m in ones) and 0 < sum((m == 1).mean() for m in ones) / 4 < 0.95
    for i, one in enumerate(ones):
        assert np.array_equal(read_mask(tmp_path / "s255" / f"{i:05d}.png"), np.where(one == 1, 255, 0)), i

    seven = np.zeros((h, w), np.uint8)
    seven[h // 4, w // 4 : w // 2] = 7
    Image.fromarray(seven, "L").save(tmp_path / "s7.png")
    run = interact(tmp_path / "s255", tmp_path / "s7.png", 2)
    assert run.returncode == 0, run.stderr
    state = json.loads((tmp_path / "s255/interactive.json").read_text())
    assert state["ids"] == [255, 7] and state["interacted"] == [0, 2] and state["rounds"] == 2
    labels = np.stack([read_mask(tmp_path / "s255" / f"{i:05d}.png") for i in range(4)])
    assert set(np.unique(labels)) <= {0, 7, 255} and (labels == 7).any() and (labels == 255).any()

    strokes[0, 0] = 257
    Image.fromarray(strokes).save(tmp_path / "past.png")
    past = interact(tmp_path / "past", tmp_path / "past.png", 0)
    one_error(past, "holds id 257: ids are 1..255 for objects, 256 for background", alone=True)
    bad = labels[1].copy()
    bad[0, 0] = 9
    Image.fromarray(bad).save(tmp_path / "s255" / "00001.png")
    odd = interact(tmp_path / "s255", tmp_path / "s7.png", 3)
    one_error(odd, "00001.png holds object 9, which", "does not list ([255, 7])", alone=True)


def test_interact_cli_rounds_png_then_davis_json(tmp_path, weights_file):
    frames, masks = shrink_sequence(
        DAVIS / "JPEGImages/480p/blackswan", DAVIS / "Annotations/480p/blackswan", tmp_path / "seq", 6, 0.15
    )
    gt = read_mask(masks / "00001.png")
    png = np.where(gt == 1, 1, 0).astype(np.uint8)
    png[:, :3] = 255
    Image.fromarray(png, "L").save(tmp_path / "s.png")
    out = tmp_path / "out"
    base = ["interact", "--weights", str(weights_file), "--frames", str(frames), "--out", str(out)]
    first = stcn(*base, "--scribbles", str(tmp_path / "s.png"), "--frame", "00001")
    assert first.returncode == 0, first.stderr
    state = json.loads((out / "interactive.json").read_text())
    assert state == {"ids": [1], "interacted": [1], "rounds": 1, "video": state["video"]}
    video = dict(state["video"])
    digest = video.pop("first_frame_sha256")  # the round is bound to the first frame's pixels
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert video == {"frames": [f"{i:05d}" for i in range(6)], "size": [gt.shape[1], gt.shape[0]]}
    round1 = [read_mask(out / f"{i:05d}.png") for i in range(6)]
    assert round1[0].shape == gt.shape
    # round 2: a DAVIS scribble JSON (normalised points) with a background stroke on frame 4
    strokes = [[] for _ in range(6)]
    strokes[4] = [{"object_id": 0, "path": [[0.05, 0.1], [0.05, 0.9]], "start_time": 0, "end_time": 1}]
    (tmp_path / "s.json").write_text(json.dumps({"scribbles": strokes, "sequence": "blackswan"}))
    second = stcn(*base, "--scribbles", str(tmp_path / "s.json"))
    assert second.returncode == 0, second.stderr
    assert json.loads((out / "interactive.json").read_text()) == {**state, "interacted": [1, 4], "rounds": 2}
    round2 = [read_mask(out / f"{i:05d}.png") for i in range(6)]
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(6)] + ["interactive.json"]
    assert not list(tmp_path.glob(".out*")), "a round left its temporary folder behind"
    assert all(np.array_equal(a, b) for a, b in zip(round1[:2], round2[:2], strict=True))  # at/before frame 1
    missing = stcn(*base, "--scribbles", str(tmp_path / "s.png"))
    assert one_error(missing, alone=True) == (
        "error: --frame is needed with a PNG scribble (the frame's index or file stem)"
    )
    (out / "interactive.json").write_text("{")
    corrupt = stcn(*base, "--scribbles", str(tmp_path / "s.png"), "--frame", "1")
    assert one_error(corrupt, alone=True).startswith("error: corrupt interaction state")


# --- the DAVIS interactive evaluation, end to end through davisinteractive ----------------------------
def test_davis_interactive_evaluation_end_to_end(tmp_path, weights_file):
    from stcn.interactive.evaluate import evaluate_interactive

    root = mini_davis(tmp_path / "davis", {"blackswan": "val"}, n=6, scale=0.2)
    out = tmp_path / "results"
    data = evaluate_interactive(weights_file, None, None, 0, root, "val", out, InferenceSettings(), 8, 240)
    seq = data["sequences"]["blackswan"]
    assert data["first_scribbles"] == "the robot on an empty prediction" and seq["first_scribble"] == "robot"
    assert data["overall"]["interactions"] == 8 and seq["frames"] == 6
    # one sequence: the package's overall summary and its per-sequence summary agree
    assert seq["auc_jf"] == data["overall"]["auc_jf"] and seq["jf_at_60s"] == data["overall"]["jf_at_60s"]
    assert 0 <= data["overall"]["auc_jf"] <= 100
    report = __import__("pandas").read_csv(out / "report.csv")
    assert sorted(report["interaction"].unique()) == list(range(1, 9)) and len(report) == 8 * 6
    assert report["jaccard"].between(0, 1).all()
    first = report[report["interaction"] == 1]
    assert (first["jaccard"] > 0).sum() <= 1  # interaction 1 refines the scribbled frame only
    md = (out / "report.md").read_text()
    assert "| paper (STCN release) | | | 88.4 | 88.8 |" in md and "| blackswan |" in md


def test_dvc_stage_command_writes_results_and_report(tmp_path, weights_file):
    import os
    import shutil

    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate_davis17_interactive"].update(resolution=48, max_interactions=3, s2m=None)  # S2M: the stand-in
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    mini_davis(tmp_path / "data" / "davis17", {"car-shadow": "val"}, n=4, scale=0.2)
    evaluated = tmp_path / params["evaluate_davis17_interactive"]["weights"]
    evaluated.parent.mkdir(parents=True)
    shutil.copy(weights_file, evaluated)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "evaluate_interactive.py"), "davis17"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "results" / "davis17_interactive" / "evaluation.json").read_text())
    assert data["overall"]["interactions"] == 3 and data["resolution"] == 48
    assert data["s2m"].startswith("seeded stand-in") and list(data["sequences"]) == ["car-shadow"]
    report = (tmp_path / "reports" / "davis17_interactive.md").read_text()
    assert "| paper (STCN release) | | | 88.4 | 88.8 |" in report and "- profile: `sample`" in report
    assert f"- STCN weights: `{params['evaluate_davis17_interactive']['weights']}`" in report


def test_interaction_state_ids_and_the_older_object_count(tmp_path):
    """The state lists object ids in channel order; an older state's `objects: N` reads as ids 1..N."""
    from stcn.interactive.state import read_state

    video = {"frames": ["a", "b"], "size": [4, 3]}
    path = tmp_path / "interactive.json"
    path.write_text(json.dumps({"objects": 2, "interacted": [1], "rounds": 1, "video": video}))
    assert read_state(path, ["a", "b"], (4, 3)) == {"ids": [1, 2], "interacted": [1], "rounds": 1}
    path.write_text(json.dumps({"ids": [255, 7], "interacted": [0], "rounds": 1, "video": video}))
    assert read_state(path, ["a", "b"], (4, 3))["ids"] == [255, 7]
    for ids in ([7, 7], [0], [256], "1"):
        path.write_text(json.dumps({"ids": ids, "interacted": [0], "rounds": 1, "video": video}))
        with pytest.raises(UserError, match="corrupt interaction state"):
            read_state(path, ["a", "b"], (4, 3))
    for objects in (3000, "2", None):
        path.write_text(json.dumps({"objects": objects, "interacted": [0], "rounds": 1, "video": video}))
        with pytest.raises(UserError, match=f"objects must be an integer in 0..255, got {objects!r};"):
            read_state(path, ["a", "b"], (4, 3))
