"""Real chains built in process, for tests: a consortium on disk (`init_consortium`), blocks of
real venue commands proposed and signed by the exchange's key, voted by every voting member,
certified, and appended to a member node's block store with the venue's indexer, which
indexes each block after storing it (unless `index` is False).

    chain = Chain.create(tmp_path)
    chain.add_block([*chain.opening(), chain.place(1, "10001", Side.SELL, 1000, 300)])
    chain.close()   # then `chain.node` is a `jinlian verify`-able node directory
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import SAMPLE_INSTRUMENTS, init_consortium, venue_from_genesis
from exchange.venue import wire
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BeginDay, BrokerCommand
from ledger.block import Block, QuorumCertificate, certify, sign_vote
from ledger.genesis import Genesis
from ledger.keys import PrivateKey, load_private_key
from ledger.machine import encode_commands, propose
from ledger.store import BlockStore
from matching.commands import CancelOrder, PlaceOrder, SetPhase
from matching.types import OrderKind, Phase, Side

TIME_NS_START = 1_700_000_000_000_000_000
SYMBOLS = tuple(str(instrument["symbol"]) for instrument in SAMPLE_INSTRUMENTS)


@dataclass(kw_only=True)
class Chain:
    directory: Path  # the consortium directory
    genesis: Genesis
    node: Path  # the member node whose store the chain is written to
    store: BlockStore
    machine: VenueMachine  # the proposer's machine
    exchange_key: PrivateKey
    voter_keys: dict[int, PrivateKey]
    blocks: list[Block] = field(default_factory=list)
    certificates: list[QuorumCertificate | None] = field(default_factory=list)
    replicas: list[BlockStore] = field(default_factory=list)  # other members' stores, same blocks
    index: bool = True  # index each block once stored (False: the tables stay behind)

    @classmethod
    def create(
        cls,
        tmp_path: Path,
        *,
        brokers: int = 2,
        node: str = "bank1",
        replicas: tuple[str, ...] = (),
        base_port: int = 7400,
    ) -> Chain:
        """A consortium in `tmp_path/net` (its nodes' ports from `base_port` on) whose blocks
        go to `node`'s store and, identically, to the stores of the members in `replicas`."""
        directory = tmp_path / "net"
        genesis = init_consortium(directory, members=4, brokers=brokers, base_port=base_port)
        keys = {m.id: load_private_key(directory / m.name / "key.pem") for m in genesis.members}
        store, *others = (
            BlockStore.open(
                directory / name / "ledger.sqlite", genesis.hash, indexer=VenueIndexer()
            )
            for name in (node, *replicas)
        )
        return cls(
            replicas=others,
            directory=directory,
            genesis=genesis,
            node=directory / node,
            store=store,
            machine=VenueMachine(venue_from_genesis(genesis)),
            exchange_key=keys[genesis.exchange.id],
            voter_keys={member: keys[member] for member in genesis.voters()},
        )

    @property
    def height(self) -> int:
        return len(self.blocks)

    def add_block(
        self,
        commands: list[dict[str, Any]],
        *,
        certified: bool = True,
        time_ns: int | None = None,
        times_ns: list[int] | None = None,
    ) -> Block:
        """Propose, store and (by default) certify a block of these commands, at `time_ns`
        (default: one nanosecond after the previous block), each command at `times_ns`
        (default: the block's time)."""
        parent = self.genesis.hash if not self.blocks else self.blocks[-1].header.hash
        block, execution = propose(
            self.machine,
            self.exchange_key,
            proposer=self.genesis.exchange.id,
            height=self.height + 1,
            parent_hash=parent,
            time_ns=TIME_NS_START + self.height if time_ns is None else time_ns,
            commands=encode_commands(commands),
            times_ns=times_ns,
        )
        for store in (self.store, *self.replicas):
            store.append(block, execution.events)
            if self.index and store.indexer is not None:
                store.index_blocks()  # as an indexing node does, after storing the block
        certificate = None
        if certified:
            certificate = certify(
                block.header,
                [sign_vote(key, member, block.header) for member, key in self.voter_keys.items()],
            )
            for store in (self.store, *self.replicas):
                store.add_certificate(certificate)
        self.blocks.append(block)
        self.certificates.append(certificate)
        return block

    def broker_of(self, account: str) -> str:
        return next(b.name for b in self.genesis.brokers if int(account) in b.accounts)

    def opening(self, day: int = 20260105) -> list[dict[str, Any]]:
        """Open the day and put every instrument in continuous trading."""
        return [
            wire.venue_command_to_dict(BeginDay(day=day)),
            *(
                wire.venue_command_to_dict(SetPhase(symbol=symbol, phase=Phase.CONTINUOUS))
                for symbol in SYMBOLS
            ),
        ]

    def place(
        self,
        order_id: int,
        account: str,
        side: Side,
        price: int,
        quantity: int,
        symbol: str = SYMBOLS[0],
    ) -> dict[str, Any]:
        command = PlaceOrder(
            order_id=order_id,
            symbol=symbol,
            account=account,
            side=side,
            kind=OrderKind.LIMIT,
            price=price,
            quantity=quantity,
        )
        return wire.venue_command_to_dict(
            BrokerCommand(broker=self.broker_of(account), command=command)
        )

    def cancel(self, order_id: int, account: str, symbol: str = SYMBOLS[0]) -> dict[str, Any]:
        command = CancelOrder(order_id=order_id, symbol=symbol)
        return wire.venue_command_to_dict(
            BrokerCommand(broker=self.broker_of(account), command=command)
        )

    def close(self) -> None:
        for store in (self.store, *self.replicas):
            store.close()
