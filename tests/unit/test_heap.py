"""`shared.heap.reuse_freed_memory`: what an inference worker's batch requests allocate and free
(a 3.2 MB body, the forward pass's activations) is served again from memory the process kept,
without a page fault, where glibc's adaptive thresholds hand it back to the kernel each time."""

from __future__ import annotations

import subprocess
import sys

from tests import REPO_ROOT

_REQUESTS = """
import resource, sys
import numpy as np
from shared.heap import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def request():
    body = bytearray(1024 * 784 * 4 + 128)  # a .npy batch of 1,024 float32 images
    body[::4096] = bytes(len(body[::4096]))  # touch every page, as recv_into does
    hidden = [np.ones((1024, 512), np.float32), np.ones((1024, 256), np.float32)]
    return len(body) + sum(h.size for h in hidden)
request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    request()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _REQUESTS, mode],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(done.stdout.strip())


def test_batch_sized_blocks_are_reused_without_page_faults():
    adaptive, reused = _page_faults("adaptive"), _page_faults("reuse")
    # 50 requests of ~6.3 MB: ~1,550 pages each when the memory is handed back every time
    assert adaptive > 50 * 1_000
    assert reused < 50
