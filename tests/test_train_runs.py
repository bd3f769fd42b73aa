"""Training runs on the bundled real DAVIS sequences (CPU, small crops): DDP, resume, learning, weights."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from stcn.data.shards.inputs import davis_pending, static_pending
from stcn.data.shards.writer import write_shards
from stcn.data.stream.loader import make_loader
from stcn.model import STCN, load_weights, official_state_dict
from stcn.train.forward import TrainingForward
from stcn.train.loss import compute_losses, iou
from stcn.train.trainer import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3_server import s3_server  # noqa: E402, F401  (pytest fixture)

REPO = Path(__file__).resolve().parent.parent
DAVIS = REPO / "stcn" / "data" / "bundled" / "davis-mini"
CROP = 64  # the pipeline is the same at 384; small crops keep these runs to seconds per step
ITERS = 16  # overfit iterations
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """davis/: 4 real videos, one per shard; blackswan/: one video; static/: real frames as image + mask."""
    out = tmp_path_factory.mktemp("shards")
    videos = davis_pending(DAVIS, 2017, "train") + davis_pending(DAVIS, 2017, "val")
    write_shards(videos, str(out / "davis"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
    swan = [v for v in videos if v.key == "blackswan"]
    write_shards(swan, str(out / "blackswan"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
    static = tmp_path_factory.mktemp("static")
    for jpg in sorted(DAVIS.glob("JPEGImages/480p/*/*.jpg"))[::20]:
        name = f"{jpg.parent.name}_{jpg.stem}"
        (static / f"{name}.jpg").write_bytes(jpg.read_bytes())
        labels = np.asarray(Image.open(DAVIS / "Annotations/480p" / jpg.parent.name / f"{jpg.stem}.png"))
        Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(static / f"{name}.png")
    write_shards(static_pending(static), str(out / "static"), dataset="static", split="train", source="s",
                 shard_size_bytes=1)  # fmt: skip
    return out


def config(out: Path, data: Path | list[str], **kw) -> TrainConfig:
    data = [str(data)] if isinstance(data, Path) else data
    base = dict(stage=2, data=data, out=str(out), init="random", iterations=4, batch_size=1, crop=CROP,
                checkpoint_every=2, num_workers=0, log_every=1, device="cpu", progress=False)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def cli(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "stcn.train", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, cfg: TrainConfig, result: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    out = train(cfg)
    torch.save({"state": official_state_dict(out["model"]), "losses": out["losses"]}, result / f"rank{rank}.pt")


def test_ddp_two_ranks_keep_identical_weights(shards, tmp_path):
    cfg = config(tmp_path / "run", shards / "davis", iterations=2, live=False)
    mp.spawn(_rank, args=(2, free_port(), cfg, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    torch.manual_seed(cfg.seed)
    init = official_state_dict(STCN())  # the run's seeded init
    assert r0["losses"] == r1["losses"]  # logged losses are averaged over ranks
    for name, tensor in r0["state"].items():
        assert torch.equal(tensor, r1["state"][name]), name
    assert not torch.equal(r0["state"]["decoder.pred.weight"], init["decoder.pred.weight"])  # it did train
    load_weights(STCN(), tmp_path / "run" / "weights.pth")


def _logged_steps(live: Path) -> list[int]:
    with (live / "plots" / "metrics" / "train" / "loss.tsv").open() as f:
        return [int(row["step"]) for row in csv.DictReader(f, delimiter="\t")]


def test_resume_after_sigkill_matches_uninterrupted_run(shards, tmp_path, capsys):
    kw = dict(iterations=4, checkpoint_every=2, num_workers=1)
    straight = train(config(tmp_path / "straight", shards / "davis", **kw))

    out = tmp_path / "killed"
    args = ["--stage", "2", "--data", str(shards / "davis"), "--out", str(out), "--init", "random", "--iterations",
            "4", "--checkpoint-every", "2", "--num-workers", "1", "--batch-size", "1", "--crop", str(CROP),
            "--log-every", "1", "--device", "cpu"]  # fmt: skip
    proc = cli(*args, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pth").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its data worker
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = torch.load(out / "checkpoint.pth", weights_only=False)["iteration"]
    assert done == 2

    capsys.readouterr()
    resumed = train(config(out, shards / "davis", resume=True, **kw))
    assert f"train: resuming {out / 'checkpoint.pth'} at iteration 2 of 4" in capsys.readouterr().err
    assert np.allclose(resumed["losses"], straight["losses"][done:], rtol=1e-5, atol=1e-6)
    a, b = load_weights(STCN(), tmp_path / "straight" / "weights.pth"), load_weights(STCN(), out / "weights.pth")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-7), name
    assert _logged_steps(out / "dvclive") == list(range(4))  # rows the killed run logged past its checkpoint dropped


def test_overfit_one_real_sequence_raises_iou(shards, tmp_path):
    """Repeated training on one real blackswan sample (3 frames, 64 px): IoU from < 0.3 to > 0.6."""
    batch = next(iter(make_loader([str(shards / "blackswan")], "video", 1, 0, seed=3, samples_per_rank=1, crop=CROP)))
    assert 0.05 < float(batch["gt"].mean()) < 0.5

    def measured(model: STCN) -> float:
        with torch.no_grad():
            out = TrainingForward(model).eval()(batch["rgb"], batch["gt"], batch["sec_gt"], batch["selector"])
            return iou(compute_losses(out, batch, 0))

    cfg = config(tmp_path / "overfit", shards / "blackswan", iterations=ITERS, lr=5e-5, checkpoint_every=1000)
    torch.manual_seed(cfg.seed)
    before = measured(STCN())
    run = train(cfg, open_segment=lambda _i, seg: [batch] * seg.batches)
    after = measured(load_weights(STCN(), run["weights"]))
    print(f"overfit IoU {before:.3f} -> {after:.3f}, loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}")
    assert before < 0.3 and after > 0.6, (before, after, run["losses"])
    assert run["losses"][-1] < 0.5 * run["losses"][0]


def test_cli_streams_from_s3_mixed_with_local_shards(shards, tmp_path, s3_server):  # noqa: F811
    """`stcn train` in a fresh process reading s3:// shards (weighted x2) and local ones."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    for p in sorted((shards / "davis").iterdir()):
        fs.put_file(str(p), f"test-bucket/davis/{p.name}")
    out = tmp_path / "s3"
    proc = cli("--stage", "2", "--data", "s3://test-bucket/davis*2", "--data", str(shards / "blackswan"), "--out",
               str(out), "--init", "random", "--iterations", "2", "--batch-size", "1", "--crop", str(CROP),
               "--num-workers", "0", "--log-every", "1", "--no-keep-checkpoint", env=s3_server.env())  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert _logged_steps(out / "dvclive") == [0, 1]
    load_weights(STCN(), out / "weights.pth")
    assert not (out / "checkpoint.pth").exists()


def test_stage0_to_stage1_weights(shards, tmp_path):
    s0 = train(config(tmp_path / "s0", shards / "static", stage=0, iterations=1, live=False))
    w0 = torch.load(s0["weights"], weights_only=True)
    assert w0["value_encoder.conv1.weight"].shape == (64, 4, 7, 7)
    assert not any(k.startswith(("module.", "net.")) for k in w0)
    s1 = train(config(tmp_path / "s1", shards / "davis", stage=1, iterations=1, init=s0["weights"], live=False))
    w1 = load_weights(STCN(), s1["weights"]).value_encoder.conv1.weight  # strict, official names
    assert w1.shape == (64, 5, 7, 7) and float(w1[:, 4].detach().abs().sum()) > 0
    # the resolution it was trained at sits beside the official-format weights.pth (1.25 x crop, as 384 -> 480p)
    assert json.loads((tmp_path / "s1" / "weights.json").read_text()) == {"stage": 1, "crop": CROP, "resolution": 80}


def test_cli_one_line_errors(shards, tmp_path):
    env = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "TORCH_HOME": str(tmp_path)}
    offline = cli("--stage", "0", "--data", str(shards / "static"), "--out", str(tmp_path / "a"), env=env)
    _, err = offline.communicate(timeout=300)
    assert offline.returncode == 2 and err.count("\n") == 1 and "ImageNet weights resnet50" in err, err
    assert "--init random" in err

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.pth").write_bytes(b"junk")
    for args, expected in [
        (["--stage", "2", "--data", str(shards / "davis"), "--out", str(tmp_path / "c")], "pass --init PREV"),
        (["--stage", "2", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c"), "--init", "random"],
         "none"),
        (["--stage", "2", "--data", str(shards / "davis"), "--out", str(tmp_path / "b"), "--init", "random"],
         "pass --resume"),
        (["--stage", "2", "--data", str(shards / "davis"), "--out", str(tmp_path / "b"), "--resume"],
         "cannot read training checkpoint"),
    ]:  # fmt: skip
        proc = cli(*args)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2 and err.count("\n") == 1 and expected in err, (args, err)
