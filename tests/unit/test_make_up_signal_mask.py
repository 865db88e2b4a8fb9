"""`make up`'s command and its runner name the stop signals twice: the Makefile's `-c` statement
blocks them before Python imports anything (it cannot import the runner to ask), and
scripts/run_local.py installs handlers for, and unblocks, `STOP_SIGNALS`. A signal in one list
and not the other is lost early in start-up or never unblocked; this keeps the two the same."""

from __future__ import annotations

import re

from scripts.run_local import STOP_SIGNALS
from tests.run_local_support import UP_COMMAND


def test_make_up_blocks_exactly_the_runners_stop_signals() -> None:
    statement = UP_COMMAND[UP_COMMAND.index("-c") + 1]
    block = re.search(r"pthread_sigmask\(s\.SIG_BLOCK, \(([^)]*)\)\)", statement)
    assert block, statement
    blocked = [name.strip().removeprefix("s.") for name in block[1].split(",") if name.strip()]
    assert sorted(blocked) == sorted(sig.name for sig in STOP_SIGNALS)
    assert statement.index("SIG_BLOCK") < statement.index("import scripts.run_local")
