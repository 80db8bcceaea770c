"""Deterministic simulation of replication: over many seeds, with drops, delays, duplicates,
reordering, partitions, crashes and restarts, and Byzantine members.

Properties checked on every run:
- agreement: every honest node's store has the exchange's header (so its state hash) at every
  height it holds;
- final blocks are never lost or changed (checked as each certificate forms, and at the end);
- no acknowledged command is lost, even across exchange crashes;
- with at most f faulty members, every block becomes final and every honest member catches
  up once the network heals; with more than f, nothing becomes final and nothing diverges.

With power cuts (storage faults: the exchange or a member loses its unsynced tail, the last
write torn), also, on every run (`check_history`):
- what every client was told when its command was acknowledged (height, header hash, report
  index) is what the final ledger says, except for commands whose block was lost on every
  copy at once, which are in no block at all;
- the exchange never signed a second block at a height a member holds: no honest member
  records evidence.

`JINLIAN_SIM_SEEDS` runs more seeds (the default keeps the suite fast). CI runs
`FIXED_SEEDS` seeds of the power-cut scenario, short; `JINLIAN_CHECK_ALL=1` (`make
check-all`) also runs `JINLIAN_SIM_RANDOM_SEEDS` (default 200) fresh random seeds, long, and
prints each one so a failure replays (a seed that ever fails joins `FIXED_SEEDS`).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from ledger.block import proposal_message, sign_vote
from ledger.protocol import Fetch, Propose, VoteMessage
from ledger.replication import RECOVERY_GRACE_TICKS, Proposer, Replica, Send
from ledger.wire import parse_header
from tests.ledger_sim import EXCHANGE, Faults, Sim, chain, signed_vote, stored_command_ids

SEEDS = int(os.environ.get("JINLIAN_SIM_SEEDS", "4"))
FIXED_SEEDS = range(100)  # plus any seed that ever failed
CHECK_ALL = os.environ.get("JINLIAN_CHECK_ALL") == "1"
RANDOM_SEEDS = int(os.environ.get("JINLIAN_SIM_RANDOM_SEEDS", "200"))


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """Stores on tmpfs when there is one: the simulation commits thousands of blocks."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        import tempfile

        with tempfile.TemporaryDirectory(dir=shm) as directory:
            yield Path(directory)
    else:
        yield tmp_path


def check_agreement(sim: Sim) -> None:
    reference = chain(sim.stores[EXCHANGE])
    for member in sim.honest():
        mine = chain(sim.stores[member])
        assert mine == reference[: len(mine)], f"member {member} diverged from the exchange"
    for height, header_hash in sim.final.items():
        header = sim.stores[EXCHANGE].header(height)
        assert header is not None and header.hash == header_hash, f"final {height} lost"
    stored = stored_command_ids(sim.stores[EXCHANGE])
    kept = [i for i in sim.acknowledged if i not in sim.lost_everywhere]  # all without power cuts
    assert stored[: len(kept)] == kept or set(kept) <= set(stored), (
        "an acknowledged command was lost"
    )
    assert len(stored) == len(set(stored)), "a command was sequenced twice"


def check_history(sim: Sim) -> None:
    """What every client was told is what the final ledger says; no member saw the exchange
    sign two blocks at one height."""
    store = sim.stores[EXCHANGE]
    counts: Counter[str] = Counter()
    final: dict[int, tuple[int, bytes, int]] = {}  # command id -> height, header, index
    for height in range(1, store.certified_height() + 1):
        block = store.block(height)
        assert block is not None and store.has_certificate(height), f"block {height} not final"
        for command in map(orjson.loads, block.commands):
            client = str(command["key"])
            counts[client] += 1
            final[int(command["id"])] = (height, block.header.hash, counts[client])
    assert set(sim.told) == set(sim.acknowledged)
    for command_id, told in sim.told.items():
        if command_id in sim.lost_everywhere:
            assert command_id not in final, f"lost command {command_id} reappeared"
            continue
        assert final.get(command_id) == (told.height, told.header_hash, told.index), (
            f"command {command_id}: the client was told {told}, the ledger says "
            f"{final.get(command_id)}"
        )
    for member in sim.honest():
        evidence = [e.kind for e in sim.stores[member].evidence()]
        assert evidence == [], f"member {member} recorded {evidence}"


def check_live(sim: Sim) -> None:
    exchange = sim.exchange
    assert exchange is not None
    assert exchange.height > 10, f"only {exchange.height} blocks were made"
    assert exchange.certified == exchange.height, (
        f"certified {exchange.certified} of {exchange.height}"
    )
    for member in sim.honest():
        node = sim.nodes[member]
        assert isinstance(node, Replica | Proposer)
        assert node.height == exchange.height, f"member {member} at {node.height}"
        assert sim.stores[member].certified_height() == exchange.height
        assert sim.stores[member].uncertified_heights() == [], f"member {member} lacks a cert"


SCENARIOS = {
    "clean": Faults(),
    "lossy": Faults(drop=0.2, duplicate=0.1, delay_max_ms=30),
    "partitions": Faults(drop=0.05, delay_max_ms=15, partitions=True),
    "member crashes": Faults(drop=0.05, duplicate=0.05, member_crashes=True),
    "exchange crashes": Faults(drop=0.05, duplicate=0.05, exchange_crashes=True),
    "everything": Faults(
        drop=0.1,
        duplicate=0.1,
        delay_max_ms=20,
        partitions=True,
        member_crashes=True,
        exchange_crashes=True,
    ),
    "power cuts": Faults(
        drop=0.05, duplicate=0.05, member_crashes=True, exchange_crashes=True, power_cuts=True
    ),
}
POWER_CUTS = Faults(
    drop=0.1,
    duplicate=0.1,
    delay_max_ms=20,
    partitions=True,
    member_crashes=True,
    exchange_crashes=True,
    power_cuts=True,
)


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("seed", range(SEEDS))
def test_honest_consortium_agrees_and_finalizes(name: str, seed: int, workdir: Path) -> None:
    sim = Sim(seed, workdir, SCENARIOS[name])
    try:
        sim.run(faulty_ms=1_500, quiet_ms=1_500)
        check_agreement(sim)
        check_live(sim)
        check_history(sim)
        faults = SCENARIOS[name]
        assert bool(faults.partitions) == (sim.partitions > 0)
        assert faults.exchange_crashes == (EXCHANGE in sim.crashes)
        assert faults.member_crashes == any(m != EXCHANGE for m in sim.crashes)
        assert (faults.power_cuts and faults.exchange_crashes) == (EXCHANGE in sim.power_cuts)
    finally:
        sim.close()


def run_power_cuts(seed: int, workdir: Path, faulty_ms: int, quiet_ms: int) -> Sim:
    sim = Sim(seed, workdir, replace(POWER_CUTS))
    try:
        sim.run(faulty_ms=faulty_ms, quiet_ms=quiet_ms)
        check_agreement(sim)
        check_live(sim)
        check_history(sim)
        assert EXCHANGE in sim.power_cuts
    finally:
        sim.close()
    return sim


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_power_cuts_lose_no_final_block_and_tell_no_client_a_lie(seed: int, workdir: Path) -> None:
    """The CI set: short runs (the exchange loses power at 300 ms, then random faults)."""
    run_power_cuts(seed, workdir, faulty_ms=500, quiet_ms=500)


@pytest.mark.skipif(not CHECK_ALL, reason="random seeds run with JINLIAN_CHECK_ALL=1")
def test_power_cuts_over_random_seeds(workdir: Path) -> None:
    """`make check-all`: fresh seeds, long runs; a failing seed is printed to replay."""
    seeds = random.SystemRandom().sample(range(1_000_000, 1_000_000_000), RANDOM_SEEDS)
    for seed in seeds:
        print(f"power cuts seed {seed}", flush=True)
        (workdir / str(seed)).mkdir()
        run_power_cuts(seed, workdir / str(seed), faulty_ms=3_000, quiet_ms=2_000)


BYZANTINE = ["bad_signature", "wrong_hash", "equivocate", "silent", "lying_server",
             "impersonate"]  # fmt: skip


@pytest.mark.parametrize("behaviour", BYZANTINE)
@pytest.mark.parametrize("seed", range(max(2, SEEDS // 2)))
def test_one_byzantine_member_cannot_stop_or_split_the_ledger(
    behaviour: str, seed: int, workdir: Path
) -> None:
    faults = Faults(drop=0.05, duplicate=0.05, member_crashes=True, byzantine={3: behaviour})
    sim = Sim(seed, workdir, faults)
    try:
        sim.run(faulty_ms=1_500, quiet_ms=1_500)
        check_agreement(sim)
        check_live(sim)
        exchange_evidence = {e.kind for e in sim.stores[EXCHANGE].evidence()}
        if behaviour in ("wrong_hash", "equivocate"):
            assert exchange_evidence == {"bad_vote"}, exchange_evidence
        else:
            assert exchange_evidence == set()
        for member in sim.honest():
            if member != EXCHANGE:
                assert sim.stores[member].evidence() == [], f"member {member} accused someone"
    finally:
        sim.close()


@pytest.mark.parametrize("seed", range(max(2, SEEDS // 2)))
def test_more_than_f_faulty_members_stop_finality_without_divergence(
    seed: int, workdir: Path
) -> None:
    faults = Faults(drop=0.05, byzantine={2: "silent", 3: "wrong_hash"})
    sim = Sim(seed, workdir, faults)
    try:
        sim.run(faulty_ms=1_000, quiet_ms=1_000)
        check_agreement(sim)
        exchange = sim.exchange
        assert exchange is not None
        assert exchange.certified == 0 and sim.final == {}
        assert exchange.height >= 9, "the exchange stopped before reaching its lag bound"
        assert exchange.degraded and sim.refusals.get("degraded", 0) > 0
        refused = exchange.submit([{"id": 0, "key": "k", "add": 1}])
        assert refused is not None and refused.code == "degraded"
        assert "blocks behind" in refused.message
    finally:
        sim.close()


def test_a_member_records_equivocation_and_never_votes_twice_at_a_height(
    workdir: Path,
) -> None:
    """The exchange signs two different blocks at height 1 (it is Byzantine here)."""
    sim = Sim(7, workdir, Faults())
    try:
        exchange = sim.exchange
        assert exchange is not None
        exchange.submit([{"id": 1, "key": "a", "add": 1}])
        first, _ = exchange.cut(time_ns=1)
        assert first is not None
        replica = sim.nodes[1]
        assert isinstance(replica, Replica)
        votes = replica.receive(EXCHANGE, Propose(first, 0))
        assert [type(s.message) for s in votes] == [VoteMessage]
        # a second exchange state, same key, different block at the same height
        sim.stores[EXCHANGE].close()
        other_path = workdir / "other.sqlite"
        from ledger.store import BlockStore
        from tests.ledger_sim import CounterMachine

        other = Proposer(
            genesis=sim.genesis,
            key=sim.keys[EXCHANGE],
            store=BlockStore.open(other_path, sim.genesis.hash),
            new_machine=CounterMachine,
        )
        other.submit([{"id": 2, "key": "b", "add": 5}])
        second, _ = other.cut(time_ns=1)
        assert second is not None and second.header.height == 1
        assert replica.receive(EXCHANGE, Propose(second, 0)) == []
        evidence = sim.stores[1].evidence()
        assert [e.kind for e in evidence] == ["equivocation"]
        signed = orjson.loads(evidence[0].payload)
        headers = [parse_header(item["header"]) for item in signed]
        assert [h.hash for h in headers] == [first.header.hash, second.header.hash]  # type: ignore[union-attr]
        key = sim.genesis.exchange.public_key
        for header, item in zip(headers, signed, strict=True):
            message = proposal_message(header.hash)  # type: ignore[union-attr]
            assert key.verify(message, bytes.fromhex(item["signature"]))
        other.store.close()
        sim.stores[EXCHANGE] = BlockStore.open(workdir / "0.sqlite", sim.genesis.hash)
    finally:
        sim.close()


def test_a_vote_is_counted_once_and_a_late_vote_is_harmless(workdir: Path) -> None:
    sim = Sim(3, workdir, Faults())
    try:
        exchange = sim.exchange
        assert exchange is not None
        exchange.submit([{"id": 1, "key": "a", "add": 1}])
        block, _ = exchange.cut(time_ns=1)
        assert block is not None
        vote = signed_vote(sim, 1, 1)
        assert exchange.receive(1, VoteMessage(vote)) == []
        assert exchange.receive(1, VoteMessage(vote)) == []  # a duplicate is not a second vote
        assert exchange.certified == 0
        assert exchange.receive(2, VoteMessage(signed_vote(sim, 2, 1))) == []
        sends = exchange.receive(3, VoteMessage(signed_vote(sim, 3, 1)))
        assert exchange.certified == 1
        assert sorted(s.to for s in sends) == [1, 2, 3, 4]
        assert exchange.receive(4, VoteMessage(signed_vote(sim, 4, 1))) == []
        assert sim.stores[EXCHANGE].evidence() == []
    finally:
        sim.close()


def test_a_restarted_exchange_reproposes_what_it_stored_and_never_resigns_a_height(
    workdir: Path,
) -> None:
    sim = Sim(5, workdir, Faults())
    try:
        exchange = sim.exchange
        assert exchange is not None
        exchange.submit([{"id": 1, "key": "a", "add": 1}])
        block, proposals = exchange.cut(time_ns=1)
        assert block is not None and len(proposals) == 4
        sim.crash(EXCHANGE)  # before any vote arrived
        sim.start(EXCHANGE)
        sim.recover()  # members hold nothing: it keeps its own block 1
        restarted = sim.exchange
        assert restarted is not None and restarted.height == 1 and restarted.certified == 0
        again = restarted.tick()
        assert {s.to for s in again if isinstance(s.message, Propose)} == {1, 2, 3, 4}
        assert all(s.message.block == block for s in again if isinstance(s.message, Propose))
        restarted.submit([{"id": 2, "key": "a", "add": 1}])
        following, _ = restarted.cut(time_ns=2)
        assert following is not None and following.header.parent_hash == block.header.hash
    finally:
        sim.close()


def test_sends_are_addressed_to_members_of_the_genesis(workdir: Path) -> None:
    sim = Sim(1, workdir, Faults())
    try:
        members = set(sim.keys)
        sim.run(faulty_ms=200, quiet_ms=0)
        for node in sim.nodes.values():
            assert node is not None
            for send in node.tick():
                assert isinstance(send, Send) and send.to in members
    finally:
        sim.close()


def test_a_batch_that_does_not_fit_is_refused_whole(workdir: Path) -> None:
    sim = Sim(2, workdir, Faults())
    try:
        exchange = sim.exchange
        assert exchange is not None
        exchange.queue_max = 3
        assert exchange.submit([{"id": 1, "key": "a", "add": 1}] * 2) is None
        refused = exchange.submit([{"id": 2, "key": "a", "add": 1}] * 2)
        assert refused is not None and refused.code == "busy"
        assert "2 commands do not fit: 2 queued (at most 3)" in refused.message
        assert len(exchange.queue) == 2
        assert exchange.submit([{"id": 3, "key": "a", "add": 1}]) is None
    finally:
        sim.close()


def answer(sim: Sim, exchange: Proposer, member: int, sends: list[Send]) -> list[Send]:
    """Deliver the exchange's fetches to `member` and its pages back, until it asks no more;
    the exchange's other sends."""
    node = sim.nodes[member]
    assert isinstance(node, Replica)
    rest = [send for send in sends if send.to != member]
    mine = [send for send in sends if send.to == member]
    while mine:
        fetch = mine.pop()
        assert isinstance(fetch.message, Fetch)
        reply = (
            sim.lie(node, EXCHANGE, fetch.message)
            if member in sim.faults.byzantine
            else (node.receive(EXCHANGE, fetch.message))
        )
        for send in exchange.receive(member, reply[0].message):
            (mine if send.to == member else rest).append(send)
    return rest


def lose_store(sim: Sim, workdir: Path) -> Proposer:
    """The exchange's machine is lost: it restarts with an empty store (the key kept)."""
    sim.crash(EXCHANGE)
    for suffix in ("", "-wal", "-shm"):
        (workdir / f"{EXCHANGE}.sqlite{suffix}").unlink(missing_ok=True)
    sim.start(EXCHANGE)
    exchange = sim.exchange
    assert exchange is not None and exchange.recovering and exchange.height == 0
    return exchange


def test_a_recovering_exchange_sequences_nothing_until_2f_plus_1_members_answer(
    workdir: Path,
) -> None:
    sim = Sim(11, workdir, Faults())
    try:
        sim.run(faulty_ms=200, quiet_ms=300)
        tip = sim.stores[1].certified_height()
        assert tip > 3 and sim.stores[1].tip() == sim.stores[EXCHANGE].tip()
        exchange = lose_store(sim, workdir)
        refused = exchange.submit([{"id": 0, "key": "k", "add": 1}])
        assert refused is not None and refused.code == "recovering"
        assert "0 of 3 members needed have answered" in refused.message
        assert exchange.cut(time_ns=10**12) == (None, [])
        header = sim.stores[1].header(tip)
        assert header is not None  # a vote for a block the exchange lost: not evidence
        assert exchange.receive(1, VoteMessage(sign_vote(sim.keys[1], 1, header))) == []
        sends = exchange.tick()
        assert sorted(s.to for s in sends) == [1, 2, 3, 4]
        assert all(isinstance(s.message, Fetch) and s.message.start == 1 for s in sends)
        sends = answer(sim, exchange, 1, sends)
        sends = answer(sim, exchange, 2, sends)
        assert exchange.recovering and exchange.height == tip and exchange.certified == tip
        assert exchange.submit([{"id": 0, "key": "k", "add": 1}]) is not None
        answer(sim, exchange, 3, sends)  # 2f + 1: the fourth gets RECOVERY_GRACE_TICKS
        for _ in range(RECOVERY_GRACE_TICKS - 1):
            assert exchange.recovering
            assert {type(s.message) for s in exchange.tick()} <= {Fetch}
        assert exchange.recovering
        exchange.tick()
        assert not exchange.recovering
        assert chain(sim.stores[EXCHANGE]) == chain(sim.stores[1])
        assert exchange.submit([{"id": 0, "key": "k", "add": 1}]) is None
        block, _ = exchange.cut(time_ns=10**12)
        assert block is not None and block.header.height == tip + 1
        assert sim.stores[EXCHANGE].evidence() == []
    finally:
        sim.close()


def test_recovery_ignores_a_lying_page_and_takes_back_lost_certificates(
    workdir: Path,
) -> None:
    sim = Sim(12, workdir, Faults(byzantine={3: "lying_server"}))
    try:
        sim.run(faulty_ms=200, quiet_ms=300)
        tip = sim.stores[1].certified_height()
        exchange = lose_store(sim, workdir)
        sends = answer(sim, exchange, 3, exchange.tick())  # changed commands: refused
        assert exchange.height == 0 and exchange.recovery_done == {3}
        sends = answer(sim, exchange, 1, sends)
        assert exchange.height == tip
        # the exchange keeps its blocks but loses the last certificates (their writes)
        sim.crash(EXCHANGE)
        with sqlite3.connect(workdir / f"{EXCHANGE}.sqlite") as db:
            db.execute("DELETE FROM certificates WHERE height > ?", (tip - 3,))
        sim.start(EXCHANGE)
        exchange = sim.exchange
        assert exchange is not None and exchange.certified == tip - 3
        sends = exchange.tick()
        assert {s.message.start for s in sends if isinstance(s.message, Fetch)} == {tip - 2}
        for member in (3, 1, 2, 4):  # 3 lies again: every member answered
            sends = answer(sim, exchange, member, sends)
        assert not exchange.recovering and exchange.certified == tip
        assert not any(isinstance(s.message, Propose) for s in exchange.tick())
    finally:
        sim.close()
