"""docs/api.md and the gateway agree: every example exchange in the document is run, in order,
on one broker session of a running consortium, and every reply field it shows is checked."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.gateway.api import logon_message
from ledger.keys import load_private_key
from tests.gateway_net import RunningVenue

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
BLOCK = re.compile(r"```text example\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for block in BLOCK.findall(DOC.read_text()):
        for line in block.strip().splitlines():
            direction, _, text = line.partition(" ")
            assert direction in (">", "<"), line
            steps.append((direction, json.loads(text)))
    return steps


def matches(expected: Any, actual: Any) -> bool:
    if expected == "*":
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    return bool(expected == actual)


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[RunningVenue]:
    running = RunningVenue(tmp_path / "c")
    await running.start()
    await running.open_market()
    yield running
    await running.stop()


async def test_the_documented_examples_run_as_documented(venue: RunningVenue) -> None:
    steps = examples()
    assert len(steps) > 30 and {d for d, _ in steps} == {">", "<"}
    nonce = ""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"http://{venue.address}/ws")
        for direction, step in steps:
            message = step
            if direction == ">":
                if message.get("signature") == "<signature>":
                    now = time.time_ns()
                    key = load_private_key(venue.key_path(message["broker"]))
                    signed = logon_message(venue.genesis.chain_id, message["broker"], nonce, now)
                    message = {**message, "nonce": nonce, "timestamp_ns": now,
                               "signature": key.sign(signed).hex()}  # fmt: skip
                await ws.send_str(orjson.dumps(message).decode())
                continue
            for _ in range(50):  # reports and market data may come in between
                received = orjson.loads((await ws.receive(timeout=10)).data)
                if received.get("type") == message["type"] and (
                    "request" not in message or received.get("request") == message["request"]
                ):
                    break
            else:
                raise AssertionError(f"no {message['type']} message arrived")
            assert matches(message, received), (message, received)
            if received["type"] == "challenge":
                nonce = received["nonce"]
        await ws.close()
