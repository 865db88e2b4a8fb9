"""The engine benchmark's baseline: another commit's training epoch, timed beside ours."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.common import REPO_ROOT

pytestmark = [pytest.mark.slow]


def test_the_engine_benchmark_times_a_baseline_commit_in_its_own_checkout(mnist_dir) -> None:
    """`python -m benchmarks.engine --baseline REF`: that commit's epochs (the perceptron's and,
    when the checkout has convolutions, the CNN's on the first images), in a helper process
    running its checkout; the checkout is gone afterwards."""
    from benchmarks.engine import BaselineEpochs

    helper = BaselineEpochs("HEAD", mnist_dir, threads=1, quick=True)
    root = helper.root
    try:
        assert (root / "shared" / "nn" / "training.py").is_file()
        seconds = [helper.epoch(seed) for seed in (1, 2)]
        assert helper.has_cnn
        cnn_seconds = helper.epoch(1, "cnn", 256)
    finally:
        helper.close()
    assert all(0 < s < 60 for s in seconds), seconds
    assert 0 < cnn_seconds < 60, cnn_seconds
    assert not root.exists()
    worktrees = subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "list"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert str(root) not in worktrees
