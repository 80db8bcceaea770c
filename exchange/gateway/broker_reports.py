"""Brokers' view of their orders: order states and execution reports, folded from the venue's
events block by block.

The gateway feeds `Reports.apply` every command of every stored block with the events the
venue produced for it (on start-up, every block of the store: the views are derived data and
are rebuilt, never stored). Each broker has one report log whose index is contiguous from 1,
so a broker that reconnects asks for everything from the index it last saw. Pure: no clock,
no IO; the same blocks give the same reports on every run.

Order views are kept for the trading day: `begin_day` forgets the orders that are done (their
reports stay in the logs) and frees their client order ids, so memory follows the open orders
and one day's activity; an open gtc order keeps its client order id.

Report kinds: `accepted`, `rejected`, `trade`, `cancelled`, `reduced` (open quantity taken
off, the rest keeps its priority), `amended`, `expired`, `cancel_rejected`, `amend_rejected`,
`lost` (not from a block: the gateway adds it where recovery found the order's block gone).
Every report carries the order's state after it: `status`, `open` (leaves), `filled`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from exchange.venue.types import (
    BeginDay,
    BrokerCommand,
    DayBegun,
    OrderRefused,
    OrderUnfunded,
)
from matching.commands import PlaceOrder
from matching.events import (
    AmendRejected,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    TradeExecuted,
)
from matching.types import Side

REPORTS_HELD_MAX: Final = 2_000_000  # per broker; older reports are dropped first
REPORT_LOG_BYTES_MAX: Final = 256 << 20  # per broker, each report counted as below
# All brokers' logs together, counted the same way: past it, the largest log drops its oldest
# reports first (a broker that trades little keeps its history while a busy one pays).
REPORT_LOGS_BYTES_MAX: Final = 512 << 20
REPORT_OVERHEAD_BYTES: Final = 512  # a held report's dict beyond its JSON (690 B measured for ~180)
DONE: Final = frozenset({"filled", "cancelled", "rejected", "expired", "lost"})


@dataclass(slots=True)
class OrderView:
    """One order as its broker sees it. `status`: pending_new (sequenced, not yet in a stored
    block), new, partially_filled, filled, cancelled, rejected, expired, or lost (acknowledged,
    then its block was lost on every copy: `exchange.gateway.ack_journal`)."""

    order_id: int
    broker: str
    account: str
    symbol: str
    side: str
    kind: str
    price: int | None
    quantity: int
    tif: str
    client_order_id: str = ""
    status: str = "pending_new"
    open: int = 0
    filled: int = 0
    height: int = 0  # of the block that last changed it

    @property
    def is_open(self) -> bool:
        return self.status not in DONE

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side,
            "kind": self.kind,
            "price": self.price,
            "quantity": self.quantity,
            "tif": self.tif,
            "status": self.status,
            "open": self.open,
            "filled": self.filled,
        }


@dataclass(slots=True)
class ReportLog:
    """One broker's reports; `first` is the index of `reports[0]`. Bounded by count
    (`held_max`) and by bytes (`bytes_max`, each report its JSON length plus
    REPORT_OVERHEAD_BYTES): past either, the oldest eighth is dropped at once (amortized O(1)
    per report) and `first` moves on; a replay from before it is `replay_gone`."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    first: int = 1
    held_max: int = REPORTS_HELD_MAX
    bytes_max: int = REPORT_LOG_BYTES_MAX
    sizes: list[int] = field(default_factory=list)  # each held report's counted bytes
    held_bytes: int = 0

    @property
    def next_index(self) -> int:
        return self.first + len(self.reports)

    def append(self, report: dict[str, Any]) -> dict[str, Any]:
        report["index"] = self.next_index
        size = len(orjson.dumps(report)) + REPORT_OVERHEAD_BYTES
        self.reports.append(report)
        self.sizes.append(size)
        self.held_bytes += size
        if len(self.reports) > self.held_max or self.held_bytes > self.bytes_max:
            self._drop_oldest()
        return report

    def _drop_oldest(self) -> None:
        """Drop the oldest reports down to 7/8 of both bounds."""
        self.drop_oldest(self.held_max - self.held_max // 8, self.bytes_max // 8 * 7)

    def drop_oldest(self, count_goal: int, bytes_goal: int) -> int:
        """Drop the oldest reports until at most `count_goal` and `bytes_goal` are held, never
        the newest; return the bytes freed."""
        drop = max(0, len(self.reports) - count_goal)
        freed = sum(self.sizes[:drop])
        while self.held_bytes - freed > bytes_goal and drop < len(self.reports) - 1:
            freed += self.sizes[drop]
            drop += 1
        del self.reports[:drop], self.sizes[:drop]
        self.held_bytes -= freed
        self.first += drop
        return freed

    def since(self, index: int) -> Iterator[dict[str, Any]]:
        """Reports from `index` on (those still held), including any appended while iterating."""
        position = max(0, index - self.first)
        while position < len(self.reports):
            yield self.reports[position]
            position += 1


Delivery = tuple[str, dict[str, Any]]  # (broker, report)


def _reason(reason: Any) -> str:
    return str(reason.name.lower())


class Reports:
    """Order views, client order ids and report logs of every broker."""

    def __init__(
        self, account_brokers: Mapping[str, str], logs_bytes_max: int = REPORT_LOGS_BYTES_MAX
    ) -> None:
        self.account_brokers = dict(account_brokers)
        self.orders: dict[int, OrderView] = {}
        self.client_ids: dict[tuple[str, str], int] = {}  # (broker, client id) today
        self.logs: dict[str, ReportLog] = {}
        self.logs_bytes_max = logs_bytes_max  # every log together (REPORT_LOGS_BYTES_MAX)
        self.logs_bytes = 0
        self.open_orders: dict[str, int] = {}  # account -> orders not done (pending included)
        self.next_order_id = 1
        self.day = 0

    # ---- what the gateway asks ----

    def log(self, broker: str) -> ReportLog:
        log = self.logs.get(broker)
        if log is None:
            log = self.logs[broker] = ReportLog()
        return log

    def append(self, broker: str, report: dict[str, Any]) -> dict[str, Any]:
        """Append `report` to `broker`'s log, keeping every log together within
        `logs_bytes_max`: past it, the largest logs drop their oldest reports (each down to 7/8
        of what it held, never its newest) until all of them hold at most 7/8 of it."""
        log = self.log(broker)
        before = log.held_bytes
        log.append(report)
        self.logs_bytes += log.held_bytes - before
        if self.logs_bytes > self.logs_bytes_max:
            goal = self.logs_bytes_max // 8 * 7
            while self.logs_bytes > goal:
                droppable = [each for each in self.logs.values() if len(each.reports) > 1]
                if not droppable:  # every log holds its newest report only
                    break
                largest = max(droppable, key=lambda each: each.held_bytes)
                self.logs_bytes -= largest.drop_oldest(
                    len(largest.reports), largest.held_bytes // 8 * 7
                )
        return report

    def by_client_id(self, broker: str, client_order_id: str) -> OrderView | None:
        order_id = self.client_ids.get((broker, client_order_id))
        return None if order_id is None else self.orders.get(order_id)

    def open_of(self, broker: str) -> Iterator[OrderView]:
        return (o for o in self.orders.values() if o.broker == broker and o.is_open)

    def reserve(self, broker: str, place: Mapping[str, Any]) -> OrderView:
        """A new order the gateway is about to sequence (a parsed `place` request): its order
        id, its client order id taken."""
        order = OrderView(
            order_id=self.next_order_id,
            broker=broker,
            account=place["account"],
            symbol=place["symbol"],
            side=place["side"],
            kind=place["kind"],
            price=place.get("price"),
            quantity=place["quantity"],
            tif=place["tif"],
            client_order_id=place["client_order_id"],
        )
        self.next_order_id += 1
        self._track(order)
        return order

    def release(self, order: OrderView) -> None:
        """Undo `reserve` for an order the sequencer refused."""
        if self.orders.get(order.order_id) is order:
            del self.orders[order.order_id]
            self.client_ids.pop((order.broker, order.client_order_id), None)
            self._close(order)

    def lost(self, height: int, record: Mapping[str, Any]) -> Delivery:
        """An acknowledged order (its `place` command) that is in no block: it was lost on
        every copy, found by recovery at `height`. Its view says `lost` and keeps its client
        order id (a retry with it answers the lost order); its report goes to its broker."""
        order_id = int(record["order_id"])
        order = OrderView(
            order_id=order_id,
            broker=str(record["broker"]),
            account=str(record["account"]),
            symbol=str(record["symbol"]),
            side=str(record["side"]),
            kind=str(record["kind"]),
            price=record.get("price"),
            quantity=int(record["quantity"]),
            tif=str(record["tif"]),
            client_order_id=str(record.get("client_order_id", "")),
            status="lost",
        )
        self.next_order_id = max(self.next_order_id, order_id + 1)
        self.orders[order_id] = order
        if order.client_order_id:
            self.client_ids[(order.broker, order.client_order_id)] = order_id
        out: list[Delivery] = []
        self._report(out, height, order, "lost", {"reason": "lost_on_every_copy"})
        return out[0]

    # ---- folding blocks ----

    def apply(self, height: int, command: Any, events: list[Any]) -> list[Delivery]:
        """Fold one sequenced command (parsed; None if it did not parse) and its events; the
        reports to deliver, each already appended to its broker's log."""
        sender = ""
        if type(command) is BrokerCommand:
            sender = command.broker
            inner = command.command
            if type(inner) is PlaceOrder:
                self._placed(command.broker, inner, command.client_order_id)
        elif type(command) is BeginDay:
            self.day = command.day
        out: list[Delivery] = []
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                self._trade(height, event, out)
            elif kind is OrderAccepted:
                order = self.orders.get(event.order_id)
                if order is not None:
                    order.status, order.open = "new", event.quantity
                    self._report(out, height, order, "accepted")
            elif kind is OrderCancelled or kind is OrderExpired:
                order = self.orders.get(event.order_id)
                if order is not None:
                    order.open = 0
                    order.status = "cancelled" if kind is OrderCancelled else "expired"
                    self._close(order)
                    extra: dict[str, Any] = {"quantity": event.quantity}
                    if kind is OrderCancelled:
                        extra["reason"] = _reason(event.reason)
                    self._report(out, height, order, order.status, extra)
            elif kind is OrderReduced:
                order = self.orders.get(event.order_id)
                if order is not None:
                    order.open = event.remaining
                    extra = {"quantity": event.quantity, "reason": _reason(event.reason)}
                    self._report(out, height, order, "reduced", extra)
            elif kind is OrderAmended:
                order = self.orders.get(event.order_id)
                if order is not None:
                    order.price, order.open = event.price, event.quantity
                    order.quantity = order.filled + event.quantity
                    extra = {"priority_kept": event.priority_kept}
                    self._report(out, height, order, "amended", extra)
            elif kind is OrderRejected or kind is OrderUnfunded:
                self._rejected(out, height, event, command)
            elif kind is OrderRefused:
                self._refused(out, height, event, command)
            elif kind is CancelRejected or kind is AmendRejected:
                report = "cancel_rejected" if kind is CancelRejected else "amend_rejected"
                self._command_rejected(out, height, sender, event, report, _reason(event.reason))
            elif kind is DayBegun:
                self._new_day()
        return out

    def _new_day(self) -> None:
        """Done orders are forgotten and their client order ids free again; open orders (gtc,
        or sequenced but not yet in a block) keep theirs."""
        self.orders = {i: order for i, order in self.orders.items() if order.is_open}
        self.client_ids = {key: i for key, i in self.client_ids.items() if i in self.orders}

    def _placed(self, broker: str, place: PlaceOrder, client_order_id: str) -> None:
        """A place command in a block: known if the gateway reserved it, else (another feed,
        or replaying the store at start-up) its view starts here."""
        self.next_order_id = max(self.next_order_id, place.order_id + 1)
        if place.order_id in self.orders:
            return
        order = OrderView(
            order_id=place.order_id,
            broker=broker,
            account=place.account,
            symbol=place.symbol,
            side=place.side.name.lower(),
            kind=place.kind.name.lower(),
            price=place.price,
            quantity=place.quantity,
            tif=place.tif.name.lower(),
            client_order_id=client_order_id,
        )
        self._track(order)

    def _track(self, order: OrderView) -> None:
        self.orders[order.order_id] = order
        if order.client_order_id:
            self.client_ids[(order.broker, order.client_order_id)] = order.order_id
        self.open_orders[order.account] = self.open_orders.get(order.account, 0) + 1

    def _close(self, order: OrderView) -> None:
        left = self.open_orders.get(order.account, 0) - 1
        if left > 0:
            self.open_orders[order.account] = left
        else:
            self.open_orders.pop(order.account, None)

    def _trade(self, height: int, trade: TradeExecuted, out: list[Delivery]) -> None:
        for order_id, side in ((trade.buy_order_id, Side.BUY), (trade.sell_order_id, Side.SELL)):
            order = self.orders.get(order_id)
            if order is None:
                continue
            order.filled += trade.quantity
            order.open = max(0, order.open - trade.quantity)
            if order.open == 0 and order.filled >= order.quantity:
                order.status = "filled"
                self._close(order)
            elif order.status != "filled":
                order.status = "partially_filled"
            liquidity = (
                "auction"
                if trade.aggressor is None
                else ("taker" if trade.aggressor is side else "maker")
            )
            extra = {
                "trade_id": trade.trade_id,
                "price": trade.price,
                "quantity": trade.quantity,
                "liquidity": liquidity,
            }
            self._report(out, height, order, "trade", extra)

    def _rejected(
        self, out: list[Delivery], height: int, event: OrderRejected | OrderUnfunded, command: Any
    ) -> None:
        order = self.orders.get(event.order_id)
        if order is None or order.status != "pending_new":
            return
        order.status, order.open = "rejected", 0
        self._close(order)
        if type(event) is OrderUnfunded:
            message = (
                f"account {event.account} needs {event.required} {event.asset}, "
                f"{event.available} available"
            )
            extra = {"reason": _reason(event.reason), "message": message}
        else:
            extra = {"reason": _reason(event.reason)}
        self._report(out, height, order, "rejected", extra)

    def _refused(self, out: list[Delivery], height: int, event: OrderRefused, command: Any) -> None:
        if event.command == "place":
            order = self.orders.get(event.order_id)
            if order is not None and order.status == "pending_new" and order.broker == event.broker:
                order.status, order.open = "rejected", 0
                self._close(order)
                self._report(out, height, order, "rejected", {"reason": _reason(event.reason)})
            return
        report = "cancel_rejected" if event.command == "cancel" else "amend_rejected"
        self._command_rejected(out, height, event.broker, event, report, _reason(event.reason))

    def _command_rejected(
        self, out: list[Delivery], height: int, broker: str, event: Any, report: str, reason: str
    ) -> None:
        order = self.orders.get(event.order_id)
        if order is not None and order.broker == broker:
            self._report(out, height, order, report, {"reason": reason})
        elif broker:  # an order the broker does not own or that does not exist
            data = {"report": report, "height": height, "order_id": event.order_id,
                    "symbol": event.symbol, "reason": reason}  # fmt: skip
            out.append((broker, self.append(broker, {"type": "report", **data})))

    def _report(
        self,
        out: list[Delivery],
        height: int,
        order: OrderView,
        kind: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        order.height = height
        report = {"type": "report", "report": kind, "height": height, **order.to_dict()}
        if extra:
            report.update(extra)
        out.append((order.broker, self.append(order.broker, report)))
