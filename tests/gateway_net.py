"""A running consortium with the broker gateway, in one process on loopback, for tests: the
exchange (with its gateway) and four member nodes on real sockets, and clients that log on
with the keys `jinlian init` wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from exchange.consortium.init import SAMPLE_INSTRUMENTS
from exchange.consortium.nodes import build_replica, build_venue, load_config
from exchange.gateway.client import Client
from exchange.gateway.server import DEFAULT_LIMITS, Gateway, Limits
from ledger.keys import load_private_key
from ledger.node import ExchangeNode, ReplicaNode
from tests.consortium_net import make_consortium

MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")
SYMBOLS = tuple(str(instrument["symbol"]) for instrument in SAMPLE_INSTRUMENTS)
SYMBOL = SYMBOLS[0]


class RunningVenue:
    def __init__(self, directory: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.directory = directory
        self.limits = limits
        self.genesis = make_consortium(directory)
        self.members: list[ReplicaNode] = []
        self.exchange: ExchangeNode | None = None
        self.gateway: Gateway | None = None
        self.clients: list[Client] = []

    @property
    def address(self) -> str:
        assert self.exchange is not None
        return self.exchange.address

    async def start(self) -> None:
        for name in MEMBERS:
            node = build_replica(load_config(self.directory / name))
            await node.start()
            self.members.append(node)
        await self.start_exchange()

    async def start_exchange(self) -> None:
        config = load_config(self.directory / "exchange")
        self.exchange, self.gateway = build_venue(config, limits=self.limits)
        await self.exchange.start()
        await asyncio.wait_for(self.exchange.ready.wait(), 30)  # recovered from the members

    async def stop_exchange(self) -> None:
        assert self.exchange is not None
        await self.exchange.stop()
        self.exchange.proposer.store.close()
        self.exchange = None

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        if self.exchange is not None:
            await self.stop_exchange()
        for node in self.members:
            await node.stop()
            node.replica.store.close()

    def key_path(self, name: str) -> Path:
        if name.startswith("broker") and (self.directory / "brokers" / name).exists():
            return self.directory / "brokers" / name / "key.pem"
        return self.directory / name / "key.pem"

    async def client(self, name: str, *, member: bool = False, **options: Any) -> Client:
        client = Client(self.address, name, load_private_key(self.key_path(name)),
                        member=member, **options)  # fmt: skip
        await client.connect()
        self.clients.append(client)
        return client

    async def open_market(self) -> None:
        """Begin the day and open continuous trading in every instrument, as the operator."""
        operator = await self.client("exchange", member=True)
        await operator.admin({"type": "begin_day", "day": 20261123})
        for symbol in SYMBOLS:
            await operator.admin({"type": "set_phase", "symbol": symbol, "phase": "continuous"})


def order(client_order_id: str, account: str, side: str, price: int, quantity: int,
          symbol: str = SYMBOL, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"client_order_id": client_order_id, "account": account, "symbol": symbol,
            "side": side, "price": price, "quantity": quantity, **extra}  # fmt: skip
