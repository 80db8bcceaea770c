"""The supply-chain flow of `make demo` (`exchange.consortium.scf_demo`) on a running
consortium in this process (the exchange with its gateway and four members on loopback), then
its tables from bank1's own store and from its export, with exact amounts."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import pytest

from exchange.analysis import supply_chain as sc
from exchange.analysis.checks import conservation
from exchange.analysis.export import export_node
from exchange.analysis.source import open_source
from exchange.analysis.tables import IndexBehindWarning
from exchange.consortium.scf_demo import (
    DemoError,
    ScfDemo,
    discounted_price,
    money,
    participant_keys,
    run_supply_chain,
)
from tests.gateway_net import RunningVenue

DAY, MATURITY = 20261123, 20261127


def test_money_and_the_discount_are_exact() -> None:
    assert money(100_000_000) == "1,000,000.00 CNY"
    assert money(-5) == "-0.05 CNY"
    # 400,000.00 for 4 days at 3.60% a year on face, ACT/360: 160.00 of discount
    assert discounted_price(400_000_00, 4) == 399_840_00
    assert discounted_price(1, 1) == 0  # the discount rounds up: 1 fen due tomorrow is worth 0


async def test_the_demo_flow_pays_every_piece_at_maturity(
    venue: RunningVenue, tmp_path: Path
) -> None:
    operator = await venue.client("exchange", member=True)
    bank = await venue.client("bank1", member=True)
    await operator.admin({"type": "begin_day", "day": DAY})
    lines: list[str] = []
    demo = ScfDemo(operator=operator, bank=bank, keys=participant_keys(tmp_path / "keys"))
    height = await run_supply_chain(demo, day=DAY, maturity=MATURITY, say=lines.append)
    text = "\n".join(lines)
    assert "invoice_already_used" in text, text
    assert "piece 2: 600,000.00 CNY CORE -> SUP2" in text, text
    assert "piece 3: 400,000.00 CNY CORE -> FAC" in text, text
    assert "CORE  (core_enterprise): cash 1,000,000.00 CNY" in text, text
    assert "SUP1  (supplier): cash 399,840.00 CNY" in text, text
    assert "FAC   (factor): cash 1,000,160.00 CNY" in text, text
    # the same keys again: the participants exist, so the demo says so instead of going on
    again = ScfDemo(operator=operator, bank=bank, keys=participant_keys(tmp_path / "keys"))
    with pytest.raises(DemoError, match="already"):
        await run_supply_chain(again, day=MATURITY, maturity=MATURITY + 1, say=lines.append)
    chain = venue.gateway.machine.venue.supply_chain  # type: ignore[union-attr]
    assert chain.outstanding("CORE") == 0
    await until_indexed(venue, height)
    check_tables(venue.directory / "bank1", tmp_path / "export")


async def until_indexed(venue: RunningVenue, height: int) -> None:
    store = venue.members[0].replica.store  # bank1: it indexes
    async with asyncio.timeout(30):
        while store.indexed_height() < height or store.certified_height() < height:
            await asyncio.sleep(0.05)


def check_tables(node: Path, export: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexBehindWarning)  # blocks after the flow's
        with open_source(node) as source:
            tables = source.tables()
    export_node(node, export)
    with open_source(export) as exported:
        again = exported.tables()
    for name in sc.TABLES:
        assert getattr(tables, name).equals(getattr(again, name)), name
    pieces = tables.commitments.set_index("piece")
    assert pieces.loc[1, ["amount", "status", "tier"]].tolist() == [1_000_000_00, "split", 1]
    assert pieces.loc[2, ["holder", "status", "tier", "paid"]].tolist() == [
        "SUP2",
        "paid",
        2,
        600_000_00,
    ]
    assert pieces.loc[3, ["holder", "holder_role", "tier", "paid"]].tolist() == [
        "FAC", "factor", 1, 400_000_00]  # fmt: skip
    assert pieces.loc[2, "parent"] == 1 and pieces.loc[3, "root"] == 1
    costs = sc.financing_costs(tables.commitment_transfers)
    assert costs[["piece", "price", "discount", "days"]].values.tolist() == [
        [3, 399_840_00, 160_00, 4]]  # fmt: skip
    assert costs.loc[0, "discount_rate"] == pytest.approx(0.036)
    assert costs.loc[0, "yield_365"] == pytest.approx(160 / 399_840 * 365 / 4)
    paid = tables.commitment_payments
    assert paid[["event", "piece", "payer", "holder", "moved"]].values.tolist() == [
        ["paid", 2, "CORE", "SUP2", 600_000_00],
        ["paid", 3, "CORE", "FAC", 400_000_00],
    ]
    assert tables.invoices["piece"].tolist() == [1]
    assert sc.split_sums(tables.commitments)["ok"].all()
    cash = conservation(tables.holding_changes).set_index("asset")
    assert cash["conserved"].all(), cash
    flows = sc.cash_flows(tables.holding_changes).set_index("event")
    assert flows.loc["commitment_paid", "paid"] == 1_000_000_00
    assert flows.loc["commitment_financed", "received"] == 399_840_00
