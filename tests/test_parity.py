"""Parity with the original STCN release on real blackswan frames (tests/data/parity, case A)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DAVIS, KEY_LIST, PARITY

from stcn.data.images import read_frame, read_mask, write_mask
from stcn.inference import InferenceCore, InferenceSettings
from stcn.inference.frames import image_tensor, labels_from_prob, one_hot
from stcn.inference.loading import load_model


@pytest.fixture(scope="module")
def parity_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("parity") / "w.pth"
    out = subprocess.run(
        [sys.executable, PARITY / "make_weights.py", KEY_LIST, path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "digest sha256=3256f0cf93b7a68eb9aa28f5990baecd57efe7259db907fac4855497b20cd542" in out
    return path


def test_case_a_masks_and_probabilities(parity_weights, tmp_path):
    case = np.load(PARITY / "case_A.npz")
    frames = sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[:20]
    first = read_mask(DAVIS / "Annotations/480p/blackswan/00000.png")
    assert np.array_equal(case["init_labels"].squeeze(), first)
    torch.set_num_threads(2)
    core = InferenceCore(load_model(parity_weights), InferenceSettings(top_k=20, mem_every=5))
    probs = []
    for t, frame in enumerate(frames):
        prob = core.step(
            image_tensor(read_frame(frame)),
            one_hot(first, [1]) if t == 0 else None,
            [1] if t == 0 else None,
            is_last=t == len(frames) - 1,
        )
        write_mask(tmp_path / "pred" / f"{t:05d}.png", labels_from_prob(prob, first.shape))
        if t in case["prob_frames"]:
            full = F.interpolate(prob[:, None], first.shape, mode="bilinear", align_corners=False)[:, 0]
            probs.append(full[case["prob_channels"]].numpy())
    np.savez(
        tmp_path / "probs.npz",
        probs=np.stack(probs),
        prob_frames=case["prob_frames"],
        prob_channels=case["prob_channels"],
    )
    result = subprocess.run(
        [
            sys.executable,
            PARITY / "parity_check.py",
            tmp_path / "pred",
            PARITY / "case_A.npz",
            "--quiet",
            "--probs",
            tmp_path / "probs.npz",
            "--prob-tol",
            "0.02",
            "--prob-mean-tol",
            "3e-4",
        ],
        capture_output=True,
        text=True,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
