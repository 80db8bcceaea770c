"""Peer links on real loopback sockets, in one process: an intruder on a member's `/ledger`
neither displaces the exchange's link nor takes its votes; a member with a wrong key or a
tampered genesis is named; `/blocks` and the members' `/status` are for members only; a
member whose clock is behind holds blocks (no vote, no evidence), and the exchange names its
clock and redials it as silent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from exchange.consortium.nodes import (
    build_replica,
    build_venue,
    load_config,
    new_machine,
    open_store,
)
from exchange.gateway.api import logon_message
from ledger import auth
from ledger.auth import PeerHandshake, PeerIdentity
from ledger.feed import Feed, status
from ledger.genesis import Genesis
from ledger.keys import generate_private_key, load_private_key, save_private_key
from ledger.node import HANDSHAKE_TIMEOUT_S, PUBLIC_STATUS, ExchangeNode, ReplicaNode
from ledger.replication import Replica
from ledger.store import BlockStore
from tests.consortium_net import make_consortium, opening, orders, until

MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")
HOUR_NS = 3600 * 10**9


class Net:
    """The exchange (with its gateway) and the members, each startable with a twist."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.exchange: ExchangeNode | None = None
        self.members: dict[str, ReplicaNode] = {}
        self.stores: list[BlockStore] = []

    def config(self, name: str) -> Any:
        return load_config(self.directory / name)

    async def start(
        self,
        twisted: dict[str, ReplicaNode] | None = None,
        exchange_clock: Callable[[], int] = time.time_ns,
    ) -> ExchangeNode:
        for name in MEMBERS:
            node = (twisted or {}).get(name) or build_replica(self.config(name))
            await node.start()
            self.members[name] = node
        self.exchange, _ = build_venue(self.config("exchange"), feed=True)
        self.exchange.clock = exchange_clock
        self.exchange.vote_silence_s = 0.5
        await self.exchange.start()
        return self.exchange

    async def stop(self) -> None:
        for node in self.members.values():
            await node.stop()
            node.replica.store.close()
        if self.exchange is not None:
            await self.exchange.stop()
            self.exchange.proposer.store.close()

    def replica(
        self, name: str, *, genesis: Genesis | None = None, clock: Callable[[], int] | None = None
    ) -> ReplicaNode:
        """A member node built by hand: another genesis (and store), or another clock."""
        config = self.config(name)
        genesis = genesis or config.genesis
        store = (
            open_store(config)
            if genesis is config.genesis
            else BlockStore.open(self.directory / f"{name}-tampered.sqlite", genesis.hash)
        )
        replica = Replica(
            genesis=genesis, member_id=config.member_id,
            key=load_private_key(config.directory / "key.pem"), store=store,
            new_machine=lambda: new_machine(genesis),
        )  # fmt: skip
        return ReplicaNode(replica, config.address, clock=clock or time.time_ns)

    def peer(self, name: str) -> dict[str, Any]:
        assert self.exchange is not None
        result: dict[str, Any] = self.exchange.peer_status()[name]
        return result


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    make_consortium(tmp_path / "c")
    running = Net(tmp_path / "c")
    yield running
    await running.stop()


async def all_linked(net: Net, names: tuple[str, ...] = MEMBERS) -> bool:
    return all(net.peer(name)["authenticated"] for name in names)


async def finalize(net: Net, first_id: int = 1) -> int:
    assert net.exchange is not None
    await asyncio.wait_for(net.exchange.ready.wait(), 30)  # recovered: sequencing is open
    async with Feed(net.exchange.address) as feed:
        if first_id == 1:
            await feed.submit(opening())
        heights = await feed.pipeline([orders(first_id + 20 * k, 20) for k in range(5)])
    tip = max(heights)
    await until(lambda: _certified(net, tip), what=f"certificate {tip}")
    return tip


async def _certified(net: Net, height: int) -> bool:
    assert net.exchange is not None
    return net.exchange.proposer.certified >= height


async def test_an_intruder_neither_displaces_the_exchange_link_nor_takes_votes(net: Net) -> None:
    exchange = await net.start()
    await until(lambda: all_linked(net), what="every member linked")
    bank1 = net.members["bank1"]
    link = bank1.links[exchange.member_id]
    url = f"http://{bank1.address}/ledger"
    impostor = PeerIdentity(
        exchange.genesis.chain_id, exchange.genesis.hash, exchange.member_id,
        generate_private_key(), exchange.identity.members,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # open and close, sending nothing
            async with session.ws_connect(url) as ws:
                assert orjson.loads((await ws.receive()).data)["type"] == "peer_challenge"
        held = await session.ws_connect(url)  # held open, silent
        async with session.ws_connect(url) as ws:  # claims to be the exchange, wrong key
            handshake = PeerHandshake(
                impostor, nonce=os.urandom(32), dialer=True, expect=bank1.member_id
            )
            while not handshake.done:
                for frame in handshake.receive((await ws.receive()).data, time.time_ns()):
                    await ws.send_bytes(frame)
            assert handshake.error is not None and handshake.error.code == auth.PEER_REFUSED
            assert "bad_signature" in handshake.error.message
        tip = await finalize(net)
        await until(lambda: _voted(net, "bank1", tip), what="bank1's votes at the exchange")
        assert bank1.links[exchange.member_id] is link  # the exchange's link, never replaced
        assert net.peer("bank1")["silent_redials"] == 0
        failure = bank1.last_auth_failure
        assert (
            failure is not None and "exchange (member 0)" in failure and "bad_signature" in failure
        )
        # the held socket is closed when its handshake times out
        assert orjson.loads((await held.receive()).data)["type"] == "peer_challenge"
        closing = await held.receive(timeout=HANDSHAKE_TIMEOUT_S + 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await held.close()
    assert bank1.auth_failures >= 5


async def _voted(net: Net, name: str, height: int) -> bool:
    return bool(net.peer(name)["last_vote_height"] >= height)


async def test_a_member_with_a_wrong_key_is_named_and_the_others_finalize(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    (net.directory / "bank1" / "key.pem").unlink()
    save_private_key(generate_private_key(), net.directory / "bank1" / "key.pem")
    caplog.set_level(logging.WARNING, logger="jinlian.node")
    await net.start()
    await until(lambda: _auth_error(net, "bank1"), what="bank1's authentication error")
    error = net.peer("bank1")["auth_error"]
    assert "bank1 (member 1)" in error and "bad_signature" in error and "another key" in error
    assert any("bank1 (member 1)" in r.getMessage() and "another key" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert not net.peer("bank1")["authenticated"]
    await finalize(net)  # the three others make the quorum


async def _auth_error(net: Net, name: str) -> bool:
    return net.peer(name)["auth_error"] is not None


async def test_a_member_with_a_tampered_genesis_is_named(net: Net) -> None:
    genesis = net.config("bank1").genesis
    last = dict(genesis.holdings[-1])
    last["amount"] = int(last["amount"]) + 1  # one more share
    tampered = dataclasses.replace(genesis, holdings=(*genesis.holdings[:-1], last))
    await net.start({"bank1": net.replica("bank1", genesis=tampered)})
    await until(lambda: _auth_error(net, "bank1"), what="bank1's authentication error")
    error = net.peer("bank1")["auth_error"]
    assert "bank1 (member 1)" in error and "wrong_genesis" in error and tampered.hash.hex() in error


async def test_catch_up_endpoints_are_for_members_only(net: Net) -> None:
    exchange = await net.start()
    await until(lambda: all_linked(net), what="every member linked")
    await finalize(net)
    chain_id = exchange.genesis.chain_id
    broker_key = load_private_key(net.directory / "brokers" / "broker2" / "key.pem")
    bank_key = load_private_key(net.directory / "bank1" / "key.pem")
    path = "/blocks?from=1&limit=2"
    callers: dict[str, dict[str, str]] = {
        "anonymous": {},
        "a broker": {"Authorization": auth.sign_request(
            broker_key, chain_id, "broker2", "GET", path, time.time_ns())},
        "a stolen signature": {"Authorization": auth.sign_request(
            broker_key, chain_id, "bank1", "GET", path, time.time_ns())},
        "a member": {"Authorization": auth.sign_request(
            bank_key, chain_id, "bank1", "GET", path, time.time_ns())},
    }  # fmt: skip
    expected = {
        "anonymous": (401, auth.MISSING),
        "a broker": (403, auth.FORBIDDEN),
        "a stolen signature": (401, auth.BAD_SIGNATURE),
        "a member": (200, None),
    }
    async with aiohttp.ClientSession() as session:
        for node in (exchange.address, net.members["depository1"].address):
            for caller, headers in callers.items():
                url = URL(f"http://{node}{path}", encoded=True)
                async with session.get(url, headers=headers) as response:
                    body = orjson.loads(await response.read())
                    assert response.status == expected[caller][0], (node, caller, body)
                    if response.status == 200:
                        assert [b["block"]["header"]["height"] for b in body["blocks"]] == [1, 2]
                    else:
                        assert body["code"] == expected[caller][1], (caller, body)
                        assert "error" in body and "blocks" not in body
    for node in (exchange.address, net.members["depository1"].address):
        public = await status(node)
        assert set(public) <= set(PUBLIC_STATUS) and {"height", "certified"} <= set(public)
        full = await status(node, 0, net.members["bank1"].authorization)
        assert "malformed" in full and ("peers" in full or "evidence" in full)


async def test_a_member_whose_clock_is_behind_holds_blocks_and_is_named_and_redialled(
    net: Net,
) -> None:
    slow = net.replica("bank1", clock=lambda: time.time_ns() - HOUR_NS)
    exchange = await net.start({"bank1": slow})
    await until(lambda: all_linked(net), what="every member linked")
    tip = await finalize(net)  # the three others make the quorum
    assert net.peer("bank1")["last_vote_height"] == 0
    await until(lambda: _redialled(net, "bank1"), what="the exchange to redial bank1")
    # it holds the next block, stores nothing, records no evidence (its clock may be wrong)
    assert slow.replica.height == 0 and slow.replica.held is not None
    assert slow.replica.store.evidence() == []
    assert slow.status()["held_block"] == 1
    offset_ms = net.peer("bank1")["clock_offset_ms"]
    assert offset_ms is not None and abs(offset_ms + HOUR_NS // 10**6) < 60_000
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{exchange.address}/health") as response:
            health = orjson.loads(await response.read())
        async with session.get(f"http://{exchange.address}/metrics") as response:
            metrics = await response.text()
    assert health["clock"]["skewed_ms"].keys() == {"bank1"}
    assert health["clock"]["exchange_clock_suspect"] is False and health["status"] == "ok"
    member = health["members"]["bank1"]
    assert member["last_vote_height"] == 0 and member["silent_redials"] >= 1
    assert {"connected", "authenticated", "auth_error", "last_vote_age_ms"} <= set(member)
    assert health["members"]["depository1"]["last_vote_height"] >= tip
    assert 'jinlian_member_authenticated{member="depository1"} 1' in metrics
    assert 'jinlian_member_clock_offset_ms{member="bank1"} -3' in metrics


async def _redialled(net: Net, name: str) -> bool:
    return bool(net.peer(name)["silent_redials"] >= 1)


async def test_a_logon_outside_the_window_shows_in_health(net: Net) -> None:
    """A broker whose clock is an hour ahead is refused `stale_timestamp`, and /health says
    whose clock is off and by how much, instead of only refusing."""
    exchange = await net.start()
    key = load_private_key(net.directory / "brokers" / "broker1" / "key.pem")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://{exchange.address}/ws")
        async with ws:
            nonce = orjson.loads((await ws.receive()).data)["nonce"]
            ahead_ns = time.time_ns() + HOUR_NS
            signature = key.sign(
                logon_message(exchange.genesis.chain_id, "broker1", nonce, ahead_ns)
            )
            await ws.send_bytes(orjson.dumps({
                "type": "logon", "request": 1, "broker": "broker1", "nonce": nonce,
                "timestamp_ns": ahead_ns, "signature": signature.hex(),
            }))  # fmt: skip
            assert orjson.loads((await ws.receive()).data)["code"] == "stale_timestamp"
        async with session.get(f"http://{exchange.address}/health") as response:
            health = orjson.loads(await response.read())
    skewed = health["clock"]["skewed_ms"]
    assert abs(skewed["broker1"] - HOUR_NS // 10**6) < 60_000, skewed


async def test_a_link_that_authenticates_as_the_same_peer_replaces_the_old_and_closes_it(
    net: Net,
) -> None:
    """Only the same peer may replace a link (the exchange redialling, say): the member closes
    the replaced socket (1001), so neither side is left with a socket that goes nowhere."""
    exchange = await net.start()
    await until(lambda: all_linked(net), what="every member linked")
    bank1 = net.members["bank1"]
    first = bank1.links[exchange.member_id]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://{bank1.address}/ledger")
        handshake = PeerHandshake(
            exchange.identity, nonce=os.urandom(32), dialer=True, expect=bank1.member_id
        )
        while not handshake.done:
            for frame in handshake.receive((await ws.receive()).data, time.time_ns()):
                await ws.send_bytes(frame)
        assert handshake.peer == bank1.member_id
        await until(lambda: _closed(first.ws), what="the replaced socket to close")
        # the exchange redials, authenticates, and replaces this one in turn
        message = await ws.receive(timeout=10)
        while message.type is aiohttp.WSMsgType.BINARY:  # proposals sent to it meanwhile
            message = await ws.receive(timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001
        await ws.close()
    await until(lambda: all_linked(net), what="the exchange linked again")
    assert bank1.links[exchange.member_id] is not first
    await finalize(net)


async def _closed(ws: Any) -> bool:
    return bool(ws.closed)


async def test_an_exchange_whose_clock_is_wrong_says_so_in_health(net: Net) -> None:
    """An hour ahead, the exchange's signed catch-up requests are refused as stale, so it
    cannot finish recovering: /health says clock_skew and names every member's offset."""
    exchange = await net.start(exchange_clock=lambda: time.time_ns() + HOUR_NS)
    await until(lambda: _suspect(exchange), what="/health to suspect the exchange's clock")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{exchange.address}/health") as response,
    ):
        health = orjson.loads(await response.read())
    assert response.status == 503 and health["status"] == "clock_skew", health
    skewed = health["clock"]["skewed_ms"]
    assert set(MEMBERS) <= set(skewed), skewed
    assert all(abs(skewed[name] + HOUR_NS // 10**6) < 60_000 for name in MEMBERS), skewed


async def _suspect(exchange: ExchangeNode) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{exchange.address}/health") as response,
    ):
        return bool(orjson.loads(await response.read())["clock"]["exchange_clock_suspect"])
