"""Peer authentication with real processes on loopback: one member runs with a wrong key, so
finality needs every other member's vote; an intruder opens and closes `/ledger` on two of
them and holds one open; blocks still become final, the wrong-key member is named in the
exchange's `/health` and log, and anonymous `GET /blocks` is refused on every node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson

from exchange.consortium.nodes import load_config
from ledger.feed import Feed, wait_until_up
from ledger.keys import generate_private_key, save_private_key
from tests.consortium_net import make_consortium, opening, orders, until

PYTHON = [sys.executable, "-m", "exchange.cli"]
MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


def start(directory: Path, name: str) -> subprocess.Popen[bytes]:
    command = (
        [*PYTHON, "exchange", str(directory), "--feed"]
        if name == "exchange"
        else [*PYTHON, "node", str(directory / name)]
    )
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def health(exchange: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{exchange}/health") as r:
        value: dict[str, object] = orjson.loads(await r.read())
        return value


async def _named(exchange: str) -> bool:
    members = (await health(exchange))["members"]
    assert isinstance(members, dict)
    return members["bank1"]["auth_error"] is not None


def test_intruders_and_a_wrong_key_neither_stop_finality_nor_read_blocks(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    make_consortium(directory)
    (directory / "bank1" / "key.pem").unlink()  # bank1 starts with a key the genesis lacks
    save_private_key(generate_private_key(), directory / "bank1" / "key.pem")
    addresses = {name: load_config(directory / name).address for name in (*MEMBERS, "exchange")}
    children = {name: start(directory, name) for name in (*MEMBERS, "exchange")}

    async def scenario() -> dict[str, object]:
        exchange = addresses["exchange"]
        await wait_until_up(addresses.values(), timeout_s=30)
        async with aiohttp.ClientSession() as session:
            for name in ("depository1", "regulator1"):
                for _ in range(3):  # open and close, sending nothing
                    async with session.ws_connect(f"http://{addresses[name]}/ledger") as ws:
                        challenge = await ws.receive(timeout=10)
                        assert orjson.loads(challenge.data)["type"] == "peer_challenge"
            held = await session.ws_connect(f"http://{addresses['regulator1']}/ledger")
            async with Feed(exchange) as feed:  # quorum 3 of 4: needs all three others
                await asyncio.wait_for(feed.submit(opening()), 30)
                batches = [orders(1 + 20 * k, 20) for k in range(5)]
                for batch in batches:
                    stored, final = await feed.send_final(batch)
                    await asyncio.wait_for(stored, 30)
                    await asyncio.wait_for(final, 30)
            for name, address in addresses.items():  # anonymous catch-up is refused
                async with session.get(f"http://{address}/blocks?from=1&limit=1") as response:
                    body = orjson.loads(await response.read())
                    assert response.status == 401, (name, body)
                    assert body["code"] == "unauthenticated" and "blocks" not in body
            await until(lambda: _named(exchange), what="bank1 named in /health")
            await held.close()
            return await health(exchange)

    try:
        report = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        for child in children.values():
            child.terminate()
        logs = {name: child.communicate(timeout=20)[1].decode() for name, child in children.items()}
    members = report["members"]
    assert isinstance(members, dict)
    error = members["bank1"]["auth_error"]
    assert "bank1 (member 1)" in error and "another key" in error, error
    assert members["bank1"]["authenticated"] is False
    for name in MEMBERS[1:]:
        assert members[name]["authenticated"] is True and members[name]["last_vote_height"] >= 6
    assert "bank1 (member 1)" in logs["exchange"] and "another key" in logs["exchange"]
    assert "/ledger from 127.0.0.1" in logs["regulator1"]  # the intruder, in the member's log
