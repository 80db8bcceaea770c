"""The console's ledger explorer over HTTP (issue #20): for the node's own member only, logged
in with a `jinlian token`; anonymous visitors, other members, brokers and stale tokens are
refused without a byte of the ledger; every query parameter is validated with an error page
naming it; a downloaded receipt passes `jinlian verify-receipt`'s check."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from exchange.console.explorer import COOKIE
from exchange.consortium.audit import find_trade, verify_receipt_file
from ledger import auth
from ledger.keys import load_private_key
from tests.consortium_net import until
from tests.gateway_net import RunningVenue, order

PAGES = ("/blocks", "/block?height=1", "/command?height=1&index=0", "/evidence",
         "/receipt.json?height=1&index=0&trade=1")  # fmt: skip


def token(venue: RunningVenue, name: str, *, ttl_s: float = 600, issued_ns: int = 0) -> str:
    key = load_private_key(venue.key_path(name))
    issued = issued_ns or time.time_ns()
    return auth.mint_token(key, venue.genesis.chain_id, name, issued, int(ttl_s * 1e9))


async def fetch(url: str, cookie: str | None = None) -> tuple[int, str]:
    cookies = {} if cookie is None else {COOKIE: cookie}
    async with aiohttp.ClientSession(cookies=cookies) as http, http.get(url) as response:
        return response.status, await response.text()


async def traded(venue: RunningVenue) -> tuple[int, int]:
    """Open the market and make trade 1 final: (height, index) of the command that traded."""
    await venue.open_market()
    buyer, seller = await venue.client("broker1"), await venue.client("broker2")
    await buyer.place(**order("e-1", "10001", "buy", 1000, 100))
    await seller.place(**order("e-2", "20001", "sell", 1000, 100))
    store = venue.members[0].replica.store  # bank1

    async def final() -> bool:
        where = find_trade(store, 1)
        return where is not None and store.certified_height() >= where[0]

    await until(final, what="trade 1 final on bank1")
    where = find_trade(store, 1)
    assert where is not None
    return where


async def test_anonymous_visitors_and_other_identities_are_refused(venue: RunningVenue) -> None:
    height, index = await traded(venue)
    base = f"http://{venue.members[0].address}/console"  # bank1's node
    secret = "buy_account"  # in every trade's events: must never show in a refusal
    for page in PAGES:
        status, body = await fetch(base + page)
        assert status == 401 and 'data-code="unauthenticated"' in body, (page, body[:300])
        assert secret not in body and "/console/login" in body
        for other in ("depository1", "broker1"):  # another member, a broker
            status, body = await fetch(base + page, token(venue, other))
            assert status == 403 and 'data-code="not_allowed"' in body, (page, other, body)
            assert secret not in body
    expired = token(venue, "bank1", ttl_s=1, issued_ns=time.time_ns() - 5 * 10**9)
    status, body = await fetch(base + "/blocks", expired)
    assert status == 401 and 'data-code="expired_token"' in body
    status, body = await fetch(base + "/blocks", "not-a-token")
    assert status == 401 and 'data-code="malformed_authorization"' in body
    status, body = await fetch(f"{base}/command?height={height}&index={index}",
                               token(venue, "bank1"))  # fmt: skip
    assert status == 200 and secret in body


async def test_login_sets_a_strict_http_only_cookie(venue: RunningVenue) -> None:
    base = f"http://{venue.members[1].address}/console"  # depository1's node
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP address, as browsers do
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        form = {"token": token(venue, "depository1")}
        async with http.post(base + "/login", data=form, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/console/blocks"
            cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
        async with http.get(base + "/blocks") as response:
            assert response.status == 200 and 'id="blocks"' in await response.text()
        form = {"token": token(venue, "bank1")}
        async with http.post(base + "/login", data=form, allow_redirects=False) as response:
            assert response.status == 403


@pytest.mark.parametrize(
    ("page", "status", "code", "named"),
    [
        ("/blocks?to=abc", 400, "invalid_parameter", "to &#x27;abc&#x27;"),
        ("/blocks?rows=101", 400, "invalid_parameter", "rows &#x27;101&#x27;"),
        ("/blocks?rows=0", 400, "invalid_parameter", "rows &#x27;0&#x27;"),
        ("/blocks?to=99999", 400, "invalid_parameter", "to &#x27;99999&#x27;"),
        ("/blocks?limit=5", 400, "unknown_parameter", "limit"),
        ("/block", 400, "missing_parameter", "height"),
        ("/block?height=0", 400, "invalid_parameter", "height &#x27;0&#x27;"),
        ("/block?height=-1", 400, "invalid_parameter", "height &#x27;-1&#x27;"),
        ("/block?height=99999", 404, "unknown_block", "99999"),
        ("/block?height=1&from=5000", 400, "invalid_parameter", "from &#x27;5000&#x27;"),
        ("/command?height=1", 400, "missing_parameter", "index"),
        ("/command?height=1&index=5000", 400, "invalid_parameter", "index &#x27;5000&#x27;"),
        ("/receipt.json?height=1&index=0", 400, "invalid_parameter", "one of trade or order"),
        ("/receipt.json?height=1&index=0&trade=77", 404, "unknown_trade", "trade 77"),
        ("/evidence?after=x", 400, "invalid_parameter", "after &#x27;x&#x27;"),
    ],
)
async def test_bad_parameters_get_an_error_page_naming_them(
    venue: RunningVenue, page: str, status: int, code: str, named: str
) -> None:
    await venue.open_market()
    store = venue.members[0].replica.store

    async def certified() -> bool:
        return store.certified_height() >= 1

    await until(certified, what="a final block on bank1")
    got, body = await fetch(f"http://{venue.members[0].address}/console{page}",
                            token(venue, "bank1"))  # fmt: skip
    assert got == status and f'data-code="{code}"' in body and named in body, (got, body[-600:])


async def test_a_downloaded_receipt_verifies_offline(venue: RunningVenue, tmp_path: Path) -> None:
    height, index = await traded(venue)
    url = (f"http://{venue.members[0].address}/console/receipt.json?height={height}"
           f"&index={index}&trade=1")  # fmt: skip
    cookies = {COOKIE: token(venue, "bank1")}
    async with aiohttp.ClientSession(cookies=cookies) as http, http.get(url) as response:
        assert response.status == 200
        assert "attachment" in response.headers["Content-Disposition"]
        (tmp_path / "receipt.json").write_bytes(await response.read())
    assert verify_receipt_file(tmp_path / "receipt.json", venue.directory / "genesis.json") is None


async def test_the_blocks_list_is_paginated_by_height(venue: RunningVenue) -> None:
    await venue.open_market()  # a few blocks: begin_day and three phases
    store = venue.members[0].replica.store
    tip = store.tip()
    assert tip is not None and tip[0] >= 2
    status, body = await fetch(f"http://{venue.members[0].address}/console/blocks?rows=1",
                               token(venue, "bank1"))  # fmt: skip
    assert status == 200 and body.count("/console/block?height=") == 1
    assert f"/console/blocks?to={tip[0] - 1}&amp;rows=1" in body  # the older page


async def test_reconciliation_shows_every_peer_holding_the_same_block(
    venue: RunningVenue,
) -> None:
    height, _ = await traded(venue)
    base = f"http://{venue.members[0].address}/console/reconciliation"
    assert (await fetch(base))[0] == 401
    status, body = await fetch(f"{base}?height={height}", token(venue, "bank1"))
    assert status == 200, body
    rows = body.split('<table id="peers">')[1].split("<tr>")[2:]
    assert len(rows) == 4, rows  # three other members and the exchange
    for peer in rows:
        assert "same" in peer and "DIFFERENT" not in peer, peer
    status, body = await fetch(f"{base}?height=999999", token(venue, "bank1"))
    assert status == 400 and "height 999999 is not a certified height" in body
