"""The web console in a real browser (issue #20): headless Chromium against a consortium on
loopback in this process. An order placed through the client library shows in the market
page's book and, once it trades, on its tape, with every book checksum verified in the page;
the health page shows every member's link."""

from __future__ import annotations

from typing import Any

from tests.console_browser import browser_page
from tests.gateway_net import SYMBOL, RunningVenue, order


async def test_an_order_shows_in_the_book_then_on_the_tape(venue: RunningVenue) -> None:
    await venue.open_market()
    buyer, seller = await venue.client("broker1"), await venue.client("broker2")
    async with browser_page() as page_:
        page: Any = page_
        await page.goto(f"http://{venue.address}/console/market?symbol={SYMBOL}")
        await page.wait_for_selector("#feed[data-state=ok]")
        await buyer.place(**order("b-1", "10001", "buy", 997, 300))
        await page.wait_for_selector("#book tbody tr:has(td:text-is('997'))")
        assert await page.get_attribute("#checksum", "data-state") == "ok"
        await seller.place(**order("b-2", "20001", "sell", 997, 200))
        await page.wait_for_selector("#tape tbody tr:has(td:text-is('997'))")
        await page.wait_for_selector("#book tbody tr:has(td:text-is('100'))")  # 300 - 200 left
        assert await page.get_attribute("#checksum", "data-state") == "ok"
        checked = await page.text_content("#checksum")
        assert checked is not None and checked.startswith("ok "), checked


async def test_the_health_page_shows_each_member(venue: RunningVenue) -> None:
    async with browser_page() as page_:
        page: Any = page_
        await page.goto(f"http://{venue.address}/console/health")
        await page.wait_for_selector("#status[data-state=ok]")
        rows = await page.locator("#members tbody tr").all_text_contents()
        assert len(rows) == 4 and all("true" in row for row in rows), rows


async def test_a_trade_becomes_final_and_its_receipt_verifies_in_the_browser(
    venue: RunningVenue,
) -> None:
    from tests.test_console_explorer import token, traded

    height, index = await traded(venue)
    bank = f"http://{venue.members[0].address}/console"
    async with browser_page() as page_:
        page: Any = page_
        response = await page.goto(f"{bank}/blocks")  # anonymous: refused
        assert response.status == 401
        assert await page.get_attribute(".error", "data-code") == "unauthenticated"
        assert await page.locator("#blocks").count() == 0
        await page.goto(f"{bank}/login")
        await page.fill("#token", token(venue, "bank1"))
        await page.click("#login")
        await page.wait_for_selector("#blocks")
        row = page.locator(f"#blocks tbody tr:has(a:text-is('{height}'))")
        assert "final" in await row.text_content()
        await row.locator("a").click()
        await page.wait_for_selector("#certificate")
        await page.click(f"#commands a:text-is('{index}')")
        await page.wait_for_selector("#verified[data-state=ok]")
        checks = await page.locator("#checks li").all_text_contents()
        assert len(checks) >= 8 and all(c.startswith("ok") for c in checks), checks
        genesis = await page.text_content("#genesis-hash")
        assert genesis == venue.genesis.hash.hex()
        async with page.expect_download() as download:
            await page.click("text=receipt of trade 1")
        assert (await download.value).suggested_filename == "receipt-trade-1.json"


async def test_a_tampered_receipt_is_not_verified_in_the_browser(venue: RunningVenue) -> None:
    """The page checks what it is given: a receipt changed on its way fails its proof."""
    from tests.test_console_explorer import token, traded

    height, index = await traded(venue)
    bank = f"http://{venue.members[0].address}/console"

    async def tamper(route: Any) -> None:
        response = await route.fetch()
        body = await response.text()
        # a quantity in the leaf's events, in the receipt embedded in the page
        body = body.replace('\\"quantity\\":100', '\\"quantity\\":900', 1)
        await route.fulfill(response=response, body=body)

    async with browser_page() as page_:
        page: Any = page_
        await page.context.add_cookies([{"name": "jinlian_console_token",
                                         "value": token(venue, "bank1"),
                                         "url": f"{bank}/"}])  # fmt: skip
        await page.route("**/console/command*", tamper)
        await page.goto(f"{bank}/command?height={height}&index={index}")
        await page.wait_for_selector("#verified[data-state=bad]")
        text = await page.text_content("#verified")
        assert "NOT verified" in text, text
