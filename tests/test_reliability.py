"""Adversarial inputs (issue 12): hostile checkpoints, lying servers, user data, archives, bad masks, full disks."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stcn.errors import UserError
from stcn.train.checkpointing import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class _Exploit:
    """Unpickling this calls Path.touch on a marker: what a crafted checkpoint could do with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ---- item 1: a checkpoint never runs code --------------------------------------------------------------------


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
