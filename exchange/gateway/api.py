"""The broker API's messages at the edge: strict parsing of what a client sends, and errors.

Every client message is a JSON object with a `type`; every request but `ping` carries a
`request` id (an integer or a string of at most 64 characters) that the reply echoes. Parsing
is strict, as for the venue's commands (`exchange.venue.wire`): a known type, every required field
with the right JSON type, no unknown field, numbers within their range. Anything else is an
`ApiError` naming the field and the offending value, and the session stays usable. The whole
vocabulary, with examples, is in docs/api.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from exchange.venue import wire
from ledger.canonical import canonical_bytes

PRICE_MAX: Final = 10**12  # ticks
QUANTITY_MAX: Final = 10**9  # shares
CLIENT_ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,36}")
HEX_RE: Final = re.compile(r"[0-9a-f]+")
REPLAY_FROM_MAX: Final = 2**62

# error codes (docs/api.md lists each with its meaning)
MALFORMED: Final = "malformed"
TOO_LARGE: Final = "message_too_large"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_FIELD: Final = "invalid_field"
NOT_LOGGED_ON: Final = "not_logged_on"
ALREADY_LOGGED_ON: Final = "already_logged_on"
UNKNOWN_IDENTITY: Final = "unknown_identity"
BAD_SIGNATURE: Final = "bad_signature"
BAD_NONCE: Final = "bad_nonce"
STALE_TIMESTAMP: Final = "stale_timestamp"
LOGON_TIMEOUT: Final = "logon_timeout"
TOO_MANY_SESSIONS: Final = "too_many_sessions"
RATE_LIMITED: Final = "rate_limited"
NOT_YOUR_ACCOUNT: Final = "not_your_account"
NOT_YOUR_ORDER: Final = "not_your_order"
NOT_YOUR_TRADE: Final = "not_your_trade"
UNKNOWN_ORDER: Final = "unknown_order"
UNKNOWN_SYMBOL: Final = "unknown_symbol"
ORDER_NOT_OPEN: Final = "order_not_open"
TOO_MANY_OPEN_ORDERS: Final = "too_many_open_orders"
NOT_ALLOWED: Final = "not_allowed"
UNKNOWN_TRADE: Final = "unknown_trade"
NOT_FINAL: Final = "not_final"
REPLAY_GONE: Final = "replay_gone"
BUSY: Final = "busy"
DEGRADED: Final = "degraded"
RECOVERING: Final = "recovering"
UNAVAILABLE: Final = "unavailable"  # the exchange failed or is stopping (docs/ledger.md)


@dataclass(frozen=True, slots=True)
class ApiError:
    """A structured error: `code` (stable, machine-readable), `message` naming the offending
    value, `field` (None when the message as a whole is at fault)."""

    code: str
    message: str
    field: str | None = None

    def to_dict(self, request: Any = None, **extra: Any) -> dict[str, Any]:
        return {"type": "error", "request": request, "code": self.code, "message": self.message,
                "field": self.field, **extra}  # fmt: skip


Fields = Any  # exchange.venue.wire's typed field reader


def _request_id(fields: Fields) -> Any:
    value = fields._get("request", True)
    if type(value) is int and wire.INT_MIN <= value <= wire.INT_MAX:
        return value
    if isinstance(value, str) and len(value) <= wire.TEXT_LENGTH_MAX:
        return value
    raise wire._FieldError(
        "request",
        f"request must be an integer or a string of at most 64 characters, got {value!r:.80}",
    )


def _bounded(fields: Fields, name: str, low: int, high: int, required: bool = True) -> int | None:
    value: int | None = fields.integer(name, required)
    if value is not None and not low <= value <= high:
        raise wire._FieldError(name, f"{name} must be in {low}..{high}, got {value}")
    return value


def _hex(fields: Fields, name: str, size: int) -> str:
    value = fields._get(name, True)
    if not isinstance(value, str) or len(value) != 2 * size or not HEX_RE.fullmatch(value):
        raise wire._FieldError(
            name, f"{name} must be {2 * size} lowercase hex digits, got {value!r:.140}"
        )
    return value


def _client_order_id(fields: Fields, required: bool) -> str | None:
    value = fields._get("client_order_id", required)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not CLIENT_ORDER_ID_RE.fullmatch(value):
        raise wire._FieldError(
            "client_order_id",
            f"client_order_id must be 1-36 characters of A-Z a-z 0-9 _ . : -, got {value!r:.80}",
        )
    return value


def _order_ref(fields: Fields) -> dict[str, Any]:
    """`order_id` or `client_order_id`, exactly one."""
    order_id = _bounded(fields, "order_id", 1, wire.INT_MAX, required=False)
    client_order_id = _client_order_id(fields, required=False)
    if (order_id is None) == (client_order_id is None):
        raise wire._FieldError("order_id", "give exactly one of order_id and client_order_id")
    return {"order_id": order_id, "client_order_id": client_order_id}


def _place(fields: Fields) -> dict[str, Any]:
    kind = fields.text("kind", "limit")
    if kind not in ("limit", "market"):
        raise wire._FieldError("kind", f"kind must be limit or market, got {kind!r}")
    price = _bounded(fields, "price", 1, PRICE_MAX, required=kind == "limit")
    if kind == "market" and price is not None:
        raise wire._FieldError("price", f"a market order has no price, got {price}")
    side = fields.text("side")
    if side not in ("buy", "sell"):
        raise wire._FieldError("side", f"side must be buy or sell, got {side!r}")
    tif = fields.text("tif", "day" if kind == "limit" else "ioc")
    if tif not in ("day", "gtc", "ioc", "fok"):
        raise wire._FieldError("tif", f"tif must be one of day, gtc, ioc, fok; got {tif!r}")
    place = {
        "client_order_id": _client_order_id(fields, required=True),
        "account": fields.text("account"),
        "symbol": fields.text("symbol"),
        "side": side,
        "kind": kind,
        "quantity": _bounded(fields, "quantity", 1, QUANTITY_MAX),
        "tif": tif,
        "post_only": fields.flag("post_only", False),
    }
    if price is not None:
        place["price"] = price
    return place


def _amend(fields: Fields) -> dict[str, Any]:
    amend = _order_ref(fields)
    amend["price"] = _bounded(fields, "price", 1, PRICE_MAX, required=False)
    amend["quantity"] = _bounded(fields, "quantity", 1, QUANTITY_MAX, required=False)
    if amend["price"] is None and amend["quantity"] is None:
        raise wire._FieldError("price", "an amend needs a new price or a new quantity")
    return amend


def _filter(fields: Fields) -> dict[str, Any]:
    account = fields._get("account", False)
    symbol = fields._get("symbol", False)
    if account is not None:
        account = fields.text("account")
    if symbol is not None:
        symbol = fields.text("symbol")
    return {"account": account, "symbol": symbol}


def _logon(fields: Fields) -> dict[str, Any]:
    broker, member = fields._get("broker", False), fields._get("member", False)
    if (broker is None) == (member is None):
        raise wire._FieldError("broker", "give exactly one of broker and member")
    name = fields.text("broker" if broker is not None else "member")
    signature = _hex(fields, "signature", 64)
    nonce = _hex(fields, "nonce", 16)
    return {
        "broker": name if broker is not None else None,
        "member": name if member is not None else None,
        "nonce": nonce,
        "timestamp_ns": _bounded(fields, "timestamp_ns", 0, wire.INT_MAX),
        "signature": signature,
        "cancel_on_disconnect": fields.flag("cancel_on_disconnect", False),
    }


def _subscription(fields: Fields) -> dict[str, Any]:
    channel = fields.text("channel")
    if channel not in ("book", "bbo", "trades", "phase"):
        raise wire._FieldError(
            "channel", f"channel must be one of book, bbo, trades, phase; got {channel!r}"
        )
    return {"channel": channel, "symbol": fields.text("symbol")}


def _subscribe(fields: Fields) -> dict[str, Any]:
    """A subscription; to `trades` with an optional `from_seq`: first the held messages
    from that `seq` (a client closing a gap)."""
    subscription = _subscription(fields)
    from_seq = _bounded(fields, "from_seq", 1, REPLAY_FROM_MAX, required=False)
    if from_seq is not None and subscription["channel"] != "trades":
        raise wire._FieldError(
            "from_seq", f"from_seq is for the trades channel, not {subscription['channel']}"
        )
    return {**subscription, "from_seq": from_seq}


def _admin(fields: Fields) -> dict[str, Any]:
    command = fields._get("command", True)
    if not isinstance(command, dict):
        raise wire._FieldError("command", f"command must be a JSON object, got {command!r:.80}")
    return {"command": command}


_PARSERS: Final[dict[str, Callable[[Fields], dict[str, Any]]]] = {
    "logon": _logon,
    "ping": lambda fields: {},
    "place": _place,
    "cancel": _order_ref,
    "amend": _amend,
    "cancel_all": _filter,
    "order_status": _order_ref,
    "open_orders": _filter,
    "replay": lambda fields: {"from": _bounded(fields, "from", 1, REPLAY_FROM_MAX)},
    "subscribe": _subscribe,
    "unsubscribe": _subscription,
    "receipt": lambda fields: {"trade_id": _bounded(fields, "trade_id", 1, wire.INT_MAX)},
    "admin": _admin,
}
REQUEST_TYPES: Final = tuple(_PARSERS)


@dataclass(frozen=True, slots=True)
class Request:
    type: str
    request: Any  # the client's request id, echoed in the reply
    args: dict[str, Any]


def _with_request(kind: str, parser: Callable[[Fields], dict[str, Any]]) -> Callable[..., Any]:
    def parse(fields: Fields) -> Request:
        request = None
        if kind != "ping" or "request" in fields.data:
            request = _request_id(fields)
        return Request(kind, request, parser(fields))

    return parse


_REQUEST_PARSERS: Final = {kind: _with_request(kind, parser) for kind, parser in _PARSERS.items()}


def _echoable(request_id: Any) -> Any:
    """A request id as it may be echoed in an error: an int64 or a short string, else None."""
    if type(request_id) is int and wire.INT_MIN <= request_id <= wire.INT_MAX:
        return request_id
    if isinstance(request_id, str) and len(request_id) <= wire.TEXT_LENGTH_MAX:
        return request_id
    return None


def parse_request(data: bytes | str, size_max: int) -> Request | tuple[ApiError, Any]:
    """One client frame -> a `Request`, or the error and whatever request id could be read."""
    if len(data) > size_max:
        error = ApiError(TOO_LARGE, f"message of {len(data)} bytes exceeds {size_max}")
        try:  # only to echo its request id; the frame itself is bounded by the socket
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return error, None
        return error, _echoable(value.get("request") if isinstance(value, dict) else None)
    value = wire.decode(data)
    if isinstance(value, wire.WireError):
        return ApiError(MALFORMED, value.message), None
    request_id = _echoable(value.get("request") if isinstance(value, dict) else None)
    parsed = wire.parse_command(value, _REQUEST_PARSERS)
    if isinstance(parsed, wire.WireError):
        code = UNKNOWN_TYPE if parsed.field == "type" else INVALID_FIELD
        if code == UNKNOWN_TYPE:
            message = f"unknown message type {value.get('type')!r:.80}; known: " + ", ".join(
                REQUEST_TYPES
            )
            return ApiError(code, message, "type"), request_id
        return ApiError(code, parsed.message, parsed.field), request_id
    assert isinstance(parsed, Request)
    return parsed


def logon_message(chain_id: str, identity: str, nonce: str, timestamp_ns: int) -> bytes:
    """The bytes a broker (or member) signs to log on: the challenge's nonce, its own clock's
    time and who it is, for this chain only (a signature for another venue is useless here)."""
    return canonical_bytes({"purpose": "jinlian-logon", "chain_id": chain_id,
                            "identity": identity, "nonce": nonce,
                            "timestamp_ns": timestamp_ns})  # fmt: skip
