"""Keep freed memory for reuse (glibc): the metrics allocate many short-lived arrays of a few MB.

With glibc's defaults, arrays above the (dynamic) mmap threshold are mapped and unmapped on every
allocation, and the heap top is trimmed back to the system once free space exceeds the trim threshold; every
new array then pays page faults on first touch, which costs about a third of the time of the paper metrics
on a 640x480 triplet. :func:`keep_freed_memory` raises both thresholds (``mallopt``), so freed arrays are
reused: faster, at the price of keeping the peak memory of the process. Applications call it (the
``fusebench metrics`` command, benchmarks/metrics_speed.py); importing the package never does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)
_MMAP_LIMIT = 32 * 1024 * 1024


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Serve arrays up to 32 MiB from the heap and keep up to ``trim_threshold`` bytes of freed memory.
    Returns whether it took effect (glibc on Linux only; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
