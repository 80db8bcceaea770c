"""The scripted session `jinlian up --demo` runs once the consortium is up.

Everything goes through the broker API with the client library (`exchange.gateway.client`), as a
real broker's and the operator's programs would: the operator logs on with its member key and
opens the day; two brokers log on with their keys, place orders and trade, and watch their
execution reports and the finality notices of their blocks. The script then reads one
member's own store (SQLite allows readers beside the running node) to show what that member
holds: the trades it re-executed, the block that holds them and the members whose signatures
made it final. Then one supply-chain finance flow (`exchange.consortium.scf_demo`): a payment
commitment issued, confirmed, split, passed down a tier, financed and paid at maturity, with
bank1's own copy of the payments.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from exchange.consortium.init import roles
from exchange.consortium.nodes import NodeConfig, load_config
from exchange.consortium.scf_demo import ScfDemo, money, participant_keys, run_supply_chain
from exchange.gateway.client import Client
from ledger.feed import status, wait_until_up
from ledger.genesis import Member
from ledger.keys import load_private_key
from ledger.store import BlockStore

SYMBOL = "600000.SH"
DAY = 20261123  # the demo's trading day (a Monday)
MATURITY = 20261127  # the supply-chain flow's commitment falls due that Friday


def _order(
    client_order_id: str, account: str, side: str, price: int, quantity: int
) -> dict[str, Any]:
    return {"client_order_id": client_order_id, "account": account, "symbol": SYMBOL,
            "side": side, "price": price, "quantity": quantity}  # fmt: skip


def _show(who: str, report: dict[str, Any]) -> None:
    kind = report["report"]
    detail = (
        f"{report['quantity']} at {report['price'] / 100:.2f}"
        if kind == "trade"
        else f"{report['side']} {report['quantity']} at {(report['price'] or 0) / 100:.2f}"
    )
    print(f"  {who}: #{report['index']} {kind:<8} order {report['order_id']} "
          f"({report['client_order_id']}) {detail}, status {report['status']}, "
          f"block {report['height']}", flush=True)  # fmt: skip


async def run_session(directory: Path) -> None:
    exchange = load_config(directory / "exchange")
    genesis = exchange.genesis
    member = next(m for m in genesis.members if m.voting)
    await wait_until_up([exchange.address] + [m.address for m in genesis.members if m.voting])
    address, chain = exchange.address, genesis.chain_id

    def key(*parts: str) -> Any:
        return load_private_key(directory.joinpath(*parts, "key.pem"))

    async with (
        Client(address, "exchange", key("exchange"), member=True, chain_id=chain) as operator,
        Client(address, "broker1", key("brokers", "broker1"), chain_id=chain) as one,
        Client(address, "broker2", key("brokers", "broker2"), chain_id=chain) as two,
    ):
        print("the operator opens the day and continuous trading:", flush=True)
        for command in (
            {"type": "begin_day", "day": DAY},
            {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"},
        ):
            result = await operator.admin(command)
            print(f"  {command['type']} -> {[e['type'] for e in result['events']]} "
                  f"in block {result['height']}", flush=True)  # fmt: skip
        print("broker2 offers 500 shares at 10.02 and 10.05; broker1 bids 300 at 9.98:")
        _show("broker2", await two.place(**_order("ask-1", "20001", "sell", 1002, 300)))
        _show("broker2", await two.place(**_order("ask-2", "20001", "sell", 1005, 200)))
        _show("broker1", await one.place(**_order("bid-1", "10001", "buy", 998, 300)))
        print("broker1 lifts the offers: buys 400 at up to 10.05")
        _show("broker1", await one.place(**_order("lift-1", "10002", "buy", 1005, 400)))
        tip = 0
        for _ in range(2):  # its two fills
            report = await one.next_report()
            while report["report"] != "trade":
                report = await one.next_report()
            _show("broker1", report)
            tip = max(tip, report["height"])
        final = await asyncio.wait_for(one.finals.get(), 30)
        while final["height"] < tip:
            final = await asyncio.wait_for(one.finals.get(), 30)
        signers = [vote["member"] for vote in final["certificate"]["votes"]]
        print(f"  broker1: block {final['height']} is final, signed by members {signers}")
    voters = [m for m in genesis.members if m.voting]
    await _until_final(voters, tip)
    print(f"  every member ({', '.join(v.name for v in voters)}) holds blocks 1 to {tip}, final")
    config = load_config(directory / member.name)
    with BlockStore.open(config.store_path) as store:
        trades = store.read(
            "SELECT trade_id, height, price, quantity, buy_account, sell_account FROM trades "
            "ORDER BY trade_id",
            (),
        )
        print(f"\n{member.name}'s own copy of the ledger, re-executed and co-signed:")
        for trade_id, height, price, quantity, buyer, seller in trades:
            certificate = store.certificate(int(height))
            signers = [] if certificate is None else [v.member for v in certificate.votes]
            names = [m.name for m in genesis.members if m.id in signers]
            signed = ", ".join(names)
            print(f"  trade {trade_id}: {quantity} {SYMBOL} at {price / 100:.2f} CNY, "
                  f"{seller} -> {buyer}, block {height}, final (signed by {signed})")  # fmt: skip
    await supply_chain_session(directory, exchange, config)
    print("\nthe consortium keeps running; verify a member with "
          f"`jinlian verify {directory / member.name}`", flush=True)  # fmt: skip


async def _until_final(voters: list[Member], height: int) -> None:
    async with asyncio.timeout(30):  # every member holds the blocks up to `height`, final
        for voter in voters:
            while (await status(voter.address))["certified"] < height:
                await asyncio.sleep(0.05)


async def supply_chain_session(directory: Path, exchange: NodeConfig, member: NodeConfig) -> None:
    """The supply-chain flow (`scf_demo.run_supply_chain`) by the operator and the first bank,
    then `member`'s own copy of the block that paid the pieces."""
    genesis = exchange.genesis
    bank = roles(genesis).cash_issuer
    keys = participant_keys(directory / "participants")
    async with (
        Client(exchange.address, exchange.name,
               load_private_key(directory / exchange.name / "key.pem"), member=True,
               chain_id=genesis.chain_id) as operator,
        Client(exchange.address, bank, load_private_key(directory / bank / "key.pem"),
               member=True, chain_id=genesis.chain_id) as bank_client,
    ):  # fmt: skip
        demo = ScfDemo(operator=operator, bank=bank_client, keys=keys)
        height = await run_supply_chain(demo, day=DAY, maturity=MATURITY)
    await _until_final([m for m in genesis.members if m.voting], height)
    with BlockStore.open(member.store_path) as store:
        events = [orjson.loads(event) for event in store.events(height) or []]
        certificate = store.certificate(height)
    signers = [] if certificate is None else [vote.member for vote in certificate.votes]
    signed = ", ".join(m.name for m in genesis.members if m.id in signers)
    print(f"\n{member.name}'s own copy of the maturity payments, re-executed and co-signed:")
    for event in events:
        if event["type"] == "commitment_paid":
            print(f"  piece {event['piece']}: {money(event['amount'])}, {event['issuer']} -> "
                  f"{event['holder']}, block {height}, final (signed by {signed})")  # fmt: skip
    print(
        f"  the participants' keys are in {directory / 'participants'}; the supply-chain "
        "tables: `jinlian export` (docs/analysis.md), notebooks/05_supply_chain.ipynb"
    )
