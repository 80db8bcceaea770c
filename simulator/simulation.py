"""A simulation: agents, their accounts, their arrival schedule, and the loop that drives them.

Randomness comes only from the run's seed: `SeedSequence(seed).spawn(2)` gives a market stream
(the fundamental prices) and an agents' root, whose `spawn(n)` gives agent i its own stream,
itself split into arrivals and decisions. Appending an agent to a scenario therefore leaves
every other agent's draws and the fundamentals unchanged. Nothing reads the clock.

Each agent's Poisson arrival times are drawn up front (vectorised, `agents.arrival_times_ns`),
and all agents' times are merged into one schedule by a stable sort on (time, agent). The loop
walks the schedule; before each arrival it hands the driver any phase change that is due and
the new virtual time, then the agent's intents. The `Driver` protocol is the seam between
order-flow generation and execution: `simulator.inprocess.InProcessDriver` applies intents to
the real venue state machine and builds blocks. The network mode (`simulator.network`) walks
the same schedule in client processes' asyncio loops instead, sending the intents through
`exchange.gateway.client` at their scheduled times (open loop) and feeding execution reports
back (see docs/simulator.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from simulator.agents import AGENT_TYPES, Agent, Fundamentals, Intent, MarketView, arrival_times_ns
from simulator.scenario import AgentGroup, Scenario, agent_class

ACCOUNT_BASE: Final = 10_000  # broker b's accounts are b * 10_000 + 1, + 2, ... (as `jinlian init`)


class Driver(Protocol):
    """Executes agents' intents and tells them what happened."""

    @property
    def market(self) -> MarketView: ...

    def begin(self, now_ns: int, day: int) -> None:
        """Open trading day `day` (yyyymmdd) at virtual time `now_ns`."""

    def set_phase(self, now_ns: int, phase: str) -> None:
        """Move every instrument to `phase` (scheduled, from the scenario)."""

    def advance(self, now_ns: int) -> None:
        """Virtual time has reached `now_ns` (a driver may cut a block)."""

    def submit(self, now_ns: int, agent: Agent, intents: Sequence[Intent]) -> None:
        """Execute `agent`'s intents, in order, and feed back fills and cancels to agents."""

    def end_day(self, now_ns: int, day: int) -> None:
        """Close trading day `day` (and run its settlement)."""

    def end(self, now_ns: int) -> None:
        """The run is over: flush what is pending."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    agent_id: int
    name: str
    kind: str
    broker: str
    accounts: tuple[str, ...]


def assign_accounts(scenario: Scenario) -> list[AgentSpec]:
    """Give every agent its own account(s), filling brokers in turn; a wash trader's two
    accounts belong to one broker."""
    per_broker = scenario.accounts_per_broker()
    broker, slot = 1, 0
    specs: list[AgentSpec] = []
    for group in scenario.agents:
        needed = group.accounts
        for number in range(group.count):
            if slot + needed > per_broker:
                broker, slot = broker + 1, 0
            assert broker <= scenario.brokers, "accounts_per_broker leaves room for every agent"
            accounts = tuple(str(broker * ACCOUNT_BASE + slot + k + 1) for k in range(needed))
            slot += needed
            agent_id = len(specs)
            specs.append(AgentSpec(agent_id=agent_id, name=f"{group.kind}{number + 1}",
                                   kind=group.kind, broker=f"broker{broker}",
                                   accounts=accounts))  # fmt: skip
    return specs


def group_class(group: AgentGroup, scenario: Scenario) -> type[Agent]:
    """The agent class of `group`: built in by kind, or the user's by its class path."""
    if not group.class_path:
        return AGENT_TYPES[group.kind]
    cls: type[Agent] = agent_class(group.class_path, scenario.module_dirs)
    return cls


class Simulation:
    """The agents of `scenario` under `seed`, and their merged arrival schedule."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be between 0 and 2**63 - 1, got {seed}")
        self.scenario = scenario
        self.seed = seed
        self.specs = assign_accounts(scenario)
        market_seed, agents_seed = np.random.SeedSequence(seed).spawn(2)
        self.fundamentals = Fundamentals(
            scenario.instruments, scenario.run_ns, np.random.default_rng(market_seed)
        )
        instruments = {instrument.symbol: instrument for instrument in scenario.instruments}
        groups = [group for group in scenario.agents for _ in range(group.count)]
        classes = {id(group): group_class(group, scenario) for group in scenario.agents}
        close_ns = scenario.phase_start_ns("closing_auction")
        self.agents: list[Agent] = []
        times: list[np.ndarray] = []
        for spec, group, agent_seed in zip(
            self.specs, groups, agents_seed.spawn(len(self.specs)), strict=True
        ):
            arrivals_seed, decisions_seed = agent_seed.spawn(2)
            agent = classes[id(group)](
                agent_id=spec.agent_id,
                accounts=spec.accounts,
                group=group,
                instruments=instruments,
                rng=np.random.default_rng(decisions_seed),
                fundamentals=self.fundamentals,
            )
            self.agents.append(agent)
            start, end = agent.arrival_window_ns(scenario.duration_ns, close_ns)
            arrivals = np.random.default_rng(arrivals_seed)
            day_ns = scenario.duration_ns
            times.append(np.concatenate([  # the same window each day, from one stream
                arrival_times_ns(arrivals, group.rate_per_s, k * day_ns + start, k * day_ns + end)
                for k in range(len(scenario.trading_days))
            ]))  # fmt: skip
        owners = np.concatenate(
            [np.full(len(t), index, dtype=np.int64) for index, t in enumerate(times)]
            or [np.empty(0, dtype=np.int64)]
        )
        all_times = np.concatenate(times or [np.empty(0, dtype=np.int64)])
        order = np.lexsort((owners, all_times))
        self.schedule_ns: np.ndarray = all_times[order]
        self.schedule_agents: np.ndarray = owners[order]

    @property
    def arrivals(self) -> int:
        return len(self.schedule_ns)

    def run(
        self,
        driver: Driver,
        *,
        progress: Callable[[int], None] | None = None,
        observer: Callable[[int, Agent], None] | None = None,
        progress_every: int = 10_000,
    ) -> None:
        """Drive every arrival through `driver`, day after day (each day the scenario's phases,
        at the same times of its day). `progress(now_ns)` is called every `progress_every`
        arrivals; `observer(now_ns, agent)` after each agent's intents."""
        scenario = self.scenario
        day_ns = scenario.duration_ns
        agents = self.agents
        market = driver.market
        advance, submit = driver.advance, driver.submit
        arrivals = zip(self.schedule_ns.tolist(), self.schedule_agents.tolist(), strict=True)
        pending = next(arrivals, None)
        count = 0
        for number, day in enumerate(scenario.trading_days):
            start_ns, end_ns = number * day_ns, (number + 1) * day_ns
            driver.begin(start_ns, day)
            phases = [(start_ns + change.at_ns, change.phase) for change in scenario.phases]
            next_phase_ns = phases[0][0] if phases else None
            while pending is not None and pending[0] < end_ns:
                now_ns, index = pending
                while next_phase_ns is not None and next_phase_ns <= now_ns:
                    advance(next_phase_ns)
                    driver.set_phase(next_phase_ns, phases.pop(0)[1])
                    next_phase_ns = phases[0][0] if phases else None
                advance(now_ns)
                agent = agents[index]
                intents = agent.act(now_ns, market)
                if intents:
                    submit(now_ns, agent, intents)
                if observer is not None:
                    observer(now_ns, agent)
                count += 1
                if progress is not None and count % progress_every == 0:
                    progress(now_ns)
                pending = next(arrivals, None)
            for at_ns, phase in phases:
                advance(at_ns)
                driver.set_phase(at_ns, phase)
            driver.end_day(end_ns, day)
        driver.end(scenario.run_ns)
        if progress is not None:
            progress(scenario.run_ns)
