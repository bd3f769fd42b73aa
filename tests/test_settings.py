"""Inference settings are checked where they are made, so the CLI, the pipelines and the benchmarks agree."""

from __future__ import annotations

import pytest

from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings


@pytest.mark.parametrize(
    ("change", "message"),
    [({"top_k": 0}, "--top-k"), ({"mem_every": 0}, "--mem-every"), ({"max_memory_frames": 0}, "--max-memory-frames"),
     ({"resolution": 8}, "--resolution")],
)  # fmt: skip
def test_bad_values_fail_on_construction(change, message):
    with pytest.raises(UserError, match=message):
        InferenceSettings(**change)


def test_official_defaults():
    s = InferenceSettings()
    assert (s.top_k, s.mem_every, s.include_last, s.precision, s.max_memory_frames) == (20, 5, False, "fp32", None)


def test_settings_from_a_mapping_of_knobs():
    """A params.yaml block or the CLI's options: field keys used, None = the official default, others ignored."""
    s = InferenceSettings.from_knobs({"top_k": 7, "mem_every": None, "precision": "bf16", "device": "cpu",
                                      "resolution": 128, "weights": "x.pth", "launcher": "python"})  # fmt: skip
    assert (s.top_k, s.mem_every, s.precision, s.device, s.resolution) == (7, 5, "bf16", "cpu", 128)
    assert InferenceSettings.from_knobs({"device": "cpu"}) == InferenceSettings()
    assert InferenceSettings.defaults() == {"top_k": 20, "mem_every": 5, "include_last": False, "precision": "fp32",
                                            "max_memory_frames": None, "resolution": None}  # fmt: skip
    with pytest.raises(UserError, match="unknown precision 'fp16' on cpu"):
        InferenceSettings.from_knobs({"precision": "fp16", "device": "cpu"})
