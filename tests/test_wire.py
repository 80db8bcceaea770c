"""The JSON vocabulary: strict parsing at the edge, faithful formatting, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.venue import wire
from matching.commands import AddInstrument, AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.events import OrderCancelled, TradeExecuted
from matching.types import CancelReason, OrderKind, Phase, Side, StpMode, TimeInForce

ISSUE_EXAMPLES = [
    b'{"type": "add_instrument", "symbol": "600000.SH", "tick_size": 1, "lot": 100, '
    b'"reference_price": 1000, "price_limit_pct": 10}',
    b'{"type": "set_phase", "symbol": "600000.SH", "phase": "continuous"}',
    b'{"type": "place", "order_id": 1, "account": "A1", "stp_group": "G1", "symbol": '
    b'"600000.SH", "side": "buy", "kind": "limit", "price": 1000, "quantity": 300, '
    b'"tif": "day", "post_only": false}',
    b'{"type": "place", "order_id": 2, "account": "A2", "stp_group": "G2", "symbol": '
    b'"600000.SH", "side": "sell", "kind": "market", "quantity": 100, "tif": "ioc"}',
    b'{"type": "cancel", "order_id": 1, "symbol": "600000.SH"}',
    b'{"type": "amend", "order_id": 1, "symbol": "600000.SH", "price": 1001, "quantity": 200}',
]


def test_the_issue_examples_parse_to_commands() -> None:
    parsed = [wire.parse_line(line) for line in ISSUE_EXAMPLES]
    assert parsed == [
        AddInstrument(
            symbol="600000.SH", tick_size=1, lot=100, reference_price=1000, price_limit_pct=10
        ),
        SetPhase(symbol="600000.SH", phase=Phase.CONTINUOUS),
        PlaceOrder(
            order_id=1,
            symbol="600000.SH",
            account="A1",
            side=Side.BUY,
            kind=OrderKind.LIMIT,
            price=1000,
            quantity=300,
            tif=TimeInForce.DAY,
            post_only=False,
            stp_group="G1",
        ),
        PlaceOrder(
            order_id=2,
            symbol="600000.SH",
            account="A2",
            side=Side.SELL,
            kind=OrderKind.MARKET,
            price=None,
            quantity=100,
            tif=TimeInForce.IOC,
            stp_group="G2",
        ),
        CancelOrder(order_id=1, symbol="600000.SH"),
        AmendOrder(order_id=1, symbol="600000.SH", price=1001, quantity=200),
    ]


def test_defaults_for_optional_fields() -> None:
    limit = wire.parse_command(
        {"type": "place", "order_id": 5, "account": "A", "symbol": "X", "side": "sell",
         "price": 10, "quantity": 1}
    )  # fmt: skip
    assert isinstance(limit, PlaceOrder)
    assert (limit.kind, limit.tif, limit.post_only, limit.stp_group, limit.stp_mode) == (
        OrderKind.LIMIT, TimeInForce.DAY, False, "", StpMode.CANCEL_NEWEST
    )  # fmt: skip
    market = wire.parse_command(
        {"type": "place", "order_id": 6, "account": "A", "symbol": "X", "side": "buy",
         "kind": "market", "quantity": 100}
    )  # fmt: skip
    assert isinstance(market, PlaceOrder)
    assert market.tif is TimeInForce.IOC and market.price is None


def test_commands_round_trip_through_their_json_form() -> None:
    for line in ISSUE_EXAMPLES:
        command = wire.parse_line(line)
        assert not isinstance(command, wire.WireError)
        assert wire.parse_command(wire.command_to_dict(command)) == command


PLACE = {
    "type": "place", "order_id": 1, "account": "A1", "symbol": "S", "side": "buy",
    "price": 1000, "quantity": 100,
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"order_id": "1"}, "order_id", "'1'"),
        ({"order_id": True}, "order_id", "True"),
        ({"quantity": 1.5}, "quantity", "1.5"),
        ({"quantity": 2**63}, "quantity", str(2**63)),
        ({"side": "BUY"}, "side", "'BUY'"),
        ({"side": "long"}, "side", "'long'"),
        ({"tif": 3}, "tif", "3"),
        ({"post_only": "yes"}, "post_only", "'yes'"),
        ({"colour": "red"}, "colour", "'colour'"),
        ({"price": None}, "price", "limit order needs"),
        ({"kind": "market"}, "price", "1000"),
        ({"account": "x" * 65}, "account", "longer than 64"),
        ({"symbol": 600000}, "symbol", "600000"),
        ({"stp_mode": "cancel_all"}, "stp_mode", "'cancel_all'"),
    ],
)
def test_bad_fields_are_named_with_the_offending_value(
    change: dict[str, Any], field: str, text: str
) -> None:
    error = wire.parse_command({**PLACE, **change})
    assert isinstance(error, wire.WireError)
    assert error.field == field
    assert text in error.message


def test_missing_fields_and_bad_messages() -> None:
    missing = wire.parse_command({k: v for k, v in PLACE.items() if k != "quantity"})
    assert missing == wire.WireError(field="quantity", message="missing field 'quantity'")
    unknown = wire.parse_command({"type": "buy_everything"})
    assert isinstance(unknown, wire.WireError) and unknown.field == "type"
    assert "'buy_everything'" in unknown.message
    assert isinstance(wire.parse_command([1, 2]), wire.WireError)
    bad_json = wire.parse_line(b'{"type": "place",')
    assert isinstance(bad_json, wire.WireError) and "malformed JSON" in bad_json.message
    empty_amend = wire.parse_line(b'{"type": "amend", "order_id": 1, "symbol": "S"}')
    assert isinstance(empty_amend, wire.WireError) and empty_amend.field == "price"
    huge = wire.parse_line(b" " * (wire.LINE_BYTES_MAX + 1))
    assert isinstance(huge, wire.WireError) and str(wire.LINE_BYTES_MAX) in huge.message


def test_events_format_with_lower_case_names_and_type_first() -> None:
    trade = TradeExecuted(
        trade_id=7, symbol="S", price=1000, quantity=100, buy_order_id=1, sell_order_id=2,
        buy_account="A1", sell_account="A2", aggressor=Side.SELL,
    )  # fmt: skip
    data = wire.event_to_dict(trade)
    assert next(iter(data)) == "type"
    assert data == {
        "type": "trade", "trade_id": 7, "symbol": "S", "price": 1000, "quantity": 100,
        "buy_order_id": 1, "sell_order_id": 2, "buy_account": "A1", "sell_account": "A2",
        "aggressor": "sell",
    }  # fmt: skip
    cancelled = OrderCancelled(
        order_id=1, symbol="S", quantity=5, reason=CancelReason.UNFILLED_REMAINDER
    )
    assert wire.event_to_dict(cancelled)["reason"] == "unfilled_remainder"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["type", "order_id", "symbol", "account", "side", "kind", "price", "quantity", "tif",
     "post_only", "stp_group", "stp_mode", "phase", "tick_size", "lot", "reference_price",
     "price_limit_pct", "extra"]
)  # fmt: skip
type_names = st.sampled_from(["place", "cancel", "amend", "add_instrument", "set_phase", "x"])


@settings(max_examples=300, deadline=None)
@given(kind=type_names, fields=st.dictionaries(field_names, json_values, max_size=10))
def test_any_json_object_parses_to_a_command_or_a_named_error(
    kind: str, fields: dict[str, Any]
) -> None:
    parsed = wire.parse_line(json.dumps({**fields, "type": kind}))  # json: any int size
    if isinstance(parsed, wire.WireError):
        assert parsed.message
        assert parsed.field is None or isinstance(parsed.field, str)
    else:
        assert wire.parse_command(wire.command_to_dict(parsed)) == parsed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    parsed = wire.parse_line(data)
    assert parsed is not None


def test_a_cancel_carries_only_a_reason_a_command_may_give() -> None:
    """Cancel-on-disconnect writes its reason into the ledger's cancel command; the venue's own
    reasons (self_trade, unfunded, ...) cannot be claimed by a command."""
    line = '{"type": "cancel", "broker": "b", "order_id": 7, "symbol": "X", "reason": "%s"}'
    parsed = wire.parse_venue_line(line % "cancel_on_disconnect")
    assert not isinstance(parsed, wire.WireError)
    assert parsed.command == CancelOrder(
        order_id=7, symbol="X", reason=CancelReason.CANCEL_ON_DISCONNECT
    )
    assert wire.venue_command_to_dict(parsed)["reason"] == "cancel_on_disconnect"
    plain = wire.parse_venue_line('{"type": "cancel", "broker": "b", "order_id": 7, "symbol": "X"}')
    assert not isinstance(plain, wire.WireError)
    assert "reason" not in wire.venue_command_to_dict(plain)  # as every cancel was written
    refused = wire.parse_venue_line(line % "self_trade")
    assert isinstance(refused, wire.WireError) and refused.field == "reason"
    assert "'self_trade'" in refused.message and "cancel_on_disconnect" in refused.message
