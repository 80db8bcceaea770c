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
