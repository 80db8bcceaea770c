"""Scenario files: what a simulation trades, when, and who trades it.

A scenario is a TOML file (read with the standard library's `tomllib`) parsed here, at the edge,
into frozen values; anything wrong raises `ScenarioError` naming the field by its path
(`agents[2].rate_per_s`) and the problem, showing the offending value. Unknown keys are errors
too, so a misspelt parameter cannot silently fall back to its default.

    name = "smoke"
    duration_s = 60             # the virtual trading day, in seconds
    day = 20260105              # the venue's trading day (yyyymmdd); or days = [...] for several
    block_interval_ms = 500     # a block is cut every so many virtual ms ...
    block_commands = 2000       # ... or when it holds this many commands
    brokers = 2                 # brokers in the genesis; agents' accounts are spread over them
    cash_per_account = 1_000_000_000   # fen
    shares_per_account = 100_000       # of every instrument

    [[instruments]]             # the listing, settlement and fees (as in `jinlian init`),
    symbol = "600000.SH"        # plus the fundamental price process of the simulation
    reference_price = 1000
    volatility_bps = 10         # of the fundamental, per square root of a second

    [[phases]]                  # the trading-day schedule, for every instrument
    at_s = 0
    phase = "call_auction"      # call_auction, continuous, closing_auction, closed

    [[agents]]
    kind = "noise"              # noise, market_maker, momentum, value, spoofer, wash_trader,
    count = 20                  # marking_close, execution; or class = "package.module:Class"
    rate_per_s = 1.0            # Poisson arrivals per agent

    [sweep]                     # optional: a grid of variants (`Sweep`)
    seeds = [1, 2]
    "agents[0].rate_per_s" = [0.5, 1.0]

Agent parameters and their defaults are in `AGENT_PARAMETERS` (a class of the user's declares
its own in `parameters`); docs/simulator.md explains each.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import importlib
import itertools
import math
import re
import sys
import tomllib
from dataclasses import dataclass, replace
from importlib import metadata, resources
from pathlib import Path
from types import ModuleType
from typing import Any, Final

SCENARIOS_PACKAGE: Final = "simulator.scenarios"
PHASES: Final = ("call_auction", "continuous", "closing_auction", "closed")
SETTLEMENTS: Final = ("gross", "cash_net", "net_net")  # as the genesis names them
SETTLE_CYCLES: Final = ("end_of_day", "none")
DAYS_MAX: Final = 250
AGENTS_MAX: Final = 100_000
INSTRUMENTS_MAX: Final = 100
DURATION_S_MAX: Final = 7 * 24 * 3600
RATE_PER_S_MAX: Final = 100_000.0

# kind -> parameter -> default (its type is the type the file must give)
AGENT_PARAMETERS: Final[dict[str, dict[str, int | float | str]]] = {
    "noise": {"quantity_lots_max": 5, "spread_bps": 100.0, "marketable_fraction": 0.2,
              "cancel_fraction": 0.3, "open_orders_max": 8, "value_weight": 0.0,
              "auction_cross": True},
    "market_maker": {"half_spread_bps": 20.0, "quote_lots": 5, "inventory_limit_lots": 50,
                     "skew_bps": 20.0, "post_only": False, "amend": False},
    "momentum": {"lookback_s": 5.0, "threshold_bps": 10.0, "quantity_lots": 2},
    "value": {"threshold_bps": 20.0, "quantity_lots": 3},
    "spoofer": {"layers": 3, "layer_lots": 20, "distance_bps": 30.0, "genuine_lots": 1,
                "cancel_after_ms": 500.0},
    "wash_trader": {"quantity_lots": 5},
    "marking_close": {"window_s": 10.0, "quantity_lots": 5, "aggression_bps": 20.0},
    "execution": {"parent_lots": 50, "child_lots": 2, "market_fraction": 0.5, "limit_bps": 20.0},
}  # fmt: skip
ACCOUNTS_PER_AGENT: Final = {"wash_trader": 2}

_TOP_KEYS: Final = {"name", "description", "duration_s", "day", "days", "settle_cycle",
                    "block_interval_ms",
                    "block_commands", "brokers", "cash_per_account", "shares_per_account",
                    "instruments", "phases", "agents"}  # fmt: skip
_INSTRUMENT_KEYS: Final = {"symbol", "tick_size", "lot", "reference_price", "price_limit_pct",
                           "t_plus", "settlement", "commission_bps", "stamp_duty_bps",
                           "volatility_bps"}  # fmt: skip
_AGENT_KEYS: Final = {"kind", "class", "count", "rate_per_s", "symbols"}
AGENTS_ENTRY_POINTS: Final = "jinlian.agents"  # an installed package's agent classes, by kind


class ScenarioError(ValueError):
    """A scenario that cannot run: `field` is the path of the bad value, `problem` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    symbol: str
    tick_size: int
    lot: int
    reference_price: int  # ticks... in the price unit (fen)
    price_limit_pct: int | None
    t_plus: int
    settlement: str
    commission_bps: int
    stamp_duty_bps: int
    volatility_bps: float  # of the fundamental process, per sqrt(second)

    def listing(self) -> dict[str, object]:
        """The genesis form (`exchange.consortium.init.InstrumentSpec`)."""
        return {
            "symbol": self.symbol,
            "tick_size": self.tick_size,
            "lot": self.lot,
            "reference_price": self.reference_price,
            "price_limit_pct": self.price_limit_pct,
            "t_plus": self.t_plus,
            "settlement": self.settlement,
            "commission_bps": self.commission_bps,
            "stamp_duty_bps": self.stamp_duty_bps,
        }

    def band(self) -> tuple[int, int]:
        """Prices agents keep to: inside the daily limits, one tick in from each edge."""
        if self.price_limit_pct is None:
            return self.tick_size, 2**40
        width = self.reference_price * self.price_limit_pct // 100
        low = -(-(self.reference_price - width) // self.tick_size) * self.tick_size
        high = (self.reference_price + width) // self.tick_size * self.tick_size
        return low + self.tick_size, high - self.tick_size


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChange:
    at_ns: int  # virtual time from the start of the day
    phase: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentGroup:
    kind: str
    count: int
    rate_per_s: float
    symbols: tuple[str, ...]
    parameters: dict[str, int | float | str]
    class_path: str = ""  # "package.module:Class" of an agent class of the user's; "" built in
    accounts: int = 1  # accounts per agent (the wash trader's two)


SWEEP_POINTS_MAX: Final = 10_000
SWEEP_VALUES_MAX: Final = 1_000
_INDEX: Final = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    index: int  # K: its place in the grid (parameters in file order, seeds fastest)
    seed: int
    values: tuple[tuple[str, Any], ...]  # (dotted path, value) per swept parameter


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep:
    """A scenario's `[sweep]` table: each dotted path (`agents[0].rate_per_s`, or as a TOML
    nested key `agents.0.rate_per_s`) with its list of values, and `seeds`. The grid is
    their product; every value was checked by parsing the scenario with it."""

    parameters: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    document: dict[str, Any]  # the scenario without its [sweep] table, as TOML gave it
    sha256: str
    module_dirs: tuple[str, ...]

    @property
    def size(self) -> int:
        size = len(self.seeds)
        for _, values in self.parameters:
            size *= len(values)
        return size

    def points(self) -> list[SweepPoint]:
        paths = [path for path, _ in self.parameters]
        grid = itertools.product(*(values for _, values in self.parameters), self.seeds)
        return [
            SweepPoint(
                index=index,
                seed=combination[-1],
                values=tuple(zip(paths, combination[:-1], strict=True)),
            )
            for index, combination in enumerate(grid)
        ]

    def point(self, index: int) -> tuple[SweepPoint, Scenario]:
        """Point `index` of the grid and its scenario. Raises ScenarioError (`--point`)."""
        if not 0 <= index < self.size:
            raise ScenarioError("--point", f"{index} is not in 0..{self.size - 1}")
        point = self.points()[index]
        document = copy.deepcopy(self.document)
        for path, value in point.values:
            _assign(document, path, value)
        return point, _scenario(document, self.sha256, self.module_dirs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    duration_ns: int  # of one trading day
    day: int  # the first trading day
    block_interval_ns: int
    block_commands: int
    brokers: int
    cash_per_account: int
    shares_per_account: int
    instruments: tuple[Instrument, ...]
    phases: tuple[PhaseChange, ...]
    agents: tuple[AgentGroup, ...]
    sha256: str  # of the file's bytes
    module_dirs: tuple[str, ...] = ()  # where agent classes' modules are looked for too
    sweep: Sweep | None = None  # the file's [sweep] table: a grid of variants of this scenario
    days: tuple[int, ...] = ()  # the trading dates (yyyymmdd), in order; () is (day,)
    settle_cycle: str = "end_of_day"  # when net settlement cycles run: end_of_day or none

    @property
    def trading_days(self) -> tuple[int, ...]:
        return self.days or (self.day,)

    @property
    def run_ns(self) -> int:
        """Virtual time of the whole run: the trading days back to back."""
        return self.duration_ns * len(self.trading_days)

    def accounts_needed(self) -> int:
        return sum(group.count * group.accounts for group in self.agents)

    def accounts_per_broker(self) -> int:
        """Enough accounts that every agent gets its own, and an agent of several accounts (a
        wash trader's two) all of one broker."""
        widest = max((group.accounts for group in self.agents), default=1)
        return -(-self.accounts_needed() // self.brokers) + widest - 1

    def phase_start_ns(self, phase: str) -> int | None:
        return next((change.at_ns for change in self.phases if change.phase == phase), None)


def shipped_names() -> list[str]:
    folder = resources.files(SCENARIOS_PACKAGE)
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (`smoke`) or a scenario file by path. Raises ScenarioError
    (field `file` for a file that cannot be found or read as TOML)."""
    text = str(name_or_path)
    if text in shipped_names():
        data = resources.files(SCENARIOS_PACKAGE).joinpath(f"{text}.toml").read_bytes()
        return parse_scenario(data)
    path = Path(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as error:
        shipped = ", ".join(shipped_names())
        raise ScenarioError(
            "file",
            f"{text!r} is neither a shipped scenario ({shipped}) nor a readable file: "
            f"{error.strerror or error}",
        ) from None
    return parse_scenario(data, module_dirs=(str(path.resolve().parent),))


def parse_scenario(data: bytes, *, module_dirs: tuple[str, ...] = ()) -> Scenario:
    """Parse and validate a scenario's TOML bytes. Raises ScenarioError naming the field.
    Agent classes named by `class` are imported from the installed packages or, failing
    that, from `module_dirs` (a scenario file's own directory)."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ScenarioError("file", f"not valid TOML: {error}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    table = document.pop("sweep", None)
    scenario = _scenario(document, sha256, module_dirs)
    if table is None:
        return scenario
    sweep = _sweep(table, document, sha256, module_dirs)
    return replace(scenario, sweep=sweep)


def _scenario(document: dict[str, Any], sha256: str, module_dirs: tuple[str, ...]) -> Scenario:
    _keys(document, _TOP_KEYS, "", required={"name", "duration_s", "instruments", "agents"})
    duration_s = _number(document, "duration_s", "", low=1.0, high=DURATION_S_MAX)
    duration_ns = round(duration_s * 1e9)
    instruments = _instruments(document.get("instruments"))
    symbols = tuple(instrument.symbol for instrument in instruments)
    phases = _phases(document.get("phases", [{"at_s": 0, "phase": "continuous"}]), duration_ns)
    agents = _agents(document.get("agents"), symbols, module_dirs)
    interval_ms = _integer(document, "block_interval_ms", "", low=1, high=3_600_000, default=500)
    days = _days(document)
    settle_cycle = _text(document, "settle_cycle", "", default="end_of_day")
    if settle_cycle not in SETTLE_CYCLES:
        raise ScenarioError("settle_cycle", f"{settle_cycle!r} is not one of {SETTLE_CYCLES}")
    scenario = Scenario(
        name=_text(document, "name", ""),
        description=str(document.get("description", "")),
        duration_ns=duration_ns,
        day=days[0],
        days=days,
        settle_cycle=settle_cycle,
        block_interval_ns=interval_ms * 1_000_000,
        block_commands=_integer(document, "block_commands", "", low=1, high=65_536, default=2000),
        brokers=_integer(document, "brokers", "", low=1, high=100, default=2),
        cash_per_account=_integer(
            document, "cash_per_account", "", low=0, high=10**15, default=1_000_000_000
        ),
        shares_per_account=_integer(
            document, "shares_per_account", "", low=0, high=10**12, default=100_000
        ),
        instruments=instruments,
        phases=phases,
        agents=agents,
        sha256=sha256,
        module_dirs=module_dirs,
    )
    if scenario.accounts_per_broker() > 10_000:
        raise ScenarioError("brokers", f"{scenario.accounts_needed()} accounts need more brokers")
    return scenario


def _days(document: dict[str, Any]) -> tuple[int, ...]:
    """The trading dates: `days` (a list, strictly increasing) or the one `day`."""
    if "days" not in document:
        day = _integer(document, "day", "", low=19700101, high=99991231, default=20260105)
        _date(day, "day")
        return (day,)
    if "day" in document:
        raise ScenarioError("day", "give either day or days, not both")
    days = document["days"]
    if not isinstance(days, list) or not 1 <= len(days) <= DAYS_MAX:
        raise ScenarioError("days", f"must be a list of 1 to {DAYS_MAX} dates, got {days!r}")
    for index, day in enumerate(days):
        if type(day) is not int:
            raise ScenarioError(f"days[{index}]", f"must be a date as yyyymmdd, got {day!r}")
        _date(day, f"days[{index}]")
        if index and day <= days[index - 1]:
            raise ScenarioError(f"days[{index}]", f"{day} is not after {days[index - 1]}")
    return tuple(days)


def _date(day: int, field: str) -> None:
    try:
        datetime.date(day // 10_000, day // 100 % 100, day % 100)
    except ValueError:
        raise ScenarioError(field, f"{day} is not a date (yyyymmdd)") from None


def _instruments(value: object) -> tuple[Instrument, ...]:
    items = _tables(value, "instruments", INSTRUMENTS_MAX)
    instruments: list[Instrument] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        path = f"instruments[{index}]"
        _keys(item, _INSTRUMENT_KEYS, path, required={"symbol", "reference_price"})
        symbol = _text(item, "symbol", path)
        if symbol in seen:
            raise ScenarioError(f"{path}.symbol", f"{symbol!r} is listed twice")
        seen.add(symbol)
        tick = _integer(item, "tick_size", path, low=1, high=10**6, default=1)
        reference = _integer(item, "reference_price", path, low=1, high=10**12)
        if reference % tick:
            raise ScenarioError(
                f"{path}.reference_price", f"{reference} is not a multiple of tick_size {tick}"
            )
        limit = item.get("price_limit_pct", 10)
        settlement = _text(item, "settlement", path, default="gross")
        if settlement not in SETTLEMENTS:
            raise ScenarioError(f"{path}.settlement", f"{settlement!r} is not one of {SETTLEMENTS}")
        instruments.append(Instrument(
            symbol=symbol, tick_size=tick,
            lot=_integer(item, "lot", path, low=1, high=10**6, default=100),
            reference_price=reference,
            price_limit_pct=(None if type(limit) is int and limit == 0 else
                             _integer(item, "price_limit_pct", path, low=0, high=100, default=10)),
            t_plus=_integer(item, "t_plus", path, low=0, high=1, default=1),
            settlement=settlement,
            commission_bps=_integer(item, "commission_bps", path, low=0, high=1000, default=3),
            stamp_duty_bps=_integer(item, "stamp_duty_bps", path, low=0, high=1000, default=5),
            volatility_bps=_number(item, "volatility_bps", path, low=0.0, high=1000.0,
                                   default=10.0),
        ))  # fmt: skip
    return tuple(instruments)


def _phases(value: object, duration_ns: int) -> tuple[PhaseChange, ...]:
    items = _tables(value, "phases", 100)
    changes: list[PhaseChange] = []
    for index, item in enumerate(items):
        path = f"phases[{index}]"
        _keys(item, {"at_s", "phase"}, path, required={"at_s", "phase"})
        at_ns = round(_number(item, "at_s", path, low=0.0, high=DURATION_S_MAX) * 1e9)
        phase = _text(item, "phase", path)
        if phase not in PHASES:
            raise ScenarioError(f"{path}.phase", f"{phase!r} is not one of {PHASES}")
        if at_ns >= duration_ns:
            raise ScenarioError(f"{path}.at_s", f"{at_ns / 1e9} is not before duration_s")
        if changes and at_ns <= changes[-1].at_ns:
            raise ScenarioError(f"{path}.at_s", f"{at_ns / 1e9} is not after the previous phase")
        if changes and phase == changes[-1].phase:
            raise ScenarioError(f"{path}.phase", f"{phase!r} repeats the previous phase")
        changes.append(PhaseChange(at_ns=at_ns, phase=phase))
    return tuple(changes)


def _agents(
    value: object, symbols: tuple[str, ...], module_dirs: tuple[str, ...]
) -> tuple[AgentGroup, ...]:
    items = _tables(value, "agents", 1000)
    groups: list[AgentGroup] = []
    total = 0
    for index, item in enumerate(items):
        path = f"agents[{index}]"
        kind, class_path, defaults, accounts = _agent_kind(item, path, module_dirs)
        _keys(item, _AGENT_KEYS | set(defaults), path, required={"count", "rate_per_s"})
        count = _integer(item, "count", path, low=0, high=AGENTS_MAX)
        total += count
        if total > AGENTS_MAX:
            raise ScenarioError(f"{path}.count", f"more than {AGENTS_MAX} agents in all")
        chosen = item.get("symbols", list(symbols))
        if not isinstance(chosen, list) or not chosen:
            raise ScenarioError(f"{path}.symbols", f"must be a non-empty list, got {chosen!r}")
        for position, symbol in enumerate(chosen):
            if symbol not in symbols:
                raise ScenarioError(
                    f"{path}.symbols[{position}]", f"{symbol!r} is not a scenario instrument"
                )
        parameters = _parameters(item, path, defaults)
        groups.append(AgentGroup(
            kind=kind, count=count,
            rate_per_s=_number(item, "rate_per_s", path, low=1e-6, high=RATE_PER_S_MAX),
            symbols=tuple(str(symbol) for symbol in chosen), parameters=parameters,
            class_path=class_path, accounts=accounts,
        ))  # fmt: skip
    return tuple(groups)


def _parameters(
    item: dict[str, Any], path: str, defaults: dict[str, int | float | str]
) -> dict[str, int | float | str]:
    """The group's parameters, each of its default's type (a bool for a bool)."""
    parameters: dict[str, int | float | str] = {}
    for name, default in defaults.items():
        if isinstance(default, bool):
            value = item.get(name, default)
            if type(value) is not bool:
                raise ScenarioError(_field(path, name), f"must be true or false, got {value!r}")
            parameters[name] = value
        elif isinstance(default, int):
            parameters[name] = _integer(item, name, path, low=0, high=10**9, default=default)
        elif isinstance(default, float):
            parameters[name] = _number(item, name, path, low=0.0, high=1e9, default=default)
        else:
            parameters[name] = _text(item, name, path, default=default)
    for name in ("marketable_fraction", "cancel_fraction", "market_fraction", "value_weight"):
        if name in parameters and not 0.0 <= float(parameters[name]) <= 1.0:
            raise ScenarioError(f"{path}.{name}", f"{parameters[name]} is not in [0, 1]")
    return parameters


def _agent_kind(
    item: dict[str, Any], path: str, module_dirs: tuple[str, ...]
) -> tuple[str, str, dict[str, int | float | str], int]:
    """The group's kind, class path ("" if built in), parameter defaults and accounts per
    agent: a built-in `kind`, an agent class named by `class`, or a kind an installed package
    registers in the `jinlian.agents` entry point group."""
    if "class" in item:
        class_path = _text(item, "class", path)
        cls = agent_class(class_path, module_dirs, field=f"{path}.class")
    else:
        kind = _text(item, "kind", path)
        if kind in AGENT_PARAMETERS:
            return kind, "", AGENT_PARAMETERS[kind], ACCOUNTS_PER_AGENT.get(kind, 1)
        registered = _entry_points().get(kind)
        if registered is None:
            known = sorted(AGENT_PARAMETERS) + sorted(_entry_points())
            raise ScenarioError(
                f"{path}.kind", f"{kind!r} is not one of {known} (or name a `class`)"
            )
        class_path = registered
        cls = agent_class(class_path, module_dirs, field=f"{path}.kind")
    kind = getattr(cls, "kind", "")
    if "kind" in item and item["kind"] != kind:
        raise ScenarioError(f"{path}.kind", f"{item['kind']!r} is not {class_path}'s kind {kind!r}")
    defaults = getattr(cls, "parameters", {})
    accounts = getattr(cls, "accounts_per_agent", 1)
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ScenarioError(f"{path}.class", f"{class_path}.kind must be a name, got {kind!r}")
    if not isinstance(defaults, dict) or not all(
        isinstance(name, str) and isinstance(value, int | float | str)
        for name, value in defaults.items()
    ):
        raise ScenarioError(
            f"{path}.class", f"{class_path}.parameters must map names to defaults, got {defaults!r}"
        )
    if type(accounts) is not int or not 1 <= accounts <= 16:
        raise ScenarioError(
            f"{path}.class", f"{class_path}.accounts_per_agent must be 1..16, got {accounts!r}"
        )
    return kind, class_path, defaults, accounts


def _entry_points() -> dict[str, str]:
    """Installed packages' agent kinds: entry point name -> "module:Class"."""
    return {point.name: point.value for point in metadata.entry_points(group=AGENTS_ENTRY_POINTS)}


def agent_class(
    class_path: str, module_dirs: tuple[str, ...] = (), *, field: str = "class"
) -> type[Any]:
    """The agent class named "package.module:Class" (or "package.module.Class"), imported from
    the installed packages or else from `module_dirs` (which are then added to `sys.path`, so
    a network run's client processes, spawned with the parent's path, import it too).
    Raises ScenarioError naming `field` if it cannot be imported or is not an agent class."""
    from simulator.agents import Agent  # noqa: PLC0415 - agents imports this module

    module_name, _, class_name = class_path.rpartition(":")
    if not module_name:
        module_name, _, class_name = class_path.rpartition(".")
    if not module_name or not class_name:
        raise ScenarioError(field, f'{class_path!r} is not "package.module:Class"')
    try:
        module = _import(module_name, module_dirs)
    except Exception as error:  # any failure of the user's module is the scenario's
        raise ScenarioError(
            field,
            f"cannot import {module_name!r} for {class_path!r}: {type(error).__name__}: {error}",
        ) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, Agent):
        raise ScenarioError(
            field, f"{class_path!r} is not a subclass of simulator.agents.Agent, got {cls!r}"
        )
    return cls


def _import(module_name: str, module_dirs: tuple[str, ...]) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.partition(".")[0]
        if error.name != top or not module_dirs:
            raise
    for directory in module_dirs:
        if directory not in sys.path:
            sys.path.append(directory)
    return importlib.import_module(module_name)


def _sweep(
    table: object, document: dict[str, Any], sha256: str, module_dirs: tuple[str, ...]
) -> Sweep:
    if not isinstance(table, dict):
        raise ScenarioError("sweep", f"must be a table, got {table!r}")
    seeds = table.pop("seeds", [1])
    if (
        not isinstance(seeds, list) or not seeds or len(seeds) > SWEEP_VALUES_MAX
        or not all(type(seed) is int and 0 <= seed < 2**63 for seed in seeds)
    ):  # fmt: skip
        raise ScenarioError("sweep.seeds", f"must be a list of seeds in [0, 2**63), got {seeds!r}")
    parameters: list[tuple[str, tuple[Any, ...]]] = []
    for path, values in _flatten(table, ""):
        field = f"sweep.{path}"
        if not isinstance(values, list) or not values or len(values) > SWEEP_VALUES_MAX:
            raise ScenarioError(field, f"must be a non-empty list of values, got {values!r}")
        for value in values:  # each value, alone, must make a valid scenario
            trial = copy.deepcopy(document)
            try:
                _assign(trial, path, value)
                _scenario(trial, sha256, module_dirs)
            except ScenarioError as error:
                raise ScenarioError(field, f"{value!r}: {error}") from None
        parameters.append((path, tuple(values)))
    sweep = Sweep(parameters=tuple(parameters), seeds=tuple(seeds),
                  document=document, sha256=sha256, module_dirs=module_dirs)  # fmt: skip
    if sweep.size > SWEEP_POINTS_MAX:
        raise ScenarioError("sweep", f"{sweep.size} points, more than {SWEEP_POINTS_MAX}")
    return sweep


def _flatten(table: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """Nested tables' keys joined into paths (`agents.0.rate_per_s` -> `agents[0].rate_per_s`)."""
    flat: list[tuple[str, Any]] = []
    for key, value in table.items():
        part = f"[{key}]" if key.isdigit() else (f".{key}" if prefix else key)
        if isinstance(value, dict):
            flat.extend(_flatten(value, prefix + part))
        else:
            flat.append((_INDEX.sub(r"[\1]", (prefix + part).replace(".[", "[")), value))
    return flat


def _assign(document: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at `path` of the scenario's document. Raises ScenarioError naming the
    path if a part of it is not in the scenario (the last part may be a field left to its
    default; parsing then says if it is not a field at all)."""
    parts: list[str | int] = []
    for name in path.split("."):
        head, *indices = _INDEX.split(name)
        if head:
            parts.append(head)
        parts.extend(int(index) for index in indices if index)
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(str(p) for p in parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise ScenarioError(f"sweep.{path}", f"no entry {part} at {where!r}")
        elif not isinstance(node, dict) or part not in node:
            raise ScenarioError(f"sweep.{path}", f"the scenario has no {where!r}")
        node = node[part]
    last = parts[-1]
    if isinstance(last, int) or not isinstance(node, dict):
        raise ScenarioError(f"sweep.{path}", "does not name a field of a table")
    node[last] = value


# -- field readers: each names the field and shows the value ------------------------------


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _keys(table: dict[str, Any], allowed: set[str], path: str, *, required: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(_field(path, key), f"unknown field (expected {sorted(allowed)})")
    for key in sorted(required):
        if key not in table:
            raise ScenarioError(_field(path, key), "missing")


def _tables(value: object, path: str, size_max: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(path, f"must be a non-empty array of tables, got {value!r}")
    if len(value) > size_max:
        raise ScenarioError(path, f"{len(value)} entries, more than {size_max}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ScenarioError(f"{path}[{index}]", f"must be a table, got {item!r}")
    return value


def _integer(
    table: dict[str, Any], name: str, path: str, *, low: int, high: int, default: int | None = None
) -> int:
    value = table.get(name, default)
    if type(value) is not int:
        raise ScenarioError(_field(path, name), f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ScenarioError(_field(path, name), f"{value} is not between {low} and {high}")
    return value


def _number(
    table: dict[str, Any],
    name: str,
    path: str,
    *,
    low: float,
    high: float,
    default: float | None = None,
) -> float:
    value = table.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ScenarioError(_field(path, name), f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise ScenarioError(_field(path, name), f"{value} is not between {low} and {high}")
    return float(value)


def _text(table: dict[str, Any], name: str, path: str, *, default: str | None = None) -> str:
    value = table.get(name, default)
    if type(value) is not str or not value:
        raise ScenarioError(_field(path, name), f"must be a non-empty string, got {value!r}")
    return value
