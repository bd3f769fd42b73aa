"""Shared fixtures: the bundled real DAVIS sample, small copies of it, and seeded STCN weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

# one OpenMP thread per test process, set before torch starts its pool: the files run in one process per core
# (pytest-xdist, pyproject.toml), and subprocesses inherit it; on a shared 2-core machine spinning OpenMP threads of
# several processes make each of them many times slower
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "stcn" / "data" / "bundled"
DAVIS = BUNDLED / "davis-mini"
TENNIS = BUNDLED / "davis17-multiobject-sample"
# the parity reference (the original release's outputs on real frames, its weight generator and checker), shipped
# so that every clone checks parity; tests/data/parity/README.md says how it was made
PARITY = REPO / "tests" / "data" / "parity"
KEY_LIST = REPO / "tests" / "data" / "stcn_state_dict.json"


def pytest_configure(config) -> None:
    """Precision auto picks `fast` on a CPU with AMX / AVX512-BF16 (an AMD EPYC Zen 4 has the latter) and fp32
    elsewhere: the suite runs as on a CPU without them, so its default-precision results are the same on every
    machine (the tests of auto set or clear the variable themselves; subprocesses inherit it). A hook, not an
    import-time setting: the benchmarks that import this module measure the real auto."""
    os.environ.setdefault("STCN_NATIVE_HALF", "0")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`): on a
    shared 2-core machine, OpenMP spin-waiting makes 2 threads up to 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def davis_root() -> Path:
    return DAVIS


@pytest.fixture(scope="session")
def official_entries() -> list[dict]:
    """Every tensor (name, shape, dtype) of the official stcn.pth, in order."""
    return json.loads(KEY_LIST.read_text())["entries"]


def seeded_state_dict(entries: list[dict], seed: int = 0, in_channels: int = 5) -> dict[str, torch.Tensor]:
    """Random tensors with the official names and shapes (BatchNorm left as identity), like a real checkpoint."""
    gen = torch.Generator().manual_seed(seed)
    bn = {e["name"].removesuffix(".running_mean") for e in entries if e["name"].endswith(".running_mean")}
    state = {}
    for e in entries:
        name, shape = e["name"], list(e["shape"])
        prefix, _, leaf = name.rpartition(".")
        if name == "value_encoder.conv1.weight":
            shape[1] = in_channels
        if prefix in bn:
            fill = 1.0 if leaf in ("weight", "running_var") else 0.0
            dtype = torch.int64 if leaf == "num_batches_tracked" else torch.float32
            state[name] = torch.full(shape, fill, dtype=dtype)
        elif len(shape) >= 2:
            state[name] = torch.randn(shape, generator=gen) / float(np.prod(shape[1:])) ** 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.01
    state["decoder.pred.bias"] = torch.tensor([3.0])  # centres this random decoder: a mix of fg / bg
    conv1 = state["value_encoder.conv1.weight"]
    conv1[:, 3] *= 20  # make memory values depend clearly on the mask channel
    if in_channels == 5:
        conv1[:, 4] = -conv1[:, 3]
    return state


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, official_entries) -> Path:
    """A 5-channel checkpoint file with the official layout and seeded random values."""
    path = tmp_path_factory.mktemp("weights") / "stcn_random.pth"
    torch.save(seeded_state_dict(official_entries), path)
    return path


def shrink_sequence(src_frames: Path, src_masks: Path, dst: Path, n: int, scale: float = 0.5) -> tuple[Path, Path]:
    """Copy the first n frames/masks of a real sequence at a smaller size (JPEG frames, palette masks)."""
    frames, masks = dst / "frames", dst / "masks"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    for jpg in sorted(src_frames.glob("*.jpg"))[:n]:
        im = Image.open(jpg)
        size = (round(im.width * scale), round(im.height * scale))
        im.resize(size, Image.BICUBIC).save(frames / jpg.name, quality=95)
        png = src_masks / f"{jpg.stem}.png"
        if png.exists():
            m = Image.open(png)
            small = m.resize(size, Image.NEAREST)
            small.putpalette(m.getpalette())
            small.save(masks / png.name)
    return frames, masks


@pytest.fixture
def small_blackswan(tmp_path) -> tuple[Path, Path]:
    """8 real blackswan frames at 427x240 (not a multiple of 16: exercises padding)."""
    seq = "blackswan"
    return shrink_sequence(DAVIS / "JPEGImages/480p" / seq, DAVIS / "Annotations/480p" / seq, tmp_path / seq, 8)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def mini_davis(dst: Path, sequences: dict[str, str], n: int = 5, scale: float = 0.5) -> Path:
    """A small DAVIS root (first n frames of real sequences, smaller) with ImageSets for 2016 and 2017.

    `sequences` maps a sequence name to its split.
    """
    for name in sequences:
        frames, masks = shrink_sequence(
            DAVIS / "JPEGImages/480p" / name, DAVIS / "Annotations/480p" / name, dst / "tmp" / name, n, scale
        )
        shutil.move(frames, dst / "JPEGImages/480p" / name)
        shutil.move(masks, dst / "Annotations/480p" / name)
    shutil.rmtree(dst / "tmp")
    for year in ("2016", "2017"):
        for split in set(sequences.values()):
            listing = dst / "ImageSets" / year / f"{split}.txt"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("".join(f"{s}\n" for s, sp in sequences.items() if sp == split))
    return dst


def own_davis_folder(davis: Path, dst: Path, sequences: tuple[str, ...]) -> Path:
    """A user's own DAVIS-layout folder: `sequences` of the DAVIS root `davis`, without ImageSets or 480p level."""
    for seq in sequences:
        shutil.copytree(davis / "JPEGImages/480p" / seq, dst / "JPEGImages" / seq)
        shutil.copytree(davis / "Annotations/480p" / seq, dst / "Annotations" / seq)
    return dst


def mini_youtube(dst: Path, davis: Path, split: str = "valid") -> Path:
    """A YouTube-VOS root from a DAVIS root: all frames, every other frame required, first-frame masks."""
    for seq in sorted((davis / "JPEGImages/480p").iterdir()):
        frames = sorted(seq.glob("*.jpg"))
        subset, everything = dst / split / "JPEGImages" / seq.name, dst / "all_frames" / f"{split}_all_frames"
        (everything / "JPEGImages" / seq.name).mkdir(parents=True)
        subset.mkdir(parents=True)
        for i, f in enumerate(frames):
            shutil.copy(f, everything / "JPEGImages" / seq.name / f.name)
            if i % 2 == 0:
                shutil.copy(f, subset / f.name)
        ann = dst / split / "Annotations" / seq.name
        ann.mkdir(parents=True)
        shutil.copy(davis / "Annotations/480p" / seq.name / f"{frames[0].stem}.png", ann)
    return dst


# ---- small real inputs of the command tests (test_shard_inputs, test_interact_inputs, test_outputs, ...) ----------


def own_videos(dst: Path, drop: str | None = None) -> Path:
    """A DAVIS-layout folder of the bundled videos (no ImageSets: every video), without `drop`."""
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(DAVIS / kind / "480p", dst / kind)
        if drop:
            shutil.rmtree(dst / kind / drop)
    return dst


def png_frames(dst: Path, n: int = 3) -> Path:
    """The first n frames of the bundled blackswan as PNG files (what a mask could overwrite), shrunk."""
    dst.mkdir(parents=True)
    for jpg in sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[:n]:
        Image.open(jpg).resize((214, 120)).save(dst / f"{jpg.stem}.png")
    return dst


def dead_pid() -> int:
    """The pid of a process that was killed (SIGKILL) and reaped."""
    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def video_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of the bundled videos (stage 2 training data)."""
    from stcn.data.shards.build import shard_generic

    tmp = tmp_path_factory.mktemp("shards")
    shard_generic(own_videos(tmp / "own"), str(tmp / "shards"), workers=1, shard_size_mb=1)
    return tmp / "shards"


@pytest.fixture
def interact_round(tmp_path: Path, weights_file: Path):
    """`run(frames_folder, scribble_png, out)` for `stcn interact`; `video(name, n)`: a small real video."""
    from clihelp import stcn

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
