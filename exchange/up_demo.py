"""The scripted session `jinlian up --demo` runs once the consortium is up.

Two brokers open the day and trade through the exchange's sequencer feed; the script then
waits for the blocks to become final and reads one member's own store (SQLite allows readers
beside the running node) to show what that member holds: the trades it re-executed, the block
that holds them and the members whose signatures made it final.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from exchange.nodes import load_config
from ledger.feed import Feed, status, wait_until_up
from ledger.store import BlockStore

SYMBOL = "600000.SH"


def _order(
    order_id: int, broker: str, account: str, side: str, price: int, quantity: int
) -> dict[str, Any]:
    return {"type": "place", "broker": broker, "order_id": order_id, "symbol": SYMBOL,
            "account": account, "side": side, "kind": "limit", "price": price,
            "quantity": quantity, "tif": "day"}  # fmt: skip


SESSION: list[tuple[str, list[dict[str, Any]]]] = [
    ("the exchange opens the day and continuous trading", [
        {"type": "begin_day", "day": 20261123},
        {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"},
    ]),
    ("broker2 offers 500 shares at 10.02 and 10.05; broker1 bids 300 at 9.98", [
        _order(1, "broker2", "20001", "sell", 1002, 300),
        _order(2, "broker2", "20001", "sell", 1005, 200),
        _order(3, "broker1", "10001", "buy", 998, 300),
    ]),
    ("broker1 lifts the offers: buys 400 at up to 10.05", [
        _order(4, "broker1", "10002", "buy", 1005, 400),
    ]),
]  # fmt: skip


async def run_session(directory: Path) -> None:
    exchange = load_config(directory / "exchange")
    genesis = exchange.genesis
    member = next(m for m in genesis.members if m.voting)
    await wait_until_up([exchange.address] + [m.address for m in genesis.members if m.voting])
    tip = 0
    async with Feed(exchange.address) as feed:
        for caption, commands in SESSION:
            heights = await feed.submit(commands)
            tip = max(tip, *heights)
            print(f"  sequenced: {caption} -> stored in block {heights[-1]}", flush=True)
    while (await status(member.address))["certified"] < tip:
        await asyncio.sleep(0.05)
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
    print("\nthe consortium keeps running; verify a member with "
          f"`jinlian verify {directory / member.name}`", flush=True)  # fmt: skip
