"""The machine's fast path (exchange/venue/wire_fast.py) gives exactly what `wire.parse_command` and
`canonical_bytes(wire.event_to_dict(event))` give: the same commands, the same error events
naming the same field, byte-identical events, over the bench flow and over malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.bench.flow import make_flow
from exchange.bench.venue_bench import OPERATOR, venue_setup, wrap
from exchange.venue import wire
from exchange.venue.machine import VenueMachine
from exchange.venue.types import OrderUnfunded, VenueRejectReason
from exchange.venue.venue import Venue
from exchange.venue.wire_fast import (
    event_bytes,
    events_bytes,
    parse_venue_command,
    slow_event_bytes,
)
from ledger.canonical import CanonicalError, canonical_bytes
from matching.commands import PlaceOrder
from matching.events import TradeExecuted


def slow_apply(venue: Venue, command: dict[str, Any]) -> list[bytes]:
    """What VenueMachine.apply did before the fast path."""
    parsed = wire.parse_command(command, wire.VENUE_PARSERS)
    if isinstance(parsed, wire.WireError):
        return [canonical_bytes(parsed.to_dict())]
    return [canonical_bytes(wire.event_to_dict(event)) for event in venue.apply(parsed)]


def flow_dicts(seed: int, count: int) -> list[dict[str, Any]]:
    flow = make_flow(seed, count, depth_orders=300)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = [*venue_setup(flow), *wrap(flow.commands, accounts)]
    return [wire.venue_command_to_dict(command) for command in commands]


def test_the_bench_flow_gives_byte_identical_events() -> None:
    commands = flow_dicts(2, 5_000)
    reference = Venue(operator=OPERATOR, regulator="CSRC")
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    kinds = set()
    for command in commands:
        assert parse_venue_command(command) == wire.parse_command(command, wire.VENUE_PARSERS)
        expected = slow_apply(reference, command)
        assert machine.apply(canonical_bytes(command), 0) == expected, command
        kinds.update(json.loads(event)["type"] for event in expected)
    assert {"accepted", "trade", "trade_settled", "cancelled", "amended"} <= kinds
    assert machine.state_hash() == machine.state_hash()


PLACE = {
    "type": "place",
    "broker": "B01",
    "order_id": 7,
    "symbol": "600000.SH",
    "account": "A0001",
    "side": "buy",
    "price": 1000,
    "quantity": 100,
}
MALFORMED: list[Any] = [
    [],
    "place",
    {},
    {"type": 3},
    {"type": ["place"]},
    {"type": "nope"},
    {**PLACE, "extra": 1},
    {k: v for k, v in PLACE.items() if k != "broker"},
    {k: v for k, v in PLACE.items() if k != "price"},
    {**PLACE, "broker": 5},
    {**PLACE, "broker": "B" * 65},
    {**PLACE, "order_id": True},
    {**PLACE, "order_id": 2**63},
    {**PLACE, "order_id": -(2**63) - 1},
    {**PLACE, "order_id": 1.0},
    {**PLACE, "order_id": None},
    {**PLACE, "side": "BUY"},
    {**PLACE, "side": ["buy"]},
    {**PLACE, "side": "\u017fell"},  # upper() is "SELL"
    {**PLACE, "kind": "market"},
    {**PLACE, "kind": "market", "price": None},
    {**PLACE, "kind": "limit", "price": None},
    {**PLACE, "kind": "stop"},
    {**PLACE, "tif": "gtc"},
    {**PLACE, "tif": "IOC"},
    {**PLACE, "tif": None, "kind": None, "post_only": None, "stp_group": None},
    {**PLACE, "post_only": 1},
    {**PLACE, "post_only": True, "stp_group": "g", "stp_mode": "cancel_both"},
    {**PLACE, "stp_mode": "both"},
    {**PLACE, "stp_group": "x" * 65},
    {**PLACE, "client_order_id": "c-1"},
    {**PLACE, "client_order_id": ""},
    {**PLACE, "client_order_id": 1},
    {**PLACE, "client_order_id": None},
    {**PLACE, "client_order_id": "c" * 65},
    {"type": "cancel", "broker": "B01", "order_id": 7, "symbol": "X", "client_order_id": "c"},
    {"type": "cancel", "broker": "B01", "order_id": 7, "symbol": "600000.SH"},
    {"type": "cancel", "broker": "B01", "order_id": 7},
    {"type": "cancel", "broker": "B01", "order_id": "7", "symbol": "600000.SH"},
    {"type": "cancel", "broker": "B01", "order_id": 7, "symbol": "X", "price": 1},
    {"type": "amend", "broker": "B01", "order_id": 7, "symbol": "X"},
    {"type": "amend", "broker": "B01", "order_id": 7, "symbol": "X", "price": None},
    {"type": "amend", "broker": "B01", "order_id": 7, "symbol": "X", "quantity": 5},
    {"type": "amend", "broker": "B01", "order_id": 7, "symbol": "X", "price": 5, "quantity": 0},
    {"type": "amend", "broker": "B01", "order_id": 7, "symbol": "X", "price": 2**64},
    {"type": "begin_day", "day": 20260101},
    {"type": "begin_day", "day": "x"},
    {"type": "set_phase", "symbol": "X", "phase": "continuous"},
    {"type": "deposit", "command_id": 1, "actor": "BANK", "asset": "CNY", "account": "A"},
]


@pytest.mark.parametrize("command", MALFORMED)
def test_parsing_matches_the_strict_parser(command: Any) -> None:
    assert parse_venue_command(command) == wire.parse_command(command, wire.VENUE_PARSERS)
    try:
        data = canonical_bytes(command)
    except CanonicalError:
        return  # no block can carry it (the exchange refuses it at submit): parsing is enough
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    assert machine.apply(data, 0) == slow_apply(Venue(operator=OPERATOR, regulator="CSRC"), command)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from(["buy", "sell", "limit", "market", "day", "ioc", "gtc", "fok", "B01", ""]),
    st.text(max_size=70),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from(
    [
        "client_order_id",
        "broker",
        "order_id",
        "symbol",
        "account",
        "side",
        "kind",
        "price",
        "quantity",
        "tif",
        "post_only",
        "stp_group",
        "stp_mode",
        "other",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["place", "cancel", "amend"]),
    base=st.booleans(),
    changes=st.dictionaries(keys, values, max_size=4),
    dropped=st.lists(keys, max_size=2),
)
def test_random_order_commands_parse_as_the_strict_parser(
    kind: str, base: bool, changes: dict[str, Any], dropped: list[str]
) -> None:
    command: dict[str, Any] = {**(PLACE if base else {}), "type": kind, **changes}
    for key in dropped:
        command.pop(key, None)
    assert parse_venue_command(command) == wire.parse_command(command, wire.VENUE_PARSERS)


def test_events_out_of_canonical_range_fail_as_before() -> None:
    huge = OrderUnfunded(
        order_id=1,
        symbol="X",
        account="A",
        asset="CNY",
        required=2**63,
        available=0,
        reason=VenueRejectReason.INSUFFICIENT_CASH,
    )
    with pytest.raises(CanonicalError) as slow:
        slow_event_bytes(huge)
    with pytest.raises(CanonicalError) as fast:
        event_bytes(huge)
    assert str(fast.value) == str(slow.value)
    surrogate = TradeExecuted(1, "\ud800", 1, 1, 1, 2, "A", "B", None)
    with pytest.raises(CanonicalError):
        events_bytes([surrogate])
    plain = TradeExecuted(1, "Ünï", 1, 1, 1, 2, "A", "B", None)
    assert events_bytes([plain]) == [slow_event_bytes(plain)]
