"""The genesis file: who the members are, and the state machine's starting data.

A JSON object with exactly these fields (docs/ledger.md has an example):

- `version`: 1.
- `chain_id`: 1 to 64 printable ASCII characters naming the consortium.
- `members`: nodes that replicate the ledger: `id` (int >= 0), `name` (a directory-safe
  word), `role` (exchange, bank, broker, depository or regulator), `public_key` (64 lowercase
  hex digits of an Ed25519 key), `address` (`host:port`, `[v6]:port` for IPv6) and `voting`.
- `brokers`: trading firms: `id`, `name`, `public_key`, `accounts` (ints).
- `instruments` and `holdings`: lists of JSON objects passed to the state machine as they are;
  the ledger checks only that they have a canonical form (no floats).

Rules, checked when a `Genesis` is built (so by `parse_genesis` too): ids, names, addresses
and account numbers unique (a name once among members and brokers together: a logon, an
admin command's `actor` and a report log each name one identity); no public key used twice
(a key that was two voters could vote twice); exactly one member has the role `exchange`,
and it proposes every block; the number of voting members n is 3f + 1 (1, 4, 7, ...): n = 1
tolerates no fault and is meant for development, n = 4 is the smallest consortium that
survives one faulty member.

The genesis hash, the parent of block 1, is SHA-256 of the canonical bytes of the file's JSON
value (every field is required and nothing has a default, so the file and the parsed `Genesis`
give the same bytes); whitespace and key order in the file do not matter.

Errors: `GenesisError`, naming the field path and the offending value (`members[2].role`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

import orjson

from ledger.block import MEMBERS_MAX, faults_tolerated, quorum_size
from ledger.canonical import INTEGER_MAX, CanonicalError, canonical_bytes, sha256
from ledger.keys import KeyFormatError, PublicKey, public_key_from_hex

VERSION: Final = 1
BROKERS_MAX: Final = 10_000
ACCOUNTS_PER_BROKER_MAX: Final = 10_000
INSTRUMENTS_MAX: Final = 100_000
HOLDINGS_MAX: Final = 1_000_000
GENESIS_BYTES_MAX: Final = 256 * 1024 * 1024
_CHAIN_ID = re.compile(r"[!-~]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_SHOWN_CHARS_MAX: Final = 80

Key = TypeVar("Key")


class GenesisError(ValueError):
    """A genesis file that must not be used. `path` locates the field (`$` is the file)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Role(StrEnum):
    """What a member is. On the wire and in the genesis hash: never rename a value."""

    EXCHANGE = "exchange"
    BANK = "bank"
    BROKER = "broker"
    DEPOSITORY = "depository"
    REGULATOR = "regulator"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    id: int
    name: str
    role: Role
    public_key: PublicKey
    address: str  # host:port of its replication endpoint
    voting: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "public_key": self.public_key.hex(),
            "address": self.address,
            "voting": self.voting,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Broker:
    id: int
    name: str
    public_key: PublicKey
    accounts: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "public_key": self.public_key.hex(),
            "accounts": list(self.accounts),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    """A validated genesis. Construction checks every rule of the module docstring and raises
    `GenesisError`; `hash` is computed once. O(size of the genesis)."""

    version: int
    chain_id: str
    members: tuple[Member, ...]
    brokers: tuple[Broker, ...]
    instruments: tuple[dict[str, object], ...]
    holdings: tuple[dict[str, object], ...]
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_genesis(self)
        try:
            data = canonical_bytes(self.to_dict())
        except CanonicalError as error:
            raise GenesisError(error.path, error.reason) from None
        object.__setattr__(self, "hash", sha256(data))

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "chain_id": self.chain_id,
            "members": [member.to_dict() for member in self.members],
            "brokers": [broker.to_dict() for broker in self.brokers],
            "instruments": list(self.instruments),
            "holdings": list(self.holdings),
        }

    @property
    def exchange(self) -> Member:
        """The one member with the role `exchange`: the proposer of every block."""
        return next(member for member in self.members if member.role is Role.EXCHANGE)

    def member(self, member_id: int) -> Member | None:
        """The member with this id, if any. O(members)."""
        return next((member for member in self.members if member.id == member_id), None)

    def voters(self) -> dict[int, PublicKey]:
        """Voting member id -> public key, for `QuorumCertificate.verify`."""
        return {member.id: member.public_key for member in self.members if member.voting}

    def quorum(self) -> int:
        """Votes that make a block final: 2f + 1 of the n = 3f + 1 voting members."""
        return quorum_size(len(self.voters()))


def parse_genesis(value: object) -> Genesis:
    """A `Genesis` from the JSON value of a genesis file. Raises `GenesisError`."""
    fields = _object(
        value, "$", ("version", "chain_id", "members", "brokers", "instruments", "holdings")
    )
    members = _list(fields["members"], "$.members", MEMBERS_MAX)
    brokers = _list(fields["brokers"], "$.brokers", BROKERS_MAX)
    instruments = _list(fields["instruments"], "$.instruments", INSTRUMENTS_MAX)
    holdings = _list(fields["holdings"], "$.holdings", HOLDINGS_MAX)
    return Genesis(
        version=_integer(fields["version"], "$.version"),
        chain_id=_text(fields["chain_id"], "$.chain_id"),
        members=tuple(_member(item, f"$.members[{index}]") for index, item in enumerate(members)),
        brokers=tuple(_broker(item, f"$.brokers[{index}]") for index, item in enumerate(brokers)),
        instruments=tuple(
            _object(item, f"$.instruments[{index}]") for index, item in enumerate(instruments)
        ),
        holdings=tuple(
            _object(item, f"$.holdings[{index}]") for index, item in enumerate(holdings)
        ),
    )


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file. Raises `GenesisError` (the message starts with the
    file's path), or OSError if the file cannot be read."""
    with path.open("rb") as file:
        data = file.read(GENESIS_BYTES_MAX + 1)
    try:
        if len(data) > GENESIS_BYTES_MAX:
            raise GenesisError("$", f"file larger than {GENESIS_BYTES_MAX} bytes")
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise GenesisError("$", f"not JSON: {error}") from None
        return parse_genesis(value)
    except GenesisError as error:
        raise GenesisError(f"{path}: {error.path}", error.reason) from None


def genesis_bytes(genesis: Genesis) -> bytes:
    """The file form: sorted keys, indented for people to read, final newline."""
    return (
        orjson.dumps(genesis.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    )


def save_genesis(genesis: Genesis, path: Path) -> None:
    """Write the genesis file, replacing any file at `path`."""
    path.write_bytes(genesis_bytes(genesis))


def _member(value: object, path: str) -> Member:
    fields = _object(value, path, ("id", "name", "role", "public_key", "address", "voting"))
    role = fields["role"]
    if role not in {role.value for role in Role}:
        choices = ", ".join(role.value for role in Role)
        raise GenesisError(f"{path}.role", f"{_show(role)} is not one of {choices}")
    voting = fields["voting"]
    if type(voting) is not bool:
        raise GenesisError(f"{path}.voting", f"{_show(voting)} is not true or false")
    return Member(
        id=_integer(fields["id"], f"{path}.id"),
        name=_text(fields["name"], f"{path}.name"),
        role=Role(role),
        public_key=_public_key(fields["public_key"], f"{path}.public_key"),
        address=_text(fields["address"], f"{path}.address"),
        voting=voting,
    )


def _broker(value: object, path: str) -> Broker:
    fields = _object(value, path, ("id", "name", "public_key", "accounts"))
    accounts = _list(fields["accounts"], f"{path}.accounts", ACCOUNTS_PER_BROKER_MAX)
    return Broker(
        id=_integer(fields["id"], f"{path}.id"),
        name=_text(fields["name"], f"{path}.name"),
        public_key=_public_key(fields["public_key"], f"{path}.public_key"),
        accounts=tuple(
            _integer(account, f"{path}.accounts[{index}]") for index, account in enumerate(accounts)
        ),
    )


def _check_genesis(genesis: Genesis) -> None:
    if genesis.version != VERSION:
        raise GenesisError("$.version", f"{genesis.version} is not the supported version {VERSION}")
    if not _CHAIN_ID.fullmatch(genesis.chain_id):
        raise GenesisError(
            "$.chain_id", f"{_show(genesis.chain_id)} is not 1 to 64 printable ASCII"
        )
    keys: dict[PublicKey, str] = {}
    names: dict[str, str] = {}  # members and brokers share one name space
    _check_members(genesis.members, keys, names)
    _check_brokers(genesis.brokers, keys, names)


def _check_members(
    members: tuple[Member, ...], keys: dict[PublicKey, str], names: dict[str, str]
) -> None:
    ids: dict[int, str] = {}
    addresses: dict[str, str] = {}
    for index, member in enumerate(members):
        path = f"$.members[{index}]"
        _unique(ids, member.id, f"{path}.id")
        _check_name(member.name, f"{path}.name")
        _unique(names, member.name, f"{path}.name")
        _check_address(member.address, f"{path}.address")
        _unique(addresses, member.address, f"{path}.address")
        _unique(keys, member.public_key, f"{path}.public_key")
    exchanges = [member.id for member in members if member.role is Role.EXCHANGE]
    if len(exchanges) != 1:
        raise GenesisError(
            "$.members", f"{len(exchanges)} members {exchanges} have the role exchange, not 1"
        )
    voters = sum(member.voting for member in members)
    if voters == 0 or (voters - 1) % 3:
        raise GenesisError(
            "$.members",
            f"{voters} voting members; n must be 3f + 1 (1, 4, 7, 10, ...)",
        )
    assert 3 * faults_tolerated(voters) + 1 == voters


def _check_brokers(
    brokers: tuple[Broker, ...], keys: dict[PublicKey, str], names: dict[str, str]
) -> None:
    ids: dict[int, str] = {}
    accounts: dict[int, str] = {}
    for index, broker in enumerate(brokers):
        path = f"$.brokers[{index}]"
        _unique(ids, broker.id, f"{path}.id")
        _check_name(broker.name, f"{path}.name")
        _unique(names, broker.name, f"{path}.name")
        _unique(keys, broker.public_key, f"{path}.public_key")
        for position, account in enumerate(broker.accounts):
            _unique(accounts, account, f"{path}.accounts[{position}]")


def _unique(seen: dict[Key, str], key: Key, path: str) -> None:
    if key in seen:
        raise GenesisError(path, f"{_show(key)} is already used at {seen[key]}")
    seen[key] = path


def _check_name(name: str, path: str) -> None:
    if not _NAME.fullmatch(name):
        raise GenesisError(path, f"{_show(name)} is not a name: letters, digits, '_', '.', '-'")


def _check_address(address: str, path: str) -> None:
    host, colon, port = address.rpartition(":")
    if not colon or not _HOST.fullmatch(host) or not _PORT.fullmatch(port) or int(port) > 65535:
        raise GenesisError(path, f"{_show(address)} is not host:port")


def _object(value: object, path: str, names: tuple[str, ...] | None = None) -> dict[str, object]:
    if type(value) is not dict:
        raise GenesisError(path, f"{_show(value)} is not an object")
    if names is None:
        return value
    for name in names:
        if name not in value:
            raise GenesisError(f"{path}.{name}", "missing")
    if len(value) != len(names):
        extra = sorted(str(key) for key in value if key not in names)
        raise GenesisError(f"{path}.{extra[0]}", "unknown field")
    return value


def _list(value: object, path: str, size_max: int) -> list[object]:
    if type(value) is not list:
        raise GenesisError(path, f"{_show(value)} is not a list")
    if len(value) > size_max:
        raise GenesisError(path, f"{len(value)} items, more than {size_max}")
    return value


def _integer(value: object, path: str) -> int:
    if type(value) is not int or not 0 <= value <= INTEGER_MAX:
        raise GenesisError(path, f"{_show(value)} is not an integer in [0, {INTEGER_MAX}]")
    return value


def _text(value: object, path: str) -> str:
    if type(value) is not str:
        raise GenesisError(path, f"{_show(value)} is not a string")
    return value


def _public_key(value: object, path: str) -> PublicKey:
    try:
        return public_key_from_hex(_text(value, path))
    except KeyFormatError as error:
        raise GenesisError(path, str(error)) from None


def _show(value: object) -> str:
    shown = repr(value)
    if len(shown) <= _SHOWN_CHARS_MAX:
        return shown
    return shown[: _SHOWN_CHARS_MAX - 3] + "..."
