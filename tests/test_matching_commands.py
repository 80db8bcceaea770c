"""Commands are typed records: keyword constructors with the same fields and defaults as
before, equality and hashing that know the type, and the same JSON."""

from __future__ import annotations

import orjson

from exchange.venue.wire import command_to_dict, parse_line
from matching.commands import AddInstrument, AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.events import CancelRejected, OrderAccepted, OrderRejected
from matching.types import (
    CancelReason,
    OrderKind,
    Phase,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)


def test_fields_and_defaults_are_those_of_the_contract() -> None:
    assert PlaceOrder._fields == (
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
    )
    assert PlaceOrder._field_defaults == {
        "tif": TimeInForce.DAY,
        "post_only": False,
        "stp_group": "",
        "stp_mode": StpMode.CANCEL_NEWEST,
    }
    assert CancelOrder._fields == ("order_id", "symbol", "reason")
    assert CancelOrder._field_defaults == {"reason": CancelReason.REQUESTED}
    assert AmendOrder._field_defaults == {"price": None, "quantity": None}
    assert SetPhase._fields == ("symbol", "phase")
    assert AddInstrument._fields == (
        "symbol",
        "tick_size",
        "lot",
        "reference_price",
        "price_limit_pct",
    )


def test_equality_and_hash_know_the_type() -> None:
    cancel = CancelOrder(order_id=5, symbol="600000.SH")
    # The same values as a plain tuple and as events whose enums are equal ints.
    rejected = OrderRejected(5, "600000.SH", RejectReason.UNKNOWN_INSTRUMENT)
    refused = CancelRejected(5, "600000.SH", RejectReason.UNKNOWN_INSTRUMENT)
    for other in ((5, "600000.SH", CancelReason.REQUESTED), rejected, refused):
        assert tuple(other) == tuple(cancel)
        assert cancel != other and other != cancel
    assert cancel == CancelOrder(order_id=5, symbol="600000.SH", reason=CancelReason.REQUESTED)
    assert len({cancel, CancelOrder(order_id=5, symbol="600000.SH"), rejected}) == 2
    amend = AmendOrder(order_id=5, symbol="600000.SH", price=None, quantity=None)
    assert amend != AmendOrder(order_id=5, symbol="600000.SH", price=None, quantity=100)


def test_json_is_unchanged() -> None:
    place = PlaceOrder(
        order_id=7,
        symbol="600000.SH",
        account="A1",
        side=Side.SELL,
        kind=OrderKind.LIMIT,
        price=1_000,
        quantity=300,
        tif=TimeInForce.GTC,
        stp_group="g",
        stp_mode=StpMode.CANCEL_BOTH,
    )
    expected = {
        "type": "place",
        "order_id": 7,
        "symbol": "600000.SH",
        "account": "A1",
        "side": "sell",
        "kind": "limit",
        "price": 1_000,
        "quantity": 300,
        "tif": "gtc",
        "post_only": False,
        "stp_group": "g",
        "stp_mode": "cancel_both",
    }
    assert command_to_dict(place) == expected
    commands = [
        place,
        CancelOrder(order_id=7, symbol="600000.SH"),
        AmendOrder(order_id=7, symbol="600000.SH", quantity=200),
        SetPhase(symbol="600000.SH", phase=Phase.CONTINUOUS),
        AddInstrument(
            symbol="600000.SH", tick_size=1, lot=100, reference_price=1_000, price_limit_pct=None
        ),
    ]
    for command in commands:
        parsed = parse_line(orjson.dumps(command_to_dict(command)))
        assert parsed == command and type(parsed) is type(command)
    assert command_to_dict(commands[1]) == {"type": "cancel", "order_id": 7, "symbol": "600000.SH"}


def test_an_accept_holds_the_first_fields_of_its_place_command() -> None:
    """The engine builds `OrderAccepted` from a slice of its `PlaceOrder` (matching/engine.py):
    the accept's fields must stay the command's first ones, in the same order."""
    assert OrderAccepted._fields == PlaceOrder._fields[: len(OrderAccepted._fields)]
