"""The ledger explorer: the node's blocks, commands and receipts, for the member whose node it
is (docs/console.md, "Ledger explorer").

The member logs in with a short-lived token minted from its key by `jinlian token DIR/<member>`
(`ledger.auth`): the key never enters a browser. The token is kept in an HttpOnly, SameSite
Strict cookie scoped to `/console/` and checked again on every request (its signature against
the genesis key of this node's member, its expiry); an anonymous visitor is refused (401 with
the login link), a token of anyone else (another member, a broker) too (403). Nothing of a
block, a command or a receipt is in a refusal.

Pages (every query parameter validated, `exchange.console.app.query_int`):

- `/console/blocks?to=H&rows=N`: the headers from height H down, at most `ROWS_MAX` (100);
- `/console/block?height=H&from=I`: the header, signature, certificate and its signers, and
  the commands I.. (`ROWS_MAX` a page) with their times and events;
- `/console/command?height=H&index=I`: the command and its receipt (time, events); once the
  block is final the page verifies the receipt in the browser (`static/receipt.js`, with the
  pinned noble libraries in `static/vendor/`): the certificate's signatures against the
  genesis keys, the header's hash, the RFC 6962 inclusion proof; the genesis hash is shown;
- `/console/receipt.json?height=H&index=I&trade=T` (or `&order=O`): that receipt as a file for
  `jinlian verify-receipt`;
- `/console/evidence`: the evidence the node recorded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from exchange.console.app import Console, ConsoleError, check_parameters, query_int
from exchange.console.pages import Raw, link, table, text
from exchange.consortium.audit import placing, trade_in
from ledger import auth
from ledger.node import ExchangeNode
from ledger.receipt import ReceiptError, build_receipt
from ledger.store import EVIDENCE_PAGE_MAX, BlockStore

ROWS_MAX: Final = 100
ROWS_DEFAULT: Final = 50
COOKIE: Final = "jinlian_console_token"
TOKEN_TEXT_MAX: Final = 1024
HEIGHT_MAX: Final = 10**15
VENDOR_HASHES: Final = "/console/static/vendor/noble-hashes-1.8.0/esm"
# the one bare specifier of the pinned noble-hashes (utils.js imports '@noble/hashes/crypto')
IMPORT_MAP: Final = orjson.dumps(
    {"imports": {"@noble/hashes/crypto": f"{VENDOR_HASHES}/crypto.js"}}
).decode()


def _time(time_ns: int) -> str:
    moment = datetime.fromtimestamp(time_ns / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


class Explorer:
    """The explorer's routes on a console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.node = console.node
        self.key = console.member.public_key
        router = console.app.router
        router.add_get("/login", self.on_login_form)
        router.add_post("/login", self.on_login)
        router.add_post("/logout", self.on_logout)
        router.add_get("/blocks", self.on_blocks)
        router.add_get("/block", self.on_block)
        router.add_get("/command", self.on_command)
        router.add_get("/receipt.json", self.on_receipt_file)
        router.add_get("/evidence", self.on_evidence)
        console.extensions += ["/blocks", "Ledger", "/evidence", "Evidence", "/login", "Log in"]

    @property
    def store(self) -> BlockStore:
        node = self.node
        return node.proposer.store if isinstance(node, ExchangeNode) else node.replica.store

    # ---- access ----

    def identity(self, token: str | None, request: web.Request) -> str | auth.AuthError:
        """Whom a token proves, among this node's member only."""
        genesis = self.console.genesis
        header = None if not token else f"{auth.TOKEN_SCHEME} {token}"
        return auth.authenticate(header, chain_id=genesis.chain_id,
                                 keys={self.console.name: self.key}, method=request.method,
                                 path=request.raw_path, now_ns=time.time_ns())  # fmt: skip

    def require_member(self, request: web.Request) -> str:
        """The member, or `ConsoleError` 401 (no or bad token) or 403 (not this member)."""
        found = self.identity(request.cookies.get(COOKIE), request)
        if isinstance(found, str):
            return found
        if found.code == auth.MISSING:
            raise ConsoleError(401, "unauthenticated", f"the ledger explorer is for "
                               f"{self.console.name}: log in at /console/login with a token "
                               f"from `jinlian token DIR/{self.console.name}`")  # fmt: skip
        if found.code == auth.UNKNOWN_IDENTITY:
            raise ConsoleError(403, "not_allowed", f"{found.message}; this node's explorer is "
                               f"for {self.console.name} only")  # fmt: skip
        raise ConsoleError(401, found.code, f"{found.message}: log in again at /console/login")

    async def on_login_form(self, request: web.Request) -> web.StreamResponse:
        check_parameters(request, frozenset())
        name = self.console.name
        body = (
            f"<p>The ledger explorer of this node is for <strong>{text(name)}</strong>. Paste a "
            f"token minted from its key: <code>jinlian token DIR/{text(name)} --ttl 8h</code>. "
            "The key never leaves your machine; the token expires.</p>"
            '<form class="login" method="post" action="/console/login">'
            '<textarea name="token" id="token" required maxlength="1024"></textarea><br>'
            '<button type="submit" id="login">Log in</button></form>'
        )
        return self.console.page("Log in", body)

    async def on_login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        if not isinstance(token, str) or not token.strip() or len(token) > TOKEN_TEXT_MAX:
            raise ConsoleError(400, "invalid_token", "the form needs a token (at most "
                               f"{TOKEN_TEXT_MAX} characters)")  # fmt: skip
        token = token.strip()
        found = self.identity(token, request)
        if isinstance(found, auth.AuthError):
            status = 403 if found.code == auth.UNKNOWN_IDENTITY else 401
            raise ConsoleError(status, found.code, f"{found.message} (this node's explorer is "
                               f"for {self.console.name})")  # fmt: skip
        expires_ns = int(token.rsplit(".", 3)[2])
        response = web.Response(status=303, headers={"Location": "/console/blocks"})
        response.set_cookie(COOKIE, token, path="/console/", httponly=True, samesite="Strict",
                            max_age=max(1, (expires_ns - time.time_ns()) // 10**9))  # fmt: skip
        return response

    async def on_logout(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=303, headers={"Location": "/console/"})
        response.del_cookie(COOKIE, path="/console/")
        return response

    # ---- blocks ----

    async def on_blocks(self, request: web.Request) -> web.StreamResponse:
        self.require_member(request)
        check_parameters(request, frozenset({"to", "rows"}))
        store = self.store
        tip = store.tip()
        top = 0 if tip is None else tip[0]
        to = query_int(request, "to", default=top, low=1 if top else 0, high=max(top, 0) or 0)
        rows = query_int(request, "rows", default=ROWS_DEFAULT, low=1, high=ROWS_MAX)
        names = self._names()
        lines: list[list[object]] = []
        for height in range(to, max(to - rows, 0), -1):
            header = store.header(height)
            if header is None:
                continue
            certificate = store.certificate(height)
            signers = "" if certificate is None else ", ".join(
                names.get(v.member, str(v.member)) for v in certificate.votes)  # fmt: skip
            lines.append([link(f"/block?height={height}", height), _time(header.time_ns),
                          header.command_count, "final" if certificate else "pending",
                          signers, Raw(f"<code>{header.hash.hex()[:16]}</code>")])  # fmt: skip
        pager = []
        if to < top:
            pager.append(link(f"/blocks?to={min(top, to + rows)}&rows={rows}", "newer"))
        if to - rows >= 1:
            pager.append(link(f"/blocks?to={to - rows}&rows={rows}", "older"))
        body = (
            f"<p>Tip {text(top)}, certified {text(store.certified_height())}. Genesis "
            f'<code id="genesis-hash">{text(self.console.genesis.hash.hex())}</code></p>'
            + table(
                ("height", "time", "commands", "final", "signers", "header hash"),
                lines,
                id_="blocks",
            )
            + f'<p class="pager">{"".join(pager)}</p>'
        )
        return self.console.page("Blocks", body)

    def _names(self) -> dict[int, str]:
        return {member.id: member.name for member in self.console.genesis.members}

    def _height(self, request: web.Request) -> int:
        top = self.store.tip()
        height = query_int(request, "height", default=None, low=1, high=HEIGHT_MAX)
        if top is None or height > top[0]:
            raise ConsoleError(404, "unknown_block", f"no block at height {height} (tip "
                               f"{0 if top is None else top[0]})")  # fmt: skip
        return height

    async def on_block(self, request: web.Request) -> web.StreamResponse:
        self.require_member(request)
        check_parameters(request, frozenset({"height", "from"}))
        height = self._height(request)
        store = self.store
        block, receipts = store.block(height), store.receipts(height)
        assert block is not None and receipts is not None, height
        count = len(block.commands)
        start = query_int(request, "from", default=0, low=0, high=max(count - 1, 0))
        header = block.header
        certificate = store.certificate(height)
        names = self._names()
        facts: list[tuple[str, object]] = [
            (name, Raw(f"<code>{text(value)}</code>")) for name, value in header.to_dict().items()
        ]
        facts += [("header hash", Raw(f"<code>{header.hash.hex()}</code>")),
                  ("time", _time(header.time_ns)),
                  ("proposer signature", Raw(f"<code>{block.signature.hex()}</code>"))]  # fmt: skip
        votes = [] if certificate is None else [
            (names.get(v.member, v.member), Raw(f"<code>{v.signature.hex()}</code>"))
            for v in certificate.votes
        ]  # fmt: skip
        commands = []
        for receipt in receipts[start : start + ROWS_MAX]:
            command = _loads(receipt.command)
            kinds = [str(_loads(event).get("type")) for event in receipt.events]
            commands.append([link(f"/command?height={height}&index={receipt.index}",
                                  receipt.index), _time(receipt.time_ns),
                             command.get("type", "?"), _summary(command),
                             ", ".join(kinds)])  # fmt: skip
        pager = []
        if start > 0:
            previous = max(0, start - ROWS_MAX)
            pager.append(link(f"/block?height={height}&from={previous}", "previous"))
        if start + ROWS_MAX < count:
            pager.append(link(f"/block?height={height}&from={start + ROWS_MAX}", "next"))
        body = (
            table(("", ""), facts, id_="header")
            + f"<h2>Certificate: {'final' if certificate else 'not final yet'}, "
            f"{len(votes)} of {len(self.console.genesis.voters())} voters</h2>"
            + table(("signer", "signature"), votes, id_="certificate")
            + f"<h2>Commands {start}..{min(start + ROWS_MAX, count) - 1} of {count}</h2>"
            + table(("index", "time", "type", "summary", "events"), commands, id_="commands")
            + f'<p class="pager">{"".join(pager)}</p>'
        )
        return self.console.page(f"Block {height}", body)

    # ---- commands and receipts ----

    async def on_command(self, request: web.Request) -> web.StreamResponse:
        self.require_member(request)
        check_parameters(request, frozenset({"height", "index"}))
        height, index = self._position(request)
        receipts = self.store.receipts(height)
        assert receipts is not None
        receipt = receipts[index]
        command = _loads(receipt.command)
        events = [_loads(event) for event in receipt.events]
        downloads = [link(f"/receipt.json?height={height}&index={index}&trade={e['trade_id']}",
                          f"receipt of trade {e['trade_id']}")
                     for e in events if e.get("type") == "trade"]  # fmt: skip
        if command.get("type") == "place" and isinstance(command.get("order_id"), int):
            downloads.append(link(f"/receipt.json?height={height}&index={index}"
                                  f"&order={command['order_id']}",
                                  f"receipt of order {command['order_id']}"))  # fmt: skip
        body = (
            f"<p>Block {link(f'/block?height={height}', height)}, command {index}, sequenced "
            f"{text(_time(receipt.time_ns))}.</p>"
            f'<h2>Command</h2><pre id="command">{text(receipt.command.decode())}</pre>'
            + "<h2>Events</h2>"
            + "".join(f'<pre class="event">{text(orjson.dumps(e).decode())}</pre>' for e in events)
        )
        try:
            proof = build_receipt(self.store, height, index)
        except ReceiptError as error:
            body += f'<h2>Receipt</h2><p id="verified" data-state="pending">{text(error)}</p>'
            return self.console.page(f"Command {height}.{index}", body)
        genesis = self.console.genesis
        data = {
            "receipt_text": orjson.dumps(proof).decode(),
            "genesis_hash": genesis.hash.hex(),
            "voters": {str(mid): key.hex() for mid, key in genesis.voters().items()},
            "quorum": genesis.quorum(),
        }
        body += (
            "<h2>Receipt</h2><p>Genesis hash of this node: "
            f'<code id="genesis-hash">{genesis.hash.hex()}</code> (compare it with your own '
            'copy of the genesis). Verified in this browser: <strong id="verified" '
            'data-state="pending">checking</strong></p><ol id="checks"></ol>'
            f"<p>Download: {' · '.join(downloads) or 'no trade or order in this receipt'}"
            " (check it offline: <code>jinlian verify-receipt FILE --genesis genesis.json"
            "</code>)</p>"
        )
        return self.console.page(f"Command {height}.{index}", body, scripts=["receipt.js"],
                                 data=data, import_map=IMPORT_MAP)  # fmt: skip

    def _position(self, request: web.Request) -> tuple[int, int]:
        height = self._height(request)
        header = self.store.header(height)
        assert header is not None
        index = query_int(request, "index", default=None, low=0,
                          high=max(header.command_count - 1, 0))  # fmt: skip
        return height, index

    async def on_receipt_file(self, request: web.Request) -> web.StreamResponse:
        self.require_member(request)
        check_parameters(request, frozenset({"height", "index", "trade", "order"}))
        height, index = self._position(request)
        if ("trade" in request.query) == ("order" in request.query):
            raise ConsoleError(400, "invalid_parameter", "give one of trade or order")
        try:
            receipt = build_receipt(self.store, height, index)
        except ReceiptError as error:
            raise ConsoleError(409, "not_final", str(error)) from None
        if "trade" in request.query:
            trade = query_int(request, "trade", default=None, low=1, high=HEIGHT_MAX)
            if trade_in(receipt["leaf"], trade) is None:
                raise ConsoleError(404, "unknown_trade", f"command {height}.{index} made no "
                                   f"trade {trade}")  # fmt: skip
            receipt, name = {**receipt, "trade_id": trade}, f"trade-{trade}"
        else:
            order = query_int(request, "order", default=None, low=1, high=HEIGHT_MAX)
            if placing(receipt["command"], receipt["leaf"], order) is None:
                raise ConsoleError(404, "unknown_order", f"command {height}.{index} is not the "
                                   f"placing of order {order}")  # fmt: skip
            receipt, name = {**receipt, "order_id": order}, f"order-{order}"
        return web.Response(body=orjson.dumps(receipt, option=orjson.OPT_INDENT_2),
                            content_type="application/json", headers={
                                "Content-Disposition": f'attachment; filename="receipt-{name}.json"'
                            })  # fmt: skip

    async def on_evidence(self, request: web.Request) -> web.StreamResponse:
        self.require_member(request)
        check_parameters(request, frozenset({"after"}))
        after = query_int(request, "after", default=0, low=0, high=HEIGHT_MAX)
        page = min(ROWS_MAX, EVIDENCE_PAGE_MAX)
        records = self.store.evidence(after, page)
        rows = [(e.seq, e.height, e.kind, Raw(f"<code>{e.id.hex()[:16]}</code>"),
                 e.payload.decode(errors="replace")[:300]) for e in records]  # fmt: skip
        body = table(("seq", "height", "kind", "id", "payload"), rows, id_="evidence")
        if len(records) == page:
            body += f'<p class="pager">{link(f"/evidence?after={records[-1].seq}", "more")}</p>'
        return self.console.page("Evidence", body)


def _loads(data: bytes) -> dict[str, Any]:
    value = orjson.loads(data)
    return value if isinstance(value, dict) else {"value": value}


def _summary(command: dict[str, Any]) -> str:
    fields = ("broker", "symbol", "side", "price", "quantity", "order_id", "account", "asset",
              "amount", "phase", "day")  # fmt: skip
    return " ".join(f"{name}={command[name]}" for name in fields if name in command)[:160]
