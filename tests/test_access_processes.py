"""The access model of docs/api.md on real processes (#15 item 4): the exchange and four
members as `jinlian` processes on loopback. Public market data is public; a block is for
members; a trade's receipt is for its parties' brokers and members; the catch-up page is for
members. Callers sign with the keys `jinlian init` wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.consortium.init import init_consortium
from exchange.gateway.client import authorization
from ledger.feed import Feed
from ledger.keys import load_private_key
from tests.consortium_net import SYMBOL, free_base_port, opening, orders, until
from tests.test_consortium_processes import MEMBERS, Processes, running, tip_of, wait_up


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Processes]:
    init_consortium(tmp_path / "c", members=4, brokers=3, base_port=free_base_port(5))
    yield from running(tmp_path / "c")


def key_path(directory: Path, caller: str) -> Path:
    return directory / ("brokers/" + caller if caller.startswith("broker") else caller) / "key.pem"


async def get(directory: Path, address: str, path: str, caller: str | None) -> tuple[int, Any]:
    headers = {}
    if caller is not None:
        key = load_private_key(key_path(directory, caller))
        header = authorization(key, "jinlian-local", caller, "GET", path, time.time_ns())
        headers["Authorization"] = header
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{address}{path}", headers=headers) as response,
    ):
        body = await response.read()
        json = response.content_type == "application/json"
        return response.status, orjson.loads(body) if json else body.decode()


def test_each_endpoint_for_each_kind_of_caller_on_real_processes(consortium: Processes) -> None:
    directory = consortium.directory

    async def scenario() -> None:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        async with Feed(exchange) as feed:
            await feed.submit(opening())
            stored, final = await feed.send_final(orders(1, 2))  # broker1 buys from broker2
            height = max(await asyncio.wait_for(stored, 30))
            await asyncio.wait_for(final, 30)
        await until(lambda: _final(exchange, height), what="the trade's block final")
        expected = {  # anonymous, broker3 (no party), broker1 (party), bank1 (member)
            "/instruments": (200, 200, 200, 200),
            f"/book/{SYMBOL}": (200, 200, 200, 200),
            "/health": (200, 200, 200, 200),
            f"/block/{height}": (401, 403, 403, 200),
            "/receipt/1": (401, 403, 200, 200),
            "/blocks?from=1&limit=1": (401, 403, 403, 200),
        }
        for path, statuses in expected.items():
            for caller, status in zip((None, "broker3", "broker1", "bank1"), statuses, strict=True):
                got, body = await get(directory, exchange, path, caller)
                assert got == status, (path, caller, got, body)
        _, receipt = await get(directory, exchange, "/receipt/1", "broker2")
        assert receipt["trade_id"] == 1, receipt
        member = consortium.address("bank1")
        assert (await get(directory, member, "/blocks?from=1&limit=1", None))[0] == 401
        assert (await get(directory, member, "/blocks?from=1&limit=1", "depository1"))[0] == 200

    asyncio.run(scenario())


async def _final(address: str, height: int) -> bool:
    return (await tip_of(address))[1] >= height
