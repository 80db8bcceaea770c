"""The hot path of the ledger's state machine: command objects to venue commands and events to
canonical bytes, with exactly the results of `exchange.venue.wire` and `ledger.canonical`.

`parse_venue_command` accepts the order commands (`place`, `cancel`, `amend`) when every field
is present with exactly the type `wire.parse_command` accepts; anything unusual (an unknown or
missing field, a wrong type, a value out of range, another command type) goes to
`wire.parse_command`, which gives the same command or the `WireError` naming the field. So the
fast path only ever accepts what the strict parser accepts, and builds the same object.

`event_bytes(event)` is `canonical_bytes(wire.event_to_dict(event))`: a per-type encoder,
generated from the event's fields and type hints, builds the same dict (enums as lower-case
names) with its keys already in sorted order and hands it to orjson, which keeps that order:
the bytes orjson with `OPT_SORT_KEYS` makes, which is how canonical bytes are made. The
canonical checks are kept: every integer field is range-checked (signed 64-bit), an enum field
must hold its enum, and orjson itself refuses lone surrogates; an event that fails any check is
encoded by the slow path, which raises the same `CanonicalError` it always did.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final

import orjson

from exchange.venue import wire
from exchange.venue.types import BrokerCommand
from ledger.canonical import INTEGER_MAX, INTEGER_MIN, canonical_bytes
from matching.commands import AmendOrder, CancelOrder, PlaceOrder
from matching.types import CancelReason, OrderKind, Side, StpMode, TimeInForce

_SORTED: Final = orjson.OPT_SORT_KEYS
_TEXT_MAX: Final = wire.TEXT_LENGTH_MAX
_LOW: Final = wire.INT_MIN
_HIGH: Final = wire.INT_MAX


def _names(enum: type[IntEnum]) -> dict[str, Any]:
    """The lower-case names `wire` accepts for `enum` (aliases included)."""
    return {name.lower(): member for name, member in enum.__members__.items()}


_SIDES: Final = _names(Side)
_KINDS: Final = _names(OrderKind)
_TIFS: Final = _names(TimeInForce)
_STP_MODES: Final = _names(StpMode)
_LIMIT: Final = OrderKind.LIMIT
_DAY: Final = TimeInForce.DAY
_IOC: Final = TimeInForce.IOC
_CANCEL_NEWEST: Final = StpMode.CANCEL_NEWEST
_REQUESTED: Final = CancelReason.REQUESTED  # a cancel with a `reason` takes the slow path

_PLACE_FIELDS: Final = frozenset(
    {
        "type",
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
        "client_order_id",
    }
)
_CANCEL_FIELDS: Final = frozenset({"type", "broker", "order_id", "symbol"})
_AMEND_FIELDS: Final = frozenset({"type", "broker", "order_id", "symbol", "price", "quantity"})


def _maker(cls: type[Any]) -> Callable[..., Any]:
    """A constructor of the frozen, slotted dataclass `cls` taking its fields positionally, in
    declaration order, that sets the slots directly: the same object as `cls(**fields)`, without
    the frozen `__setattr__` per field. Only for classes whose `__init__` does nothing else.
    A NamedTuple record (the matching commands) is its own positional constructor."""
    if issubclass(cls, tuple):
        return cls
    assert dataclasses.is_dataclass(cls) and not hasattr(cls, "__post_init__"), cls
    names = [field.name for field in dataclasses.fields(cls)]
    assert tuple(names) == tuple(cls.__slots__), cls  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def make({', '.join(names)}):", "    made = new(cls)"]
    for index, name in enumerate(names):
        namespace[f"set{index}"] = getattr(cls, name).__set__
        lines.append(f"    set{index}(made, {name})")
    lines.append("    return made")
    exec("\n".join(lines), namespace)  # generated from the class's own field names
    make: Callable[..., Any] = namespace["make"]
    return make


_new_place: Final = _maker(PlaceOrder)
_new_cancel: Final = _maker(CancelOrder)
_new_amend: Final = _maker(AmendOrder)
_new_broker_command: Final = _maker(BrokerCommand)


def _text(value: Any) -> bool:
    return type(value) is str and len(value) <= _TEXT_MAX


def _integer(value: Any) -> bool:
    return type(value) is int and _LOW <= value <= _HIGH


def _choice(value: Any, names: dict[str, Any]) -> Any:
    """The member a lower-case name stands for, or None (also for a non-string)."""
    return names.get(value) if type(value) is str else None


def _place(data: dict[str, Any]) -> BrokerCommand | None:
    if not _PLACE_FIELDS.issuperset(data):
        return None
    get: Any = data.get  # values are checked below
    broker, order_id, symbol = get("broker"), get("order_id"), get("symbol")
    account = get("account")
    quantity, price = get("quantity"), get("price")
    side = get("side")
    side = _SIDES.get(side) if type(side) is str else None
    if not (
        type(broker) is str
        and len(broker) <= _TEXT_MAX
        and type(order_id) is int
        and _LOW <= order_id <= _HIGH
        and type(symbol) is str
        and len(symbol) <= _TEXT_MAX
        and type(account) is str
        and len(account) <= _TEXT_MAX
        and side is not None
        and type(quantity) is int
        and _LOW <= quantity <= _HIGH
        and (price is None or (type(price) is int and _LOW <= price <= _HIGH))
    ):
        return None
    kind = get("kind")
    if kind is None:
        kind = _LIMIT
    else:
        kind = _choice(kind, _KINDS)
        if kind is None:
            return None
    if (price is None) is (kind is _LIMIT):  # a limit order needs a price, a market one none
        return None
    tif = get("tif")
    if tif is None:
        tif = _DAY if kind is _LIMIT else _IOC
    else:
        tif = _choice(tif, _TIFS)
        if tif is None:
            return None
    post_only = get("post_only")
    if post_only is None:
        post_only = False
    elif type(post_only) is not bool:
        return None
    stp_group = get("stp_group")
    if stp_group is None:
        stp_group = ""
    elif not _text(stp_group):
        return None
    stp_mode = get("stp_mode")
    if stp_mode is None:
        stp_mode = _CANCEL_NEWEST
    else:
        stp_mode = _choice(stp_mode, _STP_MODES)
        if stp_mode is None:
            return None
    client_order_id = get("client_order_id")
    if client_order_id is None:
        client_order_id = ""
    elif not _text(client_order_id):
        return None
    return _new_broker_command(  # type: ignore[no-any-return]
        broker,
        _new_place(
            order_id,
            symbol,
            account,
            side,
            kind,
            price,
            quantity,
            tif,
            post_only,
            stp_group,
            stp_mode,
        ),
        client_order_id,
    )


def _cancel(data: dict[str, Any]) -> BrokerCommand | None:
    if not _CANCEL_FIELDS.issuperset(data):
        return None
    get: Any = data.get  # values are checked below
    broker, order_id, symbol = get("broker"), get("order_id"), get("symbol")
    if not (_text(broker) and _integer(order_id) and _text(symbol)):
        return None
    return _new_broker_command(broker, _new_cancel(order_id, symbol, _REQUESTED), "")  # type: ignore[no-any-return]


def _amend(data: dict[str, Any]) -> BrokerCommand | None:
    if not _AMEND_FIELDS.issuperset(data):
        return None
    get: Any = data.get  # values are checked below
    broker, order_id, symbol = get("broker"), get("order_id"), get("symbol")
    price, quantity = get("price"), get("quantity")
    if not (
        _text(broker)
        and _integer(order_id)
        and _text(symbol)
        and (price is None or _integer(price))
        and (quantity is None or _integer(quantity))
        and (price is not None or quantity is not None)
    ):
        return None
    return _new_broker_command(  # type: ignore[no-any-return]
        broker, _new_amend(order_id, symbol, price, quantity), ""
    )


_FAST_PARSERS: Final[dict[str, Callable[[dict[str, Any]], BrokerCommand | None]]] = {
    "place": _place,
    "cancel": _cancel,
    "amend": _amend,
}


def parse_venue_command(data: Any) -> Any:
    """`wire.parse_command(data, wire.VENUE_PARSERS)`, faster for well-formed order commands:
    a venue command, or the `WireError` naming what is wrong."""
    if type(data) is dict:
        kind = data.get("type")
        if type(kind) is str:
            parser = _FAST_PARSERS.get(kind)
            if parser is not None:
                parsed = parser(data)
                if parsed is not None:
                    return parsed
    return wire.parse_command(data, wire.VENUE_PARSERS)


# -- events --------------------------------------------------------------------------------


class _SlowPathError(Exception):
    """A value the generated encoder does not vouch for: encode it the slow way."""


def _enum_of(hint: Any) -> tuple[type[IntEnum] | None, bool]:
    """(the IntEnum a field holds, whether it may be None)."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else hint
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return hint, optional
    return None, optional


def _is_int(hint: Any) -> tuple[bool, bool]:
    """(the field holds an int, whether it may be None)."""
    if hint is int:
        return True, False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        if set(args) == {int, type(None)}:
            return True, True
    return False, False


def _fields_of(cls: type[Any]) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [field.name for field in dataclasses.fields(cls)]
    return list(cls._fields)


def _encoder(cls: type[Any]) -> Callable[[Any], bytes]:
    """Generate the encoder of one event type (see the module docstring)."""
    names = _fields_of(cls)
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {
        "dumps": orjson.dumps,
        "LOW": INTEGER_MIN,
        "HIGH": INTEGER_MAX,
        "Slow": _SlowPathError,
    }
    conditions: list[str] = []  # all must hold, or the slow path encodes the event
    integers: list[str] = []
    items = {"type": repr(wire.EVENT_TYPES.get(cls) or wire.snake_case(cls.__name__))}
    assert "type" not in names, cls  # event_to_dict would let the field overwrite the type
    for index, name in enumerate(names):
        variable = f"v{index}"
        enum, optional = _enum_of(hints[name])
        is_int, int_optional = _is_int(hints[name])
        if enum is not None:
            namespace[f"E{index}"] = enum
            namespace[f"N{index}"] = {member: member.name.lower() for member in enum}
            if optional:
                conditions.append(f"({variable} is None or type({variable}) is E{index})")
                items[name] = f"None if {variable} is None else N{index}[{variable}]"
            else:
                conditions.append(f"type({variable}) is E{index}")
                items[name] = f"N{index}[{variable}]"
            continue
        if is_int and int_optional:
            conditions.append(
                f"({variable} is None or (type({variable}) is int and LOW <= {variable} <= HIGH))"
            )
        elif is_int:
            integers.append(variable)
            conditions.append(f"LOW <= {variable} <= HIGH")
        items[name] = variable
    if integers:
        conditions.insert(0, " is ".join(f"type({v})" for v in integers) + " is int")
    checks = [f"if not ({' and '.join(conditions)}):", "    raise Slow"] if conditions else []
    if dataclasses.is_dataclass(cls):
        unpack = "".join(f"    v{i} = event.{name}\n" for i, name in enumerate(names))
    else:
        unpack = f"    {', '.join(f'v{i}' for i in range(len(names)))}, = event\n"
    body = "".join(f"    {line}\n" for line in checks)
    source = (
        f"def encode(event):\n{unpack}{body}"
        f"    return dumps({{{', '.join(f'{key!r}: {items[key]}' for key in sorted(items))}}})\n"
    )
    exec(source, namespace)  # generated from the event's own field names and hints
    encode: Callable[[Any], bytes] = namespace["encode"]
    return encode


def _event_types() -> list[type[Any]]:
    from exchange.venue.types import Event as VenueEvent  # noqa: PLC0415

    found: list[type[Any]] = []
    for cls in typing.get_args(VenueEvent):
        if cls not in found:
            found.append(cls)
    return found


_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    cls: _encoder(cls) for cls in _event_types()
}


def slow_event_bytes(event: Any) -> bytes:
    """The reference: `canonical_bytes(wire.event_to_dict(event))`."""
    return canonical_bytes(wire.event_to_dict(event))


def event_bytes(event: Any) -> bytes:
    """`canonical_bytes(wire.event_to_dict(event))`, through the type's generated encoder."""
    encode = _ENCODERS.get(type(event))
    if encode is not None:
        try:
            return encode(event)
        except (_SlowPathError, orjson.JSONEncodeError, KeyError):
            pass
    return slow_event_bytes(event)


def events_bytes(events: list[Any]) -> list[bytes]:
    """`event_bytes` of each event."""
    try:
        return [_ENCODERS[type(event)](event) for event in events]
    except (_SlowPathError, orjson.JSONEncodeError, KeyError):
        return [event_bytes(event) for event in events]
