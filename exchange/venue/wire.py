"""The JSON vocabulary of commands and events: parsing at the edge, formatting on the way out.

This is the canonical form shared by `jinlian match`, the ledger and the broker API. Parsing is
strict: an object with a known `type`, every required field present with the right JSON type,
no unknown fields, integers within int64. Anything else is a `WireError` naming the field and
the offending value; parsing never raises on bad input. Business rules (a price off tick, a
quantity of zero) are not the edge's business: the engine answers them with rejection events.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import orjson

from exchange.venue.types import BeginDay, BrokerCommand, EndDay, ListInstrument, VenueCommand
from exchange.venue.venue import SETTLEMENT_COMMANDS
from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.events import (
    AmendRejected,
    AuctionUncrossed,
    CancelRejected,
    CommandRejected,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    PhaseChanged,
    SelfTradePrevented,
    TradeExecuted,
)
from matching.types import CancelReason, OrderKind, Phase, Side, StpMode, TimeInForce
from settlement.corporate_action_types import Command as CorporateActionCommand
from settlement.supply_chain import wire_name
from settlement.supply_chain_types import SIGNATURE_HEX_LENGTH
from settlement.supply_chain_types import Command as SupplyChainCommand

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
TEXT_LENGTH_MAX = 64
LINE_BYTES_MAX = 64 * 1024
LIST_LENGTH_MAX = 64  # an array field (a split's amounts)

EnumType = TypeVar("EnumType", bound=IntEnum)
# the reasons a cancel command may carry; the others are the venue's own
COMMAND_CANCEL_REASONS = (CancelReason.REQUESTED, CancelReason.CANCEL_ON_DISCONNECT)

EVENT_TYPES: dict[type, str] = {
    InstrumentAdded: "instrument_added",
    PhaseChanged: "phase_changed",
    CommandRejected: "command_rejected",
    OrderAccepted: "accepted",
    OrderRejected: "rejected",
    CancelRejected: "cancel_rejected",
    AmendRejected: "amend_rejected",
    TradeExecuted: "trade",
    OrderCancelled: "cancelled",
    OrderReduced: "reduced",
    OrderAmended: "amended",
    OrderExpired: "expired",
    SelfTradePrevented: "self_trade_prevented",
    AuctionUncrossed: "auction_uncrossed",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WireError:
    """A message that could not be parsed. `field` is None when the message as a whole is bad."""

    field: str | None
    message: str

    def to_dict(self, line: int | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": "error"}
        if line is not None:
            error["line"] = line
        error["field"] = self.field
        error["message"] = self.message
        return error


class _FieldError(Exception):
    """Raised inside the parser only; `parse_*` turn it into a WireError value."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Fields:
    """Typed access to one message's fields that records which ones were read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.used = {"type"}

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise _FieldError(name, f"missing field {name!r}")
            return None
        return self.data[name]

    def integer(self, name: str, required: bool = True) -> int | None:
        value = self._get(name, required)
        if value is None and not required:
            return None
        if type(value) is not int:
            raise _FieldError(name, f"{name} must be an integer, got {value!r}")
        if not INT_MIN <= value <= INT_MAX:
            raise _FieldError(name, f"{name} {value} is outside the 64-bit integer range")
        return value

    def required_integer(self, name: str) -> int:
        value = self.integer(name)
        assert value is not None
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value = self._get(name, default is None)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise _FieldError(name, f"{name} must be a string, got {value!r}")
        if len(value) > TEXT_LENGTH_MAX:
            raise _FieldError(
                name, f"{name} is longer than {TEXT_LENGTH_MAX} characters: {value!r}"
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise _FieldError(name, f"{name} must be true or false, got {value!r}")
        return value

    def choice(self, name: str, enum: type[EnumType], default: EnumType | None = None) -> EnumType:
        value = self._get(name, default is None)
        if value is None and default is not None:
            return default
        names = [member.name.lower() for member in enum]
        if (
            not isinstance(value, str)
            or value.upper() not in enum.__members__
            or value != value.lower()
        ):
            raise _FieldError(name, f"{name} must be one of {', '.join(names)}; got {value!r}")
        return enum[value.upper()]

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                raise _FieldError(name, f"unknown field {name!r}")


def _place(fields: _Fields) -> PlaceOrder:
    order_id = fields.required_integer("order_id")
    kind = fields.choice("kind", OrderKind, OrderKind.LIMIT)
    price = fields.integer("price", required=False)
    if kind is OrderKind.LIMIT and price is None:
        raise _FieldError("price", "a limit order needs an integer price")
    if kind is OrderKind.MARKET and price is not None:
        raise _FieldError("price", f"a market order has no price, got {price!r}")
    default_tif = TimeInForce.DAY if kind is OrderKind.LIMIT else TimeInForce.IOC
    return PlaceOrder(
        order_id=order_id,
        symbol=fields.text("symbol"),
        account=fields.text("account"),
        side=fields.choice("side", Side),
        kind=kind,
        price=price,
        quantity=fields.required_integer("quantity"),
        tif=fields.choice("tif", TimeInForce, default_tif),
        post_only=fields.flag("post_only", False),
        stp_group=fields.text("stp_group", ""),
        stp_mode=fields.choice("stp_mode", StpMode, StpMode.CANCEL_NEWEST),
    )


def _cancel(fields: _Fields) -> CancelOrder:
    command = CancelOrder(
        order_id=fields.required_integer("order_id"),
        symbol=fields.text("symbol"),
        reason=fields.choice("reason", CancelReason, CancelReason.REQUESTED),
    )
    if command.reason not in COMMAND_CANCEL_REASONS:
        allowed = ", ".join(reason.name.lower() for reason in COMMAND_CANCEL_REASONS)
        raise _FieldError(
            "reason",
            f"a cancel's reason must be one of {allowed}; got {command.reason.name.lower()!r}",
        )
    return command


def _amend(fields: _Fields) -> AmendOrder:
    command = AmendOrder(
        order_id=fields.required_integer("order_id"),
        symbol=fields.text("symbol"),
        price=fields.integer("price", required=False),
        quantity=fields.integer("quantity", required=False),
    )
    if command.price is None and command.quantity is None:
        raise _FieldError("price", "an amend needs a new price or a new quantity")
    return command


def _add_instrument(fields: _Fields) -> AddInstrument:
    return AddInstrument(
        symbol=fields.text("symbol"),
        tick_size=fields.required_integer("tick_size"),
        lot=fields.required_integer("lot"),
        reference_price=fields.required_integer("reference_price"),
        price_limit_pct=fields.integer("price_limit_pct", required=False),
    )


def _set_phase(fields: _Fields) -> SetPhase:
    return SetPhase(symbol=fields.text("symbol"), phase=fields.choice("phase", Phase))


COMMAND_PARSERS: dict[str, Callable[[_Fields], Command]] = {
    "place": _place,
    "cancel": _cancel,
    "amend": _amend,
    "add_instrument": _add_instrument,
    "set_phase": _set_phase,
}


def parse_command(
    data: Any, parsers: dict[str, Callable[[_Fields], Any]] = COMMAND_PARSERS
) -> Any | WireError:
    """A decoded JSON value -> a command, or a WireError naming what is wrong."""
    if not isinstance(data, dict):
        return WireError(field=None, message=f"a command must be a JSON object, got {data!r:.80}")
    kind = data.get("type")
    parser = parsers.get(kind) if isinstance(kind, str) else None
    if parser is None:
        known = ", ".join(sorted(parsers))
        return WireError(field="type", message=f"unknown command type {kind!r}; known: {known}")
    fields = _Fields(data)
    try:
        command = parser(fields)
        fields.finish()
    except _FieldError as invalid:
        return WireError(field=invalid.field, message=invalid.message)
    return command


def decode(line: bytes | str) -> Any | WireError:
    """One JSON text -> its value, or a WireError for an oversized or malformed line."""
    if len(line) > LINE_BYTES_MAX:
        return WireError(field=None, message=f"line of {len(line)} bytes exceeds {LINE_BYTES_MAX}")
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return WireError(field=None, message=f"malformed JSON: {error}")


def parse_line(line: bytes | str) -> Command | WireError:
    """One JSON text -> a matching command, or a WireError."""
    data = decode(line)
    if isinstance(data, WireError):
        return data
    parsed: Command | WireError = parse_command(data)
    return parsed


def dataclass_parser(
    cls: type[Any], special: dict[str, Callable[[_Fields, str], Any]] | None = None
) -> Callable[[_Fields], Any]:
    """A parser for a flat command dataclass, from its type hints: int, str, bool, IntEnum and
    optional ints; fields with defaults are optional. `special`: field name -> its parser."""
    hints = typing.get_type_hints(cls)
    specs: list[tuple[str, Any, Any]] = []
    for field in dataclasses.fields(cls):
        has_default = field.default is not dataclasses.MISSING
        specs.append((field.name, hints[field.name], field.default if has_default else None))
    special = special or {}

    def parse(fields: _Fields) -> Any:
        values: dict[str, Any] = {}
        for name, hint, default in specs:
            if name in special:
                values[name] = special[name](fields, name)
            elif hint is int:
                values[name] = (
                    fields.required_integer(name)
                    if default is None
                    else _default(fields.integer(name, required=False), default)
                )
            elif hint == int | None:
                values[name] = fields.integer(name, required=False)
            elif hint is str:
                values[name] = fields.text(name, default)
            elif hint is bool:
                values[name] = fields.flag(name, bool(default))
            else:
                assert isinstance(hint, type) and issubclass(hint, IntEnum), (cls, name, hint)
                values[name] = fields.choice(name, hint, default)
        return cls(**values)

    return parse


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _plain(value: Any) -> Any:
    if isinstance(value, IntEnum):
        return value.name.lower()
    return value


def snake_case(name: str) -> str:
    """`TradeSettled` -> `trade_settled`: the wire name of a class."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_to_dict(event: Any) -> dict[str, Any]:
    """An event as its JSON object: `type` first, enums as lower-case names. Matching events
    keep their short names (`trade`, `accepted`); others are their class names in snake case."""
    kind = type(event)
    data: dict[str, Any] = {"type": EVENT_TYPES.get(kind) or snake_case(kind.__name__)}
    if dataclasses.is_dataclass(event):
        for field in dataclasses.fields(event):
            data[field.name] = _plain(getattr(event, field.name))
    else:
        for name, value in zip(event._fields, event, strict=True):
            data[name] = _plain(value)
    return data


COMMAND_TYPES: dict[type, str] = {
    PlaceOrder: "place",
    CancelOrder: "cancel",
    AmendOrder: "amend",
    AddInstrument: "add_instrument",
    SetPhase: "set_phase",
}


def command_to_dict(command: Command) -> dict[str, Any]:
    """A command as its JSON object, the inverse of `parse_command`."""
    data: dict[str, Any] = {"type": COMMAND_TYPES[type(command)]}
    for name in command._fields:
        value = getattr(command, name)
        if value is not None:
            data[name] = _plain(value)
    if data.get("reason") == "requested":  # a cancel's default: as every cancel was written
        del data["reason"]
    return data


def _from_broker(
    parser: Callable[[_Fields], Any], *, client_ids: bool = False
) -> Callable[[_Fields], Any]:
    def parse(fields: _Fields) -> Any:
        broker = fields.text("broker")
        client_order_id = fields.text("client_order_id", "") if client_ids else ""
        return BrokerCommand(broker=broker, command=parser(fields), client_order_id=client_order_id)

    return parse


def _venue_parsers() -> dict[str, Callable[[_Fields], Any]]:
    parsers: dict[str, Callable[[_Fields], Any]] = {
        "place": _from_broker(_place, client_ids=True),
        "cancel": _from_broker(_cancel),
        "amend": _from_broker(_amend),
        "set_phase": _set_phase,
    }
    for cls in (ListInstrument, BeginDay, EndDay, *SETTLEMENT_COMMANDS):
        parsers[snake_case(cls.__name__)] = dataclass_parser(cls)
    for cls in (*typing.get_args(SupplyChainCommand), *typing.get_args(CorporateActionCommand)):
        parsers[wire_name(cls)] = _supply_chain_parser(cls)
    return parsers


def _supply_chain_parser(cls: type[Any]) -> Callable[[_Fields], Any]:
    """`dataclass_parser` for supply-chain commands: also arrays of integers (a split's
    amounts, at most LIST_LENGTH_MAX) and signatures (hex, up to SIGNATURE_HEX_LENGTH)."""
    special: dict[str, Callable[[_Fields, str], Any]] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if typing.get_origin(hint) is tuple:
            special[name] = _integer_array
        elif name.endswith("signature"):
            special[name] = _signature
    return dataclass_parser(cls, special)


def _signature(fields: _Fields, name: str) -> str:
    value = fields._get(name, True)
    if not isinstance(value, str) or len(value) > SIGNATURE_HEX_LENGTH:
        raise _FieldError(
            name, f"{name} must be a string of {SIGNATURE_HEX_LENGTH} hex digits, got {value!r:.40}"
        )
    return value


def _integer_array(fields: _Fields, name: str) -> tuple[int, ...]:
    value = fields._get(name, True)
    if not isinstance(value, list) or len(value) > LIST_LENGTH_MAX:
        raise _FieldError(
            name,
            f"{name} must be an array of at most {LIST_LENGTH_MAX} integers, got {value!r:.80}",
        )
    for item in value:
        if type(item) is not int or not INT_MIN <= item <= INT_MAX:
            raise _FieldError(name, f"{name} must hold 64-bit integers, got {item!r:.40}")
    return tuple(value)


VENUE_PARSERS = _venue_parsers()


def parse_venue_line(line: bytes | str) -> VenueCommand | WireError:
    """One JSON text -> a venue command (order commands carry `broker`), or a WireError."""
    data = decode(line)
    if isinstance(data, WireError):
        return data
    parsed: VenueCommand | WireError = parse_command(data, VENUE_PARSERS)
    return parsed


def venue_command_to_dict(command: VenueCommand) -> dict[str, Any]:
    """A venue command as its JSON object, the inverse of `parse_venue_line`."""
    if isinstance(command, BrokerCommand):
        order = {**command_to_dict(command.command), "broker": command.broker}
        if command.client_order_id:
            order["client_order_id"] = command.client_order_id
        return order
    if isinstance(command, SetPhase):
        return command_to_dict(command)
    data: dict[str, Any] = {"type": snake_case(type(command).__name__)}
    for field in dataclasses.fields(command):
        data[field.name] = _plain(getattr(command, field.name))
    return data
