"""`python -m tests.gated_publish GATE_FILE worker [...]`: the trainer CLI with every publish
held at a gate, for the reliability tests.

Those tests need a worker whose job has written its complete temp version folder but not yet
made it visible, to SIGKILL it there (nothing partial may ever be visible) or to release several
workers' renames at the same instant. This wrapper replaces the registry's publishing step
(`allocate_version`, where `LocalStorage.publish` looks it up) by one that waits until GATE_FILE
exists and then calls the real one. The work horses RQ forks inherit the patch; the product has
no test hook.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import shared.registry.local as registry_local

log = logging.getLogger(__name__)

#: Longest a publish waits at the gate: a forgotten gate must not hang a test run forever.
GATE_TIMEOUT_SECONDS = 600.0


def gated(real: Callable[[Path, Path], int], gate: Path) -> Callable[[Path, Path], int]:
    """`real` (model_dir, tmp) -> version, called only once `gate` exists."""

    def allocate_version(model_dir: Path, tmp: Path) -> int:
        log.warning("publish gate: %s is complete; waiting for %s before renaming", tmp, gate)
        deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return real(model_dir, tmp)

    return allocate_version


def main(argv: list[str]) -> int:
    gate, *cli_args = argv
    registry_local.allocate_version = gated(registry_local.allocate_version, Path(gate))
    from trainer_service.cli.commands import main as trainer_main

    return trainer_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
