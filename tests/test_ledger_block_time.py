"""Block time, sans-IO: a member refuses a block earlier than its parent (evidence), holds one
too far ahead of its own clock (not evidence) until its clock reaches it, takes a certified
one whatever its time; the exchange's block time never goes back and never freezes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.block import Block
from ledger.machine import encode_commands, propose
from ledger.protocol import Blocks, Certified, Fetch, Propose, VoteMessage
from ledger.replication import (
    BLOCK_TIME_AHEAD_MAX_NS,
    SLEW_DIVISOR,
    Proposer,
    Replica,
    next_block_time,
)
from ledger.store import BlockStore
from tests.ledger_sim import EXCHANGE, CounterMachine, Faults, Sim

T = 1_800_000_000_000_000_000  # the member's clock, ns
SECOND = 10**9


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    running = Sim(11, tmp_path, Faults())
    yield running
    running.close()


def cut(sim: Sim, time_ns: int, command_id: int = 1) -> Block:
    exchange = sim.exchange
    assert exchange is not None
    assert exchange.submit([{"id": command_id, "key": "a", "add": 1}]) is None
    block, _ = exchange.cut(time_ns)
    assert block is not None
    return block


def replica(sim: Sim, member: int = 1) -> Replica:
    node = sim.nodes[member]
    assert isinstance(node, Replica)
    return node


def held(member: Replica) -> Block | None:
    return member.held


def test_a_block_earlier_than_its_parent_gets_no_vote_and_is_evidence(sim: Sim) -> None:
    first = cut(sim, T)
    member = replica(sim)
    assert [type(s.message) for s in member.receive(EXCHANGE, Propose(first, 0), now_ns=T)] == [
        VoteMessage
    ]
    exchange = sim.exchange
    assert exchange is not None
    earlier, _ = propose(  # the exchange's key, a time before block 1's
        exchange.machine, sim.keys[EXCHANGE], proposer=EXCHANGE, height=2,
        parent_hash=first.header.hash, time_ns=T - 1,
        commands=encode_commands([{"id": 2, "key": "a", "add": 1}]),
    )  # fmt: skip
    assert member.receive(EXCHANGE, Propose(earlier, 0), now_ns=T) == []
    assert member.height == 1
    evidence = sim.stores[1].evidence()
    assert [(e.kind, e.height) for e in evidence] == [("invalid_block", 2)]
    assert b"earlier than the parent" in evidence[0].payload


@pytest.mark.parametrize(
    ("times_ns", "words"),
    [
        ([T + 5, T + 4, T + 6],
         b"command 1: time_ns %d is before command 0's time %d" % (T + 4, T + 5)),
        ([T - 1, T + 4, T + 6],
         b"command 0: time_ns %d is before the parent's time %d" % (T - 1, T)),
        ([T + 4, T + 5, T + 11],
         b"command 2: time_ns %d is after the header's time_ns %d" % (T + 11, T + 10)),
    ],
)  # fmt: skip
def test_a_block_whose_command_times_go_back_or_past_the_header_is_refused_by_index(
    sim: Sim, times_ns: list[int], words: bytes
) -> None:
    first = cut(sim, T)
    member = replica(sim)
    assert [type(s.message) for s in member.receive(EXCHANGE, Propose(first, 0), now_ns=T)] == [
        VoteMessage
    ]
    exchange = sim.exchange
    assert exchange is not None
    commands = encode_commands([{"id": n, "key": "a", "add": 1} for n in (2, 3, 4)])
    bad, _ = propose(  # signed by the exchange: the signed block proves it
        exchange.machine, sim.keys[EXCHANGE], proposer=EXCHANGE, height=2,
        parent_hash=first.header.hash, time_ns=T + 10, commands=commands, times_ns=times_ns,
    )  # fmt: skip
    assert member.receive(EXCHANGE, Propose(bad, 0), now_ns=T) == []
    assert member.height == 1
    evidence = sim.stores[1].evidence()
    assert [(e.kind, e.height) for e in evidence] == [("invalid_block", 2)]
    assert words in evidence[0].payload


def test_the_exchange_times_each_command_when_it_sequences_it(sim: Sim) -> None:
    """Each command keeps the clock's time at `submit` (never going back), the block the
    cut's; a member accepts it. Commands submitted without a time get the block's."""
    exchange = sim.exchange
    assert exchange is not None
    for command_id, time_ns in ((1, T + 5), (2, T + 3), (3, T + 9)):
        assert exchange.submit([{"id": command_id, "key": "a", "add": 1}], time_ns) is None
    assert exchange.submit([{"id": 4, "key": "a", "add": 1}]) is None
    block, _ = exchange.cut(T + 20)
    assert block is not None
    assert block.times_ns == (T + 5, T + 5, T + 9, T + 20)
    assert block.header.time_ns == T + 20
    member = replica(sim)
    assert [type(s.message) for s in member.receive(EXCHANGE, Propose(block, 0), now_ns=T)] == [
        VoteMessage
    ]


def test_a_block_ahead_of_the_member_clock_is_held_then_voted_never_evidence(sim: Sim) -> None:
    ahead_ns = 10 * SECOND
    block = cut(sim, T + ahead_ns)
    member = replica(sim)
    assert member.receive(EXCHANGE, Propose(block, 0), now_ns=T) == []
    assert member.height == 0 and member.held == block
    assert member.tick(now_ns=T + SECOND) == []  # still ahead; nothing certified to fetch
    assert member.receive(EXCHANGE, Propose(block, 0), now_ns=T + 2 * SECOND) == []  # again
    assert member.height == 0 and sim.stores[1].evidence() == []
    # a catch-up page bringing it again is not followed by another fetch at once: the member
    # waits for its clock, it does not ask its peers in a loop
    exchange = sim.exchange
    assert exchange is not None
    page = exchange.receive(1, Fetch(1, 16))[0].message
    assert isinstance(page, Blocks) and page.tip == 1
    assert member.receive(EXCHANGE, page, now_ns=T + 2 * SECOND) == []
    assert held(member) == block
    # its clock reaches the block (within the bound): stored and voted at the next tick
    sends = member.tick(now_ns=T + ahead_ns - BLOCK_TIME_AHEAD_MAX_NS)
    assert [type(s.message) for s in sends] == [VoteMessage] and sends[0].to == EXCHANGE
    assert (member.height, held(member)) == (1, None)
    assert sim.stores[1].evidence() == []


def test_a_member_without_a_clock_input_checks_no_time_ahead(sim: Sim) -> None:
    block = cut(sim, T + 3600 * SECOND)
    sends = replica(sim).receive(EXCHANGE, Propose(block, 0))
    assert [type(s.message) for s in sends] == [VoteMessage]


def test_a_certified_block_ahead_of_the_member_clock_is_taken(sim: Sim) -> None:
    """A quorum has accepted it: a member whose clock is behind still follows the chain."""
    exchange = sim.exchange
    assert exchange is not None
    block = cut(sim, T + 3600 * SECOND)
    certified = []
    for voter in (2, 3, 4):  # their clocks agree with the exchange's
        for send in replica(sim, voter).receive(
            EXCHANGE, Propose(block, 0), now_ns=block.header.time_ns
        ):
            certified += exchange.receive(voter, send.message)
    assert exchange.certified == 1
    slow = replica(sim, 1)
    assert slow.receive(EXCHANGE, Propose(block, 1), now_ns=T) == []
    assert slow.held == block and slow.known_certified == 1
    fetch = slow.tick(now_ns=T)  # something certified lies above: fetch it
    assert len(fetch) == 1 and isinstance(fetch[0].message, Fetch)
    page = exchange.receive(1, fetch[0].message)
    assert isinstance(page[0].message, Blocks)
    slow.receive(page[0].to, page[0].message, now_ns=T)
    assert slow.height == 1 and sim.stores[1].certified_height() == 1
    assert sim.stores[1].evidence() == []
    assert any(isinstance(s.message, Certified) for s in certified)


def test_block_time_keeps_moving_after_the_exchange_clock_is_set_back(
    sim: Sim, tmp_path: Path
) -> None:
    """The exchange's clock ran an hour ahead for three blocks, then was fixed. Block time
    never goes back, never repeats, and meets the clock again after about twice the offset
    (with max(parent, clock), every later block kept the parent's time for an hour)."""
    exchange = Proposer(  # no member votes here: let it run ahead of finality
        genesis=sim.genesis, key=sim.keys[EXCHANGE], new_machine=CounterMachine,
        store=BlockStore.open(tmp_path / "ahead.sqlite", sim.genesis.hash), lag_max=1_000,
    )  # fmt: skip

    def cut_at(time_ns: int, command_id: int) -> int:
        assert exchange.submit([{"id": command_id, "key": "a", "add": 1}]) is None
        block, _ = exchange.cut(time_ns)
        assert block is not None
        return block.header.time_ns

    offset_ns = 3600 * SECOND
    times = [cut_at(T + offset_ns + k * SECOND, k) for k in range(3)]
    clock = T
    caught_up_at = None
    for k in range(3, 200):
        clock += 60 * SECOND
        times.append(cut_at(clock, k))
        if caught_up_at is None and times[-1] == clock:
            caught_up_at = clock
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    assert times[3] > times[2] and times[4] - times[3] == 60 * SECOND // SLEW_DIVISOR
    assert caught_up_at is not None, "block time never met the clock again"
    expected_ns = T + SLEW_DIVISOR * offset_ns  # give or take two clock steps
    assert abs(caught_up_at - expected_ns) <= 2 * 60 * SECOND
    assert times[-1] == clock  # and follows it from then on
    exchange.store.close()


def test_next_block_time() -> None:
    assert next_block_time(None, T, None) == T
    assert next_block_time(T - 1, T, T - 5) == T  # the clock is ahead of the chain
    assert next_block_time(T, T, T - 10) == T + 5  # behind or level: half the elapsed time
    assert next_block_time(T, T - SECOND, None) == T + 1  # no previous clock: the least step
    assert next_block_time(T, T - SECOND, T) == T + 1  # the clock went back: the least step
