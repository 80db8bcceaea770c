"""`jinlian soak --minutes N [--dir DIR] [--seed S]`: a real consortium under load and faults.

It starts the exchange and every voting member as separate processes (as `jinlian up` does,
`exchange.consortium.nodes.start_processes`), then for N minutes drives every command kind
through the
broker API with the client library (`exchange.gateway.client`): brokers place, amend, cancel, cancel
all, ask order status and open orders, and resend client order ids; the operator opens and ends
trading days, sets phases, changes fee schedules and settles cycles; the bank deposits,
withdraws and transfers cash; the depository issues, redeems and transfers securities; the
regulator freezes and unfreezes an account. Commands are pipelined (many in flight per session)
so that the bounded windows are passed: the settlement engine's and the venue's remembered
outcomes (`COMMAND_OUTCOMES_MAX`, with the duplicate-id floor above them) take more than that
many commands of their kind in a few minutes. Meanwhile a seeded schedule kills the exchange or
a member with SIGKILL and restarts it; a command whose reply was lost is sent again with the
same command id (or client order id), as a real member or broker would.

At the end every process is running again, and the soak checks: every member at the exchange's
height, certified, with the same state hash; the whole store of one member verifies (`jinlian
verify`: signatures, re-execution, derived tables); every asset is conserved against the genesis
(its balances sum to the genesis holdings plus what the ledger issued and deposited minus what
it redeemed and withdrew) and the replayed venue passes its invariant check; every order the
exchange acknowledged is accepted in the ledger; each broker's report indexes replay from 1
without a gap; an outcome id forgotten by the window is refused as too old. It stops early,
and fails, if the exchange stops making blocks while commands wait (a dead block cutter).
It prints its figures (commands by kind, kills, final height, time) and exits 0 if every check
passed, 1 otherwise, 2 on a bad argument.

The report logs' window (`REPORTS_HELD_MAX`, 2,000,000 reports per broker) is far beyond what a
run of minutes reaches: the figures say how far each window was passed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from exchange.consortium.audit import format_report, verify_node
from exchange.consortium.init import free_base_port, init_consortium, venue_from_genesis
from exchange.consortium.nodes import load_config, new_machine, stop_processes
from exchange.gateway.broker_reports import REPORTS_HELD_MAX
from exchange.gateway.client import Client, RequestError
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT
from exchange.venue.venue import Venue
from ledger.feed import status
from ledger.genesis import Genesis, Role
from ledger.keys import load_private_key
from ledger.store import BlockStore
from settlement.types import COMMAND_OUTCOMES_MAX

MEMBERS: Final = 4
BROKERS: Final = 3
ADMIN_IN_FLIGHT: Final = 48  # admin commands a member session keeps in flight
ORDERS_IN_FLIGHT: Final = 24  # order requests a broker session keeps in flight
REQUEST_S: Final = 20.0  # a reply later than this is lost; the command is sent again
RETRIES_MAX: Final = 20
# refusals that say "not now" (starting up and recovering, queue full, finality behind, the
# exchange restarting): the request is sent again, as a broker would
TRANSIENT_CODES: Final = frozenset({"recovering", "busy", "degraded", "unavailable"})
STALL_S: Final = 30.0  # no new block for this long while commands wait: the exchange is stuck
KILL_EVERY_S: Final = (4.0, 12.0)
DOWN_S: Final = (0.2, 1.5)
DAY_S: Final = 15.0  # a trading day, wall time
CONVERGE_S: Final = 120.0
PAST_WINDOWS_S_MAX: Final = 600.0  # --past-windows drives at most this much longer
FIRST_COMMAND_ID: Final = 1_000_000  # above the genesis commands' ids
LOG_TAIL_LINES: Final = 12
RECENT_MAX: Final = 256  # recent order and trade ids kept per broker for status and receipts
SETTLEMENT_KINDS: Final = frozenset(
    {"deposit", "withdraw", "transfer", "issue", "redeem", "set_fee_schedule", "settle_cycle",
     "freeze", "unfreeze", "define_asset", "open_account"}
)  # fmt: skip
VENUE_OUTCOME_KINDS: Final = frozenset({"set_fee_schedule", "settle_cycle"})
SUPPLY_SIGNS: Final = {"issued": 1, "deposited": 1, "redeemed": -1, "withdrawn": -1}


class SoakError(Exception):
    """The consortium failed a check; the message says which and with what values."""


@dataclass
class Figures:
    commands: Counter[str] = field(default_factory=Counter)  # answered, by kind
    rejected: Counter[str] = field(default_factory=Counter)  # answered with a reject event
    errors: Counter[str] = field(default_factory=Counter)  # API errors and lost replies
    kills: Counter[str] = field(default_factory=Counter)
    acknowledged: set[int] = field(default_factory=set)  # order ids the exchange accepted
    duplicates: int = 0  # resent client order ids answered as duplicates
    report_gaps: int = 0
    in_flight: int = 0
    failures: list[str] = field(default_factory=list)


class Processes:
    """The exchange and the voting members as child processes, logging to DIR/logs."""

    def __init__(self, directory: Path, genesis: Genesis) -> None:
        self.directory = directory
        self.names = [m.name for m in genesis.members if m.voting] + ["exchange"]
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        (directory / "logs").mkdir(exist_ok=True)

    def start(self, name: str) -> None:
        """Start `name` as `jinlian up` does (exchange.consortium.nodes.start_processes)."""
        target = [str(self.directory)] if name == "exchange" else [str(self.directory / name)]
        command = [sys.executable, "-m", "exchange.cli",
                   "exchange" if name == "exchange" else "node", *target]  # fmt: skip
        with (self.directory / "logs" / f"{name}.log").open("ab") as log:
            self.children[name] = subprocess.Popen(command, stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        child = self.children[name]
        child.send_signal(signal.SIGKILL)
        child.wait()

    def exited(self) -> list[str]:
        return [name for name, child in self.children.items() if child.poll() is not None]

    def stop(self) -> None:
        stop_processes(list(self.children.items()))

    def log_tail(self, name: str) -> str:
        path = self.directory / "logs" / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-LOG_TAIL_LINES:])


class Soak:
    def __init__(
        self, directory: Path, seconds: float, seed: int, *, past_windows: bool = False
    ) -> None:
        self.directory = directory
        self.seconds = seconds
        self.past_windows = past_windows
        self.random = random.Random(seed)
        self.figures = Figures()
        self.genesis = load_config(directory / "exchange").genesis
        self.address = load_config(directory / "exchange").address
        self.processes = Processes(directory, self.genesis)
        self.ids = itertools.count(FIRST_COMMAND_ID)
        self.first_settlement: dict[str, Any] | None = None
        self.stop = asyncio.Event()
        self.down: set[str] = set()
        self.day = 20260105
        self.symbols = [str(i["symbol"]) for i in self.genesis.instruments]
        self.references = {str(i["symbol"]): int(str(i["reference_price"]))
                           for i in self.genesis.instruments}  # fmt: skip
        self.accounts = {b.name: [str(a) for a in b.accounts] for b in self.genesis.brokers}
        self.all_accounts = [a for accounts in self.accounts.values() for a in accounts]
        self.report_ends: dict[str, int] = {}  # broker -> its last report index
        self.recent: dict[str, dict[str, deque[int]]] = {  # broker -> recent order, trade ids
            b.name: {"orders": deque(maxlen=RECENT_MAX), "trades": deque(maxlen=RECENT_MAX)}
            for b in self.genesis.brokers
        }
        self.accepted = dict.fromkeys(self.accounts, 0)  # broker -> its orders accepted
        self.phases: dict[str, float] = {"start": time.monotonic()}

    # ---- sessions ----

    def client(self, name: str, *, member: bool, replay_from: int | None = None) -> Client:
        where = self.directory / name if member else self.directory / "brokers" / name
        key = load_private_key(where / "key.pem")
        return Client(self.address, name, key, member=member, chain_id=self.genesis.chain_id,
                      replay_from=replay_from)  # fmt: skip

    def member_named(self, role: Role) -> str:
        return next(m.name for m in self.genesis.members if m.role is role)

    async def admin(self, session: Client, command: dict[str, Any]) -> dict[str, Any] | None:
        """Send one admin command until it is answered (the same command id each time, so a
        retry gets the first outcome); None if it never is."""
        kind = command["type"]
        result = await self.answered(session, kind, "admin", {"command": command}, False)
        if result is not None and any(
            e["type"].endswith(("rejected", "refused")) for e in result["events"]
        ):
            self.figures.rejected[kind] += 1
        return result

    async def answered(
        self, session: Client, kind: str, request: str, fields: dict[str, Any], count_error: bool
    ) -> dict[str, Any] | None:
        """Send `request` until it is answered, counted under `kind`: a lost connection is
        retried (at most RETRIES_MAX times), and so is a transient refusal (TRANSIENT_CODES);
        another error answer ends it (counted as a command if `count_error`); None unless
        answered."""
        for _ in range(RETRIES_MAX):
            self.figures.in_flight += 1
            try:
                reply = await session.request(request, timeout_s=REQUEST_S, **fields)
            except RequestError as error:
                self.figures.errors[f"{kind}:{error.code}"] += 1
                if error.code in TRANSIENT_CODES and not self.stop.is_set():
                    await asyncio.sleep(0.2)  # the same command again: ids make it idempotent
                    continue
                self.figures.commands[kind] += count_error
                return None
            except (ConnectionError, TimeoutError, aiohttp.ClientError):
                self.figures.errors[f"{kind}:lost"] += 1
                if self.stop.is_set():
                    return None
                await asyncio.sleep(0.2)
                continue
            finally:
                self.figures.in_flight -= 1
            self.figures.commands[kind] += 1
            return reply
        return None

    async def waves(self, make: Callable[[], list[Awaitable[Any]]]) -> None:
        """Run waves of concurrent requests from `make` until the soak stops."""
        while not self.stop.is_set():
            await asyncio.gather(*make())

    def settlement(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        command = {"type": kind, "command_id": next(self.ids), **fields}
        if self.first_settlement is None and kind == "deposit":
            self.first_settlement = dict(command)
        return command

    # ---- the drivers ----

    async def bank(self) -> None:
        cash = "CNY"
        async with self.client(self.member_named(Role.BANK), member=True) as session:

            def wave() -> list[Awaitable[Any]]:
                commands = []
                for _ in range(ADMIN_IN_FLIGHT // 2):
                    kind = self.random.choice(("deposit", "deposit", "withdraw"))
                    commands.append(self.settlement(
                        kind, asset=cash, account=self.random.choice(self.all_accounts),
                        amount=self.random.randint(1, 1_000_000)))  # fmt: skip
                source, destination = self.random.sample(self.all_accounts, 2)
                commands.append(self.settlement("transfer", asset=cash, source=source,
                                                destination=destination, amount=100))  # fmt: skip
                return [self.admin(session, command) for command in commands]

            await self.waves(wave)

    async def depository(self) -> None:
        async with self.client(self.member_named(Role.DEPOSITORY), member=True) as session:

            def wave() -> list[Awaitable[Any]]:
                commands = []
                for _ in range(ADMIN_IN_FLIGHT // 2):
                    kind = self.random.choice(("issue", "redeem"))
                    commands.append(self.settlement(
                        kind, asset=self.random.choice(self.symbols),
                        account=self.random.choice(self.all_accounts),
                        amount=100 * self.random.randint(1, 10)))  # fmt: skip
                source, destination = self.random.sample(self.all_accounts, 2)
                commands.append(self.settlement("transfer", asset=self.symbols[0], source=source,
                                                destination=destination, amount=100))  # fmt: skip
                return [self.admin(session, command) for command in commands]

            await self.waves(wave)

    async def regulator(self) -> None:
        async with self.client(self.member_named(Role.REGULATOR), member=True) as session:
            account = self.all_accounts[-1]
            while not self.stop.is_set():
                for kind in ("freeze", "unfreeze"):
                    await self.admin(session, self.settlement(kind, account=account))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 1.0)

    async def operator(self) -> None:
        async with self.client("exchange", member=True) as session:
            next_day = time.monotonic() + DAY_S
            bps = itertools.cycle((3, 4, 2, 5))
            while not self.stop.is_set():
                if time.monotonic() >= next_day:
                    await self.admin(session, {"type": "end_day", "day": self.day})
                    self.day += 1
                    await self.list_new_instrument(session)
                    await self.open_day(session)
                    next_day = time.monotonic() + DAY_S
                commands = [self.settlement("settle_cycle") for _ in range(ADMIN_IN_FLIGHT // 2)]
                commands += [
                    self.settlement("set_fee_schedule", asset=self.random.choice(self.symbols),
                                    commission_bps=next(bps), stamp_duty_bps=5,
                                    fee_account=FEE_ACCOUNT, tax_account=TAX_ACCOUNT)
                    for _ in range(ADMIN_IN_FLIGHT // 2)
                ]  # fmt: skip
                await asyncio.gather(*(self.admin(session, c) for c in commands))

    async def list_new_instrument(self, session: Client) -> None:
        """The operator's other commands, once a day: a new security (defined, with its fee
        schedule, listed) and a new account for a broker."""
        number = self.day % 10_000
        symbol = f"SOAK{number}"
        broker = self.random.choice(self.genesis.brokers).name
        for command in (
            self.settlement("define_asset", asset=symbol, kind="security", currency="CNY",
                            issuer=self.member_named(Role.DEPOSITORY), mode="gross"),
            self.settlement("set_fee_schedule", asset=symbol, commission_bps=3,
                            stamp_duty_bps=5, fee_account=FEE_ACCOUNT, tax_account=TAX_ACCOUNT),
            {"type": "list_instrument", "symbol": symbol, "tick_size": 1, "lot": 100,
             "reference_price": 1000, "price_limit_pct": 10, "t_plus": 1},
            self.settlement("open_account", account=f"9{number:04d}", broker=broker),
        ):  # fmt: skip
            await self.admin(session, command)

    async def open_day(self, session: Client) -> None:
        await self.admin(session, {"type": "begin_day", "day": self.day})
        for symbol in self.symbols:
            command = {"type": "set_phase", "symbol": symbol, "phase": "continuous"}
            await self.admin(session, command)

    async def broker(self, name: str) -> None:
        accounts = self.accounts[name]
        ids = itertools.count(1)
        async with self.client(name, member=False) as session:
            reader = asyncio.create_task(self.read_reports(session))
            try:

                def wave() -> list[Awaitable[Any]]:
                    day = self.day
                    requests: list[Awaitable[Any]] = [
                        self.place(session, f"d{day}-{next(ids)}", self.random.choice(accounts))
                        for _ in range(ORDERS_IN_FLIGHT)
                    ]
                    requests.append(self.housekeeping(session, self.random.choice(accounts)))
                    return requests

                await self.waves(wave)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            self.report_ends[name] = (session.report_index or 1) - 1

    async def place(self, session: Client, client_order_id: str, account: str) -> None:
        symbol = self.random.choice(self.symbols)
        reference = self.references[symbol]
        side = self.random.choice(("buy", "sell"))
        price = reference + self.random.randint(-reference // 50, reference // 50)
        quantity = 100 * self.random.randint(1, 5)
        order = {"client_order_id": client_order_id, "account": account, "symbol": symbol,
                 "side": side, "price": max(1, price), "quantity": quantity}  # fmt: skip
        reply = await self.request(session, "place", **order)
        if reply is None:
            return
        if reply.get("duplicate"):
            self.figures.duplicates += 1
        elif reply.get("report") == "accepted":
            self.figures.acknowledged.add(int(reply["order_id"]))
            self.recent[session.name]["orders"].append(int(reply["order_id"]))
        if self.random.random() < 0.05:  # a broker that lost the reply sends the order again
            again = await self.request(session, "place", **order)
            if again is not None and again.get("duplicate"):
                self.figures.duplicates += 1
        if reply.get("report") != "accepted":
            return
        accepted = self.accepted[session.name] = self.accepted[session.name] + 1
        # a broker's first two orders are cancelled and amended, so a short run has both
        kind = {1: "cancel", 2: "amend"}.get(accepted) or self.random.choice(("cancel", "amend"))
        if accepted <= 2 or self.random.random() < 0.4:
            fields: dict[str, Any] = {"order_id": reply["order_id"]}
            if kind == "amend":
                fields["quantity"] = 100
            await self.request(session, kind, **fields)

    async def housekeeping(self, session: Client, account: str) -> None:
        """The broker's other requests: open orders, the status of a recent order, the
        receipt of a recent trade, now and then a cancel-all."""
        await self.request(session, "open_orders", account=account)
        recent = self.recent[session.name]
        if recent["orders"]:
            order_id = self.random.choice(recent["orders"])
            await self.request(session, "order_status", order_id=order_id)
        if recent["trades"]:
            await self.request(session, "receipt", trade_id=self.random.choice(recent["trades"]))
        if self.random.random() < 0.1:
            await self.request(session, "cancel_all", account=account)

    async def request(self, session: Client, kind: str, **fields: Any) -> dict[str, Any] | None:
        reply = await self.answered(session, kind, kind, fields, True)
        if reply is not None and reply.get("report") in (
            "rejected",
            "cancel_rejected",
            "amend_rejected",
        ):
            self.figures.rejected[kind] += 1
        return reply

    async def read_reports(self, session: Client) -> None:
        last: int | None = None
        trades = self.recent[session.name]["trades"]
        async for report in session.reports():
            if report.get("report") == "trade" and type(report.get("trade_id")) is int:
                trades.append(report["trade_id"])
            index = report.get("index")
            if type(index) is int:
                if last is not None and index != last + 1:
                    self.figures.report_gaps += 1
                last = index

    # ---- faults and progress ----

    async def chaos(self) -> None:
        """Kill -9 the exchange or a member at seeded random times and start it again; one
        process down at a time, so a quorum of members always remains."""
        members = self.processes.names[:-1]
        # The first kill is the exchange's and the second a member's, so a short run has both.
        victims = itertools.chain(
            ["exchange", self.random.choice(members)],
            iter(lambda: self.random.choice(self.processes.names), None),
        )
        while True:
            pause = min(self.random.uniform(*KILL_EVERY_S), self.seconds / 4)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), pause)
            if self.stop.is_set():
                return
            victim = next(victims)
            self.down.add(victim)
            self.processes.kill(victim)
            self.figures.kills[victim] += 1
            await asyncio.sleep(self.random.uniform(*DOWN_S))
            self.processes.start(victim)
            await self.until_answers(victim)
            self.down.discard(victim)

    def address_of(self, name: str) -> str:
        return next(m.address for m in self.genesis.members if m.name == name)

    async def until_answers(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await status(self.address_of(name))
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline:
                    raise SoakError(f"{name} does not answer after {timeout_s:.0f} s:\n"
                                      f"{self.processes.log_tail(name)}") from None  # fmt: skip
                await asyncio.sleep(0.1)

    def windows_passed(self) -> bool:
        """Whether more commands than the outcome windows hold were answered, of each kind."""
        commands = self.figures.commands
        settled = sum(commands[kind] for kind in SETTLEMENT_KINDS)
        extended = sum(commands[kind] for kind in VENUE_OUTCOME_KINDS)
        return min(settled, extended) > COMMAND_OUTCOMES_MAX

    async def watchdog(self, deadline: float) -> None:
        """Stop the run at the deadline (with `past_windows`, once the outcome windows are
        passed too, within `PAST_WINDOWS_S_MAX` more), or early if a process exits on its own
        or the exchange makes no block for `STALL_S` while commands wait for one."""
        height, since = -1, time.monotonic()
        cap = deadline + PAST_WINDOWS_S_MAX
        while time.monotonic() < deadline or (
            self.past_windows and not self.windows_passed() and time.monotonic() < cap
        ):
            await asyncio.sleep(0.5)
            exited = [name for name in self.processes.exited() if name not in self.down]
            if exited:
                self.fail(f"{exited[0]} exited on its own:\n{self.processes.log_tail(exited[0])}")
                break
            if "exchange" in self.down:
                height, since = -1, time.monotonic()
                continue
            with contextlib.suppress(aiohttp.ClientError, OSError):
                now = (await status(self.address)).get("height", -1)
                if now != height or self.figures.in_flight == 0:
                    height, since = now, time.monotonic()
            if time.monotonic() - since > STALL_S:
                self.fail(f"the exchange made no block for {STALL_S:.0f} s at height {height} "
                          f"with {self.figures.in_flight} requests waiting; its log ends:\n"
                          f"{self.processes.log_tail('exchange')}")  # fmt: skip
                break
        self.stop.set()

    def fail(self, failure: str) -> None:
        self.figures.failures.append(failure)
        print(f"FAILED: {failure}", flush=True)

    # ---- the run ----

    async def run(self) -> None:
        genesis = self.genesis
        for name in self.processes.names:
            self.processes.start(name)
        await asyncio.gather(*(self.until_answers(name) for name in self.processes.names))
        async with self.client("exchange", member=True) as session:
            await self.open_day(session)
        deadline = time.monotonic() + self.seconds
        drivers = [self.operator(), self.bank(), self.depository(), self.regulator(),
                   *(self.broker(b.name) for b in genesis.brokers), self.chaos(),
                   self.watchdog(deadline)]  # fmt: skip
        await asyncio.gather(*(self.supervised(driver) for driver in drivers))
        self.phases["drive"] = time.monotonic()
        for name in self.processes.exited():  # killed at the very end, or exited
            self.processes.start(name)
        await self.probe()
        await self.check_forgotten_id()
        height = await self.converge()
        self.phases["converge"] = time.monotonic()
        await self.check_reports()
        self.phases["replay reports"] = time.monotonic()
        self.processes.stop()
        self.check_logs()
        self.check_stores(height)
        self.check_ledger()
        self.phases["check stores"] = time.monotonic()

    async def probe(self) -> None:
        """After the load, the exchange still sequences: a deposit and an order are
        answered (a block cutter that died leaves them unanswered while /status answers)."""
        async with (
            self.client(self.member_named(Role.BANK), member=True) as bank,
            self.client(self.genesis.brokers[0].name, member=False) as broker,
        ):
            probes = {
                "deposit": bank.request("admin", timeout_s=REQUEST_S, command=self.settlement(
                    "deposit", asset="CNY", account=self.all_accounts[0], amount=1)),
                "place": broker.request("place", timeout_s=REQUEST_S, client_order_id="probe",
                                        account=self.accounts[broker.name][0],
                                        symbol=self.symbols[0], side="buy",
                                        price=self.references[self.symbols[0]], quantity=100),
            }  # fmt: skip
            answers = await asyncio.gather(*probes.values(), return_exceptions=True)
            for kind, answer in zip(probes, answers, strict=True):
                if isinstance(answer, TimeoutError):
                    self.fail(
                        f"the exchange answered no {kind} within {REQUEST_S:.0f} s after "
                        f"the load; its log ends:\n{self.processes.log_tail('exchange')}"
                    )
                elif isinstance(answer, BaseException):
                    self.fail(f"the probe {kind} failed: {answer!r}")

    def check_logs(self) -> None:
        """No process logged a traceback (a task that died while the process lived on)."""
        for name in self.processes.names:
            path = self.directory / "logs" / f"{name}.log"
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            if any(line.startswith("Traceback") for line in lines):
                first = next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
                end = next((i for i in range(first + 1, len(lines))
                            if lines[i] and not lines[i].startswith(" ")), first)  # fmt: skip
                self.fail(
                    f"{name} logged a traceback ({path}): {lines[max(0, first - 1)]} ... "
                    f"{lines[end]}"
                )

    async def supervised(self, driver: Awaitable[None]) -> None:
        """A driver that raises fails the soak loudly and stops the others."""
        try:
            await driver
        except SoakError as error:
            self.fail(str(error))
            self.stop.set()
        except Exception as error:  # any bug of a driver ends the run, reported
            self.fail(f"a driver failed: {type(error).__name__}: {error}")
            self.stop.set()

    async def converge(self) -> int:
        """The height at which every member holds the exchange's tip, certified."""
        deadline = time.monotonic() + CONVERGE_S
        while True:
            tips = {name: await self.until_answers(name) for name in self.processes.names}
            height = tips["exchange"]["height"]
            behind = {name: (tip["height"], tip["certified"]) for name, tip in tips.items()
                      if (tip["height"], tip["certified"]) != (height, height)}  # fmt: skip
            if not behind:
                return int(height)
            if time.monotonic() > deadline:
                self.fail(f"not converged after {CONVERGE_S:.0f} s: exchange at {height}, "
                          f"(height, certified) of the others {behind}")  # fmt: skip
                return int(height)
            await asyncio.sleep(0.2)

    async def check_forgotten_id(self) -> None:
        """Past the window, the first deposit's id is refused as too old, not applied again."""
        command = self.first_settlement
        settled = sum(self.figures.commands[kind] for kind in SETTLEMENT_KINDS)
        if command is None or settled <= COMMAND_OUTCOMES_MAX:
            return
        async with self.client(self.member_named(Role.BANK), member=True) as session:
            result = await self.admin(session, command)
        reasons = [e.get("reason") for e in (result or {"events": []})["events"]]
        if reasons != ["command_id_too_old"]:
            self.fail(
                f"the forgotten command id {command['command_id']} gave {reasons}, "
                "not command_id_too_old"
            )
        else:
            self.figures.commands["forgotten_id_refused"] += 1

    async def check_reports(self) -> None:
        """Each broker's reports replay from index 1 to its last without a gap."""
        for name, last in sorted(self.report_ends.items()):
            async with self.client(name, member=False, replay_from=1) as session:
                expected = 1
                try:
                    while expected <= last:
                        report = await session.next_report(timeout=30.0)
                        if report.get("index") != expected:
                            self.fail(f"{name}: replay gave report {report.get('index')}, "
                                      f"expected {expected}")  # fmt: skip
                            return
                        expected += 1
                except TimeoutError:
                    self.fail(f"{name}: replay stopped at report {expected - 1} of {last}")

    # ---- the stores ----

    def store_path(self, name: str) -> Path:
        return load_config(self.directory / name).store_path

    def check_stores(self, height: int) -> None:
        """Every node at `height` with the same state hash; one member's store verifies."""
        tips: dict[str, tuple[int, str]] = {}
        for name in self.processes.names:
            with BlockStore.open(self.store_path(name)) as store:
                tip = store.tip()
                header = None if tip is None else store.header(tip[0])
                tips[name] = (0, "") if header is None else (tip[0], header.state_hash.hex())  # type: ignore[index]
        if len(set(tips.values())) != 1:
            self.fail(f"the nodes' (height, state hash) differ: {tips}")
        elif tips["exchange"][0] != height:
            self.fail(f"the nodes are at height {tips['exchange'][0]}, not {height} as converged")
        self.final = tips["exchange"]
        member = self.processes.names[0]
        report = verify_node(self.directory / member)
        self.verified = f"{member}: {format_report(report)}"
        if not report.ok:
            self.fail(f"jinlian verify {member}: {format_report(report)}")

    def check_ledger(self) -> None:
        """Conservation of every asset against the genesis, the venue's invariants, and
        every acknowledged order accepted in the ledger, on a member's store re-executed one
        command at a time (a retried command id re-emits its first events and moves nothing,
        so each id's issue, deposit, redemption or withdrawal counts once)."""
        genesis = self.genesis
        machine = new_machine(genesis)
        flows: Counter[str] = Counter()
        counted: set[int] = set()
        accepted: set[int] = set()
        with BlockStore.open(self.store_path(self.processes.names[0])) as store:
            height = 1
            while page := store.blocks_from(height):
                for stored in page:
                    block = stored.block
                    for command, time_ns in zip(block.commands, block.times_ns, strict=True):
                        events = [orjson.loads(data) for data in machine.apply(command, time_ns)]
                        self.count_flows(orjson.loads(command), events, flows, counted)
                        accepted.update(e["order_id"] for e in events if e["type"] == "accepted")
                    if machine.state_hash() != stored.block.header.state_hash:
                        self.fail(f"re-execution of block {stored.block.header.height} gives "
                                  "another state hash")  # fmt: skip
                        return
                height += len(page)
        venue, start = machine.venue, venue_from_genesis(genesis)
        try:
            venue.check()
        except AssertionError as error:
            self.fail(f"the replayed venue fails its check: {error}")
        for asset in start.settlement.assets():
            before, after = _total(start, asset), _total(venue, asset)
            if after != before + flows[asset]:
                self.fail(f"{asset}: balances sum to {after}, genesis {before} + issued and "
                          f"deposited - redeemed and withdrawn {flows[asset]}")  # fmt: skip
        self.conserved = len(start.settlement.assets())
        lost = sorted(self.figures.acknowledged - accepted)
        if lost:
            self.fail(f"{len(lost)} acknowledged orders are not in the ledger, first {lost[:5]}")

    @staticmethod
    def count_flows(
        command: Mapping[str, Any],
        events: list[dict[str, Any]],
        flows: Counter[str],
        counted: set[int],
    ) -> None:
        """Add a command's issue, deposit, redemption or withdrawal to `flows` the first time
        its command id is seen."""
        command_id = command.get("command_id")
        if type(command_id) is not int or command_id in counted:
            return
        counted.add(command_id)
        for event in events:
            sign = SUPPLY_SIGNS.get(event["type"])
            if sign is not None:
                flows[event["asset"]] += sign * event["amount"]

    # ---- figures ----

    def print_figures(self, elapsed_s: float) -> None:
        figures = self.figures
        answered = sum(figures.commands.values())
        print(f"soak: {elapsed_s:.0f} s in {self.directory}")
        print(f"commands answered: {answered:,} ({answered / max(elapsed_s, 1):,.0f}/s)")
        for kind, count in sorted(figures.commands.items(), key=lambda item: -item[1]):
            rejected = figures.rejected[kind]
            print(f"  {kind:<22} {count:>9,}" + (f"  ({rejected:,} rejected)" if rejected else ""))
        if figures.errors:
            shown = ", ".join(f"{k} {v:,}" for k, v in sorted(figures.errors.items()))
            print(f"errors and lost replies: {shown}")
        kills = ", ".join(f"{name} {count}" for name, count in sorted(figures.kills.items()))
        print(f"kill -9: {sum(figures.kills.values())} ({kills or 'none'}), each restarted")
        settled = sum(figures.commands[kind] for kind in SETTLEMENT_KINDS)
        extended = sum(figures.commands[kind] for kind in VENUE_OUTCOME_KINDS)
        reports = max(self.report_ends.values(), default=0)
        print(f"windows: settlement outcomes {settled:,} commands / {COMMAND_OUTCOMES_MAX:,}; "
              f"venue outcomes {extended:,} / {COMMAND_OUTCOMES_MAX:,}; report log {reports:,} "
              f"reports per broker / {REPORTS_HELD_MAX:,}; {self.day - 20260105 + 1} trading "
              f"days of client order ids; {figures.duplicates:,} resent client order ids "
              f"answered as duplicates")  # fmt: skip
        print(f"acknowledged orders: {len(figures.acknowledged):,}; report gaps seen live: "
              f"{figures.report_gaps}")  # fmt: skip
        final = getattr(self, "final", None)
        if final is not None:
            print(f"final height {final[0]:,}, state hash {final[1][:16]}... on every node")
        if hasattr(self, "verified"):
            print(f"verify {self.verified}")
        if hasattr(self, "conserved"):
            print(f"conservation checked for {self.conserved} assets against the genesis")
        marks = list(self.phases.items())
        pairs = itertools.pairwise(marks)
        spent = ", ".join(f"{name} {at - before:.1f} s" for (_, before), (name, at) in pairs)
        print(f"time: {spent}")
        if figures.report_gaps:
            print(f"WARNING: the brokers' live report streams skipped {figures.report_gaps} times "
                  "(after a reconnect); the replay from 1 is the check")  # fmt: skip
        if figures.failures:
            print(f"FAILED: {len(figures.failures)} checks failed:")
            for failure in figures.failures:
                print(f"  {failure.splitlines()[0]}")
        else:
            print("OK: every check passed")
        sys.stdout.flush()


def _total(venue: Venue, asset: str) -> int:
    registry = venue.settlement.registry(asset)
    return sum(registry.available.values()) + sum(registry.locked.values())


def main(arguments: argparse.Namespace) -> int:
    minutes, seed = arguments.minutes, arguments.seed
    if not 0 < minutes <= 24 * 60:
        print(f"jinlian soak: --minutes {minutes} is not in (0, 1440]", file=sys.stderr)
        return 2
    directory: Path = arguments.dir or Path(tempfile.mkdtemp(prefix="jinlian-soak-"))
    if directory.exists() and any(directory.iterdir()):
        print(f"jinlian soak: {directory} is not empty", file=sys.stderr)
        return 2
    rng = random.Random(seed)
    init_consortium(directory, members=MEMBERS, brokers=BROKERS,
                    base_port=free_base_port(MEMBERS + 1, rng))  # fmt: skip
    soak = Soak(directory, minutes * 60, seed, past_windows=arguments.past_windows)
    print(f"soak: {minutes} min, seed {seed}, consortium in {directory}", flush=True)
    started = time.monotonic()
    try:
        asyncio.run(soak.run())
    except SoakError as error:
        soak.fail(str(error))
    finally:
        soak.processes.stop()
    soak.print_figures(time.monotonic() - started)
    return 1 if soak.figures.failures else 0
