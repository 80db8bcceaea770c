"""The console's holdings page (issue #20): the regulator's node shows every account, a
broker's node its firm's accounts only, a bank's none; behind the explorer's login."""

from __future__ import annotations

from tests.consortium_net import until
from tests.gateway_net import RunningVenue, order
from tests.test_console_explorer import fetch, token, traded


def node_of(venue: RunningVenue, name: str) -> str:
    return next(f"http://{m.address}/console" for m in venue.members if m.name == name)


async def test_each_member_sees_the_accounts_it_may(venue: RunningVenue) -> None:
    await traded(venue)
    status, body = await fetch(node_of(venue, "regulator1") + "/holdings")
    assert status == 401
    status, body = await fetch(node_of(venue, "regulator1") + "/holdings",
                               token(venue, "regulator1"))  # fmt: skip
    assert status == 200 and "every account (regulator)" in body
    assert "<td>10001</td>" in body and "<td>20001</td>" in body
    assert 'id="failures"' in body  # the regulator's node indexes
    status, body = await fetch(node_of(venue, "broker-node1") + "/holdings",
                               token(venue, "broker-node1"))  # fmt: skip
    assert status == 200 and "<td>10001</td>" in body and "<td>20001</td>" not in body
    status, body = await fetch(node_of(venue, "bank1") + "/holdings", token(venue, "bank1"))
    assert status == 200 and "no broker accounts in the genesis" in body
    assert "<td>10001</td>" not in body
    status, body = await fetch(node_of(venue, "regulator1") + "/holdings?from=x",
                               token(venue, "regulator1"))  # fmt: skip
    assert status == 400 and "from &#x27;x&#x27;" in body


async def test_locked_cash_shows_for_a_resting_buy(venue: RunningVenue) -> None:
    await venue.open_market()
    buyer = await venue.client("broker1")
    await buyer.place(**order("h-1", "10001", "buy", 990, 100))
    member = next(m for m in venue.members if m.name == "broker-node1")

    async def executed() -> bool:
        return member.replica.height >= venue.exchange.proposer.height  # type: ignore[union-attr]

    await until(executed, what="broker-node1 at the exchange's height")
    status, body = await fetch(node_of(venue, "broker-node1") + "/holdings",
                               token(venue, "broker-node1"))  # fmt: skip
    assert status == 200
    row = next(r for r in body.split("<tr>") if r.startswith("<td>10001</td><td>CNY</td>"))
    locked = int(row.split("<td>")[4].split("<")[0])
    assert locked >= 99_000, row  # 100 shares at 990 fen plus fees
