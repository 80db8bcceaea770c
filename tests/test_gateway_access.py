"""The REST access model of the broker-facing port (docs/api.md, "Access"), through real HTTP
on a loopback consortium: every endpoint asked anonymously, as a broker that is not a party,
as a party's broker and as a member; the refusals are structured and name the value."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.cli import main as jinlian
from exchange.consortium.audit import trade_in
from exchange.gateway.client import Client, RequestError, RestError, authorization
from exchange.gateway.server import Limits
from ledger import auth
from ledger.keys import load_private_key
from tests.gateway_net import SYMBOL, RunningVenue, order

ANONYMOUS, OUTSIDER, PARTY, MEMBER = "anonymous", "broker2", "broker1", "bank1"


async def a_final_trade(venue: RunningVenue) -> tuple[int, int]:
    """Trade 1, between two accounts of broker1 (broker2 is no party): (its height, final)."""
    await venue.open_market()
    one = await venue.client("broker1")
    await one.place(**order("buy", "10001", "buy", 1000, 100))
    await one.place(**order("sell", "10002", "sell", 1000, 100))
    while (report := await one.next_report())["report"] != "trade":
        pass
    height = report["height"]
    while (await one.finals.get())["height"] < height:
        pass
    return height, report["trade_id"]


async def get(venue: RunningVenue, path: str, caller: str, header: str | None = None) -> Any:
    """(status, body) of GET `path` signed by `caller` (or with `header` as given)."""
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif caller != ANONYMOUS:
        key = load_private_key(venue.key_path(caller))
        headers["Authorization"] = authorization(
            key, venue.genesis.chain_id, caller, "GET", path, time.time_ns()
        )
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{venue.address}{path}", headers=headers) as response,
    ):
        body = await response.read()
        if response.content_type == "application/json":
            return response.status, orjson.loads(body)
        return response.status, body.decode()


async def test_each_endpoint_for_each_kind_of_caller(venue: RunningVenue) -> None:
    height, trade = await a_final_trade(venue)
    expected = {  # endpoint -> status for anonymous, non-party broker, party broker, member
        "/instruments": (200, 200, 200, 200),
        f"/book/{SYMBOL}": (200, 200, 200, 200),
        "/health": (200, 200, 200, 200),
        "/metrics": (200, 200, 200, 200),
        f"/block/{height}": (401, 403, 403, 200),
        f"/receipt/{trade}": (401, 403, 200, 200),
    }
    for path, statuses in expected.items():
        for caller, status in zip((ANONYMOUS, OUTSIDER, PARTY, MEMBER), statuses, strict=True):
            got, body = await get(venue, path, caller)
            assert got == status, (path, caller, body)
            if status == 401:
                assert (body["code"], body["field"]) == (auth.MISSING, "Authorization")
            if status == 403:
                assert caller in body["message"], body
                assert body["code"] == ("not_allowed" if "block" in path else "not_your_trade")
    _, block = await get(venue, f"/block/{height}", MEMBER)
    assert block["block"]["header"]["height"] == height and block["certificate"] is not None
    _, receipt = await get(venue, f"/receipt/{trade}", PARTY)
    assert receipt["trade_id"] == trade and trade_in(receipt["leaf"], trade) is not None
    assert (await get(venue, "/block/999", MEMBER))[1]["code"] == "unknown_block"
    assert (await get(venue, "/receipt/999", PARTY))[1]["code"] == "unknown_trade"
    status, body = await get(venue, "/receipt/x1", MEMBER)
    assert (status, body["field"]) == (400, "trade_id") and "'x1'" in body["message"]


async def test_the_websocket_and_rest_receipts_refuse_the_same_callers(
    venue: RunningVenue,
) -> None:
    _, trade = await a_final_trade(venue)
    outsider = await venue.client(OUTSIDER)
    with pytest.raises(RequestError) as refused:
        await outsider.receipt(trade)
    with pytest.raises(RestError) as rest_refused:
        await outsider.get(f"/receipt/{trade}")
    assert refused.value.code == rest_refused.value.code == "not_your_trade"
    assert rest_refused.value.status == 403 and rest_refused.value.field == "trade_id"
    party = await venue.client(PARTY)
    member = await venue.client(MEMBER, member=True)
    assert (await party.get(f"/receipt/{trade}")) == await party.receipt(trade)
    assert (await member.get(f"/receipt/{trade}")) == await member.receipt(trade)


async def test_refused_authorizations_say_why_and_name_the_value(venue: RunningVenue) -> None:
    await venue.open_market()
    path, chain = "/block/1", venue.genesis.chain_id
    bank = load_private_key(venue.key_path(MEMBER))
    now = time.time_ns()
    window_ns = venue.limits.logon_window_ms * 1_000_000
    cases = {
        "malformed_authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "unknown_identity": auth.sign_request(bank, chain, "mallory", "GET", path, now),
        "bad_signature": auth.sign_request(bank, chain, OUTSIDER, "GET", path, now),
        "stale_timestamp": auth.sign_request(bank, chain, MEMBER, "GET", path, now - 2 * window_ns),
        "expired_token": f"{auth.TOKEN_SCHEME} "
        + auth.mint_token(bank, chain, MEMBER, now - 2 * 10**9, 10**9),
    }
    for code, header in cases.items():
        status, body = await get(venue, path, MEMBER, header)
        assert (status, body["code"], body["field"]) == (401, code, "Authorization"), body
    _, body = await get(venue, path, MEMBER, cases["unknown_identity"])
    assert "mallory" in body["message"]
    _, body = await get(venue, path, MEMBER, cases["stale_timestamp"])
    assert str(now - 2 * window_ns) in body["message"]
    # a signature is for one path: replayed on another it does not verify
    signed = auth.sign_request(bank, chain, MEMBER, "GET", "/block/1", now)
    status, body = await get(venue, "/block/2", MEMBER, signed)
    assert (status, body["code"]) == (401, "bad_signature") and "/block/2" in body["message"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{venue.address}{path}") as response,
    ):
        assert response.headers["WWW-Authenticate"].startswith(auth.SCHEME)


async def test_jinlian_token_mints_a_token_the_gateway_accepts(
    venue: RunningVenue, capsys: pytest.CaptureFixture[str]
) -> None:
    height, trade = await a_final_trade(venue)
    directory = venue.directory
    assert jinlian(["token", str(directory / MEMBER), "--ttl", "8h"]) == 0
    member_token = capsys.readouterr().out.strip()
    identity, issued, expires, _ = member_token.split(".")
    assert identity == MEMBER and int(expires) - int(issued) == 8 * 3600 * 10**9
    header = f"{auth.TOKEN_SCHEME} {member_token}"
    assert (await get(venue, f"/block/{height}", MEMBER, header))[0] == 200
    assert (await get(venue, f"/receipt/{trade}", MEMBER, header))[0] == 200
    assert jinlian(["token", str(directory / "brokers" / OUTSIDER), "--ttl", "15m"]) == 0
    broker_header = f"{auth.TOKEN_SCHEME} {capsys.readouterr().out.strip()}"
    status, body = await get(venue, f"/receipt/{trade}", OUTSIDER, broker_header)
    assert (status, body["code"]) == (403, "not_your_trade")
    assert (await get(venue, f"/block/{height}", OUTSIDER, broker_header))[0] == 403


def test_jinlian_token_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.consortium_net import make_consortium

    directory = tmp_path / "c"
    make_consortium(directory)
    for arguments, words in [
        ([str(directory / MEMBER), "--ttl", "8 hours"], "'8 hours'"),
        ([str(directory / MEMBER), "--ttl", "25h"], "24 h"),
        ([str(directory / "brokers"), "--ttl", "1h"], "'brokers' is neither"),
        ([str(tmp_path), "--ttl", "1h"], "no genesis.json"),
    ]:
        assert jinlian(["token", *arguments]) == 2, arguments
        assert words in capsys.readouterr().err, arguments
    (directory / "brokers" / OUTSIDER / "key.pem").write_bytes(
        (directory / "brokers" / PARTY / "key.pem").read_bytes()
    )
    assert jinlian(["token", str(directory / "brokers" / OUTSIDER)]) == 2
    assert f"not {OUTSIDER}'s key" in capsys.readouterr().err


async def test_the_client_signs_its_rest_requests(venue: RunningVenue) -> None:
    member = Client(venue.address, MEMBER, load_private_key(venue.key_path(MEMBER)),
                    member=True, chain_id=venue.genesis.chain_id)  # fmt: skip
    try:
        await venue.open_market()
        assert (await member.get("/block/1"))["block"]["header"]["height"] == 1
        assert (await member.get("/instruments"))["instruments"][0]["symbol"] == SYMBOL
        with pytest.raises(RestError) as error:
            await member.get("/receipt/1")
        assert (error.value.status, error.value.code) == (404, "unknown_trade")
    finally:
        await member.close()


AUTH_CODES = {auth.MISSING, auth.MALFORMED, auth.UNKNOWN_IDENTITY, auth.STALE, auth.EXPIRED,
              auth.BAD_SIGNATURE}  # fmt: skip
ALPHABET = "0123456789abcdefABCDEF .-_xyzJinlanTok\t"


def mutated(header: str, rng: random.Random) -> str:
    """`header` with a few random edits: replaced, dropped or inserted characters, a cut."""
    text = list(header)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(text) + 1)
        edit = rng.randrange(4)
        if edit == 0 and where < len(text):
            text[where] = rng.choice(ALPHABET)
        elif edit == 1 and where < len(text):
            del text[where]
        elif edit == 2:
            text.insert(where, rng.choice(ALPHABET))
        else:
            text = text[:where]
    return "".join(text)


async def _fuzz_authorization(venue: RunningVenue, count: int, seed: int) -> None:
    """Every mutation of a valid header is refused with 401 and an auth code naming the
    field, never a 5xx; only the header itself (or its signature in other letter case, the
    same bytes) is let through."""
    await venue.open_market()
    rng = random.Random(seed)
    key = load_private_key(venue.key_path(MEMBER))
    chain = venue.genesis.chain_id
    async with aiohttp.ClientSession() as http:
        for number in range(count):
            path = f"/block/{rng.randint(1, 3)}"
            now = time.time_ns()
            if number % 2:
                good = auth.sign_request(key, chain, MEMBER, "GET", path, now)
            else:
                good = f"{auth.TOKEN_SCHEME} " + auth.mint_token(key, chain, MEMBER, now, 10**12)
            header = mutated(good, rng)
            async with http.get(f"http://{venue.address}{path}",
                                headers={"Authorization": header}) as response:  # fmt: skip
                body = await response.json(loads=orjson.loads)
            same = header.strip().lower() == good.lower() and header.strip()[:-128] == good[:-128]
            if response.status == 200:
                assert same, (header, good)
                continue
            assert response.status in (401, 404), (response.status, header, body)
            if response.status == 401:
                assert body["code"] in AUTH_CODES and body["field"] == "Authorization", body


async def test_mutated_authorization_headers_are_refused_cleanly(venue: RunningVenue) -> None:
    await _fuzz_authorization(venue, 300, seed=1)


@pytest.mark.skipif(os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="JINLIAN_CHECK_ALL=1")
async def test_many_mutated_authorization_headers_are_refused_cleanly(
    venue: RunningVenue,
) -> None:
    seed = int(os.environ.get("JINLIAN_SEED", random.randrange(10**9)))
    print(f"authorization fuzz seed {seed} (JINLIAN_SEED={seed} repeats it)")
    await _fuzz_authorization(venue, 20_000, seed)


async def test_the_window_is_the_gateways_logon_window_on_its_injected_clock(
    tmp_path: Path,
) -> None:
    venue = RunningVenue(tmp_path / "c", Limits(logon_window_ms=1_000))
    await venue.start()
    try:
        await venue.open_market()
        gateway = venue.gateway
        assert gateway is not None
        then = time.time_ns() - 3600 * 10**9
        gateway.clock = lambda: then  # the exchange's clock, an hour behind the caller's
        key = load_private_key(venue.key_path(MEMBER))
        chain = venue.genesis.chain_id
        for offset_ms, status in ((0, 200), (-900, 200), (900, 200), (-1_100, 401), (1_100, 401)):
            header = auth.sign_request(key, chain, MEMBER, "GET", "/block/1",
                                       then + offset_ms * 1_000_000)  # fmt: skip
            got, body = await get(venue, "/block/1", MEMBER, header)
            assert got == status, (offset_ms, body)
            if status == 401:
                assert body["code"] == "stale_timestamp" and "window 1000 ms" in body["message"]
        assert (await get(venue, "/block/1", MEMBER))[1]["code"] == "stale_timestamp"
    finally:
        await venue.stop()
