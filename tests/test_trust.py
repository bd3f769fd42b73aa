"""Trust boundary (issue 19): names, split files, part indexes, registries and state files are input too.

Each test drives the real command (a process) on real files and fails on the code before the issue."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stcn.data.fetch.sources import DAVIS_MINI

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "STCN_QUIET": "1"}


def stcn(*args: object, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`stcn ARGS` as a process (this tree's code)."""
    cmd = [sys.executable, "-m", "stcn.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env or ENV, timeout=300)


def one_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The one `error:` line of a failed command (exit 2, no traceback), holding every needle."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(lines) >= 1 and lines[-1].startswith("error: "), res.stderr[-3000:]
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


# ---- items 1-3, 8, 14: the registry ---------------------------------------------------------------------------


def test_shell_injection_in_a_dataset_name_is_refused_by_compose(tmp_path: Path) -> None:
    """Item 1: a dataset name holding `;` never reaches dvc.yaml's `cmd:` (compose refuses it, one line)."""
    for sub in ("conf", "pipelines", "hydra_plugins"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    config = tmp_path / "conf" / "config.yaml"
    text = config.read_text().replace("datasets:\n", "datasets:\n  'x;touch PWNED;y': {layout: davis, root: R, "
                                      "shard: {split: val}}\n", 1)  # fmt: skip
    config.write_text(text)
    res = subprocess.run([sys.executable, "pipelines/compose.py"], cwd=tmp_path, capture_output=True, text=True,
                         env=ENV)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: params.yaml: dataset name: 'x;touch PWNED;y'")
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "PWNED").exists()


def test_compose_quotes_what_it_interpolates() -> None:
    """Item 1: every stage command quotes the names it holds (a no-op for valid names, checked here)."""
    sys.path.insert(0, str(REPO / "pipelines"))
    try:
        import compose
        from stage import load
    finally:
        sys.path.remove(str(REPO / "pipelines"))
    import shlex

    p = load()
    stages = compose.stages(p)
    assert stages["evaluate_davis17_interactive"]["cmd"] == "python pipelines/evaluate_interactive.py davis17"
    quoted = []
    real_quote = shlex.quote
    compose.shlex.quote = lambda word: quoted.append(word) or real_quote(word)  # what each command quotes
    try:
        compose.stages(p)
    finally:
        compose.shlex.quote = real_quote
    names = [n for n, e in p["datasets"].items() if "evaluate" in (e or {}) or "shard" in (e or {})]
    assert set(names) <= set(quoted) and {"s0", "s03"} <= set(quoted)  # dataset and run names


def test_registry_file_name_cannot_escape_the_target(tmp_path: Path) -> None:
    """Item 2: a file `name: ../../../../victim.txt` is refused before anything is fetched or written."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    source = tmp_path / "src" / "w.pth"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets:\n  w:\n    layout: weights\n    files: [{name: "../../../../victim.txt", '
                        f'http: "file://{source}", place: null, marker: null}}]\n')  # fmt: skip
    res = stcn("download", "w", "--registry", registry, "--source", "file", "--url", source, "--to",
               tmp_path / "a" / "b" / "c" / "dl", cwd=tmp_path)  # fmt: skip
    one_error(res, "../../../../victim.txt", "not a valid name", str(registry))
    assert victim.read_text() == "mine"


def test_dataset_name_with_dots_is_refused(tmp_path: Path) -> None:
    """Item 3: a dataset named `../../escaped` is not "ready in data/../../escaped"."""
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets:\n  "../../escaped": {layout: davis, shard: {split: val}}\n')
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    res = stcn("download", "../../escaped", "--registry", registry, "--source", "bundled", cwd=work)
    one_error(res, "'../../escaped' is not a valid name")
    res = stcn("shard", "dataset", "../../escaped", "--registry", registry, "--out", tmp_path / "o", cwd=work)
    one_error(res, "'../../escaped' is not a valid name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.yaml"]


def test_duplicate_registry_names_are_refused(tmp_path: Path) -> None:
    """Item 8: the same dataset twice in a --registry file is an error naming the file and the key."""
    registry = tmp_path / "r.yaml"
    registry.write_text(f"datasets:\n  mine: {{layout: davis, root: {tmp_path}}}\n  mine: {{layout: youtube}}\n")
    res = stcn("shard", "dataset", "mine", "--registry", registry, "--out", tmp_path / "o")
    one_error(res, str(registry), "duplicate key 'mine'", "line 3")


def test_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Item 14: a "billion laughs" registry is refused on its first anchor, without expanding anything."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    registry = tmp_path / "bomb.yaml"
    registry.write_text("\n".join([*lines, "datasets: {x: *i}"]) + "\n")
    res = stcn("download", "x", "--registry", registry, "--source", "bundled")
    one_error(res, str(registry), "YAML anchors (&a) are not allowed", "line 1")


# ---- item 4: split files ----------------------------------------------------------------------------------------


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


# ---- items 5, 11, 12, 13: shard parts and sizes -----------------------------------------------------------------


def _own(dst: Path, drop: str | None = None) -> Path:
    """A DAVIS-layout folder of the bundled videos (no ImageSets: every video), without `drop`."""
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(DAVIS_MINI / kind / "480p", dst / kind)
        if drop:
            shutil.rmtree(dst / kind / drop)
    return dst


def test_parts_from_different_inputs_do_not_merge(tmp_path: Path) -> None:
    """Item 5: part 1/2 made from a copy without one video: merge refuses instead of a video twice, one missing."""
    from stcn.data.shards.build import shard_generic

    full, fewer, out = _own(tmp_path / "full"), _own(tmp_path / "fewer", drop="blackswan"), tmp_path / "out"
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
    root, out = _own(tmp_path / "own"), tmp_path / "out"
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

    root, out = _own(tmp_path / "own"), tmp_path / "out"
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
    res = stcn("shard", "generic", "--root", _own(tmp_path / "own"), "--out", tmp_path / "o", "--shard-size-mb", size)
    one_error(res, f"--shard-size-mb must be positive, got {float(size)} (a finite number of MiB)")


# ---- items 6, 7, 10 and the 16-bit scribble: `stcn interact` -------------------------------------------------


@pytest.fixture
def interact_round(tmp_path: Path, weights_file: Path):
    """`run(frames_folder, scribble_png, out)` for `stcn interact`; `video(name, n)`: a small real video."""
    import numpy as np
    from conftest import DAVIS, shrink_sequence
    from PIL import Image

    from stcn.data.images import read_mask

    def video(name: str, n: int) -> tuple[Path, Path]:
        frames, masks = shrink_sequence(DAVIS / "JPEGImages/480p" / name, DAVIS / "Annotations/480p" / name,
                                        tmp_path / name, n, 0.15)  # fmt: skip
        gt = read_mask(masks / "00001.png")
        png = np.where(gt == 1, 1, 0).astype(np.uint8)
        png[:, :3] = 255
        Image.fromarray(png, "L").save(tmp_path / f"{name}.png")
        return frames, tmp_path / f"{name}.png"

    def run(frames: Path, scribble: Path, out: Path) -> subprocess.CompletedProcess:
        return stcn("interact", "--weights", weights_file, "--frames", frames, "--out", out, "--scribbles", scribble,
                    "--frame", "00001")  # fmt: skip

    run.video = video
    return run


def test_interact_round_on_another_video_is_refused(tmp_path: Path, interact_round) -> None:
    """Item 6: round 2 on another video (fewer frames) into the same --out: one line, the masks untouched."""
    swan, swan_png = interact_round.video("blackswan", 5)
    dog, dog_png = interact_round.video("dog-agility", 3)
    out = tmp_path / "out"
    first = interact_round(swan, swan_png, out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error(interact_round(dog, dog_png, out), f"{out} holds rounds of another video", "5 frames", "3 frames")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("interacted", "ab", "interacted must be a list of frame indexes below 5"),
        ("interacted", [100], "got [100]"),
        ("interacted", [-3], "got [-3]"),
        ("ids", [3000], "ids must be a list of object ids 1..255, got [3000]"),
        ("ids", "2", "ids must be a list of object ids"),
        ("ids", [1, 1], "ids must be distinct, got [1, 1]"),
        ("rounds", -1, "rounds must be a non-negative integer"),
        ("video", None, "no record of its video"),
    ],
)
def test_tampered_interaction_state_is_one_line(tmp_path: Path, interact_round, key, value, needle) -> None:
    """Item 10: the state file is checked in type and range before use (no TypeError/IndexError/OOM)."""
    swan, swan_png = interact_round.video("blackswan", 5)
    out = tmp_path / "out"
    assert interact_round(swan, swan_png, out).returncode == 0
    state = json.loads((out / "interactive.json").read_text())
    (out / "interactive.json").write_text(json.dumps({**state, key: value}))
    one_error(interact_round(swan, swan_png, out), "corrupt interaction state", needle)


def test_scribble_of_another_size_is_refused(tmp_path: Path, interact_round) -> None:
    """Item 7: a 50x50 scribble on frames of another size is refused naming both sizes (not stretched)."""
    import numpy as np
    from PIL import Image

    swan, _ = interact_round.video("blackswan", 3)
    w, h = Image.open(next(swan.iterdir())).size
    small = np.zeros((50, 50), np.uint8)
    small[10:20, 10:20] = 1
    Image.fromarray(small, "L").save(tmp_path / "small.png")
    res = interact_round(swan, tmp_path / "small.png", tmp_path / "out")
    one_error(res, "50x50", f"{w}x{h}")
    assert not (tmp_path / "out").exists()


def test_16_bit_scribble_names_the_id(tmp_path: Path, interact_round) -> None:
    """Smaller: a 16-bit scribble with id 300 names the id (not "no strokes")."""
    import numpy as np
    from PIL import Image

    swan, _ = interact_round.video("blackswan", 3)
    w, h = Image.open(next(swan.iterdir())).size
    ids = np.zeros((h, w), np.uint16)
    ids[5:15, 5:15] = 300
    Image.fromarray(ids).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    one_error(interact_round(swan, tmp_path / "wide.png", tmp_path / "out"), "holds id 300")


# ---- items 9 and 16: full disks and left-overs of killed runs ---------------------------------------------------


@pytest.fixture(scope="module")
def video_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of the bundled videos (stage 2 training data)."""
    from stcn.data.shards.build import shard_generic

    tmp = tmp_path_factory.mktemp("shards")
    shard_generic(_own(tmp / "own"), str(tmp / "shards"), workers=1, shard_size_mb=1)
    return tmp / "shards"


def _train(data: Path, out: Path, iterations: int = 1) -> subprocess.CompletedProcess:
    return stcn("train", "--stage", "2", "--data", data, "--out", out, "--init", "random", "--iterations", iterations,
                "--batch-size", "1", "--crop", "64", "--device", "cpu", "--num-workers", "0",
                env={**ENV, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _dead_pid() -> int:
    """The pid of a process that was killed (SIGKILL) and reaped."""
    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()
    proc.wait()
    return proc.pid


def test_train_on_a_full_disk_is_one_line_and_leaves_no_dvclive(tmp_path: Path, video_shards: Path) -> None:
    """Item 9: torch wraps ENOSPC in a RuntimeError; the command says one line, exit 2, and leaves no dvclive/."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")  # the lead's CI runs as root here
    try:
        res = _train(video_shards, small / "run")
        one_error(res, "No space left on device")
        assert not (small / "run" / "dvclive").exists()
        assert not [p for p in (small / "run").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_rerun_removes_the_temporaries_of_killed_runs(tmp_path: Path, video_shards: Path, weights_file) -> None:
    """Item 16: `.checkpoint.pth.<pid>.tmp` of a killed training and `.<video>.<pid>.tmp/` of a killed evaluation
    rank are removed by the next run; temporaries of live processes and other files are kept."""
    run, dead = tmp_path / "run", _dead_pid()
    run.mkdir()
    (run / f".checkpoint.pth.{dead}.tmp").write_bytes(b"half a checkpoint")
    (run / f".weights.pth.{dead}.tmp").write_bytes(b"half the weights")
    (run / f".checkpoint.pth.{os.getpid()}.tmp").write_bytes(b"a live writer's")
    (run / "notes.txt").write_text("mine")
    res = _train(video_shards, run)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [f".checkpoint.pth.{os.getpid()}.tmp"]
    assert (run / "notes.txt").read_text() == "mine" and (run / "weights.pth").is_file()

    root, out = tmp_path / "davis", tmp_path / "eval"
    shutil.copytree(DAVIS_MINI, root)
    half = out / f".blackswan.{dead}.tmp"
    half.mkdir(parents=True)
    (half / "00000.png").write_bytes(b"half")
    res = stcn("evaluate", "--weights", weights_file, "--dataset", "generic", "--root", root, "--split", "val",
               "--out", out, "--max-frames", "3", "--device", "cpu")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not half.exists() and (out / "blackswan" / "00000.png").is_file()


# ---- smaller: batch-mode error lines do not wrap in logs ---------------------------------------------------------


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


# ---- issue 30 items 5-7: an output folder may not be, hold or lie inside an input ---------------------------------


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


def _png_frames(dst: Path, n: int = 3) -> Path:
    """The first n frames of the bundled blackswan as PNG files (what a mask could overwrite), shrunk."""
    from PIL import Image

    dst.mkdir(parents=True)
    for jpg in sorted((DAVIS_MINI / "JPEGImages/480p/blackswan").glob("*.jpg"))[:n]:
        Image.open(jpg).resize((214, 120)).save(dst / f"{jpg.stem}.png")
    return dst


def test_segment_into_its_frames_is_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 6: `segment --frames DIR --out DIR` (PNG frames) overwrote the frames with masks; also an
    --out inside the frames, the mask's own folder, and batch mode's --out in the masks folder."""
    from PIL import Image

    frames = _png_frames(tmp_path / "frames")
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
    frames = _png_frames(batch / "blackswan")
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
        _png_frames(root / name, n)
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


def test_registry_split_names_are_checked(tmp_path: Path) -> None:
    """Issue 30 item 3: `splits: ["../../../../../elsewhere/victim"]` made `download --source bundled` overwrite
    victim.txt far outside the dataset folder; the entry is now refused like any other name."""
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("mine\n")
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets:\n  mine: {layout: davis, year: 2017, splits: ["../../../../../elsewhere/victim"]}\n')
    res = stcn("download", "mine", "--registry", registry, "--source", "bundled", cwd=work)
    one_error(res, str(registry), "datasets.mine.splits", "'../../../../../elsewhere/victim' is not a valid name")
    assert victim.read_text() == "mine\n" and not (work / "data").exists()


# ---- issue 30 item 10: non-finite training ----------------------------------------------------------------------


def _train_args(data: Path, out: Path, *extra: object) -> subprocess.CompletedProcess:
    return stcn("train", "--stage", "2", "--data", data, "--out", out, "--init", "random", "--batch-size", "1",
                "--crop", "64", "--device", "cpu", "--num-workers", "0", *extra,
                env={**ENV, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_training_never_saves_non_finite_weights(tmp_path: Path, video_shards: Path) -> None:
    """Issue 30 item 10: `--resume` from a checkpoint with NaN weights trained NaN and exited 0 with a NaN
    weights.pth; a loss that turns non-finite (a huge --lr) is one line too; no weights file either way."""
    import torch

    run = tmp_path / "run"
    res = _train_args(video_shards, run, "--iterations", 2, "--keep-checkpoint")
    assert res.returncode == 0, res.stderr[-2000:]
    weights = (run / "weights.pth").read_bytes()
    state = torch.load(run / "checkpoint.pth", weights_only=True)
    state["iteration"] = 1  # as if saved after iteration 1 of 2
    name = next(k for k, v in state["network"].items() if v.is_floating_point())
    state["network"][name] = torch.full_like(state["network"][name], float("nan"))
    torch.save(state, run / "checkpoint.pth")
    res = _train_args(video_shards, run, "--iterations", 2, "--resume")
    one_error(res, str(run / "checkpoint.pth"), "non-finite weights", name)
    assert (run / "weights.pth").read_bytes() == weights

    fresh = tmp_path / "fresh"
    res = _train_args(video_shards, fresh, "--iterations", 3, "--lr", "1e30", "--log-every", "1")
    line = one_error(res)
    assert "training diverged: the loss is nan" in line or "non-finite weights" in line, line
    assert not (fresh / "weights.pth").exists() and not (fresh / "checkpoint.pth").exists()


def test_interact_round_on_another_video_of_the_same_names_and_size_is_refused(tmp_path: Path, interact_round):
    """Issue 30 item 8: round 2 with another video's frames (same frame names and size, as every DAVIS video has)
    into the same --out was accepted: the state is bound to the first frame's content."""
    swan, swan_png = interact_round.video("blackswan", 3)
    dog, dog_png = interact_round.video("dog-agility", 3)
    assert sorted(p.name for p in swan.iterdir()) == sorted(p.name for p in dog.iterdir())
    out = tmp_path / "out"
    first = interact_round(swan, swan_png, out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error(interact_round(dog, dog_png, out), f"{out} holds rounds of another video", "first frame differs")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = interact_round(swan, swan_png, out)  # the same video: a second round
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "interactive.json").read_text())["rounds"] == 2


# ---- issue 30 item 12: index files are input too ------------------------------------------------------------------


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


def test_shard_index_names_outside_the_folder_are_refused(tmp_path: Path, video_shards: Path) -> None:
    """Issue 30 item 12: a shard name `../other/train-000000.tar` in index.json made training read another folder."""
    shards = tmp_path / "shards"
    shutil.copytree(video_shards, shards)
    other = tmp_path / "other"
    shutil.copytree(video_shards, other)
    index = json.loads((shards / "index.json").read_text())
    entry = index["splits"]["train"]
    entry["shards"][0]["name"] = "../other/train-000000.tar"
    (shards / "index.json").write_text(json.dumps(index))
    res = _train_args(shards, tmp_path / "run", "--iterations", 1)
    one_error(res, f"corrupt shard index {shards / 'index.json'}", "'../other/train-000000.tar'")
    entry["shards"][0]["name"] = entry["shards"][1]["name"]
    (shards / "index.json").write_text(json.dumps(index))
    res = _train_args(shards, tmp_path / "run", "--iterations", 1)
    one_error(res, f"shard {entry['shards'][1]['name']} is listed twice")
    assert not (tmp_path / "run").exists()


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

    root, out = _own(tmp_path / "own"), tmp_path / "out"
    for i in range(2):
        shard_generic(root, str(out), part=f"{i}/2", workers=1)
    part = out / "parts/0-of-2/index.json"
    index = json.loads(part.read_text())
    index["splits"]["train"] = damage(index["splits"]["train"])
    part.write_text(json.dumps(index))
    one_error(stcn("shard", "merge", "--out", out, "--parts", "2"), "corrupt part index", str(part), needle)
    assert not (out / "index.json").exists()


# ---- issue 30 items 11, 13, 14: strict YAML, bounded parts ---------------------------------------------------------


def _compose_copy(tmp_path: Path, edit, file: str = "config.yaml") -> subprocess.CompletedProcess:
    """`pipelines/compose.py` run in a copy of conf/, its resolvers and pipelines/ whose conf/`file` text `edit`
    changed."""
    for sub in ("conf", "hydra_plugins", "pipelines"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    config = tmp_path / "conf" / file
    config.write_text(edit(config.read_text()))
    return subprocess.run([sys.executable, "pipelines/compose.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=ENV, timeout=300)  # fmt: skip


def _bomb() -> str:
    lines = ['lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"lol{i + 1}: &l{i + 1} [{','.join([f'*l{i}'] * 9)}]" for i in range(8)]
    return "\n".join(lines) + "\n"


SAMPLE = "profile/sample.yaml"


@pytest.mark.parametrize(
    ("file", "edit", "needles"),
    [
        ("config.yaml", lambda text: text + _bomb(), ["conf/config.yaml", "YAML anchors (&l0) are not allowed"]),
        ("config.yaml", lambda text: text + "train_s0: {stage: 0, data: [static]}\n",
         ["conf/config.yaml", "duplicate key 'train_s0'"]),
        (SAMPLE, lambda text: text.replace("parts: 2", "parts: 10000000"),
         ["datasets.bl30k.shard.parts must be a whole number of parts 1..4096, got 10000000"]),
        (SAMPLE, lambda text: text.replace("parts: 2", "parts: 2.7"),
         ["datasets.bl30k.shard.parts must be a whole number of parts 1..4096, got 2.7"]),
    ],
)  # fmt: skip
def test_compose_refuses_bombs_duplicates_and_huge_parts_in_one_line(tmp_path: Path, file, edit, needles) -> None:
    """Issue 30 items 13, 11, 14: an alias bomb in conf/config.yaml ran until killed, a duplicate key was 80 lines
    of Hydra traceback (or silently the last value), `parts: 10000000` a MemoryError, `parts: 2.7` became 2."""
    res = _compose_copy(tmp_path, edit, file)
    one_error(res, *needles)
    assert not (tmp_path / "params.yaml").exists() and not (tmp_path / "dvc.yaml").exists()


def test_params_yaml_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    """Issue 30 item 11: a stage read params.yaml with a key twice (the last won); now one line naming it."""
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    text = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text + "shard: {url: elsewhere}\n")
    res = subprocess.run([sys.executable, "pipelines/shard.py", "davis17"], cwd=tmp_path, capture_output=True,
                         text=True, env=ENV, timeout=300)  # fmt: skip
    one_error(res, "params.yaml", "duplicate key 'shard'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "pipelines"]


def test_huge_part_counts_are_one_line(tmp_path: Path) -> None:
    """Issue 30 item 13: `--part 0/99999999999999999999` and `merge --parts 10000000` ran out of memory."""
    root = _own(tmp_path / "own")
    res = stcn("shard", "generic", "--root", root, "--out", tmp_path / "o", "--part", "0/99999999999999999999")
    one_error(res, "--part must be I/N with 0 <= I < N <= 4096", "'0/99999999999999999999'")
    one_error(stcn("shard", "merge", "--out", tmp_path / "o", "--parts", 10**7), "--parts must be a whole number",
              "10000000")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_segment_rerun_removes_what_a_killed_run_left(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 15: a killed single-video `stcn segment` left `.OUT.<pid>.tmp/` and a successful re-run kept
    it; now the re-run removes the temporaries of dead processes (a live one's stays)."""
    from PIL import Image

    frames = _png_frames(tmp_path / "frames")
    mask = tmp_path / "first.png"
    Image.open(DAVIS_MINI / "Annotations/480p/blackswan/00000.png").resize((214, 120), Image.NEAREST).save(mask)
    dead, live = tmp_path / f".out.{_dead_pid()}.tmp", tmp_path / f".out.{os.getpid()}.tmp"
    for half in (dead, live):
        half.mkdir()
        (half / "00000.png").write_bytes(b"half")
    res = stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out",
               tmp_path / "out", "--device", "cpu")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not dead.exists() and live.is_dir() and len(list((tmp_path / "out").glob("*.png"))) == 3


# ---- issue 30 items 11, 14: scribbles of the wrong types ---------------------------------------------------------


def _stroke(object_id: object = 1, path: object = None) -> dict:
    return {"path": [[0.4, 0.5], [0.6, 0.5]] if path is None else path, "object_id": object_id}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"scribbles": 5}, "`scribbles` must be a list"),
        ({"scribbles": [[_stroke(-2)], [], []]}, "frame 0 stroke 0 object_id must be a whole number 0..255"),
        ({"scribbles": [[], [_stroke(1.9)], []]}, "frame 1 stroke 0 object_id must be a whole number 0..255 (0: "
         "background), got 1.9"),
        ({"scribbles": [[_stroke(True)], [], []]}, "got True"),
        ({"scribbles": [[_stroke(1, [[float("nan"), 0.5]])], [], []]}, "point [nan, 0.5] is not [x, y] with finite"),
        ({"scribbles": [[_stroke(1, [[1.5, 0.5]])], [], []]}, "point [1.5, 0.5]"),
        ({"scribbles": [[_stroke(1, [])], [], []]}, "path must be a non-empty list"),
        ({"scribbles": [5, [], []]}, "frame 0 must be a list of strokes"),
    ],
)  # fmt: skip
def test_scribble_json_of_wrong_types_is_one_line(tmp_path: Path, interact_round, data, needle) -> None:
    """Issue 30 items 11 and 14: `object_id` -2 became object 1 (-3 a background stroke), 1.9 became 1,
    `{"scribbles": 5}` and NaN coordinates were tracebacks; now one line naming the file and the stroke."""
    swan, _ = interact_round.video("blackswan", 3)
    scribbles = tmp_path / "s.json"
    scribbles.write_text(json.dumps({**data, "sequence": "blackswan"}))
    one_error(interact_round(swan, scribbles, tmp_path / "out"), f"not a DAVIS scribble file: {scribbles}", needle)
    assert not (tmp_path / "out").exists()


def test_page_strokes_of_wrong_types_are_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 11: a stroke for object 12.9 drew object 12, on frame 1.9 frame 1, `positive: "false"` a
    positive stroke; the session refuses them (the page's own "12" from its input field still works)."""
    from stcn.errors import UserError
    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.session import Session
    from stcn.interactive.weights import load_fusion, load_s2m

    settings = InferenceSettings(resolution=64, mem_every=2)
    session = Session(load_model(weights_file), load_s2m(None, 0), load_fusion(None), settings, tmp_path / "out",
                      tmp_path, max_frames=3, models="test")  # fmt: skip
    session.open(sample="blackswan")
    point = [[0.5, 0.5]]
    for frame, obj, positive, needle in ((0, 12.9, True, "object id 12.9 is not a whole number"),
                                         (0, "12.9", True, "object id '12.9' is not a whole number"),
                                         (1.9, 12, True, "frame 1.9 is not a whole number"),
                                         (0, 12, "false", "positive must be true or false, got 'false'")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(needle)):
            session.stroke(frame, obj, positive, point)
    assert session.status()["objects"] == [] and session.status()["pending"] is None
    session.stroke(1, "12", True, point)
    assert session.status()["objects"] == [12] and session.status()["pending"] == 1


# ---- issue 30 item 14: tracebacks on tampered files --------------------------------------------------------------


def test_resume_from_a_tampered_checkpoint_is_one_line(tmp_path: Path, video_shards: Path) -> None:
    """Issue 30 item 14: a checkpoint with iteration "abc", without its random state, or with other parameter
    groups was a traceback on --resume; now one line naming the checkpoint, and weights.pth is left as it was."""
    import torch

    run = tmp_path / "run"
    res = _train_args(video_shards, run, "--iterations", 2, "--keep-checkpoint")
    assert res.returncode == 0, res.stderr[-2000:]
    weights, saved = (run / "weights.pth").read_bytes(), torch.load(run / "checkpoint.pth", weights_only=True)
    saved["iteration"] = 1

    def no_rng(state: dict) -> dict:
        return {k: v for k, v in state.items() if k != "rng"}

    def more_groups(state: dict) -> dict:
        optimizer = state["optimizer"]
        groups = [*optimizer["param_groups"], {**optimizer["param_groups"][0], "params": []}]
        return {**state, "optimizer": {**optimizer, "param_groups": groups}}

    for tamper, needle in ((lambda state: {**state, "iteration": "abc"}, "iteration must be a whole number, got 'abc'"),
                           (no_rng, "missing 'rng'"), (more_groups, "parameter groups")):  # fmt: skip
        torch.save(tamper(saved), run / "checkpoint.pth")
        res = _train_args(video_shards, run, "--iterations", 2, "--resume")
        one_error(res, f"corrupt training checkpoint {run / 'checkpoint.pth'}", needle)
        assert (run / "weights.pth").read_bytes() == weights


def test_deeply_nested_interaction_state_is_one_line(tmp_path: Path, interact_round) -> None:
    """Issue 30 item 14: a state file nested 10^5 deep was a RecursionError traceback."""
    swan, swan_png = interact_round.video("blackswan", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "interactive.json").write_text("[" * 100_000 + "]" * 100_000)
    one_error(interact_round(swan, swan_png, out), f"corrupt interaction state {out / 'interactive.json'}",
              "nested too deeply")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["interactive.json"]


def test_onnx_graphs_swapped_or_of_another_model_are_one_line(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 14: swapped graphs, or another model's graph, were `zip() argument 2 is shorter` tracebacks
    (the manifest's sha256 was never checked); now one line naming the graph."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from stcn.model.onnx_format import sha256

    export = tmp_path / "export"
    res = stcn("export", "--weights", weights_file, "--out", export)
    assert res.returncode == 0, res.stderr[-2000:]
    frames = _png_frames(tmp_path / "frames", 2)
    mask = tmp_path / "first.png"
    Image.open(DAVIS_MINI / "Annotations/480p/blackswan/00000.png").resize((214, 120), Image.NEAREST).save(mask)

    def segment() -> subprocess.CompletedProcess:
        return stcn("segment", "--weights", export, "--backend", "onnxruntime", "--frames", frames, "--first-mask",
                    mask, "--out", tmp_path / "out")  # fmt: skip

    key, decoder = export / "key_encoder.onnx", export / "decoder.onnx"
    key_bytes, decoder_bytes = key.read_bytes(), decoder.read_bytes()
    key.write_bytes(decoder_bytes), decoder.write_bytes(key_bytes)  # swapped
    one_error(segment(), f"{key} is not the graph {export / 'manifest.json'} records (sha256 differs)")
    manifest = json.loads((export / "manifest.json").read_text())  # and a manifest that agrees with the swap
    for graph in (key, decoder):
        manifest["graphs"][graph.stem]["sha256"] = sha256(graph)
    (export / "manifest.json").write_text(json.dumps(manifest))
    one_error(segment(), f"{key} is not an STCN key_encoder", "['readout', 'thin', 'f8', 'f4']")
    assert not (tmp_path / "out").exists()
