"""`jinlian bench venue`: the venue (funding, holds and locks, DvP) against matching alone.

The flow is the matching benchmark's, each order command sent by its account's broker. Rounds
alternate venue and matching-only, and the median of the per-round ratios is the figure to
quote. Then a model-3 (net-net) settlement of `--net-trades` trades among `--net-accounts`
accounts is timed: clearing every trade into obligations, then the one netting cycle.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from exchange import compiled
from exchange.bench.flow import ACCOUNTS, SYMBOL, Flow, make_flow
from exchange.bench.report import emit
from exchange.venue.setup import Funding, registry_setup
from exchange.venue.types import BeginDay, BrokerCommand, ListInstrument, VenueCommand
from exchange.venue.venue import Venue
from matching.commands import AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.types import Phase
from settlement.events import CycleSettled
from settlement.workload import net_settlement_workload, run_net_settlement

OPERATOR = "EXCHANGE"
BROKERS = tuple(f"B{number:02d}" for number in range(1, 11))
CASH_PER_ACCOUNT = 10**13  # fen
SHARES_PER_ACCOUNT = 10**9


def broker_of(account: str) -> str:
    return BROKERS[ACCOUNTS.index(account) % len(BROKERS)]


def venue_setup(flow: Flow) -> list[VenueCommand]:
    """Registries, funded accounts, the listing and an open day, then the flow's own setup."""
    funding = Funding(
        operator=OPERATOR,
        cash_issuer="BANK",
        security_issuer="CSDC",
        cash=CASH_PER_ACCOUNT,
        shares=SHARES_PER_ACCOUNT,
        commission_bps=3,
        stamp_duty_bps=5,
    )
    accounts = {account: broker_of(account) for account in ACCOUNTS}
    commands = registry_setup(funding, SYMBOL, accounts)
    instrument = flow.setup[0]
    commands += [
        ListInstrument(
            symbol=SYMBOL,
            tick_size=instrument.tick_size,  # type: ignore[union-attr]
            lot=instrument.lot,  # type: ignore[union-attr]
            reference_price=instrument.reference_price,  # type: ignore[union-attr]
            price_limit_pct=instrument.price_limit_pct,  # type: ignore[union-attr]
        ),
        BeginDay(day=20261123),
        SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS),
    ]
    commands += wrap(flow.setup[2:], {})
    return commands


def wrap(commands: list[Command], accounts: dict[int, str]) -> list[VenueCommand]:
    """Each order command as its account's broker sends it (`accounts`: order id -> account)."""
    wrapped: list[VenueCommand] = []
    for command in commands:
        if isinstance(command, PlaceOrder):
            accounts[command.order_id] = command.account
            account = command.account
        else:
            assert isinstance(command, CancelOrder | AmendOrder)
            account = accounts[command.order_id]
        wrapped.append(BrokerCommand(broker=broker_of(account), command=command))
    return wrapped


def time_venue(setup: list[VenueCommand], commands: list[VenueCommand]) -> tuple[float, Venue]:
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    for command in setup:
        venue.apply(command)
    apply = venue.apply
    gc.collect()
    start = time.perf_counter()
    for command in commands:
        apply(command)
    return time.perf_counter() - start, venue


def time_matching(flow: Flow) -> tuple[float, MatchingEngine]:
    engine = MatchingEngine()
    for command in flow.setup:
        engine.apply(command)
    apply = engine.apply
    gc.collect()
    start = time.perf_counter()
    for command in flow.commands:
        apply(command)
    return time.perf_counter() - start, engine


def time_netting(trades: int, accounts: int) -> dict[str, Any]:
    engine, workload = net_settlement_workload(trade_count=trades, account_count=accounts)
    gc.collect()
    start = time.perf_counter()
    events = run_net_settlement(engine, workload)
    seconds = time.perf_counter() - start
    engine.check()
    settled = events[-1]
    assert isinstance(settled, CycleSettled), f"the cycle did not settle: {settled}"
    return {
        "net_trades": trades,
        "net_accounts": accounts,
        "net_settlement_s": round(seconds, 3),
        "net_gross_value": settled.gross_value,
        "net_value_moved": settled.net_value,
        "netting_efficiency": round(settled.gross_value / max(settled.net_value, 1), 2),
    }


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    flow = make_flow(arguments.seed, arguments.messages, arguments.depth)
    setup = venue_setup(flow)
    order_accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = wrap(flow.commands, order_accounts)
    count = len(commands)
    venue_rates, matching_rates, ratios = [], [], []
    books_agree = True
    for _ in range(arguments.rounds):
        venue_seconds, venue = time_venue(setup, commands)
        matching_seconds, engine = time_matching(flow)
        books_agree = books_agree and venue.matching.state_hash() == engine.state_hash()
        venue_rates.append(count / venue_seconds)
        matching_rates.append(count / matching_seconds)
        ratios.append(matching_seconds / venue_seconds)
    venue.check()
    report: dict[str, Any] = {
        "build": compiled.describe(),  # of the venue and of matching alone
        "seed": arguments.seed,
        "commands": count,
        "rounds": arguments.rounds,
        "commands_per_s": round(statistics.median(venue_rates)),
        "matching_only_commands_per_s": round(statistics.median(matching_rates)),
        "ratio": round(statistics.median(ratios), 3),
        "books_agree": books_agree,
        "trades_settled": venue.settlement.trade_count,
    }
    if arguments.net_trades:
        report.update(time_netting(arguments.net_trades, arguments.net_accounts))
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        f"venue benchmark: seed {report['seed']}, {report['commands']:,} commands, "
        f"median of {report['rounds']} rounds, {report['trades_settled']:,} trades settled (DvP)",
        f"  {report['build']}",
        f"  {'venue (funding, holds and locks, DvP)':<38}"
        f"{report['commands_per_s']:>12,} commands/s",
        f"  {'matching alone':<38}{report['matching_only_commands_per_s']:>12,} commands/s",
        f"  ratio venue/matching (median of rounds): {report['ratio']:.3f}",
        f"  books agree with matching alone: {report['books_agree']}",
    ]
    if "net_settlement_s" in report:
        lines.append(
            f"model-3 net settlement: {report['net_trades']:,} trades among "
            f"{report['net_accounts']:,} accounts in {report['net_settlement_s']:.2f} s "
            f"(clearing + one netting cycle); gross {report['net_gross_value']:,} fen, "
            f"net moved {report['net_value_moved']:,} fen, netting efficiency "
            f"{report['netting_efficiency']:.2f}x"
        )
    return "\n".join(lines)


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)
