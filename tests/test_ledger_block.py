"""Blocks, votes, quorum certificates: hashing, signing, every check and its error."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import (
    BLOCK_COMMANDS_MAX,
    PROPOSAL_DOMAIN,
    VOTE_DOMAIN,
    BadRootError,
    BadSignatureError,
    BadTimeError,
    Block,
    BlockError,
    BlockHeader,
    BrokenChainError,
    DivergedError,
    MalformedBlockError,
    NoQuorumError,
    QuorumCertificate,
    Receipt,
    UnknownSignerError,
    Vote,
    WrongHeightError,
    certify,
    check_block,
    check_certificate,
    check_execution,
    faults_tolerated,
    quorum_size,
    receipt_leaf,
    sign_block,
    sign_vote,
    values_root,
)
from ledger.canonical import canonical_bytes, sha256
from ledger.keys import PrivateKey, PublicKey
from ledger.machine import encode_commands
from ledger.merkle import leaf_hash, merkle_root
from ledger.wire import parse_block, parse_certificate, parse_header, parse_vote


def seeded_key(seed: int) -> PrivateKey:
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


EXCHANGE = 0
EXCHANGE_KEY = seeded_key(100)
VOTER_KEYS = {member: seeded_key(member) for member in (1, 2, 3, 4)}
VOTERS: dict[int, PublicKey] = {member: key.public_key for member, key in VOTER_KEYS.items()}
QUORUM = quorum_size(len(VOTERS))
GENESIS_HASH = sha256(b"genesis")
COMMANDS: list[dict[str, object]] = [
    {"type": "place", "order_id": 1, "price": 1000, "quantity": 100},
    {"type": "place", "order_id": 2, "price": 1001, "quantity": 200},
    {"type": "cancel", "order_id": 1},
]


def make_block(
    commands: Sequence[Mapping[str, object]] = COMMANDS,
    *,
    parent: BlockHeader | None = None,
    time_ns: int = 1_000,
    times_ns: Sequence[int] | None = None,
    key: PrivateKey = EXCHANGE_KEY,
    **changes: object,
) -> Block:
    """A signed block of `commands`, each at `times_ns` (default: the block's time)."""
    fields: dict[str, object] = {
        "height": 1 if parent is None else parent.height + 1,
        "parent_hash": GENESIS_HASH if parent is None else parent.hash,
        "time_ns": time_ns,
        "proposer": EXCHANGE,
        "command_count": len(commands),
        "commands_root": values_root(commands),
        "receipts_root": values_root([{"receipt": index} for index in range(5)]),
        "state_hash": sha256(b"state after"),
    }
    fields.update(changes)
    times = [time_ns] * len(commands) if times_ns is None else times_ns
    return sign_block(key, BlockHeader(**fields), encode_commands(commands), times)  # type: ignore[arg-type]


def check(block: Block, parent: BlockHeader | None = None) -> BlockError | None:
    return check_block(
        block,
        parent=parent,
        genesis_hash=GENESIS_HASH,
        proposer=EXCHANGE,
        proposer_key=EXCHANGE_KEY.public_key,
    )


def expect(error: object, kind: type[BlockError], *words: str) -> None:
    assert isinstance(error, kind), error
    for word in words:
        assert word in str(error), (word, str(error))


# ---- quorum arithmetic ----


def test_quorum_sizes() -> None:
    assert [quorum_size(n) for n in (1, 4, 7, 10, 100)] == [1, 3, 5, 7, 67]
    assert [faults_tolerated(n) for n in (1, 4, 7, 10)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="voters 0"):
        quorum_size(0)


@given(st.integers(1, 1000))
def test_two_quorums_share_an_honest_voter(voters: int) -> None:
    overlap = 2 * quorum_size(voters) - voters
    assert overlap >= faults_tolerated(voters) + 1
    assert quorum_size(voters) <= voters - faults_tolerated(voters)  # live with f silent


# ---- headers and blocks ----


def test_header_hash_is_sha256_of_canonical_bytes() -> None:
    header = make_block().header
    assert header.hash == sha256(canonical_bytes(header.to_dict()))
    assert canonical_bytes(header.to_dict()).startswith(b'{"command_count":3,"commands_root":"')
    assert set(header.to_dict()) == {"height", "parent_hash", "time_ns", "proposer",
                                     "command_count", "commands_root", "receipts_root",
                                     "state_hash"}  # fmt: skip
    assert header.commands_root == merkle_root(canonical_bytes(command) for command in COMMANDS)
    assert values_root([]) == sha256(b"")
    assert values_root([{"a": 1}]) == leaf_hash(b'{"a":1}')


def test_every_header_field_is_hashed() -> None:
    header = make_block().header
    other = sha256(b"other")
    changes: dict[str, Any] = {
        "height": 2,
        "parent_hash": other,
        "time_ns": 1_001,
        "commands_root": other,
        "command_count": 4,
        "receipts_root": other,
        "state_hash": other,
        "proposer": 9,
    }
    assert set(changes) == set(header.to_dict())
    hashes = {dataclasses.replace(header, **{name: value}).hash for name, value in changes.items()}
    assert len(hashes) == len(changes)
    assert header.hash not in hashes


def test_a_chain_of_blocks_checks() -> None:
    parent = None
    for height in range(1, 4):
        block = make_block(parent=parent, time_ns=1_000 * height)
        assert check(block, parent) is None
        assert block.header.height == height
        parent = block.header
    equal_time = make_block(parent=parent, time_ns=parent.time_ns if parent else 0)
    assert check(equal_time, parent) is None
    assert check(make_block([]), None) is None  # an empty block is a block


def test_wrong_proposer() -> None:
    expect(check(make_block(proposer=7)), UnknownSignerError, "block 1:", "proposer 7")


def test_bad_signatures() -> None:
    expect(check(make_block(key=seeded_key(1))), BadSignatureError, "proposer signature")
    block = make_block()
    forged = dataclasses.replace(
        block, header=dataclasses.replace(block.header, state_hash=sha256(b"forged"))
    )
    expect(check(forged), BadSignatureError, forged.header.hash.hex())
    vote_signed = dataclasses.replace(
        block, signature=EXCHANGE_KEY.sign(VOTE_DOMAIN + block.header.hash)
    )
    expect(check(vote_signed), BadSignatureError)  # a vote is not a proposal
    raw_signed = dataclasses.replace(block, signature=EXCHANGE_KEY.sign(block.header.hash))
    expect(check(raw_signed), BadSignatureError)
    expect(check(dataclasses.replace(block, signature=b"")), BadSignatureError)


def test_wrong_height_broken_chain_bad_time() -> None:
    first = make_block().header
    expect(check(make_block(height=2)), WrongHeightError, "height 2, expected 1")
    expect(check(make_block(parent=first, height=3), first), WrongHeightError, "expected 2")
    other = sha256(b"elsewhere")
    expect(check(make_block(parent_hash=other)), BrokenChainError, other.hex(), GENESIS_HASH.hex())
    expect(
        check(make_block(parent=first, parent_hash=GENESIS_HASH), first),
        BrokenChainError,
        first.hash.hex(),
    )
    expect(
        check(make_block(parent=first, time_ns=999), first),
        BadTimeError,
        "time_ns 999 is earlier than the parent's 1000",
    )


def test_commands_must_match_the_header() -> None:
    block = make_block()
    reordered = dataclasses.replace(block, commands=tuple(reversed(block.commands)))
    expect(check(reordered), BadRootError, "commands_root", block.header.commands_root.hex())
    dropped = dataclasses.replace(block, commands=block.commands[:-1])
    expect(check(dropped), BadRootError, "command_count 3 but 2 commands")
    respaced = dataclasses.replace(  # the same JSON value, other bytes: the bytes are hashed
        block, commands=(block.commands[0], block.commands[1].replace(b",", b", "),
                         block.commands[2])
    )  # fmt: skip
    expect(check(respaced), BadRootError, "commands_root", block.header.commands_root.hex())
    untimed = dataclasses.replace(block, times_ns=block.times_ns[:-1])
    expect(check(untimed), MalformedBlockError, "2 command times for 3 commands")
    many = [{"n": index} for index in range(BLOCK_COMMANDS_MAX + 1)]
    expect(check(make_block(many)), MalformedBlockError, f"more than {BLOCK_COMMANDS_MAX}")


def test_command_times_that_go_back_or_pass_the_header_are_refused_by_index() -> None:
    assert check(make_block(times_ns=[0, 500, 1_000])) is None
    expect(
        check(make_block(times_ns=[1_000, 999, 1_000])),
        BadTimeError,
        "block 1: command 1: time_ns 999 is before command 0's time 1000",
    )
    expect(
        check(make_block(times_ns=[900, 1_000, 1_001])),
        BadTimeError,
        "block 1: command 2: time_ns 1001 is after the header's time_ns 1000",
    )
    first = make_block().header
    expect(
        check(make_block(parent=first, time_ns=2_000, times_ns=[999, 1_500, 2_000]), first),
        BadTimeError,
        "block 2: command 0: time_ns 999 is before the parent's time 1000",
    )
    assert check(make_block(parent=first, time_ns=2_000, times_ns=[1_000] * 3), first) is None


EVENTS = st.lists(
    st.dictionaries(
        st.text(max_size=4),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=6), st.booleans(),
                  st.none(), st.lists(st.integers(0, 9), max_size=3)),
        max_size=4,
    ),
    max_size=5,
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    EVENTS, st.integers(0, 2**63 - 1), st.integers(0, BLOCK_COMMANDS_MAX), st.binary(max_size=40)
)
def test_the_receipt_leaf_is_the_canonical_bytes_of_its_object(
    events: list[dict[str, object]], time_ns: int, index: int, command: bytes
) -> None:
    """`receipt_leaf` concatenates instead of encoding: the same bytes as `canonical_bytes` of
    the object docs/ledger.md describes, which a browser rebuilds."""
    encoded = [canonical_bytes(event) for event in events]
    value = {"index": index, "time_ns": time_ns, "command_hash": sha256(command).hex(),
             "events": events}  # fmt: skip
    assert receipt_leaf(index, time_ns, command, encoded) == canonical_bytes(value)
    assert Receipt(index, time_ns, command, encoded).leaf() == canonical_bytes(value)


def test_the_first_failing_check_is_reported() -> None:
    block = make_block(height=5, key=seeded_key(9))
    expect(check(block), BadSignatureError)  # before the height: unsigned junk is not evidence


def test_check_execution() -> None:
    header = make_block().header
    good = {"receipts_root": header.receipts_root, "state_hash": header.state_hash}
    assert check_execution(header, **good) is None
    other = sha256(b"other")
    for name, value, words in [
        ("receipts_root", other, other.hex()),
        ("state_hash", other, other.hex()),
    ]:
        error = check_execution(header, **{**good, name: value})  # type: ignore[arg-type]
        expect(error, DivergedError, "block 1:", name, words)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5), max_size=3), max_size=8),
    st.data(),
)
def test_any_changed_command_is_caught(
    commands: list[dict[str, object]], data: st.DataObject
) -> None:
    block = make_block(commands)
    assert check(block) is None
    if not commands:
        return
    index = data.draw(st.integers(0, len(commands) - 1), label="index")
    changed = list(block.commands)
    changed[index] = canonical_bytes({**orjson.loads(changed[index]), "z": 1})
    expect(check(dataclasses.replace(block, commands=tuple(changed))), BadRootError)


# ---- votes and certificates ----


def votes_for(header: BlockHeader, members: Sequence[int]) -> list[Vote]:
    return [sign_vote(VOTER_KEYS[member], member, header) for member in members]


def test_certificate_with_a_quorum_verifies() -> None:
    header = make_block().header
    certificate = certify(header, votes_for(header, [3, 1, 2]))
    assert [vote.member for vote in certificate.votes] == [1, 2, 3]
    assert certificate.verify(VOTERS, QUORUM) is None
    assert check_certificate(certificate, header, VOTERS, QUORUM) is None
    everyone = certify(header, votes_for(header, [1, 2, 3, 4]))
    assert everyone.verify(VOTERS, QUORUM) is None


def test_certificate_failures() -> None:
    header = make_block().header
    votes = votes_for(header, [1, 2, 3])

    def certificate(*chosen: Vote) -> QuorumCertificate:
        return QuorumCertificate(height=1, header_hash=header.hash, votes=chosen)

    expect(certificate(*votes[:2]).verify(VOTERS, QUORUM), NoQuorumError, "2 votes, fewer than")
    expect(
        certificate(*votes, votes[0]).verify(VOTERS, QUORUM), NoQuorumError, "member 1 votes twice"
    )
    outsider = sign_vote(seeded_key(50), 50, header)
    expect(certificate(*votes, outsider).verify(VOTERS, QUORUM), UnknownSignerError, "member 50")
    elsewhere = make_block(state_hash=sha256(b"elsewhere")).header
    stray = sign_vote(VOTER_KEYS[4], 4, elsewhere)
    expect(
        certificate(*votes[:2], stray).verify(VOTERS, QUORUM),
        NoQuorumError,
        f"vote of member 4 is for header {elsewhere.hash.hex()}",
    )
    impostor = Vote(
        member=3, header_hash=header.hash, signature=VOTER_KEYS[4].sign(VOTE_DOMAIN + header.hash)
    )
    expect(certificate(*votes[:2], impostor).verify(VOTERS, QUORUM), BadSignatureError, "member 3")
    proposal_as_vote = Vote(
        member=3,
        header_hash=header.hash,
        signature=VOTER_KEYS[3].sign(PROPOSAL_DOMAIN + header.hash),
    )
    expect(certificate(*votes[:2], proposal_as_vote).verify(VOTERS, QUORUM), BadSignatureError)
    crowd = certificate(*votes_for(header, [1, 2, 3, 4]), outsider)
    expect(crowd.verify(VOTERS, QUORUM), NoQuorumError, "5 votes, more than the 4 voters")
    other = certify(elsewhere, votes_for(elsewhere, [1, 2, 3]))
    expect(check_certificate(other, header, VOTERS, QUORUM), NoQuorumError, header.hash.hex())


# ---- the JSON form ----


def round_trip(value: Block | Vote | QuorumCertificate) -> object:
    return orjson.loads(canonical_bytes(value.to_dict()))


def test_json_round_trips() -> None:
    block = make_block()
    assert parse_block(round_trip(block)) == block
    assert parse_header(round_trip(block)["header"]) == block.header  # type: ignore[index]
    vote = votes_for(block.header, [2])[0]
    assert parse_vote(round_trip(vote)) == vote
    certificate = certify(block.header, votes_for(block.header, [1, 2, 3]))
    assert parse_certificate(round_trip(certificate)) == certificate
    parsed = parse_block(round_trip(block))
    assert isinstance(parsed, Block)
    assert parsed.header.hash == block.header.hash
    assert check(parsed) is None


def header_json() -> dict[str, object]:
    return make_block().header.to_dict()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"height": 0}, "header.height: 0 is not an integer in [1,"),
        ({"height": True}, "header.height: True is not an integer"),
        ({"time_ns": -1}, "header.time_ns: -1 is not an integer"),
        ({"time_ns": 1.0}, "header.time_ns: 1.0 is not an integer"),
        ({"command_count": BLOCK_COMMANDS_MAX + 1}, "header.command_count: 65537"),
        ({"state_hash": "AB" * 32}, "header.state_hash: 'ABAB"),
        ({"state_hash": "ab" * 31}, "is not 64 lowercase hex"),
        ({"parent_hash": "zz" * 32}, "header.parent_hash: 'zzzz"),
        ({"proposer": "0"}, "header.proposer: '0' is not an integer"),
        ({"extra": 1}, "header.extra: unknown field"),
    ],
)
def test_malformed_headers_name_the_field(change: dict[str, object], words: str) -> None:
    error = parse_header({**header_json(), **change})
    expect(error, MalformedBlockError, words)


def test_malformed_blocks_and_certificates_name_the_field() -> None:
    missing = header_json()
    del missing["receipts_root"]
    expect(parse_header(missing), MalformedBlockError, "header.receipts_root: missing")
    old = {**header_json(), "events_root": "00" * 32, "event_count": 0}  # a v1 header
    expect(parse_header(old), MalformedBlockError, "header.event_count: unknown field")
    expect(parse_header([1]), MalformedBlockError, "header: [1] is not an object")
    block = make_block().to_dict()
    expect(
        parse_block({**block, "commands": ['{"a":1}', {"a": 1}, "", "{}"]}),
        MalformedBlockError,
        "block.commands[1]: {'a': 1} is not a non-empty string",
    )
    expect(
        parse_block({**block, "commands": ['{"a":1}', ""], "times_ns": [1, 1]}),
        MalformedBlockError,
        "block.commands[1]: '' is not a non-empty string",
    )
    expect(
        parse_block({**block, "times_ns": [1, -1, 1]}),
        MalformedBlockError,
        "block.times_ns[1]: -1 is not an integer",
    )
    expect(
        parse_block({**block, "times_ns": [1, 1]}),
        MalformedBlockError,
        "block.times_ns: 2 times for 3 commands",
    )
    expect(
        parse_block({**block, "signature": "00" * 63}),
        MalformedBlockError,
        "block.signature:",
        "is not 128 lowercase hex",
    )
    bad_header = {**block, "header": {**header_json(), "height": -1}}
    expect(parse_block(bad_header), MalformedBlockError, "block.header.height: -1")
    header = make_block().header
    certificate = certify(header, votes_for(header, [1, 2, 3])).to_dict()
    votes = certificate["votes"]
    assert isinstance(votes, list)
    votes[1] = {**votes[1], "member": -2}
    expect(
        parse_certificate(certificate),
        MalformedBlockError,
        "certificate.votes[1].member: -2 is not an integer",
    )
    expect(
        parse_certificate({**certificate, "votes": [votes[0]] * 257}),
        MalformedBlockError,
        "certificate.votes: 257 items, more than 256",
    )
