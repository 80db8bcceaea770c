"""What the parts of the gateway share: the genesis, the limits, the clock, the reports, the
open sessions, the counters, and the exchange node, its machine and market data once wired.

The gateway (`exchange.gateway.server.Gateway`) is one `GatewayState` and four parts that
read it: `sessions` (the WebSocket endpoint and logon), `order_entry` (requests that sequence
commands, and their answers), `report_pump` (stored and final blocks into reports, market
data and replays) and `rest` (the REST handlers). Each part owns the rest of its state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exchange.console.metrics import NodeMetrics
from exchange.gateway.ack_journal import AckJournal
from exchange.gateway.api import ApiError
from exchange.gateway.broker_reports import Reports
from exchange.gateway.market_data import MarketData
from exchange.gateway.session import DEFAULT_LIMITS, Limits, Session
from ledger.genesis import Genesis
from ledger.node import ExchangeNode

if TYPE_CHECKING:
    from exchange.gateway.server import ObservedVenueMachine


class GatewayState:
    """The gateway's shared state. `node`, `machine` and `market` are None until the gateway
    is wired (`Gateway.new_machine`, `Gateway.attach`)."""

    def __init__(
        self,
        genesis: Genesis,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = time.time_ns,
        journal: AckJournal | None = None,
    ) -> None:
        self.genesis = genesis
        self.limits = limits
        self.clock = clock
        self.journal = AckJournal.open(None) if journal is None else journal
        self.brokers = {broker.name: broker for broker in genesis.brokers}
        self.members = {member.name: member for member in genesis.members}
        self.accounts = {
            str(account): broker.name for broker in genesis.brokers for account in broker.accounts
        }
        self.reports = Reports(self.accounts)
        self.sessions: dict[int, Session] = {}
        self.counters = {"orders": 0, "reports": 0, "errors": 0, "logons": 0, "rejected_logons": 0}
        self.node: ExchangeNode | None = None
        self.market: MarketData | None = None
        self.machine: ObservedVenueMachine | None = None
        self.metrics = NodeMetrics()  # /metrics: its figures are read by `Rest.figures`
        # called with each stored block's public market-data messages (the web console's)
        self.market_listeners: list[Callable[[list[dict[str, Any]]], None]] = []

    def error(self, session: Session, request: Any, error: ApiError, **extra: Any) -> None:
        """Answer a request with `error` (counted in `/metrics`); the session stays open."""
        self.counters["errors"] += 1
        session.send(error.to_dict(request, **extra))
