"""The reports and market-data pump: stored blocks into execution reports, answers and public
market data; certificates into `final` notices; a broker's `replay` and the `subscribe`
requests.

The exchange's machine hands every executed command and its events to `observe`. When a
block is stored, the exchange's `reports` task (after the cutter has proposed it and gone on;
block by block, in order; docs/ledger.md, "The exchange's pipeline") calls `stored`: the
block's commands are folded into execution reports (`exchange.gateway.broker_reports`,
numbered per broker, replayable from any index) and market data
(`exchange.gateway.market_data`), after the orders about to be acknowledged are journalled
(`exchange.gateway.order_entry`). Start-up rebuilds all of it by replaying the exchange's
store (`rebuild`); the end of recovery reports the orders lost on every copy (`recovered`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any, Final

import aiohttp
import orjson

from exchange.gateway import api
from exchange.gateway.api import ApiError, Request
from exchange.gateway.order_entry import Executed, OrderEntry
from exchange.gateway.session import Session
from exchange.gateway.state import GatewayState
from ledger.block import Block, QuorumCertificate
from ledger.node import describe
from matching.events import TradeExecuted

log = logging.getLogger("jinlian.gateway")

BLOCKS_AWAITING_MAX: Final = 10_000  # blocks with reports whose finality notice is pending


class ReportPump:
    """Stored blocks and certificates into reports, answers, market data and notices."""

    def __init__(self, state: GatewayState, orders: OrderEntry) -> None:
        self.state = state
        self.orders = orders
        self.executed: Executed = []  # since the last stored block
        self.block_brokers: dict[int, set[str]] = {}  # height -> brokers with reports in it
        self.lost_orders = 0  # acknowledged, then lost on every copy (`ack_journal`)
        self.lost_after: dict[int, list[dict[str, Any]]] = {}  # height -> their lost orders

    def observe(self, command: Any, parsed: Any, events: list[Any]) -> None:
        """The exchange machine's hook: a command it executed, with its events."""
        self.executed.append((command, parsed, events))

    # ---- start-up and recovery ----

    def rebuild(self) -> None:
        """Fold what the store replayed into reports, block by block, sending nothing."""
        state = self.state
        assert state.node is not None
        store = state.node.proposer.store
        executed, self.executed = self.executed, []
        position = 0
        lost = state.journal.lost()  # each goes after the block it was lost after
        self.lost_orders = len(lost)
        for record in lost:
            self.lost_after.setdefault(record["after_height"], []).append(record)
        self.lose(0)
        for height in range(1, state.node.proposer.height + 1):
            header = store.header(height)
            assert header is not None, f"stored height {height} has no header"
            for _, parsed, events in executed[position : position + header.command_count]:
                state.reports.apply(height, parsed, events)
            position += header.command_count
            self.lose(height)
        assert position == len(executed), "replayed commands do not add up to the stored blocks"
        state.reports.next_order_id = max(
            state.reports.next_order_id, state.journal.max_order_id() + 1
        )

    def recovered(self) -> None:
        """Recovery is over: the journalled orders above the recovered tip were lost on every
        copy. Each is reported `lost` to its broker."""
        assert self.state.node is not None
        height = self.state.node.proposer.height
        lost = self.state.journal.settle(height)
        if lost:
            log.warning("orders lost on every copy: %s", [r["order_id"] for r in lost])
            self.lost_orders += len(lost)
            self.lost_after.setdefault(height, []).extend(lost)
            for broker, report in self.lose(height):
                self.deliver(broker, report)

    def lose(self, height: int) -> list[tuple[str, dict[str, Any]]]:
        """The `lost` reports that go after the block at `height` (a lost store's tail may
        hold blocks after which earlier recoveries put some: they come back by recovery)."""
        records = self.lost_after.pop(height, None) if self.lost_after else None
        return [self.state.reports.lost(height, record) for record in records or ()]

    # ---- blocks ----

    def stored(self, block: Block) -> Awaitable[None] | None:
        """A block is stored (called by the exchange's reports task, after the cutter has
        proposed it; later blocks may be stored already): answer its requests, send its
        reports and market data. The orders about to be acknowledged are journalled first,
        in a worker thread (the fsync blocks neither the event loop nor the cutter): the
        awaitable returned is that write, then the rest."""
        height = block.header.height
        count = len(block.commands)
        if len(self.executed) == count:
            executed, self.executed = self.executed, []
        else:  # the executed commands of the later stored blocks follow, in order
            executed = self.executed[:count]
            del self.executed[:count]
        assert len(executed) == count, "executed commands are not the block's"
        orders = self.orders
        if orders.awaiting and height > orders.journalled_height:  # durable before any ack
            group, through = orders.to_journal(height, executed, self.executed)
            if group:
                return self._journalled(group, through, executed)
        self.fold(height, executed)
        return None

    async def _journalled(
        self, group: list[tuple[int, list[dict[str, Any]]]], through: int, executed: Executed
    ) -> None:
        await self.orders.journal(group, through)
        self.fold(group[0][0], executed)

    def fold(self, height: int, executed: Executed) -> None:
        """Fold a stored block's commands into reports and market data, and send them."""
        state = self.state
        assert state.market is not None
        symbols: set[str] = set()
        trades: list[TradeExecuted] = []
        touched: set[str] = set()
        awaiting, answer = self.orders.awaiting, self.orders.answer
        for command, parsed, events in executed:
            deliveries = state.reports.apply(height, parsed, events)
            waiting = awaiting.pop(id(command), None) if awaiting else None
            if waiting is not None:
                answer(waiting[1], height, events, deliveries)
            for broker, report in deliveries:
                touched.add(broker)
                self.deliver(broker, report)
            state.counters["reports"] += len(deliveries)
            symbol = command.get("symbol") if isinstance(command, dict) else None
            if isinstance(symbol, str):
                symbols.add(symbol)
            for event in events:
                if type(event) is TradeExecuted:
                    trades.append(event)
                    symbols.add(event.symbol)
        for broker, report in self.lose(height):
            self.deliver(broker, report)
        if touched:
            self.block_brokers[height] = touched
            if len(self.block_brokers) > BLOCKS_AWAITING_MAX:  # certificates lost for good
                del self.block_brokers[min(self.block_brokers)]
        messages = state.market.block(symbols, trades)  # kept current for later snapshots
        for listener in state.market_listeners:
            listener(messages)
        if state.sessions:
            self.publish(messages)

    def deliver(self, broker: str, report: dict[str, Any]) -> None:
        answered = report.pop("_answered", None)
        data = None
        for session in self.state.sessions.values():
            if session.broker == broker and session.reports_live and session.id != answered:
                data = data or orjson.dumps(report)
                session.send_bytes(data)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        sessions = self.state.sessions
        for message in messages:
            key = (message["type"], message["symbol"])  # the channel is the message type
            data = None
            for session in sessions.values():
                if key in session.subscriptions:
                    data = data or orjson.dumps(message)
                    session.send_bytes(data)

    def final(self, certificate: QuorumCertificate) -> Awaitable[None] | None:
        """A certificate formed (after its block's reports: the reports task keeps the
        order): a `final` notice to the brokers with reports in it; the journal forgets the
        final blocks' orders (a write with an fsync, in a worker thread, every PRUNE_BLOCKS)."""
        self.notify_final(certificate)
        journal = self.state.journal
        if journal.prune_due(certificate.height):
            return asyncio.to_thread(journal.prune, certificate.height)
        return None

    def notify_final(self, certificate: QuorumCertificate) -> None:
        brokers = self.block_brokers.pop(certificate.height, None)
        if not brokers:
            return
        notice = orjson.dumps({"type": "final", "height": certificate.height,
                               "header_hash": certificate.header_hash.hex(),
                               "certificate": certificate.to_dict()})  # fmt: skip
        for session in self.state.sessions.values():
            if session.broker in brokers:
                session.send_bytes(notice)

    # ---- replay and subscriptions ----

    def replay(self, session: Session, request: Request) -> ApiError | None:
        assert session.broker is not None
        report_log = self.state.reports.log(session.broker)
        start = request.args["from"]
        if start < report_log.first:
            return ApiError(api.REPLAY_GONE, f"report {start} is no longer held; the earliest "
                            f"is {report_log.first}", "from")  # fmt: skip
        session.reports_live = False
        assert self.state.node is not None
        self.state.node.spawn(self._stream(session, request.request, start), "replay",
                              partial(self._replay_failed, session, request.request))  # fmt: skip
        return None

    def _replay_failed(self, session: Session, request: Any, error: BaseException) -> None:
        """The replay stream died: answer the replay with an error and close the session
        (code 1011): its reports have a gap, which a new session's replay fills."""
        message = f"the replay failed: {describe(error)}"[:300]
        self.state.error(session, request, ApiError(api.UNAVAILABLE, message, "from"))
        session.close_code = aiohttp.WSCloseCode.INTERNAL_ERROR
        session.closing = session.closing or "replay failed"
        session.wake.set()

    async def _stream(self, session: Session, request: Any, start: int) -> None:
        """Replay reports from `start` at the pace the session drains them, then go live."""
        report_log = self.state.reports.log(session.broker or "")
        index = start
        limits = self.state.limits
        while session.closing is None:  # fill the outbox to half its limits, wait, go on
            for report in report_log.since(index):
                session.fault.point("replay")
                session.send({**report, "replayed": True})
                index = report["index"] + 1
                if (session.outbox_bytes >= limits.backlog_bytes_max // 2
                        or len(session.outbox) >= limits.backlog_max // 2):  # fmt: skip
                    break
            if index >= report_log.next_index:
                session.reports_live = True  # atomically: nothing appended since the check
                # from past the end: nothing was replayed, and the next report is the log's
                session.send({"type": "replayed", "request": request, "from": start,
                              "next": report_log.next_index})  # fmt: skip
                return
            await session.drained()

    def subscribe(self, session: Session, request: Request) -> ApiError | None:
        """`subscribe` and `unsubscribe`: a public market-data channel of one symbol."""
        market = self.state.market
        assert market is not None
        channel, symbol = request.args["channel"], request.args["symbol"]
        if symbol not in market.published:
            return ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed", "symbol")
        key = (channel, symbol)
        if request.type == "unsubscribe":
            session.subscriptions.discard(key)
            session.send({"type": "unsubscribed", "request": request.request,
                          "channel": channel, "symbol": symbol})  # fmt: skip
            return None
        from_seq = request.args.get("from_seq")
        missed = None if from_seq is None else market.trades_since(symbol, from_seq)
        if from_seq is not None and missed is None:
            return ApiError(api.REPLAY_GONE, f"trades of {symbol} from seq {from_seq} are no "
                            "longer held", "from_seq")  # fmt: skip
        session.subscriptions.add(key)
        subscribed = {"type": "subscribed", "request": request.request, "channel": channel,
                      "symbol": symbol}  # fmt: skip
        if channel in ("bbo", "trades"):  # the last seq sent: the next message has seq + 1
            subscribed["seq"] = market.seq(symbol, channel)
        session.send(subscribed)
        for message in missed or ():
            session.send(message)
        first = market.snapshot(symbol) if channel == "book" else market.current(symbol, channel)
        if first is not None:
            session.send(first)
        return None
