"""`mount_console`: the web console's pages on a node (`exchange.console.app`,
`exchange.console.explorer`)."""

from __future__ import annotations

from exchange.console.app import Console
from exchange.console.explorer import Explorer
from exchange.console.holdings import Holdings
from exchange.console.live import MarketViewers
from exchange.console.reconciliation import Reconciliation
from exchange.gateway.server import Gateway
from ledger.node import ExchangeNode, ReplicaNode


def mount_console(node: ExchangeNode | ReplicaNode, gateway: Gateway | None = None) -> Console:
    """Serve the console under `/console/` on `node` (before it starts); on the exchange,
    `gateway` (attached) feeds the market pages."""
    console = Console(node, gateway)
    if gateway is not None:
        market = gateway.market
        assert market is not None, "attach the gateway first"
        console.viewers = MarketViewers(market)
        gateway.state.market_listeners.append(console.viewers.publish)
        console.app.on_shutdown.append(console.viewers.shutdown)
    explorer = Explorer(console)
    Holdings(console, explorer)
    Reconciliation(console, explorer)
    node.app.add_subapp("/console", console.app)
    return console
