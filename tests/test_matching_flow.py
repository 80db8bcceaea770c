"""The engine on the benchmark's seeded realistic flow: it agrees with the bare baseline,
keeps its invariants, and replays to the same state."""

from __future__ import annotations

import os
from typing import Any

import pytest

from exchange.bench.baseline import BaselineBook
from exchange.bench.flow import SYMBOL, Flow, make_flow, named_flow
from matching.engine import MatchingEngine
from matching.events import Event
from matching.types import Side


def run_engine(seed: int, messages: int) -> tuple[MatchingEngine, list[Event]]:
    flow = make_flow(seed, messages, depth_orders=2_000)
    engine = MatchingEngine()
    events: list[Event] = []
    for command in [*flow.setup, *flow.commands]:
        events.extend(engine.apply(command))
    return engine, events


def engine_against_baseline(
    flow: Flow, check_every: int, label: object = None
) -> tuple[MatchingEngine, list[Any]]:
    """Run `flow` through the engine (checking its invariants every `check_every` commands and
    at the end) and through the bare baseline; the engine, and its resting orders as rows after
    the baseline's resting orders were asserted equal to them."""
    engine = MatchingEngine()
    for position, command in enumerate([*flow.setup, *flow.commands]):
        engine.apply(command)
        if position % check_every == 0:
            engine.check()
    engine.check()
    baseline = BaselineBook()
    baseline.run(flow.baseline_setup)
    baseline.run(flow.baseline)
    rows = [
        (order.order_id, int(order.side is Side.BUY), order.price, order.quantity)
        for order in engine.orders(SYMBOL)
    ]
    assert rows == baseline.resting(), label
    return engine, rows


def test_engine_and_bare_baseline_build_the_same_book() -> None:
    _, rows = engine_against_baseline(make_flow(7, 20_000, depth_orders=2_000), 2_000)
    assert len(rows) > 1_000, "the flow should keep a deep book"


def test_same_seed_same_events_and_state_hash() -> None:
    first, first_events = run_engine(3, 10_000)
    second, second_events = run_engine(3, 10_000)
    assert first_events == second_events
    assert first.state_hash() == second.state_hash()
    other, _ = run_engine(4, 10_000)
    assert other.state_hash() != first.state_hash()


def test_snapshot_mid_flow_restores_to_the_same_future() -> None:
    flow = make_flow(11, 6_000, depth_orders=1_000)
    commands = [*flow.setup, *flow.commands]
    engine = MatchingEngine()
    for command in commands[:4_000]:
        engine.apply(command)
    restored = MatchingEngine.restore(engine.snapshot())
    assert restored.state_hash() == engine.state_hash()
    for command in commands[4_000:]:
        assert restored.apply(command) == engine.apply(command)
    restored.check()
    assert restored.state_hash() == engine.state_hash()


def test_sparse_flows_open_levels_and_agree_with_the_bare_baseline() -> None:
    for name, depth in (("sparse-deep", 4_000), ("sparse-shallow", 500)):
        flow = named_flow(name, 5, 8_000, depth)
        assert flow.new_level_share > 0.6, (name, flow.new_level_share)
        _, rows = engine_against_baseline(flow, 2_000, name)
        assert depth // 2 < len(rows) < 2 * depth, (name, len(rows))


def test_unknown_flow_is_named() -> None:
    with pytest.raises(ValueError, match="'thin'"):
        named_flow("thin", 1, 10)


@pytest.mark.skipif(os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="JINLIAN_CHECK_ALL=1")
def test_sparse_flows_over_many_seeds() -> None:
    """The sparse flows at their default depths over many seeds: the engine agrees with the
    bare baseline, keeps its invariants and restores to the same state hash."""
    runs = [("sparse-deep", seed, 20_000) for seed in range(1, 7)]
    runs += [("sparse-shallow", seed, 500) for seed in range(1, 13)]
    for name, seed, depth in runs:
        flow = named_flow(name, seed, 30_000, depth)
        engine, _ = engine_against_baseline(flow, 10_000, (name, seed))
        restored = MatchingEngine.restore(engine.snapshot())
        assert restored.state_hash() == engine.state_hash(), (name, seed)
