"""A node process's garbage-collection policy (ledger/collector.py): young collections and a
freeze every second, a full collection only once the node has stood idle, its figures in the
node's /health."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from exchange.consortium.init import init_consortium
from ledger.collector import FULL_IDLE_S, FULL_INTERVAL_S, Collector
from tests.consortium_net import free_base_port, until
from tests.test_consortium_processes import Processes, running, wait_up


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The policy is process-wide: give the test process its collector back as it was."""
    yield
    gc.unfreeze()
    gc.collect()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """Garbage in a reference cycle, which only the cycle collector frees."""

    def __init__(self) -> None:
        self.me = self


def test_a_cycle_frozen_while_working_is_freed_by_the_full_collection_of_an_idle_node(
    unfrozen: None,
) -> None:
    clock = Clock()
    collector = Collector(clock=clock)
    collector.start()
    assert collector.full_collections == 1 and gc.get_freeze_count() > 0
    cycle = Node()
    alive = weakref.ref(cycle)
    collector.tick(height=1)  # working: the cycle is young, survives (referenced) and is frozen
    assert collector.freezes == 1
    del cycle
    gc.collect()  # an automatic full collection would not see it either: it is frozen
    assert alive() is not None
    clock.now += FULL_INTERVAL_S  # a full collection is due, but the node works
    for height in range(2, 2 + int(FULL_IDLE_S) + 2):
        collector.tick(height=height)
        clock.now += 1.0
    assert collector.full_collections == 1 and alive() is not None
    for _ in range(int(FULL_IDLE_S) + 1):  # the height stands: idle
        collector.tick(height=height)
        clock.now += 1.0
    assert collector.full_collections == 2
    assert alive() is None
    assert collector.full_found >= 2  # the object and its __dict__
    figures = collector.figures()
    assert figures["full_collections"] == 2 and figures["freezes"] == collector.freezes
    collector.tick(height=height)  # idle still, but the last full collection is recent
    assert collector.full_collections == 2


def test_a_young_cycle_is_freed_by_the_tick_and_never_frozen(unfrozen: None) -> None:
    collector = Collector(clock=Clock())
    collector.start()
    cycle = Node()
    alive = weakref.ref(cycle)
    del cycle
    collector.tick(height=1)
    assert alive() is None


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Processes]:
    init_consortium(tmp_path / "c", members=4, brokers=1, base_port=free_base_port(5))
    yield from running(tmp_path / "c", ("bank1",))


def test_a_member_process_runs_the_policy_and_shows_it_in_its_health(member: Processes) -> None:
    async def scenario() -> None:
        await wait_up(member, ("bank1",))
        url = f"http://{member.address('bank1')}/health"

        async def figures() -> dict[str, int]:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                health = await response.json()
                return dict(health["gc"])

        async def frozen_once() -> bool:
            return (await figures())["freezes"] >= 1

        await until(frozen_once, what="the collector's first tick")
        gc_figures = await figures()
        assert gc_figures["full_collections"] == 1  # at start, after the replay
        assert gc_figures["frozen_objects"] > 10_000  # the modules, the genesis, the venue
        metrics_url = f"http://{member.address('bank1')}/metrics"
        async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
            text = await response.text()
        assert "jinlian_gc_full_collections_total 1.0" in text, text
        frozen = [line for line in text.splitlines() if line.startswith("jinlian_gc_frozen")]
        assert frozen and float(frozen[0].split()[1]) > 10_000, frozen

    asyncio.run(scenario())
