"""Training's inputs and failures: checkpoints never run code and are checked on --resume, settings are
valid numbers, shard indexes stay in their folder, non-finite weights are never saved, a full disk or a
failed run leaves no dvclive/, temporaries of killed runs are removed, outputs reproduce."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clihelp import ENV, REPO, one_error, stcn
from conftest import dead_pid

from stcn.data.fetch.sources import DAVIS_MINI
from stcn.errors import UserError
from stcn.train.checkpointing import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from stcn.train.trainer import TrainConfig, train


def _train(data: Path, out: Path, iterations: int = 1) -> subprocess.CompletedProcess:
    return stcn("train", "--stage", "2", "--data", data, "--out", out, "--init", "random", "--iterations", iterations,
                "--batch-size", "1", "--crop", "64", "--device", "cpu", "--num-workers", "0",
                env={**ENV, "OMP_NUM_THREADS": "1"})  # fmt: skip


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
    run, dead = tmp_path / "run", dead_pid()
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


class _Exploit:
    """Unpickling this calls Path.touch on a marker: what a crafted checkpoint could do with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pth"
    torch.save({"network": {}, "optimizer": {}, "iteration": 1, "payload": _Exploit(marker)}, path)
    with pytest.raises(UserError, match="refusing to load .*checkpoint.pth"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_round_trips_optimizer_scheduler_and_rng_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], 0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the numpy state
    path = tmp_path / "checkpoint.pth"
    save = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, data_position={"segment": 0})
    save_checkpoint(path, iteration=1, config={"lr": 1e-3, "data": ["a"]}, **save)
    expected = (random.random(), np.random.standard_normal(), torch.rand(1).item())
    state = load_checkpoint(path)  # weights_only=True
    set_rng_state(state["rng"])
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item()) == expected
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    assert scheduler.last_epoch == 1 and state["iteration"] == 1
    assert isinstance(rng_state()["numpy"]["keys"], torch.Tensor)


def test_failed_training_leaves_no_dvclive(tmp_path):
    def broken(index, segment):
        raise UserError("the data stream failed")

    cfg = TrainConfig(stage=0, data=["unused"], out=str(tmp_path / "run"), init="random", iterations=2, batch_size=1,
                      crop=64, num_workers=0, device="cpu", progress=False)  # fmt: skip
    with pytest.raises(UserError, match="data stream failed"):
        train(cfg, open_segment=broken)
    assert not (tmp_path / "run" / "dvclive").exists()


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"stage": 3, "data": ["d"], "out": "o", **kw})


def test_none_means_recipe_and_non_positive_values_are_refused():
    assert _cfg().resolved(1)["iterations"] == 150_000 and _cfg(iterations=7).resolved(1)["iterations"] == 7
    for name, value in [("iterations", 0), ("batch_size", 0), ("lr", 0), ("lr", -1e-5), ("iterations", -1)]:
        with pytest.raises(UserError, match=f"training setting {name} must be .*, got {value!r}"):
            _cfg(**{name: value})


@pytest.mark.parametrize("value", ["abc", "-1", "0", "2.5"])
def test_pipeline_train_with_a_bad_iterations_param_is_one_line(tmp_path, value):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_s03"]["iterations"] = yaml.safe_load(value)  # what `dvc exp run -S train_s03.iterations=...` writes
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py"), "s03"], cwd=tmp_path, capture_output=True, text=True
    )
    one_error(res, "training setting iterations must be an integer >= 1", f"got {yaml.safe_load(value)!r}", alone=True)
    assert not (tmp_path / "models").exists()


def _batches(index, segment):
    """Seeded static-stage batches; batch i says its worker (i % 2) has skipped i corrupt samples so far."""
    gen = torch.Generator().manual_seed(index)
    for i in range(segment.batches):
        rgb = torch.rand(1, 3, 3, 64, 64, generator=gen)
        gt = torch.zeros(1, 3, 1, 64, 64)
        gt[..., 16:48, 16:48] = 1
        info = [{"rank": 0, "worker": i % 2, "skipped": i}]
        yield {"rgb": rgb, "gt": gt, "cls_gt": gt[:, :, 0].long(), "info": info}


def _train_small(out: Path) -> None:
    cfg = TrainConfig(stage=0, data=["unused"], out=str(out), init="random", iterations=2, batch_size=1, crop=64,
                      num_workers=0, device="cpu", progress=False, seed=3)  # fmt: skip
    train(cfg, open_segment=_batches)


def test_training_metrics_count_skipped_samples(tmp_path):
    _train_small(tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "dvclive" / "metrics.json").read_text())
    assert metrics["train"]["skipped_samples"] == 1


def test_training_outputs_reproduce_and_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _train_small(tmp_path / "a")
        _train_small(tmp_path / "b")
    finally:
        os.umask(old)

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = files(tmp_path / "a" / "dvclive"), files(tmp_path / "b" / "dvclive")
    assert "metrics.json" in a and a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k != "params.yaml"} == {k: v for k, v in b.items() if k != "params.yaml"}
    assert not any("per_s" in name for name in a)  # no wall-clock throughput among the recorded metrics
    for name in ("weights.pth", "checkpoint.pth"):
        assert stat.S_IMODE((tmp_path / "a" / name).stat().st_mode) == 0o644


def test_python_m_stcn_train_usage_errors_are_typers_message_not_a_traceback():
    """`python -m stcn.train` (what torchrun runs) answers an unknown option or a missing one like `stcn train`:
    typer's usage message, exit code 2, no traceback."""
    for args, said in [(["--bogus"], "No such option: --bogus"), (["--lr", "1e-5"], "Missing option")]:
        res = subprocess.run([sys.executable, "-m", "stcn.train", *args], cwd=REPO, env=ENV, capture_output=True,
                             text=True)  # fmt: skip
        assert res.returncode == 2 and "Traceback" not in res.stderr and said in res.stderr, res.stderr[-2000:]
