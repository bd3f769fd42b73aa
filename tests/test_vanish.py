"""A one-line warning when every object vanishes from the output (all masks after the given one empty)."""

from __future__ import annotations

import copy

import pytest
import torch

from stcn.data.images import read_mask
from stcn.inference import InferenceSettings
from stcn.inference.loading import load_model
from stcn.inference.video import folder_frames, propagate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def segment(model, small_blackswan, n: int = 4) -> dict:
    frames_dir, masks_dir = small_blackswan
    frames = sorted(frames_dir.glob("*.jpg"))[:n]
    out = {}
    masks = {"00000": read_mask(masks_dir / "00000.png")}
    propagate(model, folder_frames(frames), masks, InferenceSettings(), lambda s, lab, rgb: out.__setitem__(s, lab),
              where="blackswan")  # fmt: skip
    return out


def test_warns_once_when_every_later_mask_is_empty(weights_file, small_blackswan, capsys):
    model = copy.deepcopy(load_model(weights_file))
    with torch.no_grad():
        model.decoder.pred.bias.fill_(-1e4)  # every pixel background after the first frame
    out = segment(model, small_blackswan)
    assert out["00000"].any() and not any(out[s].any() for s in ("00001", "00002", "00003"))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: blackswan: every object vanished after frame 00000: all 3 later masks are empty"]


def test_no_warning_while_an_object_remains(weights_file, small_blackswan, capsys):
    out = segment(load_model(weights_file), small_blackswan)
    assert out["00003"].any()
    assert "vanished" not in capsys.readouterr().err
