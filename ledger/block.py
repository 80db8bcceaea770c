"""Blocks, votes and quorum certificates, and the checks a member runs before it votes.

A block (format v2) is a header, the sequenced commands it carries (their raw canonical bytes,
exactly as sequenced: nobody re-encodes them), each command's sequencing time and the proposer's
signature. The header commits to everything: the parent header's hash (the genesis hash for
height 1), the command count, the Merkle root of the raw command bytes (checked before
execution), the Merkle root of the receipts (one per command: its index, its time, its hash and
the events it produced, see `receipt_leaf`) and the state hash after the block. Its hash is
SHA-256 of its canonical bytes.

Command times: each command's `time_ns` is at least the previous command's (the first one's at
least the parent header's time) and at most its own header's time; `check_times` refuses a
block that breaks this with a `BadTimeError` naming the index.

Signatures are over a domain-separated message, `PROPOSAL_DOMAIN + header hash` for the
proposer and `VOTE_DOMAIN + header hash` for a vote, so that no signature made for one purpose
(a proposal, a vote, or a login challenge elsewhere) can be replayed as another. A quorum
certificate is `quorum_size(n)` votes of distinct voting members over one header hash.

Every check returns a `BlockError` (one subclass per kind of failure, naming the height and the
offending value) or None; checks never raise on bad input, so the shell decides whether to
raise, log, or record the error as evidence. Parsing blocks from JSON lives in `ledger.wire`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger.canonical import canonical_bytes, sha256
from ledger.keys import PrivateKey, PublicKey
from ledger.merkle import leaf_hash, root_of_leaf_hashes

HASH_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
BLOCK_COMMANDS_MAX: Final = 65_536
MEMBERS_MAX: Final = 256
PROPOSAL_DOMAIN: Final = b"jinlian/v1/proposal\n"
VOTE_DOMAIN: Final = b"jinlian/v1/vote\n"


class BlockError(Exception):
    """A block, vote or certificate that must not be accepted. `height` when it is known."""

    def __init__(self, height: int | None, message: str) -> None:
        super().__init__(message if height is None else f"block {height}: {message}")
        self.height = height


class MalformedBlockError(BlockError):
    """Not a block at all: a field is missing, of the wrong type, size or range."""


class BadSignatureError(BlockError):
    """The proposer's signature or a vote's signature does not verify."""


class UnknownSignerError(BlockError):
    """The proposer is not the expected one, or a voter is not a voting member."""


class WrongHeightError(BlockError):
    """The height is not the parent's height plus one."""


class BrokenChainError(BlockError):
    """The parent hash is not the hash of the parent header (or the genesis hash)."""


class BadTimeError(BlockError):
    """The header's time is earlier than the parent's, or a command's time goes back or past
    its header's time (the message names the command's index)."""


class BadRootError(BlockError):
    """The commands root or count in the header does not match the commands carried."""


class DivergedError(BlockError):
    """Re-executing the commands gave other receipts or another state than the header says."""


class NoQuorumError(BlockError):
    """A certificate without enough distinct votes for its header hash."""


def faults_tolerated(voters: int) -> int:
    """f, the number of faulty voters that n = 3f + 1 (or more) voters tolerate."""
    if voters < 1:
        raise ValueError(f"voters {voters} must be at least 1")
    return (voters - 1) // 3


def quorum_size(voters: int) -> int:
    """Votes needed for finality: 2f + 1 when voters = 3f + 1. For other sizes, n - f, which
    still makes any two quorums share an honest voter. Raises ValueError if voters < 1."""
    return voters - faults_tolerated(voters)


def proposal_message(header_hash: bytes) -> bytes:
    """What the proposer signs."""
    return PROPOSAL_DOMAIN + header_hash


def vote_message(header_hash: bytes) -> bytes:
    """What a voter signs."""
    return VOTE_DOMAIN + header_hash


def values_root(values: Iterable[object]) -> bytes:
    """Merkle root over the canonical bytes of each value: the commands root, or the events
    root. Raises `CanonicalError` for a value with no canonical form. O(total size)."""
    return root_of_leaf_hashes([leaf_hash(canonical_bytes(value)) for value in values])


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader:
    """What is signed and voted on. `hash` is computed once, at construction.

    The constructor trusts its arguments (parse untrusted JSON with `ledger.wire`); a value
    without a canonical form raises `CanonicalError`.
    """

    height: int  # 1 for the first block; the genesis file is height 0
    parent_hash: bytes  # hash of the previous header, or the genesis hash at height 1
    time_ns: int  # set by the proposer; never earlier than the parent's nor its commands'
    proposer: int  # member id
    command_count: int
    commands_root: bytes  # over the raw command bytes
    receipts_root: bytes  # over the receipt leaves (`receipt_leaf`), one per command
    state_hash: bytes  # the state machine's hash after applying the block
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", sha256(canonical_bytes(self.to_dict())))

    def to_dict(self) -> dict[str, object]:
        """The JSON form; its canonical bytes are what is hashed."""
        return {
            "height": self.height,
            "parent_hash": self.parent_hash.hex(),
            "time_ns": self.time_ns,
            "proposer": self.proposer,
            "command_count": self.command_count,
            "commands_root": self.commands_root.hex(),
            "receipts_root": self.receipts_root.hex(),
            "state_hash": self.state_hash.hex(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A header, the commands it commits to, their times and the proposer's signature.

    `commands` are the raw canonical bytes of each command as the exchange sequenced them: the
    leaves of the commands tree, what the state machine parses (once) and what the store keeps.
    They are never re-encoded. `times_ns[i]` is command i's sequencing time. The constructor
    trusts its arguments (parse untrusted JSON with `ledger.wire`, then `check_block`)."""

    header: BlockHeader
    commands: tuple[bytes, ...]
    times_ns: tuple[int, ...]
    signature: bytes

    def to_dict(self) -> dict[str, object]:
        """The JSON form: each command as the JSON text of its bytes (a string), so that a
        reader gets the very bytes the proposer hashed. Commands are UTF-8 (canonical JSON)."""
        return {
            "header": self.header.to_dict(),
            "commands": [command.decode() for command in self.commands],
            "times_ns": list(self.times_ns),
            "signature": self.signature.hex(),
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one command did: its position in the block, its time, its raw bytes and the
    canonical bytes of the events it produced. `leaf()` is its leaf in the receipts tree."""

    index: int
    time_ns: int
    command: bytes
    events: Sequence[bytes]

    def leaf(self) -> bytes:
        return receipt_leaf(self.index, self.time_ns, self.command, self.events)


def command_hash(command: bytes) -> bytes:
    """SHA-256 of a command's raw bytes: the `command_hash` of its receipt."""
    return hashlib.sha256(command).digest()


def receipt_leaf(index: int, time_ns: int, command: bytes, events: Sequence[bytes]) -> bytes:
    """The receipts tree's leaf of one command: the canonical bytes of
    `{"command_hash": hex(SHA-256(command)), "events": [event, ...], "index": index,
    "time_ns": time_ns}` (keys sorted, no whitespace), where each event is the JSON value whose
    canonical bytes the state machine returned. Built by concatenation, since every part is
    already canonical: equal to `canonical_bytes` of that object (a test checks it). O(bytes)."""
    return b"".join(  # a join is cheaper than bytes %-formatting here (about 0.5 us)
        (
            b'{"command_hash":"',
            hashlib.sha256(command).hexdigest().encode(),
            b'","events":[',
            b",".join(events),
            b'],"index":',
            str(index).encode(),
            b',"time_ns":',
            str(time_ns).encode(),
            b"}",
        )
    )


def receipts_root(
    commands: Sequence[bytes], times_ns: Sequence[int], events: Sequence[Sequence[bytes]]
) -> bytes:
    """The Merkle root of the receipts of `commands` (RFC 6962, one leaf per command).
    O(commands + event bytes)."""
    return root_of_leaf_hashes(
        [
            leaf_hash(receipt_leaf(index, time_ns, command, produced))
            for index, (command, time_ns, produced) in enumerate(
                zip(commands, times_ns, events, strict=True)
            )
        ]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """A member's signature over a header hash: "I re-executed this block and agree"."""

    member: int
    header_hash: bytes
    signature: bytes

    def verify(self, key: PublicKey) -> bool:
        """True if `key` signed this vote. Never raises."""
        return key.verify(vote_message(self.header_hash), self.signature)

    def to_dict(self) -> dict[str, object]:
        return {
            "member": self.member,
            "header_hash": self.header_hash.hex(),
            "signature": self.signature.hex(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumCertificate:
    """Votes of distinct voting members for one header: the proof that a block is final."""

    height: int
    header_hash: bytes
    votes: tuple[Vote, ...]  # in increasing member order when made by `certify`

    def verify(self, members: Mapping[int, PublicKey], quorum: int) -> BlockError | None:
        """None if at least `quorum` distinct members of `members` (the voting members and
        their keys) signed this header hash. Checks in order: each vote is for this hash,
        from a voting member, not repeated; the count; then every signature. O(votes)."""
        if len(self.votes) > len(members):
            return NoQuorumError(
                self.height, f"{len(self.votes)} votes, more than the {len(members)} voters"
            )
        seen: set[int] = set()
        for vote in self.votes:
            if vote.header_hash != self.header_hash:
                return NoQuorumError(
                    self.height,
                    f"vote of member {vote.member} is for header {vote.header_hash.hex()}, "
                    f"not {self.header_hash.hex()}",
                )
            if vote.member not in members:
                return UnknownSignerError(
                    self.height, f"vote of member {vote.member}, who is not a voting member"
                )
            if vote.member in seen:
                return NoQuorumError(self.height, f"member {vote.member} votes twice")
            seen.add(vote.member)
        if len(self.votes) < quorum:
            return NoQuorumError(
                self.height, f"{len(self.votes)} votes, fewer than the quorum of {quorum}"
            )
        for vote in self.votes:
            if not vote.verify(members[vote.member]):
                return BadSignatureError(
                    self.height, f"vote signature {vote.signature.hex()} of member {vote.member}"
                )
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "height": self.height,
            "header_hash": self.header_hash.hex(),
            "votes": [vote.to_dict() for vote in self.votes],
        }


def sign_block(
    key: PrivateKey, header: BlockHeader, commands: Sequence[bytes], times_ns: Sequence[int]
) -> Block:
    """The proposer's block. The header must already commit to these commands and times."""
    assert header.command_count == len(commands), "header command_count is not len(commands)"
    assert len(times_ns) == len(commands), "one time per command"
    signature = key.sign(proposal_message(header.hash))
    return Block(
        header=header, commands=tuple(commands), times_ns=tuple(times_ns), signature=signature
    )


def sign_vote(key: PrivateKey, member: int, header: BlockHeader) -> Vote:
    """A member's vote for `header`; cast it only after `check_block` and `check_execution`."""
    return Vote(
        member=member, header_hash=header.hash, signature=key.sign(vote_message(header.hash))
    )


def certify(header: BlockHeader, votes: Iterable[Vote]) -> QuorumCertificate:
    """A certificate of `votes` for `header`, one per member, in increasing member order."""
    by_member = {vote.member: vote for vote in votes}
    return QuorumCertificate(
        height=header.height,
        header_hash=header.hash,
        votes=tuple(by_member[member] for member in sorted(by_member)),
    )


def check_block(
    block: Block,
    *,
    parent: BlockHeader | None,
    genesis_hash: bytes,
    proposer: int,
    proposer_key: PublicKey,
) -> BlockError | None:
    """Everything a member checks before it re-executes a block, in this order:
    the proposer and its signature (an unsigned block is noise, a signed bad one is evidence),
    the height, the parent hash, the header's time, the commands against their root and count,
    then each command's time (`check_times`). `parent` is None for the first block, whose
    parent is the genesis. O(commands)."""
    header = block.header
    if header.proposer != proposer:
        return UnknownSignerError(
            header.height, f"proposer {header.proposer} is not the proposer {proposer}"
        )
    if not proposer_key.verify(proposal_message(header.hash), block.signature):
        return BadSignatureError(
            header.height,
            f"proposer signature {block.signature.hex()} of header {header.hash.hex()}",
        )
    error = check_link(header, parent=parent, genesis_hash=genesis_hash)
    if error is not None:
        return error
    error = check_commands(block)
    if error is not None:
        return error
    return check_times(block, parent)


def check_link(
    header: BlockHeader, *, parent: BlockHeader | None, genesis_hash: bytes
) -> BlockError | None:
    """The header extends `parent` (or the genesis, if None): height, parent hash, time."""
    height = 1 if parent is None else parent.height + 1
    if header.height != height:
        return WrongHeightError(header.height, f"height {header.height}, expected {height}")
    parent_hash = genesis_hash if parent is None else parent.hash
    if header.parent_hash != parent_hash:
        return BrokenChainError(
            header.height,
            f"parent hash {header.parent_hash.hex()} is not {parent_hash.hex()}",
        )
    if parent is not None and header.time_ns < parent.time_ns:
        return BadTimeError(
            header.height,
            f"time_ns {header.time_ns} is earlier than the parent's {parent.time_ns}",
        )
    return None


def check_commands(block: Block) -> BlockError | None:
    """The commands match the header's count and root (over their raw bytes, as received),
    and fit in a block; there is one time per command. O(command bytes)."""
    header = block.header
    count = len(block.commands)
    if count > BLOCK_COMMANDS_MAX:
        return MalformedBlockError(
            header.height, f"{count} commands, more than {BLOCK_COMMANDS_MAX}"
        )
    if count != header.command_count:
        return BadRootError(
            header.height, f"command_count {header.command_count} but {count} commands"
        )
    if len(block.times_ns) != count:
        return MalformedBlockError(
            header.height, f"{len(block.times_ns)} command times for {count} commands"
        )
    root = root_of_leaf_hashes([leaf_hash(data) for data in block.commands])
    if root != header.commands_root:
        return BadRootError(
            header.height,
            f"commands_root {header.commands_root.hex()}, but the commands hash to {root.hex()}",
        )
    return None


def check_times(block: Block, parent: BlockHeader | None) -> BlockError | None:
    """Each command's time is at least the previous command's (the first: at least the parent
    header's time, or 0 at height 1) and at most the header's time. The error names the index
    of the first command that breaks it. O(commands)."""
    header = block.header
    previous = 0 if parent is None else parent.time_ns
    for index, time_ns in enumerate(block.times_ns):
        if time_ns < previous:
            before = "the parent's time" if index == 0 else f"command {index - 1}'s time"
            return BadTimeError(
                header.height, f"command {index}: time_ns {time_ns} is before {before} {previous}"
            )
        if time_ns > header.time_ns:
            return BadTimeError(
                header.height,
                f"command {index}: time_ns {time_ns} is after the header's time_ns "
                f"{header.time_ns}",
            )
        previous = time_ns
    return None


def check_execution(
    header: BlockHeader, *, receipts_root: bytes, state_hash: bytes
) -> DivergedError | None:
    """Compare what re-execution produced with what the header claims, receipts first."""
    if receipts_root != header.receipts_root:
        return DivergedError(
            header.height,
            f"receipts_root {header.receipts_root.hex()}, re-execution gave {receipts_root.hex()}",
        )
    if state_hash != header.state_hash:
        return DivergedError(
            header.height,
            f"state_hash {header.state_hash.hex()}, re-execution gave {state_hash.hex()}",
        )
    return None


def check_certificate(
    certificate: QuorumCertificate,
    header: BlockHeader,
    members: Mapping[int, PublicKey],
    quorum: int,
) -> BlockError | None:
    """The certificate is for this header and carries a quorum of valid votes."""
    if certificate.height != header.height or certificate.header_hash != header.hash:
        return NoQuorumError(
            header.height,
            f"certificate for height {certificate.height} header "
            f"{certificate.header_hash.hex()}, not {header.hash.hex()}",
        )
    return certificate.verify(members, quorum)
