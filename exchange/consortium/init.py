"""A local consortium on disk (`jinlian init`) and the venue's starting state from a genesis.

`init_consortium` writes a directory that the node commands will run from:

    DIR/genesis.json            members, brokers, instruments, holdings (ledger/genesis.py)
    DIR/<member>/key.pem        each member's Ed25519 key (mode 0600), and node.json
                                (its `index` says whether the node builds the analysts' tables:
                                `INDEXING_ROLES`' first members do; `indexing_nodes` names them)
    DIR/brokers/<broker>/key.pem

`genesis_commands` turns a genesis into the venue commands that every node applies before block
1, so every member starts from the same state: the cash registry, one registry per instrument
with its settlement mode and fees, the listings, each broker's accounts, and the holdings.
Accounts are named by their genesis number (`"10001"`).
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exchange.venue import wire
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT
from exchange.venue.types import ListInstrument, VenueCommand
from exchange.venue.venue import Venue
from ledger.block import faults_tolerated
from ledger.genesis import Broker, Genesis, GenesisError, Member, Role, save_genesis
from ledger.keys import PrivateKey, generate_private_key, save_private_key
from settlement.commands import DefineAsset, Deposit, Issue, OpenAccount, SetFeeSchedule
from settlement.types import AssetKind, SettlementMode

CASH = "CNY"
HOST = "127.0.0.1"
VOTING_ROLES = (Role.BANK, Role.DEPOSITORY, Role.REGULATOR, Role.BROKER)
SAMPLE_INSTRUMENTS: tuple[dict[str, object], ...] = (
    {"symbol": "600000.SH", "tick_size": 1, "lot": 100, "reference_price": 1000,
     "price_limit_pct": 10, "t_plus": 1, "settlement": "gross",
     "commission_bps": 3, "stamp_duty_bps": 5},
    {"symbol": "000001.SZ", "tick_size": 1, "lot": 100, "reference_price": 1200,
     "price_limit_pct": 10, "t_plus": 1, "settlement": "cash_net",
     "commission_bps": 3, "stamp_duty_bps": 5},
    {"symbol": "300750.SZ", "tick_size": 1, "lot": 100, "reference_price": 18000,
     "price_limit_pct": 20, "t_plus": 1, "settlement": "gross",
     "commission_bps": 3, "stamp_duty_bps": 5},
)  # fmt: skip
# The nodes that index by default (node.json `index`): the first regulator and the first bank,
# the members that serve analysts (the notebooks read bank1), and the exchange, whose gateway
# finds a trade's receipt through the `trades` table (without it, every receipt request would
# scan the stored events); its indexer runs behind the cut path, never on it. Every other node
# can build its tables later (`jinlian index DIR/<member>`); `jinlian verify` rebuilds them.
INDEXING_NODES = ("exchange", "regulator1", "bank1")
ACCOUNTS_PER_BROKER = 2
CASH_PER_ACCOUNT = 100_000_000  # fen: 1,000,000.00 CNY
SHARES_PER_ACCOUNT = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Roles:
    """The members a venue needs by role, named as in the genesis."""

    operator: str
    regulator: str
    cash_issuer: str
    security_issuer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentSpec:
    """One genesis instrument: its listing, its settlement mode and its fees."""

    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None
    t_plus: int
    settlement: SettlementMode
    commission_bps: int
    stamp_duty_bps: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    account: int
    asset: str
    amount: int


def roles(genesis: Genesis) -> Roles:
    """The operator (the exchange), the regulator, the first bank as cash issuer and the first
    depository as securities issuer. Raises GenesisError naming a missing role."""

    def first(role: Role) -> str:
        for member in genesis.members:
            if member.role is role:
                return member.name
        raise GenesisError("$.members", f"no member with the role {role.value!r}")

    return Roles(
        operator=genesis.exchange.name,
        regulator=first(Role.REGULATOR),
        cash_issuer=first(Role.BANK),
        security_issuer=first(Role.DEPOSITORY),
    )


def _parse_items(items: tuple[dict[str, object], ...], cls: type[Any], path: str) -> list[Any]:
    parser: Callable[..., Any] = wire.dataclass_parser(cls)
    parsed = []
    for index, item in enumerate(items):
        value = wire.parse_command({**item, "type": "item"}, {"item": parser})
        if isinstance(value, wire.WireError):
            raise GenesisError(f"{path}[{index}].{value.field}", value.message)
        parsed.append(value)
    return parsed


def genesis_commands(genesis: Genesis) -> tuple[Roles, list[VenueCommand]]:
    """The roles and the commands that build the venue's state at height 0. Raises
    GenesisError naming a bad instrument or holding field."""
    who = roles(genesis)
    instruments: list[InstrumentSpec] = _parse_items(
        genesis.instruments, InstrumentSpec, "$.instruments"
    )
    holdings: list[Holding] = _parse_items(genesis.holdings, Holding, "$.holdings")
    ids = iter(range(1, 10**9))
    op = who.operator
    commands: list[VenueCommand] = [
        DefineAsset(command_id=next(ids), actor=op, asset=CASH, kind=AssetKind.CASH,
                    issuer=who.cash_issuer, currency=CASH),
        OpenAccount(command_id=next(ids), actor=op, account=FEE_ACCOUNT, broker=op),
        OpenAccount(command_id=next(ids), actor=op, account=TAX_ACCOUNT, broker=op),
    ]  # fmt: skip
    for spec in instruments:
        commands += [
            DefineAsset(command_id=next(ids), actor=op, asset=spec.symbol,
                        kind=AssetKind.SECURITY, issuer=who.security_issuer, currency=CASH,
                        mode=spec.settlement),
            SetFeeSchedule(command_id=next(ids), actor=op, asset=spec.symbol,
                           commission_bps=spec.commission_bps,
                           stamp_duty_bps=spec.stamp_duty_bps,
                           fee_account=FEE_ACCOUNT, tax_account=TAX_ACCOUNT),
            ListInstrument(symbol=spec.symbol, tick_size=spec.tick_size, lot=spec.lot,
                           reference_price=spec.reference_price,
                           price_limit_pct=spec.price_limit_pct, t_plus=spec.t_plus),
        ]  # fmt: skip
    for broker in genesis.brokers:
        for account in broker.accounts:
            commands.append(
                OpenAccount(command_id=next(ids), actor=op, account=str(account),
                            broker=broker.name)
            )  # fmt: skip
    for holding in holdings:
        holder, amount = str(holding.account), holding.amount
        if holding.asset == CASH:
            commands.append(Deposit(command_id=next(ids), actor=who.cash_issuer, asset=CASH,
                                    account=holder, amount=amount))  # fmt: skip
        else:
            commands.append(Issue(command_id=next(ids), actor=who.security_issuer,
                                  asset=holding.asset, account=holder, amount=amount))  # fmt: skip
    return who, commands


def venue_from_genesis(genesis: Genesis) -> Venue:
    """A venue at height 0. Raises GenesisError if a genesis command is refused."""
    who, commands = genesis_commands(genesis)
    venue = Venue(operator=who.operator, regulator=who.regulator)
    for position, command in enumerate(commands):
        for event in venue.apply(command):
            kind = wire.event_to_dict(event)["type"]
            if kind.endswith(("rejected", "refused")):
                raise GenesisError("$", f"genesis command {position} refused: {event}")
    venue.check()
    return venue


def indexing_nodes(directory: Path) -> list[str]:
    """The nodes of a consortium directory whose node.json says `"index": true`, sorted."""
    return sorted(
        path.parent.name
        for path in directory.glob("*/node.json")
        if orjson.loads(path.read_bytes()).get("index") is True
    )


def _node_name(role: Role, number: int) -> str:
    """`exchange`, `bank1`, `depository1`, `regulator1`, `broker-node1`: a broker's node is not
    named as the broker firms are (`broker1`), since the genesis gives every member and broker a
    name of its own."""
    if role is Role.EXCHANGE:
        return role.value
    if role is Role.BROKER:
        return f"broker-node{number}"
    return f"{role.value}{number}"


def _member_roles(count: int) -> list[Role]:
    return [
        VOTING_ROLES[index] if index < len(VOTING_ROLES) else Role.BANK for index in range(count)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Market:
    """What a new consortium trades and how its brokers' accounts are funded."""

    instruments: tuple[dict[str, object], ...] = SAMPLE_INSTRUMENTS
    accounts_per_broker: int = ACCOUNTS_PER_BROKER
    cash_per_account: int = CASH_PER_ACCOUNT  # fen
    shares_per_account: int = SHARES_PER_ACCOUNT  # of every instrument


def init_consortium(
    directory: Path,
    *,
    members: int,
    brokers: int,
    base_port: int = 7400,
    market: Market = Market(),  # frozen: one shared default is safe
    new_key: Callable[[str], PrivateKey] | None = None,
    chain_id: str = "jinlian-local",
) -> Genesis:
    """Write keys, node configs and a genesis for a local consortium of `members` voting
    members (3f + 1), a non-voting exchange and `brokers` brokers whose accounts hold
    `market`'s cash and shares. Refuses a non-empty directory rather than overwrite keys.
    `new_key(path)` makes the key stored at DIR/<path>/key.pem (a member name, or
    `brokers/<broker>`) (default: a fresh random key; the
    simulator derives them from its seed so that a rerun is byte-identical)."""
    genesis, keys = consortium_genesis(
        members=members, brokers=brokers, base_port=base_port, market=market, new_key=new_key,
        chain_id=chain_id,
    )  # fmt: skip
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: refusing to overwrite keys")
    directory.mkdir(parents=True, exist_ok=True)
    for member in genesis.members:
        (directory / member.name).mkdir()
        save_private_key(keys[member.name], directory / member.name / "key.pem")
        config = {"id": member.id, "name": member.name, "role": member.role.value,
                  "address": member.address, "genesis": "../genesis.json",
                  "store": "ledger.sqlite", "index": member.name in INDEXING_NODES}  # fmt: skip
        (directory / member.name / "node.json").write_bytes(
            orjson.dumps(config, option=orjson.OPT_INDENT_2)
        )
    for firm in genesis.brokers:
        folder = directory / "brokers" / firm.name
        folder.mkdir(parents=True)
        save_private_key(keys[f"brokers/{firm.name}"], folder / "key.pem")
    venue_from_genesis(genesis)  # refuse to write a genesis the venue cannot start from
    save_genesis(genesis, directory / "genesis.json")
    return genesis


def consortium_genesis(
    *,
    members: int,
    brokers: int,
    base_port: int = 7400,
    market: Market = Market(),  # frozen: one shared default is safe
    new_key: Callable[[str], PrivateKey] | None = None,
    chain_id: str = "jinlian-local",
) -> tuple[Genesis, dict[str, PrivateKey]]:
    """The genesis `init_consortium` writes, and its keys by the path they are stored at
    (`exchange`, `bank1`, ..., `brokers/broker1`), in memory: nothing written or checked
    against the venue (the simulator's run without a ledger starts its venue from it)."""
    make_key = new_key if new_key is not None else (lambda name: generate_private_key())
    if members < 4 or faults_tolerated(members) * 3 + 1 != members:
        raise ValueError(f"--members must be 3f + 1 and at least 4 (4, 7, 10, ...), got {members}")
    if not 1 <= brokers <= 100:
        raise ValueError(f"--brokers must be between 1 and 100, got {brokers}")
    keys: dict[str, PrivateKey] = {}
    counts: dict[Role, int] = {}
    nodes: list[Member] = []
    for index, role in enumerate([Role.EXCHANGE, *_member_roles(members)]):
        counts[role] = counts.get(role, 0) + 1
        name = _node_name(role, counts[role])
        key = keys[name] = make_key(name)
        nodes.append(Member(id=index, name=name, role=role, public_key=key.public_key,
                            address=f"{HOST}:{base_port + index}",
                            voting=role is not Role.EXCHANGE))  # fmt: skip
    firms: list[Broker] = []
    holdings: list[dict[str, object]] = []
    for number in range(1, brokers + 1):
        key = keys[f"brokers/broker{number}"] = make_key(f"brokers/broker{number}")
        accounts = tuple(number * 10_000 + k for k in range(1, market.accounts_per_broker + 1))
        firms.append(Broker(id=number, name=f"broker{number}", public_key=key.public_key,
                            accounts=accounts))  # fmt: skip
        for account in accounts:
            holdings.append({"account": account, "asset": CASH, "amount": market.cash_per_account})
            for instrument in market.instruments:
                holdings.append({"account": account, "asset": instrument["symbol"],
                                 "amount": market.shares_per_account})  # fmt: skip
    genesis = Genesis(version=1, chain_id=chain_id,
                      members=tuple(nodes), brokers=tuple(firms),
                      instruments=market.instruments, holdings=tuple(holdings))  # fmt: skip
    return genesis, keys


def free_base_port(count: int, rng: random.Random | None = None) -> int:
    """A port p such that p .. p + count - 1 are free on 127.0.0.1 right now, for a consortium
    on loopback (`init_consortium(base_port=...)`). Chosen below the kernel's ephemeral range,
    so that no outgoing connection (the exchange dialling a member that is still starting) can
    take a port a node is about to listen on. OSError if 200 tries find no free range."""
    rng = rng or random.Random()
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    for _ in range(200):
        base = rng.randrange(10_000, low - count)
        with contextlib.ExitStack() as sockets:
            try:
                for port in range(base, base + count):
                    sockets.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise OSError(f"no range of {count} free ports on 127.0.0.1 below {low}")
