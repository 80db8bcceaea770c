"""The nodes' metrics through prometheus_client (issue #20): the exchange's `/metrics` keeps
its series, adds the finality and acknowledgement histograms and the per-member gauges, and a
member node's `/metrics` comes from its own registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.consortium_net import until
from tests.gateway_net import RunningVenue, order


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


async def _samples(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain", r.content_type
        text = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_exchange_metrics_parse_and_count_acks_and_finality(venue: RunningVenue) -> None:
    await venue.open_market()
    buyer, seller = await venue.client("broker1"), await venue.client("broker2")
    await buyer.place(**order("m-1", "10001", "buy", 1000, 100))
    await seller.place(**order("m-2", "20001", "sell", 1000, 100))
    exchange = venue.exchange
    assert exchange is not None
    proposer = exchange.proposer
    await until(holds(lambda: proposer.certified == proposer.height), what="finality")
    samples = await _samples(venue.address)
    assert samples[("jinlian_orders_total", ())] == 2
    assert samples[("jinlian_ack_seconds_count", ())] >= 2 + len(venue.genesis.instruments) + 1
    assert (
        samples[("jinlian_ack_seconds_bucket", (("le", "+Inf"),))]
        == samples[("jinlian_ack_seconds_count", ())]
    )
    await until(holds(lambda: exchange.finality.finalized_commands >= 2), what="finality samples")
    samples = await _samples(venue.address)
    assert samples[("jinlian_finality_seconds_count", ())] >= 1
    assert 0 < samples[("jinlian_finality_seconds_sum", ())] < 30
    for member in ("bank1", "depository1", "regulator1", "broker-node1"):
        assert samples[("jinlian_member_authenticated", (("member", member),))] == 1
        assert samples[("jinlian_member_connected", (("member", member),))] == 1
    assert samples[("jinlian_failed", ())] == 0
    assert samples[("jinlian_task_failures_total", (("task", "cutter"),))] == 0


async def test_a_member_node_serves_its_own_registry(venue: RunningVenue) -> None:
    await venue.open_market()
    exchange = venue.exchange
    assert exchange is not None
    await until(holds(lambda: exchange.proposer.certified >= 1), what="a final block")
    member = venue.members[0]
    store = member.replica.store
    await until(holds(lambda: store.certified_height() >= 1), what="the member's certificate")
    samples = await _samples(member.address)
    assert samples[("jinlian_height", ())] == member.replica.height
    assert samples[("jinlian_certified_height", ())] >= 1
    assert samples[("jinlian_failed", ())] == 0
    assert ("jinlian_indexed_height", ()) in samples  # bank1 indexes (node.json `index`)
