"""A seeded, simulated network for the replication protocol: many nodes in one process.

Virtual time in milliseconds. Every message is encoded to bytes and decoded on delivery (so the
codec is exercised), and may be dropped, delayed (which reorders), duplicated, or cut by a
partition. Members and the exchange crash (their in-memory state is discarded; their SQLite
store, which holds only committed transactions, survives) and restart from their store.
Byzantine members are honest `Replica`s whose outgoing votes are rewritten.

Storage faults (`Faults.power_cuts`): a crash may be a power cut, which loses what the
machine had not yet made durable. The sim takes the store's files as they are on disk (the
database and its write-ahead log), cuts the log at a random byte within its last
`TEAR_BYTES_MAX` (so the last transactions are lost, and the last frame is torn mid-write),
and reopens: SQLite drops every frame after the first one that fails its checksum and every
transaction without a commit frame, as it does after a real power cut with
`synchronous=NORMAL`. Messages the machine had queued but not yet delivered are lost with it.
The exchange restarts recovering (`Proposer(recover=True)`), as the processes do.

The fault model keeps one copy of everything: the exchange loses power only while every
member is up and reachable, and no member crashes or is cut off while the exchange is down
or recovering (a block stored only by a member the exchange cannot reach is the one loss
recovery cannot prevent: docs/ledger.md, "Recovery").

The history check (`History`) records what every client was told when its command was
acknowledged (the height, the block's header hash, and its report index: the command's
position among that client's commands in the chain) and compares it with the final ledger.

Everything random comes from one `random.Random(seed)`, keys included, so a failing seed
replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.block import Vote, sign_vote, vote_message
from ledger.canonical import canonical_bytes, sha256
from ledger.genesis import Genesis, Member, Role
from ledger.keys import PrivateKey
from ledger.protocol import Fetch, MalformedMessage, VoteMessage, decode, encode
from ledger.replication import Proposer, Replica, Send
from ledger.store import BlockStore

EXCHANGE = 0
TICK_MS = 10
CUT_MS = 20
TEAR_BYTES_MAX = 160 * 1024  # of the write-ahead log a power cut may lose: a few blocks
RECOVERY_MS_MAX = 2_000


class CounterMachine:
    """A toy deterministic state machine: `{"id": n, "key": k, "add": a}` adds to a counter."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def apply(self, data: bytes, time_ns: int) -> list[bytes]:
        command = orjson.loads(data)
        key, add = command.get("key"), command.get("add")
        if not isinstance(key, str) or type(add) is not int:
            return [canonical_bytes({"type": "error", "id": command.get("id")})]
        value = self.values.get(key, 0) + add
        self.values[key] = value
        return [canonical_bytes({"type": "added", "key": key, "value": value})]

    def state_hash(self) -> bytes:
        return sha256(canonical_bytes(self.values))


def seeded_key(rng: random.Random) -> PrivateKey:
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))


def make_genesis(rng: random.Random, voters: int) -> tuple[Genesis, dict[int, PrivateKey]]:
    keys = {member: seeded_key(rng) for member in range(voters + 1)}
    members = tuple(
        Member(
            id=member,
            name="exchange" if member == EXCHANGE else f"bank{member}",
            role=Role.EXCHANGE if member == EXCHANGE else Role.BANK,
            public_key=keys[member].public_key,
            address=f"127.0.0.1:{9000 + member}",
            voting=member != EXCHANGE,
        )
        for member in keys
    )
    genesis = Genesis(
        version=1, chain_id="sim", members=members, brokers=(), instruments=(), holdings=()
    )
    return genesis, keys


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_max_ms: int = 5
    partitions: bool = False
    member_crashes: bool = False
    exchange_crashes: bool = False
    power_cuts: bool = False  # a crash may lose the store's unsynced tail, tearing a write
    byzantine: dict[int, str] = field(default_factory=dict)  # member -> behaviour


@dataclass(frozen=True, slots=True)
class Told:
    """What a client was told when its command was acknowledged."""

    client: str
    height: int
    header_hash: bytes
    index: int  # its position among the client's commands in the chain, from 1


class Sim:
    def __init__(self, seed: int, directory: Path, faults: Faults, voters: int = 4) -> None:
        self.rng = random.Random(seed)
        self.directory = directory
        self.faults = faults
        self.genesis, self.keys = make_genesis(self.rng, voters)
        self.now = 0
        self.sequence = 0
        self.queue: list[tuple[int, int, int, int, bytes]] = []
        self.nodes: dict[int, Proposer | Replica | None] = {}
        self.stores: dict[int, BlockStore] = {}
        self.cut_pairs: set[frozenset[int]] = set()
        self.next_command = 1
        self.acknowledged: list[int] = []  # command ids in blocks the exchange stored
        self.final: dict[int, bytes] = {}  # height -> header hash, as certificates formed
        self.refusals: dict[str, int] = {}
        self.malformed = 0
        self.crashes: dict[int, int] = {}
        self.power_cuts: dict[int, int] = {}
        self.partitions = 0
        self.told: dict[int, Told] = {}  # command id -> what its client was told
        self.client_counts: list[Counter[str]] = [Counter()]  # per height of the exchange
        self.lost_everywhere: set[int] = set()  # acknowledged, then lost on every copy
        self.lost_blocks = 0  # blocks a power cut took from the exchange
        self.lost_held = 0  # of which a member held a copy
        self.power_cut_height: int | None = None  # the exchange loses power at this height
        for member in self.keys:
            self.start(member)
        self.recover()

    # ---- nodes ----

    def start(self, member: int) -> None:
        store = BlockStore.open(self.directory / f"{member}.sqlite", self.genesis.hash)
        self.stores[member] = store
        if member == EXCHANGE:
            self.nodes[member] = Proposer(
                genesis=self.genesis,
                key=self.keys[member],
                store=store,
                new_machine=CounterMachine,
                block_commands=50,
                lag_max=8,
                recover=True,
            )
        else:
            self.nodes[member] = Replica(
                genesis=self.genesis,
                member_id=member,
                key=self.keys[member],
                store=store,
                new_machine=CounterMachine,
            )

    def recover(self) -> None:
        """Run the network, without load or faults, until the exchange has recovered."""
        exchange = self.exchange
        assert exchange is not None
        for _ in range(RECOVERY_MS_MAX):
            if not exchange.recovering:
                return
            self.step(faulty=False, load=False)
        raise AssertionError(f"the exchange did not recover: {exchange.recovery_progress()}")

    def crash(self, member: int, *, power_cut: bool = False) -> None:
        self.crashes[member] = self.crashes.get(member, 0) + 1
        self.nodes[member] = None
        if not power_cut:
            self.stores[member].close()
            return
        self.power_cuts[member] = self.power_cuts.get(member, 0) + 1
        path = self.directory / f"{member}.sqlite"
        wal = path.with_name(path.name + "-wal")
        database = path.read_bytes()  # the files as they are on disk at the cut
        log = wal.read_bytes() if wal.exists() else b""
        before = chain(self.stores[member])
        self.stores[member].close()  # (a checkpoint: undone by writing the files back)
        if len(log) > 32:  # keep the log's header; lose a random tail, maybe mid-frame
            log = log[: self.rng.randint(max(32, len(log) - TEAR_BYTES_MAX), len(log))]
        path.write_bytes(database)
        wal.write_bytes(log)
        path.with_name(path.name + "-shm").unlink(missing_ok=True)
        self.queue = [item for item in self.queue if item[3] != member]  # unsent, lost
        heapq.heapify(self.queue)
        if member == EXCHANGE:
            self.lost_by_exchange(before)

    def lost_by_exchange(self, before: list[tuple[bytes, bytes]]) -> None:
        """After the exchange's power cut: which lost blocks no member holds either."""
        with BlockStore.open(self.directory / f"{EXCHANGE}.sqlite", self.genesis.hash) as store:
            kept = len(chain(store))
        del self.client_counts[kept + 1 :]
        lost = before[kept:]
        self.lost_blocks += len(lost)
        for offset, (header_hash, _) in enumerate(lost):
            height = kept + 1 + offset
            held = False
            for member, node in self.nodes.items():
                if isinstance(node, Replica):  # stored, or held ahead of its tip
                    header = self.stores[member].header(height)
                    pending = node.pending.get(height)
                    header = header if pending is None else pending.header
                    held |= header is not None and header.hash == header_hash
                else:
                    assert member == EXCHANGE, "the model keeps members up here"
            if held:
                self.lost_held += 1  # recovery must bring it back unchanged
            else:
                self.lost_everywhere |= {i for i, t in self.told.items() if t.height == height}

    @property
    def exchange(self) -> Proposer | None:
        node = self.nodes[EXCHANGE]
        assert node is None or isinstance(node, Proposer)
        return node

    def honest(self) -> list[int]:
        return [m for m in self.keys if m not in self.faults.byzantine]

    # ---- network ----

    def send(self, sender: int, sends: list[Send]) -> None:
        for send in sends:
            for message in self.rewrite(sender, send):
                self.post(sender, send.to, encode(message))

    def post(self, sender: int, to: int, data: bytes) -> None:
        faults = self.faults
        if frozenset((sender, to)) in self.cut_pairs or self.rng.random() < faults.drop:
            return
        copies = 2 if self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            self.sequence += 1
            when = self.now + self.rng.randint(1, faults.delay_max_ms)
            heapq.heappush(self.queue, (when, self.sequence, to, sender, data))

    def rewrite(self, sender: int, send: Send) -> list[Any]:
        """What a Byzantine member sends instead of an honest vote."""
        behaviour = self.faults.byzantine.get(sender)
        message = send.message
        if behaviour is None:
            return [message]
        if behaviour == "silent":
            return []
        if behaviour == "lying_server" or not isinstance(message, VoteMessage):
            return [message]  # a lying server lies in its catch-up pages (`lie`)
        vote = message.vote
        key = self.keys[sender]
        wrong = sha256(vote.header_hash)
        if behaviour == "bad_signature":
            forged = Vote(member=sender, header_hash=vote.header_hash, signature=bytes(64))
            return [VoteMessage(forged)]
        if behaviour == "wrong_hash":
            signature = key.sign(vote_message(wrong))
            return [VoteMessage(Vote(member=sender, header_hash=wrong, signature=signature))]
        if behaviour == "equivocate":
            signature = key.sign(vote_message(wrong))
            other = Vote(member=sender, header_hash=wrong, signature=signature)
            return [VoteMessage(other), message]
        if behaviour == "impersonate":  # votes in another member's name with its own key
            victim = 1 if sender != 1 else 2
            return [VoteMessage(Vote(member=victim, header_hash=vote.header_hash,
                                     signature=vote.signature)), message]  # fmt: skip
        raise AssertionError(f"unknown behaviour {behaviour}")

    def deliver(self) -> None:
        while self.queue and self.queue[0][0] <= self.now:
            _, _, to, sender, data = heapq.heappop(self.queue)
            node = self.nodes.get(to)
            if node is None:
                continue
            message = decode(data)
            if isinstance(message, MalformedMessage):
                self.malformed += 1
                continue
            if self.faults.byzantine.get(to) == "lying_server" and isinstance(message, Fetch):
                self.send(to, self.lie(node, sender, message))
                continue
            self.send(to, node.receive(sender, message))
            self.record_finality()

    def lie(self, node: Proposer | Replica, sender: int, fetch: Fetch) -> list[Send]:
        """Serve catch-up pages whose commands were changed after signing."""
        sends = node.receive(sender, fetch)
        for send in sends:
            for stored in getattr(send.message, "blocks", ()):
                commands = stored.block.commands
                if commands:
                    changed = orjson.loads(commands[0])
                    changed["add"] = int(changed.get("add", 0)) + 1
                    changed_bytes = canonical_bytes(changed)
                    object.__setattr__(stored.block, "commands", (changed_bytes, *commands[1:]))
        return sends

    def record_finality(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        certificate = exchange.latest_certificate
        if certificate is not None:
            known = self.final.setdefault(certificate.height, certificate.header_hash)
            assert known == certificate.header_hash, f"final block {certificate.height} changed"

    # ---- the run ----

    def submit_some(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        for _ in range(self.rng.randint(0, 6)):
            command = {"id": self.next_command, "key": f"k{self.rng.randint(1, 5)}",
                       "add": self.rng.randint(-3, 9)}  # fmt: skip
            refused = exchange.submit([command])
            if refused is None:
                self.next_command += 1
            else:
                self.refusals[refused.code] = self.refusals.get(refused.code, 0) + 1

    def step(self, faulty: bool, load: bool = True) -> None:
        self.now += 1
        self.deliver()
        if load and self.now % 3 == 0:
            self.submit_some()
        exchange = self.exchange
        if exchange is not None and self.now % CUT_MS == 0:
            block, sends = exchange.cut(time_ns=self.now * 1_000_000)
            if block is not None:
                self.acknowledged += [int(orjson.loads(c)["id"]) for c in block.commands]
                self.tell(block.header.height)
            self.send(EXCHANGE, sends)
        if self.now % TICK_MS == 0:
            for member, node in list(self.nodes.items()):
                if node is not None:
                    self.send(member, node.tick())
        if faulty:
            self.chaos()

    def tell(self, height: int) -> None:
        """Acknowledge the commands of the exchange's block at `height` to their clients,
        with report indexes counted on the exchange's chain (recovered blocks included)."""
        store = self.stores[EXCHANGE]
        while len(self.client_counts) <= height:
            block = store.block(len(self.client_counts))
            assert block is not None
            counts = Counter(self.client_counts[-1])
            for command in map(orjson.loads, block.commands):
                counts[str(command["key"])] += 1
                if block.header.height == height:
                    client = str(command["key"])
                    told = Told(client, height, block.header.hash, counts[client])
                    self.told[int(command["id"])] = told
            self.client_counts.append(counts)

    def chaos(self) -> None:
        rng, faults = self.rng, self.faults
        exchange = self.exchange
        exchange_whole = exchange is not None and not exchange.recovering
        power_cut_exchange = faults.power_cuts and faults.exchange_crashes
        if self.now == 300 and power_cut_exchange:
            self.heal()  # the model: the exchange loses power while members are whole
            self.power_cut_height = -1  # set once the exchange is whole
            return
        if self.power_cut_height is not None:  # once the exchange is whole, 3 blocks on
            every_member = all(node is not None for node in self.nodes.values())
            if exchange_whole and every_member and not self.cut_pairs:
                assert exchange is not None
                if self.power_cut_height < 0:
                    self.power_cut_height = exchange.height + 3
                if exchange.height >= self.power_cut_height and rng.random() < 0.1:
                    self.power_cut_height = None
                    self.crash(EXCHANGE, power_cut=True)
            return
        if self.now == (150 if power_cut_exchange else 300):  # each fault at least once
            if faults.partitions:
                self.partitions += 1
                self.cut_pairs = {frozenset((1, m)) for m in self.keys if m != 1}
            if faults.member_crashes and self.nodes[2] is not None:
                self.crash(2, power_cut=faults.power_cuts)
            if faults.exchange_crashes and not power_cut_exchange:
                self.crash(EXCHANGE)  # (with power cuts, at 300 instead)
            return
        if faults.member_crashes and rng.random() < 0.004:
            member = rng.choice([m for m in self.honest() if m != EXCHANGE])
            if self.nodes[member] is None:
                self.start(member)
            elif sum(node is None for node in self.nodes.values()) == 0 and exchange_whole:
                # at most one honest member down at a time
                self.crash(member, power_cut=faults.power_cuts and rng.random() < 0.5)
        if faults.exchange_crashes and rng.random() < 0.002:
            if self.nodes[EXCHANGE] is None:
                self.start(EXCHANGE)
            else:
                every_member = all(node is not None for node in self.nodes.values())
                power_cut = faults.power_cuts and every_member and not self.cut_pairs
                power_cut &= self.now > 300  # not to upset the schedule above
                self.crash(EXCHANGE, power_cut=power_cut and rng.random() < 0.5)
        if faults.partitions and rng.random() < 0.003:
            if self.cut_pairs:
                self.cut_pairs.clear()
            elif exchange_whole:
                self.partitions += 1
                side = rng.choice([m for m in self.keys if m != EXCHANGE])
                self.cut_pairs = {frozenset((side, m)) for m in self.keys if m != side}

    def heal(self) -> None:
        self.cut_pairs.clear()
        for member, node in self.nodes.items():
            if node is None:
                self.start(member)

    def run(self, faulty_ms: int, quiet_ms: int) -> None:
        for _ in range(faulty_ms):
            self.step(faulty=True)
        self.heal()
        saved = (self.faults.drop, self.faults.duplicate)
        self.faults.drop = self.faults.duplicate = 0.0
        for elapsed in range(quiet_ms):
            self.step(faulty=False, load=elapsed < quiet_ms // 2)  # then drain
        self.faults.drop, self.faults.duplicate = saved

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def chain(store: BlockStore) -> list[tuple[bytes, bytes]]:
    """(header hash, state hash) at every stored height."""
    tip = store.tip()
    headers = [store.header(h) for h in range(1, (0 if tip is None else tip[0]) + 1)]
    return [(h.hash, h.state_hash) for h in headers if h is not None]


def stored_command_ids(store: BlockStore) -> list[int]:
    tip = store.tip()
    ids: list[int] = []
    for height in range(1, (0 if tip is None else tip[0]) + 1):
        block = store.block(height)
        assert block is not None
        ids += [int(orjson.loads(c)["id"]) for c in block.commands]
    return ids


def signed_vote(sim: Sim, member: int, height: int) -> Vote:
    header = sim.stores[EXCHANGE].header(height)
    assert header is not None
    return sign_vote(sim.keys[member], member, header)
