"""Reconciliation: does every peer hold the same certified block as this node?

`/console/reconciliation?height=H` (behind the explorer's login; H is this node's certified
height by default) asks every other member node and the exchange, at once, for its block at H
through its authenticated catch-up endpoint (`GET /blocks?from=H&limit=1`, signed with this
node's key: members only, `ledger.auth`) and its heights through its public `/status`, within
`PEER_TIMEOUT_S`, and shows per peer: its height and certified height, its header hash at H,
whether that block is certified there, and whether the hash is this node's (`same`),
another (`DIFFERENT`: a fork, to report), or unknown (the peer is unreachable, behind, or
refused the request: the reason is shown).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import aiohttp
from aiohttp import web

from exchange.console.app import Console, ConsoleError, check_parameters, query_int
from exchange.console.explorer import HEIGHT_MAX, Explorer
from exchange.console.pages import Raw, table, text
from ledger.genesis import Role
from ledger.protocol import Blocks, decode

PEER_TIMEOUT_S: Final = 2.0
RESPONSE_BYTES_MAX: Final = 64 * 1024 * 1024  # one block: at most 2,000 commands


class Reconciliation:
    def __init__(self, console: Console, explorer: Explorer) -> None:
        self.console = console
        self.explorer = explorer
        console.app.router.add_get("/reconciliation", self.on_reconciliation)
        console.extensions += ["/reconciliation", "Reconciliation"]

    async def on_reconciliation(self, request: web.Request) -> web.StreamResponse:
        self.explorer.require_member(request)
        check_parameters(request, frozenset({"height"}))
        store = self.explorer.store
        certified = store.certified_height()
        height = query_int(request, "height", default=certified, low=0, high=HEIGHT_MAX)
        if not 1 <= height <= certified:
            raise ConsoleError(400, "invalid_parameter", f"height {height} is not a certified "
                               f"height of this node (1..{certified})")  # fmt: skip
        header = store.header(height)
        assert header is not None, height
        ours = header.hash.hex()
        me = self.console.member.id
        peers = [m for m in self.console.genesis.members
                 if m.id != me and (m.voting or m.role is Role.EXCHANGE)]  # fmt: skip
        answers = await asyncio.gather(*(self._peer(m.address, height) for m in peers))
        rows = []
        for member, answer in zip(peers, answers, strict=True):
            theirs = answer.get("hash")
            verdict = "unknown" if theirs is None else "same" if theirs == ours else "DIFFERENT"
            rows.append((member.name, answer.get("height", ""), answer.get("certified", ""),
                         Raw(f"<code>{text(theirs or '')}</code>"), answer.get("final", ""),
                         Raw(f'<span data-state="{"ok" if verdict == "same" else "bad"}">'
                             f"{verdict}</span>"), answer.get("error", "")))  # fmt: skip
        body = (
            f"<p>This node ({text(self.console.name)}) at height {height}: header hash "
            f'<code id="our-hash">{ours}</code>.</p>'
            + table(
                (
                    "peer",
                    "height",
                    "certified",
                    f"header hash at {height}",
                    "final there",
                    "",
                    "note",
                ),
                rows,
                id_="peers",
            )
        )
        return self.console.page("Reconciliation", body)

    async def _peer(self, address: str, height: int) -> dict[str, Any]:
        node = self.console.node
        session = node.session
        if session is None:
            return {"error": "the node is not running"}
        answer: dict[str, Any] = {}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        try:
            async with session.get(f"http://{address}/status", timeout=timeout) as response:
                if response.status == 200:
                    status = await response.json()
                    answer["height"], answer["certified"] = status.get("height"), status.get(
                        "certified")  # fmt: skip
            path = f"/blocks?from={height}&limit=1"
            headers = {"Authorization": node.authorization(path)}
            async with session.get(f"http://{address}{path}", headers=headers,
                                   timeout=timeout) as response:  # fmt: skip
                body = await response.content.read(RESPONSE_BYTES_MAX)
                if response.status != 200:
                    reason = body[:200].decode(errors="replace")
                    answer["error"] = f"HTTP {response.status}: {reason}"
                    return answer
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            answer["error"] = f"unreachable: {error!r:.200}"
            return answer
        message = decode(body)
        if not isinstance(message, Blocks):
            answer["error"] = f"not a blocks page: {str(message)[:200]}"
        elif not message.blocks or message.blocks[0].block.header.height != height:
            answer["error"] = f"no block at height {height} yet"
        else:
            stored = message.blocks[0]
            answer["hash"] = stored.block.header.hash.hex()
            answer["final"] = stored.certificate is not None
        return answer
