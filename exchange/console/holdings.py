"""Holdings and settlement: the balances, pending net settlement and settlement failures of the
accounts a member may see, on its own node, behind the explorer's login (docs/console.md).

Which accounts: every account for a node whose genesis role is `regulator`; for a broker's
voting node (`broker-nodeN`, role `broker`) the accounts of the broker firm of the same number
(`brokerN`, the pairing `jinlian init` writes; the genesis itself does not link them); a bank,
the depository and the exchange hold no broker accounts in the genesis, and see none here.
Balances are the node's own re-executed venue state at its height (available and locked per
asset, and the open cycle's net position per asset: + to receive, - to deliver); failures are
the `cycle_failed` rows of the node's derived `settlements` table (an indexing node's; others
say so).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from exchange.console.app import Console, ConsoleError, check_parameters, query_int
from exchange.console.explorer import Explorer
from exchange.console.pages import table, text
from exchange.venue.machine import VenueMachine
from ledger.genesis import Role
from ledger.node import ExchangeNode

ACCOUNTS_MAX: Final = 100  # rows a page
FAILURES_MAX: Final = 100


class Holdings:
    """The holdings page on a console with an explorer (its login)."""

    def __init__(self, console: Console, explorer: Explorer) -> None:
        self.console = console
        self.explorer = explorer
        console.app.router.add_get("/holdings", self.on_holdings)
        console.extensions += ["/holdings", "Holdings"]

    def accounts(self) -> list[str] | None:
        """The accounts this node's member may see (None: every account)."""
        member = self.console.member
        if member.role is Role.REGULATOR:
            return None
        if member.role is Role.BROKER and member.name.startswith("broker-node"):
            firm = "broker" + member.name.removeprefix("broker-node")
            return sorted(str(account) for broker in self.console.genesis.brokers
                          if broker.name == firm for account in broker.accounts)  # fmt: skip
        return []

    def machine(self) -> VenueMachine:
        node = self.console.node
        machine = node.proposer.machine if isinstance(node, ExchangeNode) else node.replica.machine
        assert isinstance(machine, VenueMachine), type(machine)
        return machine

    async def on_holdings(self, request: web.Request) -> web.StreamResponse:
        self.explorer.require_member(request)
        check_parameters(request, frozenset({"from"}))
        engine = self.machine().venue.settlement
        allowed = self.accounts()
        accounts = engine.accounts() if allowed is None else allowed
        start = query_int(request, "from", default=0, low=0, high=max(len(accounts) - 1, 0))
        shown = accounts[start : start + ACCOUNTS_MAX]
        rows = []
        for account in shown:
            for asset in engine.assets():
                available, locked = engine.available(asset, account), engine.locked(asset, account)
                position = engine.position(asset, account)
                if available or locked or position:
                    rows.append((account, asset, available, locked, position))
        who = (
            "every account (regulator)"
            if allowed is None
            else (f"{len(accounts)} accounts" if accounts else "no broker accounts in the genesis")
        )
        body = (
            f"<p>{text(self.console.name)}: {text(who)}; state at height "
            f"{text(self._height())}. Accounts {start}..{start + len(shown) - 1} of "
            f"{len(accounts)}.</p>"
            + table(("account", "asset", "available", "locked", "net position (open cycle)"),
                    rows, id_="holdings")
        )  # fmt: skip
        if start + ACCOUNTS_MAX < len(accounts):
            body += (f'<p class="pager"><a href="/console/holdings?from={start + ACCOUNTS_MAX}">'
                     "next accounts</a></p>")  # fmt: skip
        return self.console.page("Holdings and settlement", body + self._failures(allowed))

    def _height(self) -> int:
        node = self.console.node
        return node.proposer.height if isinstance(node, ExchangeNode) else node.replica.height

    def _failures(self, allowed: list[str] | None) -> str:
        store = self.explorer.store
        if store.indexer is None:
            return (
                "<h2>Settlement failures</h2><p>This node does not index: "
                "<code>jinlian index DIR/&lt;member&gt;</code> builds its tables.</p>"
            )
        if allowed == []:
            return ""
        statement = ("SELECT height, cycle_id, asset, account, amount FROM settlements "
                     "WHERE event = 'cycle_failed'")  # fmt: skip
        parameters: list[object] = []
        if allowed is not None:
            statement += f" AND account IN ({', '.join('?' * len(allowed))})"
            parameters += allowed
        statement += f" ORDER BY height DESC, event_idx DESC LIMIT {FAILURES_MAX}"
        try:
            rows = store.read(statement, parameters)
        except Exception as error:  # a store without the derived tables yet
            raise ConsoleError(503, "not_indexed", f"settlements table: {error}") from None
        return "<h2>Settlement failures (newest first)</h2>" + table(
            ("height", "cycle", "asset", "account", "shortfall"), rows, id_="failures"
        )
