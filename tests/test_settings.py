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
