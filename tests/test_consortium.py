"""`jinlian init` and the venue's starting state from a genesis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exchange.consortium.init import genesis_commands, init_consortium, venue_from_genesis
from exchange.venue.types import BrokerCommand
from ledger.genesis import GenesisError, load_genesis, parse_genesis
from ledger.keys import load_private_key
from matching.commands import PlaceOrder, SetPhase
from matching.events import OrderAccepted
from matching.types import OrderKind, Phase, Side


def test_init_writes_a_genesis_the_venue_starts_from(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    genesis = init_consortium(directory, members=4, brokers=3)
    assert load_genesis(directory / "genesis.json") == genesis
    assert len(genesis.voters()) == 4 and genesis.quorum() == 3
    for member in genesis.members:
        key = load_private_key(directory / member.name / "key.pem")
        assert key.public_key == member.public_key
        assert (directory / member.name / "node.json").exists()
    for broker in genesis.brokers:
        assert load_private_key(directory / "brokers" / broker.name / "key.pem").public_key == (
            broker.public_key
        )
    venue = venue_from_genesis(genesis)
    account = str(genesis.brokers[0].accounts[0])
    assert venue.settlement.available("CNY", account) == 100_000_000
    assert venue.settlement.available("600000.SH", account) == 100_000
    # Every member derives the same state from the same genesis.
    assert venue_from_genesis(load_genesis(directory / "genesis.json")).state_hash() == (
        venue.state_hash()
    )


def test_a_broker_trades_on_the_venue_built_from_genesis(tmp_path: Path) -> None:
    from exchange.venue.types import BeginDay

    genesis = init_consortium(tmp_path / "net", members=4, brokers=2)
    venue = venue_from_genesis(genesis)
    broker = genesis.brokers[0]
    venue.apply(BeginDay(day=20261123))
    venue.apply(SetPhase(symbol="600000.SH", phase=Phase.CONTINUOUS))
    order = PlaceOrder(
        order_id=1,
        symbol="600000.SH",
        account=str(broker.accounts[0]),
        side=Side.BUY,
        kind=OrderKind.LIMIT,
        price=1000,
        quantity=100,
    )
    events = venue.apply(BrokerCommand(broker=broker.name, command=order))
    assert isinstance(events[0], OrderAccepted)
    venue.check()


def test_init_refuses_a_non_empty_directory_and_bad_sizes(tmp_path: Path) -> None:
    init_consortium(tmp_path / "net", members=4, brokers=1)
    with pytest.raises(FileExistsError, match="not empty"):
        init_consortium(tmp_path / "net", members=4, brokers=1)
    with pytest.raises(ValueError, match="3f \\+ 1"):
        init_consortium(tmp_path / "other", members=5, brokers=1)


def test_a_bad_genesis_instrument_is_named_by_its_path(tmp_path: Path) -> None:
    genesis = init_consortium(tmp_path / "net", members=4, brokers=1)
    data = genesis.to_dict()
    data["instruments"] = [{**genesis.instruments[0], "settlement": "weekly"}]
    with pytest.raises(GenesisError, match=r"instruments\[0\]\.settlement.*'weekly'"):
        genesis_commands(parse_genesis(data))


def test_jinlian_init_as_a_process(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "exchange.cli", "init", str(tmp_path / "net")]
    done = subprocess.run(
        [*command, "--members", "7"], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "7 voting members (quorum 5)" in done.stdout
    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_jinlian_init_gives_every_member_and_broker_a_name_of_its_own(tmp_path: Path) -> None:
    """A broker's voting node was named `broker1`, as the first broker firm is: a logon, an
    admin command's actor and a report log could not tell them apart."""
    directory = tmp_path / "net"
    command = [sys.executable, "-m", "exchange.cli", "init", str(directory), "--brokers", "3"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    genesis = load_genesis(directory / "genesis.json")
    members = [member.name for member in genesis.members]
    brokers = [broker.name for broker in genesis.brokers]
    assert brokers == ["broker1", "broker2", "broker3"]
    assert "broker-node1" in members
    assert not set(members) & set(brokers), (members, brokers)
