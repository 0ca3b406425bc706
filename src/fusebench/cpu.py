"""CPU settings for the commands that run networks (``fusebench fuse``, ``fusebench train``).

Feature maps of a full-size test image are tens to hundreds of MB. With glibc's and PyTorch's defaults every
such tensor is a fresh ``mmap`` paying a page fault per 4 KiB on first touch, which made a 1x1 convolution over
a 576x768 image 3x slower than its arithmetic (benchmarks/README.md). Transparent huge pages for PyTorch's CPU
allocations (``THP_MEM_ALLOC_ENABLE``, read by PyTorch at its first large allocation) and glibc keeping freed
memory for reuse remove most of that. Neither changes a single value computed.
"""

from __future__ import annotations

import os

from .metrics.alloc import keep_freed_memory


def use_fast_cpu_memory() -> None:
    """Huge pages for PyTorch's large CPU tensors (unless the user set ``THP_MEM_ALLOC_ENABLE``) and freed
    memory kept for reuse. Call before the first tensor is made; later calls do no harm."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    keep_freed_memory()


def set_threads(threads: int) -> None:
    """torch's intra-op threads (0: leave torch's default, all cores). The workflow passes each rule's
    ``threads`` so that parallel jobs on one machine do not oversubscribe its cores."""
    if threads:
        import torch

        torch.set_num_threads(threads)
