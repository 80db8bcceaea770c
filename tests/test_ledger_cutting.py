"""The block-cutting policy's decisions (`ledger.cutting.cut_wait_s`): a pure function of the
queue, the blocks in flight and the oldest queued command's wait."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.cutting import (
    BLOCK_COMMANDS_MIN,
    BLOCK_INTERVAL_S,
    PIPELINE_BLOCKS,
    CutPolicy,
    cut_wait_s,
)

POLICY = CutPolicy(block_commands=2_000)  # the defaults: min 128, pipeline 2, 25 ms


@pytest.mark.parametrize(
    ("queued", "in_flight", "waited_s", "wait_s"),
    [
        (0, 0, 0.0, BLOCK_INTERVAL_S),  # nothing queued: woken by the next submission
        (0, 5, 0.0, BLOCK_INTERVAL_S),
        (1, 0, 0.0, 0.0),  # idle: a lone command goes at once
        (127, 0, 0.0, 0.0),
        (2_000, 0, 0.0, 0.0),  # a full block goes at once, whatever is in flight
        (2_000, 1, 0.0, 0.0),
        (2_000, 50, 0.0, 0.0),
        (1, 1, 0.0, BLOCK_INTERVAL_S),  # one in flight: a tiny block waits ...
        (1, 1, 0.010, BLOCK_INTERVAL_S - 0.010),  # ... for the rest of the interval
        (127, 1, 0.030, 0.0),  # ... at most the interval
        (128, 1, 0.0, 0.0),  # one in flight: a block worth its cost goes at once
        (1_999, 1, 0.0, 0.0),
        (128, 2, 0.0, BLOCK_INTERVAL_S),  # the pipeline full: any partial block waits
        (1_999, 2, 0.005, BLOCK_INTERVAL_S - 0.005),
        (1_999, 3, 0.025, 0.0),
    ],
)
def test_decisions(queued: int, in_flight: int, waited_s: float, wait_s: float) -> None:
    assert cut_wait_s(queued, in_flight, waited_s, POLICY) == pytest.approx(wait_s)


def test_the_defaults() -> None:
    assert (POLICY.block_commands_min, POLICY.pipeline_blocks) == (BLOCK_COMMANDS_MIN, 2)
    assert PIPELINE_BLOCKS == 2 and BLOCK_INTERVAL_S == 0.025


def test_a_minimum_of_one_is_the_former_rule() -> None:
    """`block_commands_min` 1: any partial block goes at once while fewer than
    `pipeline_blocks` are in flight (the rule before the minimum)."""
    policy = POLICY._replace(block_commands_min=1)
    assert cut_wait_s(1, 1, 0.0, policy) == 0.0
    assert cut_wait_s(1, 2, 0.0, policy) == BLOCK_INTERVAL_S


def test_a_pipeline_of_zero_never_cuts_a_partial_block_early() -> None:
    """`pipeline_blocks` 0 (a test holds an order uncut): a partial block waits out the
    interval even with nothing in flight."""
    policy = POLICY._replace(pipeline_blocks=0, block_interval_s=60.0)
    assert cut_wait_s(1, 0, 0.0, policy) == 60.0
    assert cut_wait_s(2_000, 0, 0.0, policy) == 0.0


policies = st.builds(
    CutPolicy,
    block_commands=st.integers(1, 65_536),
    block_commands_min=st.integers(1, 65_536),
    pipeline_blocks=st.integers(0, 8),
    block_interval_s=st.floats(0.0, 1.0),
)


@given(policies, st.integers(0, 70_000), st.integers(0, 20), st.floats(0.0, 2.0))
def test_properties(policy: CutPolicy, queued: int, in_flight: int, waited_s: float) -> None:
    wait_s = cut_wait_s(queued, in_flight, waited_s, policy)
    assert 0.0 <= wait_s <= policy.block_interval_s
    if queued >= policy.block_commands:
        assert wait_s == 0.0  # a full block never waits
    if queued and waited_s >= policy.block_interval_s:
        assert wait_s == 0.0  # no command waits past the interval
    if queued and in_flight == 0 and policy.pipeline_blocks > 0:
        assert wait_s == 0.0  # idle: no wait at all
    if queued and in_flight >= max(1, policy.pipeline_blocks) and queued < policy.block_commands:
        assert wait_s == max(0.0, policy.block_interval_s - waited_s)
    # more queued never means a longer wait; more in flight never a shorter one
    assert cut_wait_s(queued + 1, in_flight, waited_s, policy) <= wait_s or queued == 0
    assert cut_wait_s(queued, in_flight + 1, waited_s, policy) >= wait_s
