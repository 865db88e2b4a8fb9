"""What long-lived processes of ours do with their memory once they have loaded what they keep."""

from __future__ import annotations

import ctypes
import gc


def freeze_loaded_heap() -> None:
    """Collect, then move every object alive now out of the garbage collector's sight
    (`gc.freeze`): what a process has loaded by the end of its start-up (modules, the app, a
    worker's preloaded datasets) lives as long as the process. CPython's advice for processes that
    fork (work horses, gunicorn workers): a child's collections never walk, nor copy-on-write, the
    parent's pages. And exit no longer collects it all: beside a CPU-bound process on 2 cores,
    exiting after SIGTERM took 0.2-2.8 s without it, under 0.1 s with it, which is what lets every
    process stop within 2 s (tests/reliability/test_shutdown.py)."""
    gc.collect()
    gc.freeze()


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory(mmap_below: int = 32 << 20, keep_up_to: int = 64 << 20) -> bool:
    """Have glibc's malloc serve blocks under `mmap_below` bytes from the heap and keep up to
    `keep_up_to` bytes of freed heap, instead of its adaptive thresholds. Why: an inference
    worker allocates and frees the same few large blocks every batch request (the body, 3.2 MB
    for 1,024 images, and the forward pass's activations), and with the adaptive thresholds they
    went back to the kernel after each request, so every request paid the page faults of fresh
    memory again (~1,500 a batch; tests/integration/test_inference_gunicorn.py): such batches
    over HTTP ran at 67 % of the in-process forward pass, 82 % with fixed thresholds and the
    `.npy` header read from the body's first bytes (BENCHMARKS.md §3). The process keeps at most
    `keep_up_to` bytes it is not using. False (and nothing changed) where the C library has no
    mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_below)) and bool(
        mallopt(_M_TRIM_THRESHOLD, keep_up_to)
    )
