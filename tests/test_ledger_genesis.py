"""The genesis file: format, rules, hash, and errors that name the field and value."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.block import quorum_size
from ledger.canonical import canonical_bytes, sha256
from ledger.genesis import (
    Genesis,
    GenesisError,
    Role,
    genesis_bytes,
    load_genesis,
    parse_genesis,
    save_genesis,
)
from ledger.keys import PrivateKey


def public_hex(seed: int) -> str:
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)).public_key.hex()


def sample() -> dict[str, Any]:
    roles = ["exchange", "bank", "broker", "depository", "regulator"]
    return {
        "version": 1,
        "chain_id": "jinlian-test",
        "members": [
            {
                "id": index,
                "name": f"{role}-{index}",
                "role": role,
                "public_key": public_hex(index + 1),
                "address": f"127.0.0.1:{7000 + index}",
                "voting": role != "exchange",
            }
            for index, role in enumerate(roles)
        ],
        "brokers": [
            {"id": 1, "name": "alpha", "public_key": public_hex(101), "accounts": [1001, 1002]},
            {"id": 2, "name": "beta", "public_key": public_hex(102), "accounts": [2001]},
        ],
        "instruments": [
            {"symbol": "600000", "tick_ticks": 1, "lot": 100, "settlement": "T+1"},
            {"symbol": "000001", "tick_ticks": 1, "lot": 100, "settlement": "T+1"},
        ],
        "holdings": [
            {"account": 1001, "asset": "CNY", "amount_fen": 10_000_000},
            {"account": 2001, "asset": "600000", "amount": 5_000},
        ],
    }


def test_a_valid_genesis() -> None:
    value = sample()
    genesis = parse_genesis(value)
    assert genesis.to_dict() == value
    assert genesis.hash == sha256(canonical_bytes(value))
    assert genesis.exchange.id == 0
    assert genesis.exchange.role is Role.EXCHANGE
    assert sorted(genesis.voters()) == [1, 2, 3, 4]
    assert genesis.quorum() == quorum_size(4) == 3
    member = genesis.member(3)
    assert member is not None
    assert member.name == "depository-3"
    assert genesis.member(99) is None
    assert genesis.brokers[0].accounts == (1001, 1002)
    assert genesis.instruments[0]["symbol"] == "600000"


def test_file_round_trip_and_hash_ignores_layout(tmp_path: Path) -> None:
    genesis = parse_genesis(sample())
    path = tmp_path / "genesis.json"
    save_genesis(genesis, path)
    assert path.read_bytes().endswith(b"}\n")
    assert load_genesis(path) == genesis
    assert load_genesis(path).hash == genesis.hash
    squeezed = tmp_path / "squeezed.json"
    squeezed.write_bytes(orjson.dumps(dict(reversed(sample().items()))))
    assert load_genesis(squeezed).hash == genesis.hash
    assert genesis_bytes(genesis).startswith(b'{\n  "brokers": [')


def test_one_voting_member_is_allowed_for_development() -> None:
    value = sample()
    value["members"] = [value["members"][0] | {"voting": True}]
    genesis = parse_genesis(value)
    assert genesis.quorum() == 1


def test_seven_voters() -> None:
    value = sample()
    extra = [
        {
            "id": 10 + index,
            "name": f"bank-{10 + index}",
            "role": "bank",
            "public_key": public_hex(50 + index),
            "address": f"[::1]:{8000 + index}",
            "voting": True,
        }
        for index in range(3)
    ]
    value["members"] += extra
    assert parse_genesis(value).quorum() == 5


def changed(path: str, new: object) -> dict[str, Any]:
    """The sample with the value at a dotted path ('members.1.role') replaced or, for
    new=DELETE, removed."""
    value = sample()
    *parents, last = path.split(".")
    target: Any = value
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if new is DELETE:
        del target[key]
    else:
        target[key] = new
    return value


DELETE = object()


@pytest.mark.parametrize(
    ("path", "new", "where", "words"),
    [
        ("version", 2, "$.version", "2 is not the supported version 1"),
        ("chain_id", "", "$.chain_id", "'' is not 1 to 64 printable ASCII"),
        ("chain_id", "two words", "$.chain_id", "'two words'"),
        ("chain_id", 7, "$.chain_id", "7 is not a string"),
        ("members.1.role", "bnak", "$.members[1].role", "'bnak' is not one of exchange, bank"),
        ("members.2.public_key", "XYZ", "$.members[2].public_key", "'XYZ'"),
        ("members.2.public_key", public_hex(101), "$.brokers[0].public_key", "already used at"),
        ("members.3.public_key", public_hex(2), "$.members[3].public_key", "already used at"),
        ("members.0.address", "localhost", "$.members[0].address", "'localhost' is not host:port"),
        ("members.0.address", "host:0", "$.members[0].address", "'host:0'"),
        ("members.0.address", "host:65536", "$.members[0].address", "'host:65536'"),
        ("members.0.address", "a b:80", "$.members[0].address", "'a b:80'"),
        ("members.0.address", "127.0.0.1:7001", "$.members[1].address", "already used at"),
        ("members.3.id", 1, "$.members[3].id", "1 is already used at $.members[1].id"),
        ("members.3.id", -1, "$.members[3].id", "-1 is not an integer"),
        ("members.3.id", True, "$.members[3].id", "True is not an integer"),
        ("members.3.name", "bank-1", "$.members[3].name", "'bank-1' is already used"),
        ("members.3.name", "../etc", "$.members[3].name", "'../etc' is not a name"),
        ("members.3.voting", "yes", "$.members[3].voting", "'yes' is not true or false"),
        ("members.3.voting", False, "$.members", "3 voting members; n must be 3f + 1"),
        ("members.0.voting", True, "$.members", "5 voting members"),
        ("members.1.role", "exchange", "$.members", "2 members [0, 1] have the role exchange"),
        ("members.0.role", "bank", "$.members", "0 members [] have the role exchange"),
        ("members.3.extra", 1, "$.members[3].extra", "unknown field"),
        ("members.3.address", DELETE, "$.members[3].address", "missing"),
        ("members", {}, "$.members", "{} is not a list"),
        ("brokers.1.id", 1, "$.brokers[1].id", "1 is already used at $.brokers[0].id"),
        ("brokers.1.name", "bank-1", "$.brokers[1].name", "'bank-1' is already used at $.members"),
        ("brokers.1.accounts", [2001, 1002], "$.brokers[1].accounts[1]", "1002 is already used"),
        ("brokers.1.accounts", [7, "8"], "$.brokers[1].accounts[1]", "'8' is not an integer"),
        ("instruments.1.tick", 0.01, "$.instruments[1].tick", "float 0.01 is not allowed"),
        ("instruments.1", [1], "$.instruments[1]", "[1] is not an object"),
        ("holdings.0.amount_fen", 2**63, "$.holdings[0].amount_fen", "outside the signed 64-bit"),
        ("holdings", None, "$.holdings", "None is not a list"),
        ("extra", 1, "$.extra", "unknown field"),
        ("brokers", DELETE, "$.brokers", "missing"),
    ],
)
def test_errors_name_the_field_and_value(path: str, new: object, where: str, words: str) -> None:
    with pytest.raises(GenesisError) as caught:
        parse_genesis(changed(path, new))
    assert caught.value.path == where, str(caught.value)
    assert words in caught.value.reason, str(caught.value)


def test_a_valid_ipv6_address() -> None:
    assert (
        parse_genesis(changed("members.0.address", "[::1]:7000")).members[0].address == "[::1]:7000"
    )


def test_not_an_object() -> None:
    with pytest.raises(GenesisError, match=r"^\$: \[\] is not an object"):
        parse_genesis([])


def test_load_errors_start_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(b'{"version": 1,')
    with pytest.raises(GenesisError, match="^" + re.escape(f"{path}: $: not JSON")):
        load_genesis(path)
    path.write_bytes(orjson.dumps(changed("members.1.role", "bnak")))
    with pytest.raises(GenesisError, match=re.escape(f"{path}: $.members[1].role: 'bnak'")):
        load_genesis(path)


def test_built_in_code_is_validated_too() -> None:
    genesis = parse_genesis(sample())
    members = (*genesis.members, copy.copy(genesis.members[1]))
    with pytest.raises(GenesisError, match=r"\$\.members\[5\]\.id: 1 is already used"):
        Genesis(
            version=1,
            chain_id="x",
            members=members,
            brokers=genesis.brokers,
            instruments=genesis.instruments,
            holdings=genesis.holdings,
        )
