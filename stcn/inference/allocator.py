"""Keep freed feature maps in the process heap (glibc), so each frame reuses the previous frame's memory.

A 480p frame allocates and frees dozens of feature maps of 5-27 MB. With glibc's defaults, blocks that
large are mapped from the kernel on allocation and unmapped on free (or the heap top is trimmed), so every
frame pays page faults and kernel zeroing again. `mallopt` (glibc's public tuning call, the same settings
as the MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ environment variables) raises both thresholds:
freed maps stay in the heap and the next frame reuses them. Peak memory is unchanged; the process keeps
its peak until it exits. Measured in reports/benchmarks.md ("Inference speed (480p) vs the original path").
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 1 << 30  # return free heap top to the kernel only above 1 GiB
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # the user's own glibc settings win
OPT_OUT = "STCN_ALLOCATOR"  # STCN_ALLOCATOR=default keeps glibc's defaults


@functools.cache
def tune_allocator() -> bool:
    """Apply the thresholds (once per process); False (nothing changed) off glibc, when the user set them, or
    with STCN_ALLOCATOR=default."""
    user_set = any(k in os.environ for k in ENV) or os.environ.get(OPT_OUT) == "default"
    if user_set or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # mallopt returns 1 on success
    return bool(mmap_ok and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
