"""`stcn.inference.allocator`: freed feature maps stay in the heap, so the next frame takes no new page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

FRAMES = """
import resource, sys
import numpy as np
from stcn.inference.allocator import tune_allocator

tuned = tune_allocator() if sys.argv[1] == "tuned" else False

def frame():  # eight 8 MiB feature maps alive at once, then all freed
    maps = [np.ones(2 << 20, np.float32) for _ in range(8)]
    del maps

frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    frame()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's mallopt")


def page_faults(mode: str, **env: str) -> tuple[str, int]:
    """(whether tuned, minor page faults) of ten frames in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FRAMES, mode], capture_output=True, text=True, env={**clean, **env})
    assert out.returncode == 0, out.stderr
    tuned, faults = out.stdout.split()
    return tuned, int(faults)


@glibc
def test_tuned_process_reuses_freed_feature_maps():
    _, default = page_faults("default")
    tuned, faults = page_faults("tuned")
    assert tuned == "True"
    # glibc by default gives the freed maps back to the kernel and faults their pages in again on later frames
    assert default > 10_000
    assert faults < default / 20


@glibc
def test_user_malloc_environment_and_opt_out_win():
    assert page_faults("tuned", MALLOC_TRIM_THRESHOLD_="131072")[0] == "False"
    assert page_faults("tuned", STCN_ALLOCATOR="default")[0] == "False"
