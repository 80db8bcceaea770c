"""The exchange recovers what its store lost from the members (docs/ledger.md, "Recovery"),
with real processes on loopback, through the broker API.

- Item 7: the exchange loses the tail of its store (blocks deleted while it is stopped: some
  final, some stored by members but not final, one on no member). Until 2f + 1 members
  answer, `/health` says `recovering` (503) and orders are refused `recovering`; then the
  same blocks come back at those heights, finality resumes, no member records evidence, the
  order no member held is `lost` (its broker is told, `/health` counts it), order ids are not
  reused, and a broker's replay from report 1 has no gap.
- Item 8: `jinlian exchange DIR --recover` refuses a store that holds blocks, and rebuilds a
  lost exchange (empty store, key kept) from the members.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.consortium.nodes import ACK_JOURNAL, load_config
from exchange.gateway.api import logon_message
from exchange.gateway.client import Client, RequestError
from ledger.feed import status
from ledger.keys import load_private_key
from ledger.store import BlockStore
from tests.consortium_net import SYMBOL, until
from tests.test_consortium_processes import (
    MEMBERS,
    PYTHON,
    Processes,
    consortium,  # noqa: F401 - the fixture
    header_at,
    verify,
    wait_up,
)


def broker(processes: Processes, name: str) -> Client:
    key = load_private_key(processes.directory / "brokers" / name / "key.pem")
    return Client(processes.address("exchange"), name, key, reconnect=False)


def operator(processes: Processes) -> Client:
    key = load_private_key(processes.directory / "exchange" / "key.pem")
    return Client(processes.address("exchange"), "exchange", key, member=True, reconnect=False)


def order(client_order_id: str, side: str) -> dict[str, Any]:
    buy = side == "buy"
    return {"client_order_id": client_order_id, "account": "10001" if buy else "20001",
            "symbol": SYMBOL, "side": side, "price": 1000, "quantity": 100}  # fmt: skip


async def open_market(processes: Processes) -> None:
    async with operator(processes) as client:
        await client.admin({"type": "begin_day", "day": 20261123})
        await client.admin({"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"})


async def trade(processes: Processes, prefix: str, pairs: int) -> None:
    async with broker(processes, "broker1") as buyer, broker(processes, "broker2") as seller:
        for k in range(pairs):
            await buyer.place(**order(f"{prefix}b{k}", "buy"))
            await seller.place(**order(f"{prefix}s{k}", "sell"))


async def all_final(address: str) -> bool:
    info = await status(address)
    return bool(info["certified"] == info["height"] and not info.get("recovering"))


async def health(address: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}/health") as r:
        return r.status, orjson.loads(await r.read())


async def replay_all(processes: Processes, name: str) -> tuple[list[dict[str, Any]], int]:
    """Every report of broker `name` from index 1 (a raw `replay`), and the next index."""
    key = load_private_key(processes.directory / "brokers" / name / "key.pem")
    address = processes.address("exchange")
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://{address}/ws") as ws:
        challenge = orjson.loads((await ws.receive()).data)
        now = time.time_ns()
        chain_id = load_config(processes.directory / "exchange").genesis.chain_id
        signature = key.sign(logon_message(chain_id, name, challenge["nonce"], now))
        await ws.send_str(orjson.dumps({"type": "logon", "request": 1, "broker": name,
                                        "nonce": challenge["nonce"], "timestamp_ns": now,
                                        "signature": signature.hex()}).decode())  # fmt: skip
        assert orjson.loads((await ws.receive()).data)["type"] == "logged_on"
        await ws.send_str(orjson.dumps({"type": "replay", "request": 2, "from": 1}).decode())
        reports: list[dict[str, Any]] = []
        while True:
            message = orjson.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            if message["type"] == "replayed":
                return reports, int(message["next"])
            if message["type"] == "report":
                reports.append(message)


def lose_tail(store_path: Path, keep: int) -> None:
    """What a power cut does to a store with synchronous=NORMAL: every row above height
    `keep` is gone (blocks, commands, events, certificates and the derived tables)."""
    with sqlite3.connect(store_path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                               "'table'")]  # fmt: skip
        ordered = sorted(tables, key=lambda t: (t == "blocks", t != "certificates"))
        for table in ordered:
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if "height" in columns and table != "evidence":
                db.execute(f"DELETE FROM {table} WHERE height > ?", (keep,))
    with BlockStore.open(store_path) as store:
        tip = store.tip()
        assert tip is not None and tip[0] == keep


def headers(directory: Path, first: int, last: int) -> list[bytes]:
    return [header_at(directory, height) for height in range(first, last + 1)]


def test_an_exchange_that_lost_its_tail_recovers_it_from_the_members(
    consortium: Processes,  # noqa: F811
) -> None:
    directory = consortium.directory
    exchange_dir = directory / "exchange"

    async def before_the_cut() -> tuple[int, int, int]:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        await open_market(consortium)
        await trade(consortium, "a", 3)  # final blocks, some of which the cut takes
        await until(lambda: all_final(exchange), what="the first blocks final")
        certified = (await status(exchange))["certified"]
        consortium.kill("regulator1")
        consortium.kill("broker-node1")  # two members of four: nothing becomes final
        async with broker(consortium, "broker1") as client:
            for k in range(3):  # stored by the exchange, bank1 and depository1; not final
                await client.place(**order(f"u{k}", "buy"))
            held = (await status(exchange))["height"]
            stored = ("bank1", "depository1")
            await until(lambda: members_at(consortium, stored, held), what="them stored")
            consortium.kill("bank1")
            consortium.kill("depository1")
            lost = await client.place(**order("x0", "buy"))  # on the exchange only
        info = await status(exchange)
        assert info["certified"] == certified and info["height"] == held + 1
        return certified, held, int(lost["order_id"])

    certified, held, lost_order_id = asyncio.run(before_the_cut())
    consortium.kill("exchange")
    keep = certified - 3
    signed = headers(exchange_dir, keep + 1, held)  # what the members hold too
    lose_tail(load_config(exchange_dir).store_path, keep)

    async def recovery() -> None:
        consortium.start("bank1")
        consortium.start("depository1")
        consortium.start("exchange")
        exchange = consortium.address("exchange")
        await until(lambda: answers(exchange), what="the exchange's /health")
        code, body = await health(exchange)
        assert code == 503 and body["status"] == "recovering", body
        async with broker(consortium, "broker2") as client:
            with pytest.raises(RequestError) as refused:
                await client.place(**order("r0", "sell"))
            assert refused.value.code == "recovering", refused.value.reply
            assert "members needed have answered" in str(refused.value)
        consortium.start("regulator1")  # the third member: 2f + 1 answer
        await wait_up(consortium, ("exchange",))
        info = await status(exchange)
        assert info["height"] == held and info["certified"] <= held
        await until(lambda: all_final(exchange), what="finality to resume")
        code, body = await health(exchange)
        assert code == 200 and body["lost_orders"] == 1, body
        async with broker(consortium, "broker1") as client:
            lost = await client.order_status(client_order_id="x0")
            assert lost["status"] == "lost" and lost["order_id"] == lost_order_id, lost
            after = await client.place(**order("n0", "buy"))
            assert after["order_id"] > lost_order_id, after  # order ids are not reused
        consortium.start("broker-node1")
        await trade(consortium, "c", 1)
        await until(lambda: all_final(exchange), what="finality after the recovery")
        reports, next_index = await replay_all(consortium, "broker1")
        assert [r["index"] for r in reports] == list(range(1, next_index)), "a gap"
        kinds = {(r.get("client_order_id"), r["report"]) for r in reports}
        for client_order_id in ("ab0", "ab1", "ab2", "u0", "u1", "u2", "n0", "cb0"):
            assert (client_order_id, "accepted") in kinds, client_order_id
        assert ("x0", "lost") in kinds and ("x0", "accepted") not in kinds
        tip = (await status(exchange))["height"]
        await until(lambda: members_at(consortium, MEMBERS, tip), what="every member at the tip")

    asyncio.run(recovery())
    consortium.stop_all()
    assert headers(exchange_dir, keep + 1, held) == signed, "a recovered block changed"
    with BlockStore.open(load_config(exchange_dir).store_path) as store:
        tip = store.tip()
    assert tip is not None
    for name in MEMBERS:
        assert headers(directory / name, 1, tip[0]) == headers(exchange_dir, 1, tip[0])
        with BlockStore.open(load_config(directory / name).store_path) as store:
            assert store.evidence() == [], f"{name} recorded evidence"


async def members_at(processes: Processes, names: tuple[str, ...], height: int) -> bool:
    try:
        for name in names:
            if (await status(processes.address(name)))["height"] < height:
                return False
    except OSError:  # not listening yet
        return False
    return True


async def answers(address: str) -> bool:
    try:
        await health(address)
    except aiohttp.ClientError:
        return False
    return True


def test_recover_rebuilds_a_lost_exchange_from_the_members(
    consortium: Processes,  # noqa: F811
) -> None:
    directory = consortium.directory
    exchange_dir = directory / "exchange"

    async def trading() -> int:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        await open_market(consortium)
        await trade(consortium, "a", 3)
        await until(lambda: all_final(exchange), what="the blocks final")
        return int((await status(exchange))["height"])

    tip = asyncio.run(trading())
    consortium.kill("exchange")
    recover = [*PYTHON, "exchange", str(directory), "--recover"]
    refused = subprocess.run(recover, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"holds blocks up to height {tip}" in refused.stderr, refused.stderr
    store_path = load_config(exchange_dir).store_path
    for lost in exchange_dir.iterdir():  # the machine is gone; the key and config are kept
        if lost.name.startswith((store_path.name, ACK_JOURNAL)):
            lost.unlink()
    exchange = subprocess.Popen(recover, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consortium.children["exchange"] = exchange

    async def rebuilt() -> None:
        await wait_up(consortium, ("exchange",))
        address = consortium.address("exchange")
        info = await status(address)
        assert info["height"] == tip and info["certified"] == tip, info
        await trade(consortium, "b", 1)
        await until(lambda: all_final(address), what="finality after the rebuild")
        reports, next_index = await replay_all(consortium, "broker1")
        assert [r["index"] for r in reports] == list(range(1, next_index)), "a gap"
        accepted = {r["client_order_id"] for r in reports if r["report"] == "accepted"}
        assert accepted == {"ab0", "ab1", "ab2", "bb0"}

    asyncio.run(rebuilt())
    consortium.stop_all()
    assert exchange.stdout is not None
    output = exchange.stdout.read().decode()
    assert "rebuilding" in output and f"exchange recovered at height {tip}" in output, output
    assert headers(exchange_dir, 1, tip) == headers(directory / "bank1", 1, tip)
    result = verify(exchange_dir)
    assert result.returncode == 0, result.stdout + result.stderr
