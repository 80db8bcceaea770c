"""The web console: served by the exchange and by every member node, under `/console/`.

`mount_console` adds it to a node's aiohttp application before the node starts (the same
process and port, its own route prefix). Pages (docs/console.md):

- `/console/` the index; `/console/health` the node's health (JSON: `/console/api/health`);
- on the exchange, `/console/market?symbol=S`: book, tape, phase and auction indicative,
  price chart, live over `/console/market/ws` (`exchange.console.live`);
- the ledger explorer and the holdings pages (`exchange.console.explorer`), for the member
  whose node it is, logged in with a token (`jinlian token`).

Every query parameter is validated (`ConsoleError`: an error page with the status, a stable
code and a message naming the value); the scripts and styles are files of the package
(`static/`), and the pages load nothing from anywhere else (Content-Security-Policy).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from exchange.console.live import MarketViewers
from exchange.console.pages import Raw, error_page, layout, table, text
from exchange.gateway.server import Gateway
from ledger.genesis import Genesis
from ledger.node import ExchangeNode, ReplicaNode

STATIC: Final = Path(__file__).parent / "static"
TAPE_ROWS: Final = 50  # trades on the tape as the page loads
CHART_TRADES_MAX: Final = 2_000  # trades of the day sent for the price chart
BOOK_ROWS: Final = 10
QUERY_TEXT_MAX: Final = 80  # longest query value echoed back in an error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsoleError(Exception):
    """A request the console refuses: its status, a stable code, a message naming the value."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def query_int(request: web.Request, name: str, *, default: int | None, low: int, high: int) -> int:
    """The integer query parameter `name` in low..high (`default` if absent and not None)."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise ConsoleError(400, "missing_parameter", f"the query parameter {name} is needed")
        return default
    if not raw.isdigit() or len(raw) > 18 or not low <= int(raw) <= high:
        raise ConsoleError(400, "invalid_parameter", f"{name} {raw[:QUERY_TEXT_MAX]!r} is not "
                           f"an integer in {low}..{high}")  # fmt: skip
    return int(raw)


def check_parameters(request: web.Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ConsoleError(400, "unknown_parameter", f"unknown query parameter "
                           f"{unknown[0][:QUERY_TEXT_MAX]!r} (this page takes "
                           f"{', '.join(sorted(allowed)) or 'none'})")  # fmt: skip


class Console:
    """The console of one node: the exchange (with its gateway) or a member."""

    def __init__(self, node: ExchangeNode | ReplicaNode, gateway: Gateway | None = None) -> None:
        self.node = node
        self.gateway = gateway
        self.genesis: Genesis = node.genesis
        member = self.genesis.member(node.member_id)
        assert member is not None, node.member_id
        self.member = member
        self.viewers: MarketViewers | None = None
        self.app = web.Application(middlewares=[self._errors])
        router = self.app.router
        router.add_get("/", self.on_index)
        router.add_get("/health", self.on_health)
        router.add_get("/api/health", self.on_health_json)
        router.add_static("/static/", STATIC, append_version=False)
        if gateway is not None:
            router.add_get("/market", self.on_market)
            router.add_get("/market/ws", self.on_market_socket)
        self.extensions: list[str] = []  # nav entries added by the explorer

    @property
    def name(self) -> str:
        return self.member.name

    def nav(self) -> list[tuple[str, str]]:
        entries = [("/", "Console")]
        if self.gateway is not None:
            entries.append(("/market", "Market"))
        entries.append(("/health", "Health"))
        return entries + [(path, label) for path, label in _pairs(self.extensions)]

    def page(self, title: str, body: str, **options: Any) -> web.Response:
        return layout(title, body, node=self.name, nav=self.nav(), **options)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ConsoleError as error:
            return error_page(error.status, error.code, error.message, node=self.name)
        except web.HTTPNotFound:
            if request.path.startswith("/console/static/"):
                raise
            return error_page(404, "not_found", f"no console page {request.path[:120]!r}",
                              node=self.name)  # fmt: skip

    # ---- pages ----

    async def on_index(self, request: web.Request) -> web.StreamResponse:
        check_parameters(request, frozenset())
        genesis = self.genesis
        rows = [
            ("node", self.name),
            ("role", self.member.role.name.lower()),
            ("chain", genesis.chain_id),
            ("genesis hash", Raw(f'<code id="genesis-hash">{genesis.hash.hex()}</code>')),
        ]
        links = "".join(
            f'<li><a href="/console{text(path)}">{text(label)}</a></li>' for path, label in
            self.nav()[1:]
        )  # fmt: skip
        body = table(("", ""), rows) + f'<ul class="pages">{links}</ul>'
        return self.page("Console", body)

    # ---- market ----

    def _market(self) -> Any:
        assert self.gateway is not None
        market = self.gateway.market
        assert market is not None, "the gateway is attached before the console mounts"
        return market

    async def on_market(self, request: web.Request) -> web.StreamResponse:
        check_parameters(request, frozenset({"symbol"}))
        market = self._market()
        symbols = sorted(market.published)
        symbol = request.query.get("symbol", symbols[0] if symbols else "")
        if symbol not in market.published:
            raise ConsoleError(404, "unknown_symbol", f"symbol {symbol[:QUERY_TEXT_MAX]!r} is "
                               f"not listed (listed: {', '.join(symbols)})")  # fmt: skip
        data = self.market_data(symbol)
        return self.page(f"Market {symbol}", _market_body(symbol, symbols, data),
                         scripts=["market.js"], data=data)  # fmt: skip

    def market_data(self, symbol: str) -> dict[str, Any]:
        """What the market page starts from: the instrument, its book, bbo, phase, trades."""
        market = self._market()
        instrument = next(i for i in self.genesis.instruments if i["symbol"] == symbol)
        held = market.published[symbol].trades
        trades: list[dict[str, Any]] = []
        for message in reversed(held):
            trades[:0] = message["trades"]
            if len(trades) >= CHART_TRADES_MAX:
                break
        assert self.gateway is not None and self.gateway.machine is not None
        book = self.gateway.machine.venue.matching.book(symbol)
        return {
            "symbol": symbol,
            "instrument": instrument,
            "limits": [book.lower_limit, book.upper_limit],
            "book": market.snapshot(symbol),
            "bbo": market.current(symbol, "bbo"),
            "phase": market.current(symbol, "phase"),
            "trades": trades[-CHART_TRADES_MAX:],
            "trades_seq": market.seq(symbol, "trades"),
        }

    async def on_market_socket(self, request: web.Request) -> web.StreamResponse:
        assert self.viewers is not None
        return await self.viewers.on_socket(request)

    # ---- health ----

    def health(self) -> dict[str, Any]:
        """The node's health: heights, lag, state, each member's link, the metrics' figures."""
        node = self.node
        now_ms = time.time_ns() // 10**6
        if isinstance(node, ExchangeNode):
            assert self.gateway is not None
            health = self.gateway.health()
            figures = self.gateway.state.metrics.figures()
            return {
                "node": self.name, "role": "exchange", "time_ms": now_ms,
                "status": health["status"], "height": health["height"],
                "certified": health["certified"], "lag": health["lag"],
                "degraded": node.proposer.degraded, "members": health["members"],
                "sessions": health["sessions"], "failure": health["failure"],
                "finality_p50_ms": node.finality.percentile(0.5),
                "finality_p99_ms": node.finality.percentile(0.99),
                "finality_count": figures.get("jinlian_finality_seconds_count", 0),
                "finality_sum_s": figures.get("jinlian_finality_seconds_sum", 0),
                "ack_count": figures.get("jinlian_ack_seconds_count", 0),
                "ack_sum_s": figures.get("jinlian_ack_seconds_sum", 0),
            }  # fmt: skip
        status = node.status()
        supervision = node.health()
        return {
            "node": self.name, "role": self.member.role.name.lower(), "time_ms": now_ms,
            "status": supervision["status"], "height": status["height"],
            "certified": status["certified"], "lag": status["height"] - status["certified"],
            "degraded": False, "members": {},
            "exchange_connected": status["exchange_connected"],
            "indexed": status["indexed"], "evidence": status["evidence"],
            "failure": supervision["failure"],
        }  # fmt: skip

    async def on_health_json(self, request: web.Request) -> web.StreamResponse:
        check_parameters(request, frozenset())
        return web.json_response(self.health())

    async def on_health(self, request: web.Request) -> web.StreamResponse:
        check_parameters(request, frozenset())
        health = self.health()
        return self.page("Health", _health_body(health), scripts=["health.js"], data=health)


def _pairs(flat: list[str]) -> list[tuple[str, str]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def _market_body(symbol: str, symbols: list[str], data: dict[str, Any]) -> str:
    picker = " ".join(
        f'<a href="/console/market?symbol={text(s)}"{" class=current" if s == symbol else ""}>'
        f"{text(s)}</a>"
        for s in symbols
    )
    book = data["book"]
    bids, asks = book["bids"][:BOOK_ROWS], book["asks"][:BOOK_ROWS]
    rows = [
        (bids[i][1] if i < len(bids) else "", bids[i][0] if i < len(bids) else "",
         asks[i][0] if i < len(asks) else "", asks[i][1] if i < len(asks) else "")
        for i in range(max(len(bids), len(asks)))
    ]  # fmt: skip
    phase = data["phase"] or {}
    tape = [
        (t["trade_id"], t["price"], t["quantity"], t["aggressor"] or "")
        for t in reversed(data["trades"][-TAPE_ROWS:])
    ]
    indicative = phase.get("indicative_price")
    return (
        f'<p class="symbols">{picker}</p>'
        f'<p>Phase <strong id="phase">{text(phase.get("phase", ""))}</strong>'
        f' · indicative <span id="indicative">{text("" if indicative is None else indicative)}'
        f' for {text(phase.get("indicative_volume", 0))}</span>'
        f' · limits {text(data["limits"][0])}..{text(data["limits"][1])}'
        f' · feed <span id="feed" data-state="loading">connecting</span>'
        f' · checksum <span id="checksum" data-state="unchecked">'
        f'{text(book["checksum"])}</span></p>'
        '<div class="columns"><section><h2>Book</h2>'
        + table(("bid qty", "bid", "ask", "ask qty"), rows, id_="book")
        + '</section><section><h2>Trades</h2>'
        + table(("trade", "price", "qty", "aggressor"), tape, id_="tape")
        + '</section></div><h2>Price</h2><canvas id="chart" width="900" height="220"></canvas>'
    )  # fmt: skip


def _health_body(health: dict[str, Any]) -> str:
    rows = [
        ("status", Raw(f'<span id="status">{text(health["status"])}</span>')),
        ("height", Raw(f'<span id="height">{text(health["height"])}</span>')),
        ("certified height", Raw(f'<span id="certified">{text(health["certified"])}</span>')),
        ("lag (blocks)", Raw(f'<span id="lag">{text(health["lag"])}</span>')),
        ("degraded", Raw(f'<span id="degraded">{text(health["degraded"])}</span>')),
    ]
    if health.get("finality_p99_ms") is not None or health["role"] == "exchange":
        rows.append(("finality p50 / p99 (ms)", Raw(
            f'<span id="finality">{text(health.get("finality_p50_ms"))} / '
            f'{text(health.get("finality_p99_ms"))}</span>')))  # fmt: skip
    if "exchange_connected" in health:
        rows.append(("exchange connected", health["exchange_connected"]))
        rows.append(("indexed up to", health["indexed"]))
        rows.append(("evidence records", health["evidence"]))
    members = [
        (name, m["connected"], m["authenticated"], m["last_vote_height"],
         m["last_vote_age_ms"], m["clock_offset_ms"], m["auth_error"] or "")
        for name, m in health["members"].items()
    ]  # fmt: skip
    body = table(("", ""), rows)
    if members:
        body += "<h2>Members</h2>" + table(
            ("member", "connected", "authenticated", "last vote", "vote age ms",
             "clock offset ms", "auth error"), members, id_="members")  # fmt: skip
    return body + (
        "<h2>Block rate (blocks/s) and finality p99 (ms), since this page opened</h2>"
        '<canvas id="rate" width="900" height="160"></canvas>'
        '<canvas id="finality-chart" width="900" height="160"></canvas>'
    )
