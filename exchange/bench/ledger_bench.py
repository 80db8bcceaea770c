"""`jinlian bench ledger`: the seeded flow through a real consortium on localhost.

It writes a consortium in a temporary directory whose genesis lists the flow's instrument and
funds the flow's 200 accounts (10 brokers of 20), starts the exchange and 4 voting members as
separate processes, and feeds the flow to the exchange's sequencer feed with a window of
batches in flight. Commands finalized per second is the timed commands over the time from
the first send until the exchange holds a certificate for the block with the last of them.
Finality latency (sequencing to certificate, per command) is the exchange's own measure over
the timed commands. Beside it, in the same run, the same command dicts go through one
in-process `VenueMachine`: what one node could do alone, with no ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from exchange.bench.flow import ACCOUNTS, REFERENCE_PRICE, SYMBOL, make_flow
from exchange.bench.report import emit
from exchange.consortium import Market, init_consortium, venue_from_genesis
from exchange.nodes import load_config, start_processes, stop_processes
from exchange.venue_machine import VenueMachine
from exchange.venue_types import BrokerCommand
from exchange.wire import venue_command_to_dict
from ledger.feed import Feed, status, wait_until_up
from matching.commands import AmendOrder, CancelOrder, Command, PlaceOrder

ACCOUNTS_PER_BROKER: Final = 20
BATCH: Final = 500
WINDOW: Final = 8
INSTRUMENT: Final[dict[str, object]] = {
    "symbol": SYMBOL, "tick_size": 1, "lot": 100, "reference_price": REFERENCE_PRICE,
    "price_limit_pct": 10, "t_plus": 0, "settlement": "gross",
    "commission_bps": 3, "stamp_duty_bps": 5,
}  # fmt: skip
MARKET: Final = Market(
    instruments=(INSTRUMENT,),
    accounts_per_broker=ACCOUNTS_PER_BROKER,
    cash_per_account=10**13,
    shares_per_account=10**9,
)


def genesis_account(flow_account: str) -> tuple[str, str]:
    """(broker, account) in the bench genesis for one of the flow's accounts."""
    index = ACCOUNTS.index(flow_account)
    broker = index // ACCOUNTS_PER_BROKER + 1
    return f"broker{broker}", str(broker * 10_000 + index % ACCOUNTS_PER_BROKER + 1)


def as_dicts(commands: list[Command], accounts: dict[int, str]) -> list[dict[str, Any]]:
    """The flow's order commands as their brokers send them to the sequencer."""
    wrapped: list[dict[str, Any]] = []
    for command in commands:
        sent: PlaceOrder | CancelOrder | AmendOrder
        if isinstance(command, PlaceOrder):
            broker, account = genesis_account(command.account)
            accounts[command.order_id] = command.account
            sent = dataclasses.replace(command, account=account)
        else:
            assert isinstance(command, CancelOrder | AmendOrder)
            broker, _ = genesis_account(accounts[command.order_id])
            sent = command
        wrapped.append(venue_command_to_dict(BrokerCommand(broker=broker, command=sent)))
    return wrapped


def batches(commands: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [commands[i : i + BATCH] for i in range(0, len(commands), BATCH)]


async def _drive(
    addresses: list[str], setup: list[dict[str, Any]], timed: list[dict[str, Any]]
) -> dict[str, Any]:
    exchange = addresses[0]
    await wait_until_up(addresses)
    while len((await status(exchange))["members_connected"]) < len(addresses) - 1:
        await asyncio.sleep(0.05)
    async with Feed(exchange) as feed:
        tip = max(await feed.pipeline(batches(setup), WINDOW))
        while (await status(exchange))["certified"] < tip:
            await asyncio.sleep(0.05)
        before = await status(exchange)
        start = time.perf_counter()
        tip = max(await feed.pipeline(batches(timed), WINDOW))
        while (after := await status(exchange, before["height"]))["certified"] < tip:
            await asyncio.sleep(0.002)
        seconds = time.perf_counter() - start
    members = [await status(address) for address in addresses[1:]]
    return {
        "seconds": seconds,
        "blocks": after["height"] - before["height"],
        "tip": after["height"],
        "finality_p50_ms": after["finality_p50_ms"],
        "finality_p99_ms": after["finality_p99_ms"],
        "members_at_tip": sum(m["height"] >= tip for m in members),
        "evidence": sum(m["evidence"] for m in members),
    }


def time_inprocess(genesis: Any, setup: list[dict[str, Any]], timed: list[dict[str, Any]]) -> float:
    machine = VenueMachine(venue_from_genesis(genesis))
    for command in setup:
        machine.apply(command)
    apply = machine.apply
    gc.collect()
    start = time.perf_counter()
    for command in timed:
        apply(command)
    machine.state_hash()
    return time.perf_counter() - start


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    flow = make_flow(arguments.seed, arguments.messages, arguments.depth)
    accounts: dict[int, str] = {}
    opening: list[dict[str, Any]] = [{"type": "begin_day", "day": 20261123},
               {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"}]  # fmt: skip
    setup = opening + as_dicts(flow.setup[2:], accounts)
    timed = as_dicts(flow.commands, accounts)
    with tempfile.TemporaryDirectory(prefix="jinlian-bench-") as scratch:
        directory = Path(scratch) / "consortium"
        genesis = init_consortium(
            directory, members=4, brokers=len(ACCOUNTS) // ACCOUNTS_PER_BROKER,
            base_port=arguments.base_port, market=MARKET,
        )  # fmt: skip
        inprocess_seconds = time_inprocess(genesis, setup, timed)
        config = load_config(directory / "exchange")
        addresses = [config.address] + [m.address for m in genesis.members if m.voting]
        children = start_processes(directory)
        try:
            run = asyncio.run(_drive(addresses, setup, timed))
        finally:
            stop_processes(children)
    count = len(timed)
    return {
        "seed": arguments.seed,
        "commands": count,
        "members": 4,
        "finalized_commands_per_s": round(count / run["seconds"]),
        "finality_p50_ms": run["finality_p50_ms"],
        "finality_p99_ms": run["finality_p99_ms"],
        "blocks": run["blocks"],
        "inprocess_commands_per_s": round(count / inprocess_seconds),
        "members_at_tip": run["members_at_tip"],
        "evidence": run["evidence"],
        "books_agree": run["members_at_tip"] == 4 and run["evidence"] == 0,
    }


def render(report: dict[str, Any]) -> str:
    return "\n".join([
        f"ledger benchmark: seed {report['seed']}, {report['commands']:,} commands, exchange + "
        f"{report['members']} members as processes on localhost, {report['blocks']} blocks",
        f"  finalized (certificate formed)   {report['finalized_commands_per_s']:>10,} commands/s",
        f"  finality latency                 p50 {report['finality_p50_ms']:.1f} ms, "
        f"p99 {report['finality_p99_ms']:.1f} ms (sequenced to certified)",
        f"  one venue machine in-process     {report['inprocess_commands_per_s']:>10,} commands/s",
        f"  members at the tip: {report['members_at_tip']} of {report['members']}, "
        f"evidence recorded: {report['evidence']}",
    ])  # fmt: skip


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)
