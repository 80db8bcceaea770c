"""Replication as two sans-IO state machines: the exchange's `Proposer` and a `Replica`.

Neither touches a socket, a clock or a thread. The shell (`ledger.node` over aiohttp, or a
simulated network in the tests) feeds each one the messages it receives and a periodic
`tick()`, and delivers the `Send`s they return. So the same code runs under a seeded
simulation with drops, delays, duplicates, partitions, crashes and Byzantine peers, and in the
real processes.

The exchange (`Proposer`) sequences commands, cuts them into blocks, executes each block on
its own state machine, stores it (an acknowledged command is in a stored block), and
proposes it to every voting member. A `Replica` checks the block (proposer signature, parent
link, commands root), re-executes it on its own machine, compares receipts root and state hash,
stores it, and only then votes. 2f + 1 votes make a certificate, which the exchange stores
and sends to every member. Several blocks may be in flight; if the highest certified height
falls more than `lag_max` blocks behind the tip, the exchange refuses new commands (degraded)
instead of running ahead unverified.

Lost messages are repaired by the tick: the exchange re-proposes uncertified blocks to members
that have not voted for them and re-sends its latest certificate; a replica that is behind,
or knows of certificates it lacks, fetches pages of blocks with their certificates from a
peer (the exchange first, then the members in turn) and verifies them exactly like proposals.

Time: a member refuses a block whose time is earlier than its parent's, or whose commands' times
go back or past the header's time (evidence: the signed block proves it). A block more than
`BLOCK_TIME_AHEAD_MAX_NS` ahead of the member's own clock (the shell passes its clock as
`now_ns`) is held, not stored, not voted for and not evidence: the member's clock may be the
wrong one. Each tick re-checks it. A block that comes with a valid certificate is taken whatever
its time: a quorum of members has already accepted it. The exchange never lets block time go
back nor stand still: `next_block_time`.

A restarted exchange first **recovers** (`Proposer(recover=True)`, what the processes do):
its store may have lost its last blocks (a power cut with `synchronous=NORMAL`, or a new
machine with an empty store), while members hold them. Before it sequences anything it asks
every voting member for the blocks above its first uncertified height (`Fetch`), checks every
block it gets exactly as a member would (its own signature, the parent link, the commands
root, re-execution to the same state hash), stores it, adds the certificate that comes with
it, and re-proposes the uncertified ones unchanged. It is done once 2f + 1 members have told
it their tip and it holds every block they offered (every member, or the quorum and
`RECOVERY_GRACE_TICKS` more ticks for the others). So it never signs a second block at a
height one of those members stored. Until then `submit` is refused (`recovering`) and `cut`
makes nothing.

What is evidence (stored, never voted for): a validly signed block that does not link or does
not match its commands (`invalid_block`), one whose re-execution differs (`diverged`), two
different signed headers at one height (`equivocation`), and a signed vote for a header the
exchange did not propose (`bad_vote`). Bad signatures are noise and are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.block import (
    BadTimeError,
    Block,
    BlockHeader,
    BrokenChainError,
    QuorumCertificate,
    Vote,
    certify,
    check_block,
    check_certificate,
    proposal_message,
    sign_vote,
)
from ledger.canonical import CanonicalError, canonical_bytes
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.machine import StateMachine, execute, propose, re_execute
from ledger.protocol import Blocks, Certified, Fetch, Message, Propose, VoteMessage
from ledger.store import BLOCKS_PAGE_MAX, BlockStore, StoreCorruptError, StoredBlock

PENDING_MAX: Final = 256  # blocks a replica holds ahead of its tip
FETCH_TICKS: Final = 5  # ticks before an unanswered fetch is given up and another peer asked
REPROPOSE_MAX: Final = 64  # uncertified blocks re-sent per tick
# ticks between two proposals of one block: a member that has not voted yet is usually still
# busy with it, and a duplicate costs it a decode of the whole block when it has least time
REPROPOSE_TICKS: Final = 4
QUEUE_MAX: Final = 200_000  # sequenced commands waiting for a block
BLOCK_COMMANDS: Final = 2_000
LAG_MAX: Final = 8  # blocks between the tip and the highest certificate before "degraded"
BLOCK_TIME_AHEAD_MAX_NS: Final = 2 * 10**9  # how far ahead of a member's clock a block may be
# While the exchange's clock is behind its last block's time (it ran ahead and was set back),
# block time advances by 1/SLEW_DIVISOR of the real time elapsed, so it stays monotonic, keeps
# moving, and meets the clock again after SLEW_DIVISOR / (SLEW_DIVISOR - 1) times the offset.
SLEW_DIVISOR: Final = 2
# ticks a recovering exchange waits for the members that have not answered once 2f + 1 have:
# a block stored only by a member that is slow to answer is still found
RECOVERY_GRACE_TICKS: Final = 20


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `message` to member `to` (a member id from the genesis)."""

    to: int
    message: Message


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the exchange did not take a command: `busy` (queue full), `degraded`,
    `malformed` or `recovering` (start-up: members have not yet answered)."""

    code: str
    message: str


MachineFactory = Callable[[], StateMachine]


class RecoveryError(Exception):
    """A block this exchange signed, fetched from a member while recovering, does not
    re-execute to its signed state hash: the exchange's machine is not the one that made it
    (another version, or a corrupt store). Fatal: sequencing on would fork the ledger."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"recovering block {height}: {reason}")
        self.height = height


def replay(
    store: BlockStore, new_machine: MachineFactory
) -> tuple[StateMachine, BlockHeader | None]:
    """A machine with every stored block re-applied, and the tip header. Raises
    `StoreCorruptError` naming the first height whose state hash the replay does not
    reproduce (run `jinlian verify` to see why). O(stored commands)."""
    machine = new_machine()
    tip: BlockHeader | None = None
    height = 1
    while True:
        page = store.blocks_from(height, BLOCKS_PAGE_MAX)
        for stored in page:
            header = stored.block.header
            execution = execute(machine, stored.block.commands, stored.block.times_ns)
            if execution.state_hash != header.state_hash:
                raise StoreCorruptError(header.height, "replay gives a different state hash")
            tip = header
        if len(page) < BLOCKS_PAGE_MAX:
            return machine, tip
        height += len(page)


def next_block_time(parent_ns: int | None, clock_ns: int, previous_clock_ns: int | None) -> int:
    """The time of the next block: the clock's, when it is past the parent's; otherwise (the
    clock is behind the chain, having run ahead and been set back) the parent's plus
    1/SLEW_DIVISOR of the clock time elapsed since the previous block was cut, and at least
    1 ns. So block time never goes back, never stands still, and meets the clock again."""
    if parent_ns is None or clock_ns > parent_ns:
        return clock_ns
    elapsed_ns = 0 if previous_clock_ns is None else max(0, clock_ns - previous_clock_ns)
    return parent_ns + max(1, elapsed_ns // SLEW_DIVISOR)


def _header_evidence(block: Block, reason: str) -> bytes:
    return canonical_bytes(
        {"header": block.header.to_dict(), "signature": block.signature.hex(), "reason": reason}
    )


class Replica:
    """A voting member: verifies, re-executes, stores and votes; serves catch-up."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        member_id: int,
        key: PrivateKey,
        store: BlockStore,
        new_machine: MachineFactory,
    ) -> None:
        self.genesis = genesis
        self.member_id = member_id
        self.key = key
        self.store = store
        self.new_machine = new_machine
        exchange = genesis.exchange
        self.exchange_id = exchange.id
        self.exchange_key = exchange.public_key
        self.voters = genesis.voters()
        self.quorum = genesis.quorum()
        self.peers = [exchange.id] + [
            member.id for member in genesis.members if member.id not in (member_id, exchange.id)
        ]
        self.machine, self.tip_header = replay(store, new_machine)
        self.pending: dict[int, Block] = {}
        self.uncertified: set[int] = set(store.uncertified_heights())
        self.known_tip = self.height
        self.known_certified = store.certified_height()
        self.fetch_wait = 0
        self.fetch_turn = 0
        self.now_ns: int | None = None  # the shell's clock at the current input; None: unknown
        self.held: Block | None = None  # the next block, ahead of our clock: re-checked by tick

    @property
    def height(self) -> int:
        return 0 if self.tip_header is None else self.tip_header.height

    # ---- input ----

    def receive(self, sender: int, message: Message, *, now_ns: int | None = None) -> list[Send]:
        """Handle one message from member `sender`; what to send in return. `now_ns`: the
        member's clock (None, as in the simulation: no block is too far ahead)."""
        self.now_ns = now_ns
        match message:
            case Propose(block, certified):
                if sender != self.exchange_id:
                    return []
                self.known_certified = max(self.known_certified, certified)
                self.known_tip = max(self.known_tip, block.header.height)
                return self._block(block, None)
            case Certified(certificate):
                self.known_certified = max(self.known_certified, certificate.height)
                self.known_tip = max(self.known_tip, certificate.height)
                self._certificate(certificate)
                return []
            case Fetch(start, limit):
                return [Send(sender, self._page(start, limit))]
            case Blocks(blocks, tip, certified):
                return self._catch_up(blocks, tip, certified)
            case VoteMessage():
                return []

    def tick(self, *, now_ns: int | None = None) -> list[Send]:
        """Periodic work: re-check a block held for its time, fetch what is missing when
        behind or lacking certificates."""
        self.now_ns = now_ns
        held = self.held
        if held is not None:
            if held.header.height != self.height + 1:
                self.held = None  # the chain moved on without it (certified blocks came)
            elif now_ns is not None and held.header.time_ns > now_ns + BLOCK_TIME_AHEAD_MAX_NS:
                if self.known_certified <= self.height:
                    return []  # still ahead of our clock, and no certified block to fetch
            else:
                self.held = None
                sends = self._block(held, None)
                if sends:
                    return sends
        if self.fetch_wait:
            self.fetch_wait -= 1
            return []
        start = self.height + 1
        missing = [h for h in self.uncertified if h <= self.known_certified]
        if missing:
            start = min(missing)
        elif self.known_tip <= self.height and not self.pending:
            return []
        return [self._fetch(start)]

    # ---- blocks ----

    def _block(self, block: Block, certificate: QuorumCertificate | None) -> list[Send]:
        height = block.header.height
        if height <= self.height:
            return self._known(block, certificate)
        if height > self.height + 1:
            return self._hold(block)
        sends = self._extend(block, certificate)
        while self.height + 1 in self.pending:
            sends += self._extend(self.pending.pop(self.height + 1), None)
        return sends

    def _known(self, block: Block, certificate: QuorumCertificate | None) -> list[Send]:
        """A block at a height already stored: a duplicate, or equivocation."""
        height = block.header.height
        stored = self.store.header(height)
        assert stored is not None, f"height {height} at or below the tip is not stored"
        if stored.hash != block.header.hash:
            if self._signed(block):
                first = self.store.block(height)
                assert first is not None, f"height {height} has a header but no block"
                self._equivocation(first, block)
            return []
        if certificate is not None:
            self._certificate(certificate)
        if height in self.uncertified:  # our vote may have been lost: send it again
            return [
                Send(self.exchange_id, VoteMessage(sign_vote(self.key, self.member_id, stored)))
            ]
        return []

    def _hold(self, block: Block) -> list[Send]:
        """A block beyond the next height: keep it (bounded) and fetch what is between."""
        height = block.header.height
        held = self.pending.get(height)
        if held is not None:
            if held.header.hash != block.header.hash and self._signed(block):
                self._equivocation(held, block)
            return []
        if height - self.height <= PENDING_MAX and self._signed(block):
            self.pending[height] = block
        return [] if self.fetch_wait else [self._fetch(self.height + 1)]

    def _extend(self, block: Block, certificate: QuorumCertificate | None) -> list[Send]:
        """Check, re-execute, store and vote for the block at the next height."""
        error = check_block(
            block,
            parent=self.tip_header,
            genesis_hash=self.genesis.hash,
            proposer=self.exchange_id,
            proposer_key=self.exchange_key,
        )
        if error is not None:
            # Only what the signed header proves is evidence against the proposer: a header
            # that does not extend our chain. Commands that do not match their root may have
            # been changed by whoever relayed them, and a bad signature proves nothing.
            if isinstance(error, BrokenChainError | BadTimeError):
                self._evidence("invalid_block", block, str(error))
            return []
        header = block.header
        valid_certificate = (
            certificate
            if certificate is not None
            and check_certificate(certificate, header, self.voters, self.quorum) is None
            else None
        )
        if valid_certificate is None and self._ahead_of_clock(block):
            return []
        execution, divergence = re_execute(self.machine, block)
        if divergence is not None:
            self._evidence("diverged", block, str(divergence))
            self.machine, _ = replay(self.store, self.new_machine)  # undo the block
            self.pending.clear()
            return []
        self.store.append(block, execution.events)
        self.tip_header = header
        self.known_tip = max(self.known_tip, header.height)
        if valid_certificate is not None:
            self.store.add_certificate(valid_certificate)
            return []
        self.uncertified.add(header.height)
        return [Send(self.exchange_id, VoteMessage(sign_vote(self.key, self.member_id, header)))]

    def _certificate(self, certificate: QuorumCertificate) -> None:
        if self.store.has_certificate(certificate.height):
            return  # the tick's reminder of one we keep: not worth 2f + 1 signature checks
        header = self.store.header(certificate.height)
        if header is None or header.hash != certificate.header_hash:
            return  # not stored yet (catch-up brings it with the block), or not ours
        if check_certificate(certificate, header, self.voters, self.quorum) is None:
            self.store.add_certificate(certificate)
            self.uncertified.discard(certificate.height)

    def _ahead_of_clock(self, block: Block) -> bool:
        """Hold `block` (the next, checked) if its time is too far ahead of our clock."""
        now_ns = self.now_ns
        if now_ns is None or block.header.time_ns <= now_ns + BLOCK_TIME_AHEAD_MAX_NS:
            return False
        held = self.held
        same_height = held is not None and held.header.height == block.header.height
        if same_height and held is not None and held.header.hash != block.header.hash:
            self._equivocation(held, block)  # both checked: signed by the proposer
        self.held = block
        return True

    # ---- catch-up ----

    def _fetch(self, start: int) -> Send:
        peer = self.peers[self.fetch_turn % len(self.peers)]
        self.fetch_turn += 1
        self.fetch_wait = FETCH_TICKS
        return Send(peer, Fetch(start, BLOCKS_PAGE_MAX))

    def _page(self, start: int, limit: int) -> Blocks:
        page = self.store.blocks_from(start, min(limit, BLOCKS_PAGE_MAX))
        return Blocks(tuple(page), self.height, self.store.certified_height())

    def _catch_up(self, blocks: Sequence[StoredBlock], tip: int, certified: int) -> list[Send]:
        self.fetch_wait = 0
        self.known_tip = max(self.known_tip, min(tip, self.height + PENDING_MAX))
        sends: list[Send] = []
        for stored in blocks:
            height = stored.block.header.height
            if height > self.height + 1:
                break  # a gap: ask again from the tip
            before = self.height
            sends += self._block(stored.block, stored.certificate)
            if height == before + 1 and self.height == before:
                break  # refused: the rest cannot link either
        self.known_certified = max(
            self.known_certified, min(certified, self.store.certified_height() + len(blocks))
        )
        held = self.held
        waiting = held is not None and held.header.height == self.height + 1  # for our clock
        if blocks and self.known_tip > self.height and not waiting:
            sends.append(self._fetch(self.height + 1))
        return sends

    # ---- helpers ----

    def _signed(self, block: Block) -> bool:
        return block.header.proposer == self.exchange_id and self.exchange_key.verify(
            proposal_message(block.header.hash), block.signature
        )

    def _evidence(self, kind: str, block: Block, reason: str) -> None:
        self.store.record_evidence(kind, block.header.height, _header_evidence(block, reason))

    def _equivocation(self, first: Block, second: Block) -> None:
        """Two headers the proposer signed for one height: the proof is both, signed."""
        signed = [
            {"header": block.header.to_dict(), "signature": block.signature.hex()}
            for block in (first, second)
        ]
        self.store.record_evidence("equivocation", first.header.height, canonical_bytes(signed))


class Proposer:
    """The exchange: sequences commands into blocks, collects votes into certificates."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        key: PrivateKey,
        store: BlockStore,
        new_machine: MachineFactory,
        block_commands: int = BLOCK_COMMANDS,
        queue_max: int = QUEUE_MAX,
        lag_max: int = LAG_MAX,
        recover: bool = False,
    ) -> None:
        self.genesis = genesis
        self.key = key
        self.store = store
        self.member_id = genesis.exchange.id
        self.voters = genesis.voters()
        self.quorum = genesis.quorum()
        self.block_commands = block_commands
        self.queue_max = queue_max
        self.lag_max = lag_max
        self.machine, self.tip_header = replay(store, new_machine)
        self.queue: list[bytes] = []  # sequenced commands' canonical bytes, encoded at `submit`
        self.queue_times: list[int | None] = []  # their sequencing times (None: the cut's)
        self.sequenced_ns = 0  # the last sequencing time given: times never go back
        self.last_clock_ns: int | None = None  # the clock at the last cut (next_block_time)
        self.votes: dict[int, dict[int, Vote]] = {}
        self.unvoted: dict[int, Block] = {}  # stored, proposed, not yet certified
        self.proposed: dict[bytes, int] = {}  # header hash -> height, for the unvoted
        self.proposed_at: dict[int, int] = {}  # height -> tick of its last proposal
        self.ticks = 0
        for height in store.uncertified_heights():
            block = store.block(height)
            assert block is not None, f"uncertified height {height} is not stored"
            self._await_votes(block, sent=False)  # re-proposed at the first tick
        self.certified = store.certified_height()
        self.latest_certificate = store.certificate(self.certified) if self.certified else None
        self.recovering = recover
        self.recovery_tips: dict[int, int] = {}  # member -> the tip it last reported
        self.recovery_done: set[int] = set()  # members whose blocks we hold (or refused)
        self.recovery_asked: dict[int, int] = {}  # member -> tick of the unanswered fetch
        self.recovery_quorum_tick: int | None = None  # when 2f + 1 members were done
        self.recovered: list[Block] = []  # stored while recovering; the shell takes them

    @property
    def height(self) -> int:
        return 0 if self.tip_header is None else self.tip_header.height

    @property
    def lag(self) -> int:
        """Blocks stored but not yet final: the tip minus the highest certified height."""
        return self.height - self.certified

    @property
    def degraded(self) -> bool:
        return self.lag > self.lag_max

    def submit(
        self,
        commands: Sequence[dict[str, Any]],
        time_ns: int | None = None,
        *,
        encoded: Sequence[bytes] | None = None,
    ) -> Refused | None:
        """Sequence a batch of commands, in order, for the next blocks; None if taken. Each
        command's sequencing time is `time_ns` (the shell's clock), or the last time given if
        that is later (times never go back); with None, the time of the block that takes it.
        The whole batch is refused (`malformed`) when a command has no canonical form (a float,
        say: it could not be hashed into a block), when degraded (the exchange does not run
        ahead of finality) or when it does not fit in the queue (`busy`). `encoded`, when
        given, are the commands' canonical bytes (trusted: the caller encoded them), and these
        very objects reach the state machine's `apply`, so a caller can recognise its own."""
        if encoded is None:
            encoded = []
            for index, command in enumerate(commands):
                try:
                    encoded.append(canonical_bytes(command))
                except CanonicalError as error:
                    where = f"commands[{index}]{error.path[1:]}"
                    return Refused("malformed", f"{where}: {error.reason}")
        assert len(encoded) == len(commands), "one encoding per command"
        return self.submit_encoded(encoded, time_ns)

    def submit_encoded(
        self, encoded: Sequence[bytes], time_ns: int | None = None
    ) -> Refused | None:
        """`submit` of commands already in their canonical bytes (trusted: the caller encoded
        them, or took them from a block); these very objects reach the state machine's
        `apply`."""
        if self.recovering:
            return Refused("recovering", self.recovery_progress())
        if self.degraded:
            return Refused(
                "degraded",
                f"finality is {self.lag} blocks behind the tip (at most {self.lag_max}): "
                "not accepting commands until members catch up",
            )
        if len(self.queue) + len(encoded) > self.queue_max:
            return Refused(
                "busy",
                f"{len(encoded)} commands do not fit: {len(self.queue)} queued "
                f"(at most {self.queue_max})",
            )
        sequenced: int | None = None
        if time_ns is not None:
            sequenced = self.sequenced_ns = max(self.sequenced_ns, time_ns)
        self.queue.extend(encoded)
        self.queue_times.extend([sequenced] * len(encoded))
        return None

    def cut(self, time_ns: int) -> tuple[Block | None, list[Send]]:
        """Make, store and propose the next block from the queued commands (None if there are
        none). Once this returns, the block's commands are acknowledged: they survive a crash.
        `time_ns` comes from the shell's clock; the block's time is `next_block_time` (the
        clock's, or, while the clock is behind the parent's time, slewed towards it), or its
        last command's time if that is later. Each command keeps its sequencing time, raised
        to the parent's time or the previous command's if it is earlier (`check_times`)."""
        if not self.queue or self.recovering:
            return None, []
        commands = self.queue[: self.block_commands]
        given = self.queue_times[: self.block_commands]
        del self.queue[: self.block_commands], self.queue_times[: self.block_commands]
        parent = self.tip_header
        parent_ns = None if parent is None else parent.time_ns
        block_ns = next_block_time(parent_ns, time_ns, self.last_clock_ns)
        times: list[int] = []
        previous = 0 if parent_ns is None else parent_ns
        for sequenced in given:
            previous = max(previous, block_ns if sequenced is None else sequenced)
            times.append(previous)
        block, execution = propose(
            self.machine,
            self.key,
            proposer=self.member_id,
            height=self.height + 1,
            parent_hash=self.genesis.hash if parent is None else parent.hash,
            time_ns=max(block_ns, previous),
            commands=commands,
            times_ns=times,
        )
        self.store.append(block, execution.events)
        self.tip_header = block.header
        self.last_clock_ns = time_ns
        self._await_votes(block)
        message = Propose(block, self.certified)
        return block, [Send(member, message) for member in self.voters if member != self.member_id]

    def _await_votes(self, block: Block, *, sent: bool = True) -> None:
        height = block.header.height
        self.unvoted[height] = block
        self.proposed_at[height] = self.ticks if sent else -REPROPOSE_TICKS
        self.proposed[block.header.hash] = height
        self.votes[height] = {}

    def receive(self, sender: int, message: Message) -> list[Send]:
        match message:
            case VoteMessage(vote):
                return self._vote(vote)
            case Fetch(start, limit):
                page = self.store.blocks_from(start, min(limit, BLOCKS_PAGE_MAX))
                return [Send(sender, Blocks(tuple(page), self.height, self.certified))]
            case Blocks(blocks, tip, _) if self.recovering and sender in self.voters:
                return self._recovery_page(sender, blocks, tip)
            case _:
                return []

    def tick(self) -> list[Send]:
        """Re-propose uncertified blocks to members that have not voted for them, oldest
        first, at most once per `REPROPOSE_TICKS` ticks each, and remind everyone of the
        latest certificate. While recovering: ask the members that have not answered."""
        self.ticks += 1
        if self.recovering:
            sends = self._recovery_tick()
            if self.recovering:
                return sends
        sends = []
        for height in sorted(self.unvoted)[:REPROPOSE_MAX]:
            if self.ticks - self.proposed_at[height] < REPROPOSE_TICKS:
                continue
            self.proposed_at[height] = self.ticks
            message = Propose(self.unvoted[height], self.certified)
            voted = self.votes[height]
            sends += [Send(m, message) for m in self.voters if m not in voted]
        if self.latest_certificate is not None:
            certified = Certified(self.latest_certificate)
            sends += [Send(m, certified) for m in self.voters if m != self.member_id]
        return sends

    def _vote(self, vote: Vote) -> list[Send]:
        key = self.voters.get(vote.member)
        if key is None:
            return []  # noise: anyone can send bytes
        height = self.proposed.get(vote.header_hash)
        if height is None:
            if self.recovering:
                return []  # perhaps for a block we lost and have not fetched back yet
            if self.store.has_header_hash(vote.header_hash):
                return []  # a late vote for a block already certified: no need to check it
            if vote.verify(key):
                # a member signed a header this exchange never proposed
                self.store.record_evidence("bad_vote", self.height, canonical_bytes(vote.to_dict()))
            return []
        if vote.member in self.votes[height] or not vote.verify(key):
            return []  # a duplicate (already checked), or noise
        votes = self.votes[height]
        votes[vote.member] = vote
        if len(votes) < self.quorum:
            return []
        block = self.unvoted[height]
        certificate = certify(block.header, votes.values())
        self._certified(certificate)
        message = Certified(certificate)
        return [Send(member, message) for member in self.voters if member != self.member_id]

    def _certified(self, certificate: QuorumCertificate) -> None:
        """Store a checked certificate of an uncertified stored block."""
        height = certificate.height
        del self.unvoted[height], self.votes[height], self.proposed_at[height]
        del self.proposed[certificate.header_hash]
        self.store.add_certificate(certificate)
        if height > self.certified:
            self.certified = height
            self.latest_certificate = certificate

    # ---- recovery ----

    def recovery_progress(self) -> str:
        """What recovery waits for, for the `recovering` refusal and the health check."""
        return (
            f"recovering: {len(self.recovery_done)} of {self.quorum} members needed have "
            f"answered (tips {dict(sorted(self.recovery_tips.items()))}), height {self.height}"
        )

    def _recovery_start(self) -> int:
        """Where to fetch from: the first stored block without a certificate (a member may
        hold the certificate we lost), else the block after the tip."""
        heights = sorted(self.unvoted)
        return heights[0] if heights else self.height + 1

    def _recovery_tick(self) -> list[Send]:
        self._recovery_check()
        if not self.recovering:
            return []  # recovered: this tick re-proposes the uncertified blocks
        start = self._recovery_start()
        sends: list[Send] = []
        for member in self.voters:
            if member == self.member_id or member in self.recovery_done:
                continue
            asked = self.recovery_asked.get(member)
            if asked is None or self.ticks - asked >= FETCH_TICKS:
                self.recovery_asked[member] = self.ticks
                sends.append(Send(member, Fetch(start, BLOCKS_PAGE_MAX)))
        return sends

    def _recovery_page(self, sender: int, blocks: Sequence[StoredBlock], tip: int) -> list[Send]:
        """A member's page: add every block that extends our chain, and its certificate; ask
        that member again while it offers more."""
        self.recovery_asked.pop(sender, None)
        self.recovery_tips[sender] = tip
        progress = False
        for stored in blocks:
            height = stored.block.header.height
            if height > self.height + 1:
                break
            if height <= self.height:
                progress |= self._recovered_certificate(stored)
                continue
            if not self._recovered_block(stored):
                break
            progress = True
        stale = bool(blocks) and blocks[-1].block.header.height <= self.height < tip
        if tip > self.height and (progress or stale):
            self.recovery_asked[sender] = self.ticks
            return [Send(sender, Fetch(self._recovery_start(), BLOCKS_PAGE_MAX))]
        self.recovery_done.add(sender)  # nothing more it can give us
        self._recovery_check()
        return []

    def _recovered_block(self, stored: StoredBlock) -> bool:
        """Check, re-execute and store a block we signed; False if it is not ours or does not
        extend our chain (a member's lie or garbage: ignored, as a member would)."""
        block = stored.block
        error = check_block(
            block,
            parent=self.tip_header,
            genesis_hash=self.genesis.hash,
            proposer=self.member_id,
            proposer_key=self.genesis.exchange.public_key,
        )
        if error is not None:
            return False
        header = block.header
        execution, divergence = re_execute(self.machine, block)
        if divergence is not None:
            raise RecoveryError(header.height, str(divergence))
        self.store.append(block, execution.events)
        self.tip_header = header
        self.recovered.append(block)
        self._await_votes(block, sent=False)
        self._recovered_certificate(stored)
        return True

    def _recovered_certificate(self, stored: StoredBlock) -> bool:
        """Keep the certificate that came with a stored block we lack one for."""
        certificate = stored.certificate
        height = stored.block.header.height
        if certificate is None or height not in self.unvoted:
            return False
        header = self.unvoted[height].header
        if check_certificate(certificate, header, self.voters, self.quorum) is not None:
            return False
        self._certified(certificate)
        return True

    def _recovery_check(self) -> None:
        """Done once 2f + 1 members have given all they hold, and either every member has or
        `RECOVERY_GRACE_TICKS` ticks have passed since."""
        done = len(self.recovery_done)
        if done < self.quorum:
            return
        if self.recovery_quorum_tick is None:
            self.recovery_quorum_tick = self.ticks
        members = sum(1 for member in self.voters if member != self.member_id)
        waited = self.ticks - self.recovery_quorum_tick
        if done >= members or waited >= RECOVERY_GRACE_TICKS:
            self.recovering = False
