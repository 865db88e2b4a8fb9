"""The lock that lets `exclusive` tests run alone under two xdist workers.

flock locks belong to an open file description, so threads that each open the files conflict
exactly as two worker processes do."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.xdist_support import taking_turns


def hold(folder: Path, alone: bool, entered: threading.Event, release: threading.Event) -> None:
    with taking_turns(folder, alone):
        entered.set()
        release.wait(10)


def start(folder: Path, alone: bool) -> tuple[threading.Thread, threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=hold, args=(folder, alone, entered, release), daemon=True)
    thread.start()
    return thread, entered, release


def test_shared_turns_overlap(tmp_path: Path) -> None:
    a, a_in, a_out = start(tmp_path, alone=False)
    b, b_in, b_out = start(tmp_path, alone=False)
    assert a_in.wait(5) and b_in.wait(5), "two ordinary tests must run side by side"
    a_out.set(), b_out.set()
    a.join(5), b.join(5)


def test_an_exclusive_turn_waits_for_the_running_test_and_holds_back_the_next(
    tmp_path: Path,
) -> None:
    running, running_in, running_out = start(tmp_path, alone=False)
    assert running_in.wait(5)
    alone, alone_in, alone_out = start(tmp_path, alone=True)
    time.sleep(0.3)
    assert not alone_in.is_set(), "the exclusive test started beside a running test"
    # A test arriving now must not slip in ahead of the waiting exclusive one.
    later, later_in, later_out = start(tmp_path, alone=False)
    time.sleep(0.3)
    assert not later_in.is_set()
    running_out.set()
    assert alone_in.wait(5), "the exclusive test never got its turn"
    time.sleep(0.3)
    assert not later_in.is_set(), "a test started while the exclusive one ran"
    alone_out.set()
    assert later_in.wait(5)
    later_out.set()
    for thread in (running, alone, later):
        thread.join(5)
