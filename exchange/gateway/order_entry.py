"""Order entry and the acknowledgement path: the requests that sequence venue commands
(`place`, `cancel`, `amend`, `cancel_all`, a member's `admin`), the order queries
(`order_status`, `open_orders`), and the answer to each sequenced request once its block is
stored.

A broker acts only on its own accounts and orders; order ids are assigned here and client
order ids are unique per broker per trading day (a repeated one answers the original order's
state). A sequenced request waits in `awaiting` until its block is stored; the orders about to
be acknowledged are journalled durably first (`journal`, `exchange.gateway.ack_journal`), then
`answer` replies with the first report about the order (or the command's events).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exchange.gateway import api
from exchange.gateway.api import ApiError, Request
from exchange.gateway.broker_reports import OrderView
from exchange.gateway.session import Session
from exchange.gateway.state import GatewayState
from exchange.venue.types import BrokerCommand
from exchange.venue.wire import VENUE_PARSERS, WireError, event_to_dict, parse_command
from ledger.canonical import canonical_bytes
from ledger.genesis import Role
from settlement.supply_chain import COMMAND_TYPES as _SUPPLY_CHAIN_TYPES
from settlement.supply_chain import wire_name

SUPPLY_CHAIN_COMMANDS: Final = frozenset(wire_name(cls) for cls in _SUPPLY_CHAIN_TYPES.values())

ADMIN_COMMANDS: Final[dict[Role, frozenset[str]]] = {
    Role.EXCHANGE: frozenset(
        {
            "begin_day",
            "end_day",
            "set_phase",
            "list_instrument",
            "settle_cycle",
            "define_asset",
            "open_account",
            "set_fee_schedule",
        }
    ),
    # a bank also registers its clients' keys and forwards their signed supply-chain commands
    Role.BANK: frozenset({"deposit", "withdraw", "transfer", *SUPPLY_CHAIN_COMMANDS}),
    # the depository also states bonds' terms and declares dividends (docs/fixed_income.md)
    Role.DEPOSITORY: frozenset({"issue", "redeem", "transfer", "define_bond", "declare_dividend"}),
    Role.REGULATOR: frozenset({"freeze", "unfreeze"}),
    Role.BROKER: frozenset(),
}

Executed = list[tuple[Any, Any, Any]]  # (command, parsed, events) in sequence order


@dataclass(slots=True)
class Awaiting:
    """A sequenced request waiting for its block: who asked, and how to answer."""

    session: Session
    request: Any
    kind: str  # place, cancel, amend, admin
    order_id: int = 0
    received_ns: int = field(default_factory=time.monotonic_ns)  # for the ack histogram


class OrderEntry:
    """The requests that sequence commands, the order queries, and their answers."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.awaiting: dict[int, tuple[dict[str, Any], Awaiting]] = {}  # id(command) -> ...
        self.journalled_height = 0  # the orders of the blocks up to here are in the journal
        self.order_times: deque[float] = deque(maxlen=100_000)

    # ---- requests ----

    def submit(self, commands: list[dict[str, Any]]) -> ApiError | None:
        state = self.state
        assert state.node is not None
        encoded = [canonical_bytes(command) for command in commands]  # the gateway's: valid
        refused = state.node.submit(commands, encoded=encoded)
        if refused is None:
            assert state.machine is not None
            submitted = state.machine.submitted
            for data, command in zip(encoded, commands, strict=True):
                submitted[id(data)] = (data, command)
            return None
        codes = {"busy": api.BUSY, "recovering": api.RECOVERING, "unavailable": api.UNAVAILABLE}
        return ApiError(codes.get(refused.code, api.DEGRADED), refused.message)

    def place(self, session: Session, request: Request) -> ApiError | None:
        state = self.state
        broker = session.broker
        assert broker is not None
        args = request.args
        account, symbol = args["account"], args["symbol"]
        if state.accounts.get(account) != broker:
            return ApiError(
                api.NOT_YOUR_ACCOUNT,
                f"account {account!r} is not an account of {broker}",
                "account",
            )
        if state.market is not None and symbol not in state.market.published:
            return ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed", "symbol")
        client_order_id = args["client_order_id"]
        existing = state.reports.by_client_id(broker, client_order_id)
        if existing is not None:
            session.send({"type": "order", "request": request.request, "duplicate": True,
                          "order": existing.to_dict()})  # fmt: skip
            return None
        limit = state.limits.open_orders_per_account
        if state.reports.open_orders.get(account, 0) >= limit:
            return ApiError(
                api.TOO_MANY_OPEN_ORDERS,
                f"account {account} has {limit} open orders (the limit)",
                "account",
            )
        order = state.reports.reserve(broker, args)
        command = {"type": "place", "broker": broker, "order_id": order.order_id,
                   "symbol": symbol, "account": account, "side": args["side"],
                   "kind": args["kind"], "quantity": args["quantity"], "tif": args["tif"],
                   "client_order_id": client_order_id}  # fmt: skip
        if "price" in args:
            command["price"] = args["price"]
        if args["post_only"]:
            command["post_only"] = True
        error = self.submit([command])
        if error is not None:
            state.reports.release(order)
            return error
        self.awaiting[id(command)] = (command, Awaiting(session, request.request, "place",
                                                        order.order_id))  # fmt: skip
        session.remember(order.order_id, self.is_open)
        state.counters["orders"] += 1
        self.order_times.append(time.monotonic())
        return None

    def own_order(self, session: Session, args: Mapping[str, Any]) -> OrderView | ApiError:
        broker = session.broker
        assert broker is not None
        reports = self.state.reports
        if args["client_order_id"] is not None:
            order = reports.by_client_id(broker, args["client_order_id"])
            if order is None:
                unknown = args["client_order_id"]
                return ApiError(api.UNKNOWN_ORDER, f"no order with client_order_id "
                                f"{unknown!r} today", "client_order_id")  # fmt: skip
            return order
        order = reports.orders.get(args["order_id"])
        if order is None:
            return ApiError(api.UNKNOWN_ORDER, f"no order {args['order_id']}", "order_id")
        if order.broker != broker:
            return ApiError(
                api.NOT_YOUR_ORDER,
                f"order {args['order_id']} is not an order of {broker}",
                "order_id",
            )
        return order

    def cancel(self, session: Session, request: Request) -> ApiError | None:
        return self.change(session, request, "cancel")

    def amend(self, session: Session, request: Request) -> ApiError | None:
        return self.change(session, request, "amend")

    def change(self, session: Session, request: Request, kind: str) -> ApiError | None:
        order = self.own_order(session, request.args)
        if isinstance(order, ApiError):
            return order
        if not order.is_open:
            return ApiError(api.ORDER_NOT_OPEN, f"order {order.order_id} is {order.status}",
                            "order_id")  # fmt: skip
        command: dict[str, Any] = {
            "type": kind,
            "broker": order.broker,
            "order_id": order.order_id,
            "symbol": order.symbol,
        }
        if kind == "amend":
            for name in ("price", "quantity"):
                if request.args[name] is not None:
                    command[name] = request.args[name]
        error = self.submit([command])
        if error is None:
            self.awaiting[id(command)] = (command, Awaiting(session, request.request, kind,
                                                            order.order_id))  # fmt: skip
        return error

    def matching(self, session: Session, args: Mapping[str, Any]) -> list[OrderView] | ApiError:
        """The broker's open orders the filters select; an account filter must name one of its
        own accounts, as `place` requires."""
        broker = session.broker
        assert broker is not None
        account = args["account"]
        if account is not None and self.state.accounts.get(account) != broker:
            return ApiError(api.NOT_YOUR_ACCOUNT, f"account {account!r} is not an account of "
                            f"{broker}", "account")  # fmt: skip
        return [
            order
            for order in self.state.reports.open_of(broker)
            if account in (None, order.account) and args["symbol"] in (None, order.symbol)
        ]

    def cancel_all(self, session: Session, request: Request) -> ApiError | None:
        orders = self.matching(session, request.args)
        if isinstance(orders, ApiError):
            return orders
        error = self.cancel_orders(orders)
        if error is None:
            session.send({"type": "cancel_all", "request": request.request,
                          "orders": [o.order_id for o in orders]})  # fmt: skip
        return error

    def cancel_orders(self, orders: list[OrderView], reason: str = "") -> ApiError | None:
        """Sequence a cancel of each of `orders`; `reason` (the venue's cancel command's, e.g.
        `cancel_on_disconnect`) goes into the ledger and onto each `cancelled` report."""
        commands: list[dict[str, Any]] = [{"type": "cancel", "broker": o.broker,
                                           "order_id": o.order_id, "symbol": o.symbol}
                                          for o in orders]  # fmt: skip
        if reason:
            for command in commands:
                command["reason"] = reason
        return self.submit(commands) if commands else None

    def cancel_on_disconnect(self, session: Session) -> None:
        """The session went away: cancel the orders entered on it that are still open."""
        orders = self.state.reports.orders
        open_ = [orders[i] for i in session.placed if i in orders and orders[i].is_open]
        self.cancel_orders(open_, "cancel_on_disconnect")

    def is_open(self, order_id: int) -> bool:
        order = self.state.reports.orders.get(order_id)
        return order is not None and order.is_open

    def order_status(self, session: Session, request: Request) -> ApiError | None:
        order = self.own_order(session, request.args)
        if isinstance(order, ApiError):
            return order
        session.send({"type": "order", "request": request.request, "order": order.to_dict()})
        return None

    def open_orders(self, session: Session, request: Request) -> ApiError | None:
        matching = self.matching(session, request.args)
        if isinstance(matching, ApiError):
            return matching
        orders = [order.to_dict() for order in matching]
        session.send({"type": "open_orders", "request": request.request, "orders": orders})
        return None

    def admin(self, session: Session, request: Request) -> ApiError | None:
        member = session.member
        if member is None:
            return ApiError(api.NOT_ALLOWED, "admin commands need a member logon", "type")
        command = dict(request.args["command"])
        kind = command.get("type")
        allowed = ADMIN_COMMANDS.get(member.role, frozenset())
        if kind not in allowed:
            return ApiError(api.NOT_ALLOWED, f"{member.name} ({member.role.value}) may not send "
                            f"{kind!r:.40}; allowed: {', '.join(sorted(allowed)) or 'none'}",
                            "command.type")  # fmt: skip
        if "actor" in command and command["actor"] != member.name:
            return ApiError(api.NOT_ALLOWED, f"actor {command['actor']!r:.40} is not "
                            f"{member.name}", "command.actor")  # fmt: skip
        parsed = parse_command({**command, "actor": member.name}, VENUE_PARSERS)
        if isinstance(parsed, WireError):  # a command without an actor field
            parsed = parse_command(command, VENUE_PARSERS)
        else:
            command["actor"] = member.name
        if isinstance(parsed, WireError):
            return ApiError(api.INVALID_FIELD, parsed.message, f"command.{parsed.field}")
        if isinstance(parsed, BrokerCommand):
            return ApiError(api.NOT_ALLOWED, "orders go through place/cancel/amend", "command")
        error = self.submit([command])
        if error is None:
            self.awaiting[id(command)] = (command, Awaiting(session, request.request, "admin"))
        return error

    # ---- answers ----

    def to_journal(
        self, height: int, executed: Executed, later: Executed
    ) -> tuple[list[tuple[int, list[dict[str, Any]]]], int]:
        """The orders to journal before the block at `height` is acknowledged (none: no
        write), by height: its own (`executed`) and, in the same write (a group commit: one
        fsync however far the reports task is behind), those of the blocks stored after it
        that wait for the reports task, whose commands follow in `later`. With the last height
        covered."""
        awaiting = self.awaiting

        def placed(commands: Executed) -> list[dict[str, Any]]:
            return [c for c, _, _ in commands if id(c) in awaiting and c["type"] == "place"]

        own = placed(executed)
        if not own:
            return [], height
        group, through, position = [(height, own)], height, 0
        assert self.state.node is not None
        for item in self.state.node.after:
            if item.kind != "stored" or item.block is None or item.height <= height:
                continue
            count = len(item.block.commands)
            placed_later = placed(later[position : position + count])
            position += count
            if placed_later:
                group.append((item.height, placed_later))
            through = item.height
        assert position <= len(later), "queued blocks hold more commands than executed"
        return group, through

    async def journal(self, group: list[tuple[int, list[dict[str, Any]]]], through: int) -> None:
        """Write `group` (`to_journal`) to the journal in a worker thread: the fsync blocks
        neither the event loop nor the cutter."""
        await asyncio.to_thread(self.state.journal.record_blocks, group)
        self.journalled_height = max(self.journalled_height, through)

    def answer(
        self, waiting: Awaiting, height: int, events: list[Any], deliveries: list[Any]
    ) -> None:
        """Answer a sequenced request whose block is stored (and its orders journalled)."""
        self.state.metrics.observe_ack(waiting.received_ns)
        session = waiting.session
        if waiting.kind == "admin":
            session.send({"type": "admin_result", "request": waiting.request, "height": height,
                          "events": [event_to_dict(e) for e in events]})  # fmt: skip
            return
        for broker, report in deliveries:  # the first report about the order answers
            if broker == session.broker and report.get("order_id") == waiting.order_id:
                session.send({**report, "request": waiting.request})
                if session.reports_live:  # else its replay will deliver it again, in order
                    report["_answered"] = session.id
                return
        session.send({"type": "result", "request": waiting.request, "height": height,
                      "events": [event_to_dict(e) for e in events]})  # fmt: skip

    def abandon(self, reason: str) -> None:
        """The exchange failed or is stopping: answer every request waiting for its block with
        `unavailable` (its outcome is unknown until the exchange is back: ask `order_status`)."""
        awaiting, self.awaiting = self.awaiting, {}
        message = (
            f"the exchange stopped before this request was answered ({reason:.300}); "
            "its outcome is unknown until the exchange is back: ask order_status"
        )
        for _, waiting in awaiting.values():
            self.state.error(waiting.session, waiting.request, ApiError(api.UNAVAILABLE, message))
