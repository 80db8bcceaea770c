"""The exchange and four members on real loopback sockets, in one process: blocks become
final on every member, a stopped member catches up, bad frames and bad requests are answered
and never crash a node."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from yarl import URL

from exchange.consortium.nodes import build_exchange, build_replica, load_config
from ledger.auth import PeerHandshake, PeerIdentity
from ledger.feed import Feed, FeedError, status
from ledger.node import ExchangeNode, ReplicaNode
from tests.consortium_net import make_consortium, opening, orders, until

MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


class Consortium:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.exchange: ExchangeNode | None = None
        self.members: dict[str, ReplicaNode] = {}

    @property
    def address(self) -> str:
        return load_config(self.directory / "exchange").address

    async def start_member(self, name: str) -> ReplicaNode:
        node = build_replica(load_config(self.directory / name))
        await node.start()
        self.members[name] = node
        return node

    async def stop_member(self, name: str) -> None:
        node = self.members.pop(name)
        await node.stop()
        node.replica.store.close()

    async def start(self, lag_max: int | None = None) -> None:
        for name in MEMBERS:
            await self.start_member(name)
        self.exchange = build_exchange(load_config(self.directory / "exchange"), lag_max=lag_max)
        await self.exchange.start()
        await asyncio.wait_for(self.exchange.ready.wait(), 30)  # recovered from the members

    async def stop(self) -> None:
        for name in list(self.members):
            await self.stop_member(name)
        if self.exchange is not None:
            await self.exchange.stop()
            self.exchange.proposer.store.close()

    async def final_everywhere(self, height: int) -> bool:
        assert self.exchange is not None
        if self.exchange.proposer.certified < height:
            return False
        return all(
            node.replica.height >= height and node.replica.store.certified_height() >= height
            for node in self.members.values()
        )


@pytest.fixture
async def consortium(tmp_path: Path) -> AsyncIterator[Consortium]:
    make_consortium(tmp_path / "c")
    running = Consortium(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()


async def test_blocks_become_final_on_every_member_with_identical_state(
    consortium: Consortium,
) -> None:
    async with Feed(consortium.address) as feed:
        heights = await feed.submit(opening())
        assert heights == [1]
        heights = await feed.pipeline([orders(1 + 100 * k, 100) for k in range(10)], window=4)
    tip = max(heights)
    await until(lambda: consortium.final_everywhere(tip), what="finality on every member")
    assert consortium.exchange is not None
    store = consortium.exchange.proposer.store
    for node in consortium.members.values():
        for height in range(1, tip + 1):
            assert node.replica.store.header(height) == store.header(height)
    bank1 = consortium.members["bank1"]  # an indexing member (`jinlian init`'s default)
    await until(lambda: _indexed(bank1, tip), what="bank1's indexer to reach the tip")
    trades = bank1.replica.store.read("SELECT count(*) FROM trades", ())
    assert trades[0][0] == 500  # every buy met a sell
    info = await status(consortium.address, 0, consortium.exchange.authorization)
    assert info["certified"] == tip and info["lag"] == 0 and info["degraded"] is False
    assert info["finalized_commands"] == 1002 and info["finality_p99_ms"] is not None


async def test_the_feed_tells_when_a_batch_is_final(consortium: Consortium) -> None:
    assert consortium.exchange is not None
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        stored, final = await feed.send_final(orders(1, 3000))  # spans two blocks
        heights = await stored
        await final
        assert len(heights) >= 2
        assert consortium.exchange.proposer.certified >= max(heights)
        _, refused = await feed.send_final([])
        with pytest.raises(FeedError, match="malformed"):
            await refused


async def test_a_command_without_a_canonical_form_is_refused_and_the_exchange_goes_on(
    consortium: Consortium,
) -> None:
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        with pytest.raises(FeedError, match=r"malformed: commands\[1\]\.price: float 1\.5"):
            batch = [orders(1, 1)[0], {**orders(2, 1)[0], "price": 1.5}]
            await asyncio.wait_for(feed.submit(batch), 10)
        heights = await asyncio.wait_for(feed.submit(orders(3, 2)), 10)  # still cutting blocks
    await until(lambda: consortium.final_everywhere(max(heights)), what="finality")


async def test_a_stopped_member_catches_up_from_its_peers(consortium: Consortium) -> None:
    await consortium.stop_member("broker-node1")
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        heights = await feed.pipeline([orders(1 + 50 * k, 50) for k in range(6)])
    tip = max(heights)
    assert consortium.exchange is not None
    await until(lambda: _certified(consortium, tip), what="finality with three of four members")
    node = await consortium.start_member("broker-node1")
    await until(lambda: consortium.final_everywhere(tip), what="the restarted member")
    header = consortium.exchange.proposer.store.header(tip)
    assert node.replica.store.header(tip) == header
    assert node.replica.store.evidence() == []


async def _indexed(node: ReplicaNode, height: int) -> bool:
    return (node.indexed() or 0) >= height


async def _certified(consortium: Consortium, height: int) -> bool:
    assert consortium.exchange is not None
    return consortium.exchange.proposer.certified >= height


async def test_bad_frames_and_requests_get_errors_and_nodes_keep_working(
    consortium: Consortium,
) -> None:
    config = load_config(consortium.directory / "bank1")
    member = config.address
    assert consortium.exchange is not None
    signed = consortium.members["depository1"].authorization
    async with aiohttp.ClientSession() as session:
        for query in ("from=x", "from=0", "from=1&limit=100000"):
            url = URL(f"http://{member}/blocks?{query}", encoded=True)
            headers = {"Authorization": signed(f"/blocks?{query}")}
            async with session.get(url, headers=headers) as response:
                assert response.status == 400
                assert "from" in (await response.json())["error"]
        # before authentication, a bad frame ends the connection and is counted as a failure
        async with session.ws_connect(f"http://{member}/ledger") as ws:
            await ws.receive()  # the challenge
            await ws.send_bytes(b"not json")
            assert orjson.loads((await ws.receive()).data)["type"] == "peer_refused"
        # after it (as the exchange, with its key), bad frames are dropped and counted
        async with session.ws_connect(f"http://{member}/ledger") as ws:
            await authenticate_as(ws, consortium.exchange.identity, expect=config.member_id)
            await ws.send_bytes(b"not json")
            await ws.send_bytes(orjson.dumps({"type": "propose", "block": {}, "certified": 0}))
            await ws.send_bytes(orjson.dumps({"type": "gossip"}))
        async with session.ws_connect(f"http://{consortium.address}/submit") as ws:
            for frame, code in (
                (b"{", "malformed"),
                (orjson.dumps({"request": 1, "commands": []}), "malformed"),
                (orjson.dumps({"request": 2, "commands": [1]}), "malformed"),
            ):
                await ws.send_bytes(frame)
                reply = orjson.loads((await ws.receive()).data)
                assert reply["type"] == "refused" and reply["code"] == code, reply
    await until(lambda: _malformed(consortium, "bank1", 3), what="the member to count bad frames")
    async with Feed(consortium.address) as feed:  # still working
        assert await feed.submit(opening()) == [1]
        heights = await feed.submit([{"type": "place", "broker": "broker1", "order_id": "x"}])
    await until(lambda: consortium.final_everywhere(heights[0]), what="finality")
    assert consortium.exchange is not None
    events = consortium.exchange.proposer.store.events(heights[0])
    assert events is not None and orjson.loads(events[0])["type"] == "error"


async def authenticate_as(
    ws: aiohttp.ClientWebSocketResponse, identity: PeerIdentity, expect: int
) -> None:
    """Run the dialer's side of the peer handshake on `ws` as `identity`."""
    handshake = PeerHandshake(identity, nonce=os.urandom(32), dialer=True, expect=expect)
    while not handshake.done:
        for frame in handshake.receive((await ws.receive()).data, time.time_ns()):
            await ws.send_bytes(frame)
    assert handshake.peer == expect, handshake.error


async def _malformed(consortium: Consortium, name: str, count: int) -> bool:
    return consortium.members[name].malformed >= count


async def test_the_exchange_degrades_instead_of_running_ahead_of_finality(
    tmp_path: Path,
) -> None:
    make_consortium(tmp_path / "c")
    running = Consortium(tmp_path / "c")
    await running.start(lag_max=2)
    try:
        for name in ("bank1", "depository1"):  # two of four: no quorum
            await running.stop_member(name)
        async with Feed(running.address) as feed:
            for k in range(3):
                await feed.submit(orders(1 + 10 * k, 10))
            with pytest.raises(FeedError) as refused:
                for k in range(3, 6):
                    await feed.submit(orders(1 + 10 * k, 10))
            assert refused.value.code == "degraded"
            info = await status(running.address)
            assert info["degraded"] is True and info["certified"] == 0
            await running.start_member("bank1")  # quorum again: finality resumes
            await until(lambda: _certified(running, 3), what="finality after recovery")
            assert (await status(running.address))["degraded"] is False
            await feed.submit(orders(100, 10))
    finally:
        await running.stop()
