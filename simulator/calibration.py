"""How a run's market compares with its scenario: the auctions' volumes and each instrument's
realized volatility against its configured `volatility_bps` (docs/simulator.md, Calibration).

Both read the run's trades table (`trades.parquet`: virtual `time_ns`, `symbol`, `price`,
`quantity`, `aggressor`, null for an auction's uncross).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pyarrow as pa

from simulator.scenario import Scenario

VOLATILITY_INTERVAL_S: Final = 10.0  # the grid on which realized volatility is sampled


def auction_volumes(trades: pa.Table, scenario: Scenario, phase: str) -> dict[str, int]:
    """Per instrument, the volume of the uncross that ended `phase` (`call_auction`: the
    opening, `closing_auction`: the close): the auction trades (no aggressor) at the time the
    next phase began."""
    starts = [change.at_ns for change in scenario.phases]
    phases = [change.phase for change in scenario.phases]
    volumes = dict.fromkeys((instrument.symbol for instrument in scenario.instruments), 0)
    if phase not in phases:
        return volumes
    position = phases.index(phase)
    end_ns = starts[position + 1] if position + 1 < len(starts) else scenario.duration_ns
    rows = trades.select(["time_ns", "symbol", "quantity", "aggressor"]).to_pylist()
    for row in rows:
        if row["aggressor"] is None and row["time_ns"] == end_ns:
            volumes[row["symbol"]] += row["quantity"]
    return volumes


def continuous_window_ns(scenario: Scenario) -> tuple[int, int]:
    """From the start of continuous trading to the next phase (the whole day if none)."""
    start = scenario.phase_start_ns("continuous")
    if start is None:
        return 0, scenario.duration_ns
    later = [change.at_ns for change in scenario.phases if change.at_ns > start]
    return start, min(later, default=scenario.duration_ns)


def realized_volatility_bps(
    trades: pa.Table, scenario: Scenario, interval_s: float = VOLATILITY_INTERVAL_S
) -> dict[str, float]:
    """Per instrument, the standard deviation of the log changes of the last trade price on a
    grid of `interval_s` through continuous trading, per square root of a second, in bps: the
    unit of `volatility_bps`. NaN for an instrument with fewer than two grid prices."""
    start, end = continuous_window_ns(scenario)
    step = round(interval_s * 1e9)
    grid = np.arange(start + step, end + 1, step, dtype=np.int64)
    times = trades["time_ns"].to_numpy()
    symbols = trades["symbol"].to_numpy(zero_copy_only=False)
    prices = trades["price"].to_numpy()
    result: dict[str, float] = {}
    for instrument in scenario.instruments:
        mine = symbols == instrument.symbol
        when, price = times[mine], prices[mine].astype(np.float64)
        order = np.argsort(when, kind="stable")
        when, price = when[order], price[order]
        index = np.searchsorted(when, grid, side="right") - 1
        sampled = price[index[index >= 0]]
        if len(sampled) < 3:
            result[instrument.symbol] = math.nan
            continue
        changes = np.diff(np.log(sampled))
        result[instrument.symbol] = float(np.std(changes) / math.sqrt(interval_s) * 10_000)
    return result
