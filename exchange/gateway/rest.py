"""The gateway's REST handlers: `/instruments`, `/book/{symbol}`, `/health`, `/metrics`
(Prometheus text) are public; `/block/{height}` is for members and `/receipt/{trade_id}` for
the trade's parties' brokers and members, each caller proving who it is with a `ledger.auth`
Authorization header (docs/api.md, "Access"). `receipt` is the one access rule for receipts,
over REST and over the WebSocket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web
from prometheus_client.core import Metric

from exchange.console.metrics import Figure, member_figures, metric_family, supervision_figures
from exchange.consortium.audit import find_trade, trade_in
from exchange.gateway import api
from exchange.gateway.api import ApiError, Request
from exchange.gateway.session import Session
from exchange.gateway.state import GatewayState
from ledger import auth
from ledger.genesis import Member
from ledger.keys import PublicKey
from ledger.receipt import ReceiptError, build_receipt
from ledger.store import StoreError

if TYPE_CHECKING:
    from exchange.gateway.order_entry import OrderEntry
    from exchange.gateway.report_pump import ReportPump
    from exchange.gateway.sessions import Sessions

_RECEIPT_STATUS: Final = {api.UNKNOWN_TRADE: 404, api.NOT_YOUR_TRADE: 403, api.NOT_FINAL: 409}
# per voting member in /health's "members"
HEALTH_MEMBER_FIELDS: Final = (
    "connected", "authenticated", "last_vote_height", "last_vote_age_ms", "auth_error",
    "clock_offset_ms", "silent_redials",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated REST caller: a member (`member` set) or a broker."""

    identity: str
    member: Member | None


class Rest:
    """The REST handlers, health and metrics; the receipt access rule."""

    def __init__(
        self, state: GatewayState, sessions: Sessions, orders: OrderEntry, pump: ReportPump
    ) -> None:
        self.state = state
        self.sessions = sessions  # logon clock offsets, for /health
        self.orders = orders  # recent orders, for /metrics
        self.pump = pump  # lost orders, for /health
        # who may call the endpoints that are not public
        genesis = state.genesis
        self.member_keys: dict[str, PublicKey] = {m.name: m.public_key for m in genesis.members}
        self.broker_keys: dict[str, PublicKey] = {b.name: b.public_key for b in genesis.brokers}

    async def on_instruments(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        assert state.machine is not None and state.market is not None
        venue = state.machine.venue
        rows = []
        for instrument in state.genesis.instruments:
            symbol = str(instrument["symbol"])
            book = venue.matching.book(symbol)
            rows.append({**instrument, "phase": book.phase.name.lower(),
                         "lower_limit": book.lower_limit,
                         "upper_limit": book.upper_limit})  # fmt: skip
        return json_response({"instruments": rows})

    async def on_book(self, request: web.Request) -> web.StreamResponse:
        market = self.state.market
        assert market is not None
        symbol = request.match_info["symbol"]
        if symbol not in market.published:
            return error_response(
                404, ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed")
            )
        return json_response(market.snapshot(symbol))

    def _caller(self, request: web.Request) -> Caller | web.Response:
        """Who signed `request` (`ledger.auth`, against the genesis keys, within the logon
        window of the injected clock), or the 401 answer naming what was wrong."""
        state = self.state
        header, now_ns = request.headers.get("Authorization"), state.clock()
        found: list[str | auth.AuthError] = []
        for keys in (self.member_keys, self.broker_keys):  # a name may be both (two keys)
            found.append(auth.authenticate(
                header, chain_id=state.genesis.chain_id, keys=keys, method=request.method,
                path=request.raw_path, now_ns=now_ns,
                window_ns=state.limits.logon_window_ms * 1_000_000))  # fmt: skip
            if isinstance(found[-1], str):
                member = state.members[found[-1]] if keys is self.member_keys else None
                return Caller(found[-1], member)
        error = found[0]  # the member check's reason, unless the name is only a broker's
        assert isinstance(error, auth.AuthError) and isinstance(found[1], auth.AuthError)
        if error.code == auth.UNKNOWN_IDENTITY:
            error = found[1]
        response = error_response(401, ApiError(error.code, error.message, "Authorization"))
        response.headers["WWW-Authenticate"] = (
            f'{auth.SCHEME} realm="{state.genesis.chain_id}", {auth.TOKEN_SCHEME}'
        )
        return response

    async def on_block(self, request: web.Request) -> web.StreamResponse:
        """Members only: a block holds every broker's commands (see docs/api.md, Access)."""
        assert self.state.node is not None
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        text = request.match_info["height"]
        if caller.member is None:
            return error_response(403, ApiError(api.NOT_ALLOWED, f"broker {caller.identity} may "
                                  f"not read block {text!r:.40}: blocks are for members; use "
                                  "reports and receipts", "Authorization"))  # fmt: skip
        height = _positive(text)
        store = self.state.node.proposer.store
        block = None if height is None else store.block(height)
        if block is None:
            return error_response(
                404, ApiError("unknown_block", f"no block {text!r:.40}", "height")
            )
        certificate = store.certificate(block.header.height)
        return json_response(
            {
                "block": block.to_dict(),
                "certificate": None if certificate is None else certificate.to_dict(),
            }
        )

    async def on_receipt(self, request: web.Request) -> web.StreamResponse:
        """The parties' brokers and members, as the WebSocket `receipt` (one rule: `receipt`)."""
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        trade_id = _positive(request.match_info["trade_id"])
        if trade_id is None:
            return error_response(400, ApiError(api.INVALID_FIELD, "trade_id must be a positive "
                                  f"integer, got {request.match_info['trade_id']!r:.40}",
                                  "trade_id"))  # fmt: skip
        receipt = self.receipt(trade_id, None if caller.member else caller.identity)
        if isinstance(receipt, ApiError):
            return error_response(_RECEIPT_STATUS.get(receipt.code, 409), receipt)
        return json_response(receipt)

    def receipt_request(self, session: Session, request: Request) -> ApiError | None:
        """The WebSocket `receipt` request."""
        receipt = self.receipt(request.args["trade_id"], session.broker)
        if isinstance(receipt, ApiError):
            return receipt
        session.send({"type": "receipt", "request": request.request, "receipt": receipt})
        return None

    def receipt(self, trade_id: int, broker: str | None) -> dict[str, Any] | ApiError:
        """The trade's receipt (`ledger.receipt`), for a party to it (`broker` None: a
        member, who may read any). The one access rule for receipts, WebSocket and REST."""
        assert self.state.node is not None
        store = self.state.node.proposer.store
        accounts = self.state.accounts
        try:
            where = find_trade(store, trade_id)
            if where is None:
                return ApiError(api.UNKNOWN_TRADE, f"no trade {trade_id}", "trade_id")
            receipt = build_receipt(store, *where)  # the receipt of the command that traded
            event = trade_in(receipt["leaf"], trade_id)
            if event is None:
                return ApiError(api.UNKNOWN_TRADE, f"no trade {trade_id} in its receipt",
                                "trade_id")  # fmt: skip
            parties = {accounts.get(event["buy_account"]), accounts.get(event["sell_account"])}
            if broker is not None and broker not in parties:
                return ApiError(api.NOT_YOUR_TRADE, f"trade {trade_id} is not a trade of "
                                f"{broker}", "trade_id")  # fmt: skip
            return {**receipt, "trade_id": trade_id}
        except ReceiptError as error:
            return ApiError(api.NOT_FINAL, str(error), "trade_id")
        except StoreError as error:
            return ApiError(api.UNKNOWN_TRADE, str(error), "trade_id")

    def health(self) -> dict[str, Any]:
        state = self.state
        assert state.node is not None
        proposer = state.node.proposer
        supervision = state.node.health()  # `failed` (with the failed task) beats the rest
        failed = supervision["status"] == "failed"
        members = state.node.peer_status()
        clock = self.clock_health(members)
        status = "recovering" if proposer.recovering else "degraded" if proposer.degraded else "ok"
        if clock["exchange_clock_suspect"]:  # the likely cause: members refuse our signed fetches
            status = "clock_skew"
        return {
            "status": "failed" if failed else status,
            "lost_orders": self.pump.lost_orders,
            "height": proposer.height,
            "certified": proposer.certified,
            "lag": proposer.lag,
            "members_connected": len(state.node.links),
            "members": {
                name: {field: peer[field] for field in HEALTH_MEMBER_FIELDS}
                for name, peer in members.items()
            },
            "clock": clock,
            "sessions": len(state.sessions),
            "failure": supervision["failure"],
            "task_failures": supervision["task_failures"],
        }

    def clock_health(self, members: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Whose clock is further from ours than the logon window (members: from the peer-link
        handshake; brokers and members: from their last signed logon), in ms. When a quorum of
        members is, ours is the likely wrong one: every logon would be refused for its time."""
        window_ms = self.state.limits.logon_window_ms
        skewed: dict[str, int] = {}
        for name, offset_ns in self.sessions.logon_clock_offsets_ns.items():
            if abs(offset_ns) > window_ms * 10**6:
                skewed[name] = offset_ns // 10**6
        for name, peer in members.items():
            offset_ms = peer["clock_offset_ms"]
            if offset_ms is not None and abs(offset_ms) > window_ms:
                skewed[name] = offset_ms
        suspect = sum(name in skewed for name in members) >= self.state.genesis.quorum()
        return {"window_ms": window_ms, "skewed_ms": skewed, "exchange_clock_suspect": suspect}

    async def on_health(self, request: web.Request) -> web.StreamResponse:
        health = self.health()
        return json_response(health, 200 if health["status"] == "ok" else 503)

    def figures(self) -> Iterator[Metric]:
        """The exchange's figures for `/metrics` (`exchange.console.metrics`), read at scrape
        time; the latency histograms are observed as they happen."""
        state = self.state
        assert state.node is not None
        proposer, counters = state.node.proposer, state.counters
        now = time.monotonic()
        recent = sum(1 for t in self.orders.order_times if t > now - 10.0) / 10.0
        finality = state.node.finality
        figures: list[Figure] = [
            ("jinlian_orders_total", "counter", "orders accepted for sequencing",
             counters["orders"]),
            ("jinlian_orders_per_second", "gauge", "orders sequenced per second, last 10 s",
             recent),
            ("jinlian_blocks_total", "counter", "blocks stored", proposer.height),
            ("jinlian_certified_height", "gauge", "highest final block", proposer.certified),
            ("jinlian_finality_lag_blocks", "gauge", "stored blocks not yet final", proposer.lag),
            ("jinlian_finality_p99_ms", "gauge", "sequencing-to-certificate latency p99",
             finality.percentile(0.99) or 0),
            ("jinlian_degraded", "gauge", "1 while refusing orders", int(proposer.degraded)),
            ("jinlian_sessions", "gauge", "open broker and member sessions", len(state.sessions)),
            ("jinlian_reports_total", "counter", "execution reports sent", counters["reports"]),
            ("jinlian_errors_total", "counter", "requests answered with an error",
             counters["errors"]),
            ("jinlian_logons_total", "counter", "successful logons", counters["logons"]),
            ("jinlian_rejected_logons_total", "counter", "failed logons",
             counters["rejected_logons"]),
        ]  # fmt: skip
        yield from (metric_family(*figure) for figure in figures)
        yield from supervision_figures(state.node)
        yield from member_figures(state.node.peer_status())

    async def on_metrics(self, request: web.Request) -> web.StreamResponse:
        return await self.state.metrics.on_metrics(request)


def _positive(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) <= 18 and int(text) > 0 else None


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def error_response(status: int, error: ApiError) -> web.Response:
    return json_response(error.to_dict(), status)
