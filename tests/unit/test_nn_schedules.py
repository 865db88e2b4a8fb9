"""Learning-rate schedules: exact values at known points."""

from __future__ import annotations

import math

import pytest

from shared.nn.schedules import Constant, Cosine, StepDecay, Warmup, make_schedule


def test_constant():
    s = make_schedule("constant", 0.1, epochs=3, steps_per_epoch=5)
    assert isinstance(s, Constant)
    assert {s(e, k) for e in range(3) for k in range(5)} == {0.1}


def test_step_decays_at_half_and_three_quarters():
    s = make_schedule("step", 1.0, epochs=8, steps_per_epoch=10)
    assert isinstance(s, StepDecay)
    assert [s(e, 0) for e in range(8)] == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_per_step():
    s = make_schedule("cosine", 0.2, epochs=4, steps_per_epoch=10)
    assert isinstance(s, Cosine)
    assert s(0, 0) == pytest.approx(0.2)
    assert s(2, 0) == pytest.approx(0.1)  # half way
    assert s(1, 0) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert 0 < s(3, 9) < 1e-3  # last step: almost zero
    values = [s(e, k) for e in range(4) for k in range(10)]
    assert all(a > b for a, b in zip(values[:-1], values[1:], strict=True))


def test_linear_warmup_then_inner_schedule():
    s = make_schedule("cosine", 1.0, epochs=5, steps_per_epoch=4, warmup_epochs=1)
    assert isinstance(s, Warmup)
    assert [s(0, k) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert s(1, 0) == pytest.approx(1.0)  # cosine starts after the warm-up
    assert s(3, 0) == pytest.approx(0.5)  # half of the 4 remaining epochs
    # Warm-up never swallows all epochs.
    s = make_schedule("constant", 1.0, epochs=2, steps_per_epoch=2, warmup_epochs=5)
    assert s(1, 0) == 1.0 and s(0, 0) == 0.5
