"""PNG charts of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend
import numpy as np
import pyarrow as pa

from simulator.scenario import Scenario


def price_volume(trades: pa.Table, path: Path) -> None:
    """Per instrument: trade prices over virtual time, and traded volume per bucket."""
    symbols = sorted(set(trades.column("symbol").to_pylist())) or ["(no trades)"]
    figure, axes = plt.subplots(2, len(symbols), figsize=(5 * len(symbols), 6), squeeze=False)
    times = np.asarray(trades.column("time_ns").to_pylist(), dtype=np.int64) / 1e9
    prices = np.asarray(trades.column("price").to_pylist(), dtype=np.float64)
    quantities = np.asarray(trades.column("quantity").to_pylist(), dtype=np.float64)
    names = np.asarray(trades.column("symbol").to_pylist(), dtype=object)
    for column, symbol in enumerate(symbols):
        mine = names == symbol
        top, bottom = axes[0][column], axes[1][column]
        top.plot(times[mine], prices[mine], linewidth=0.6)
        top.set_title(symbol)
        top.set_ylabel("price (fen)")
        if mine.any():
            bottom.hist(times[mine], bins=60, weights=quantities[mine])
        bottom.set_xlabel("virtual time (s)")
        bottom.set_ylabel("volume (shares)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


PHASE_COLOURS: Final = {
    "call_auction": "#f2d7a6",
    "closing_auction": "#c9dcf0",
    "closed": "#dddddd",
    "halted": "#f0c0c0",
}  # continuous: unshaded


def market(scenario: Scenario, tables: Mapping[str, pa.Table], path: Path) -> None:
    """Per instrument, over virtual time: trade prices, the fundamental value, the best bid
    and ask (sampled each second), with the trading phases shaded."""
    symbols = [instrument.symbol for instrument in scenario.instruments]
    figure, axes = plt.subplots(len(symbols), 1, figsize=(11, 3 * len(symbols)), squeeze=False)
    trades, values, quotes = tables["trades"], tables["fundamentals"], tables["quotes"]
    day_s = scenario.duration_ns / 1e9
    spans = []  # (start s, end s, phase) of every phase of every day
    for number in range(len(scenario.trading_days)):
        edges = [number * day_s + change.at_ns / 1e9 for change in scenario.phases]
        edges.append((number + 1) * day_s)
        for (start, end), change in zip(itertools.pairwise(edges), scenario.phases, strict=False):
            spans.append((start, end, change.phase))
    for row, symbol in enumerate(symbols):
        axis = axes[row][0]
        for start, end, phase in spans:
            colour = PHASE_COLOURS.get(phase)
            if colour is not None:
                axis.axvspan(start, end, color=colour, alpha=0.6, linewidth=0,
                             label=phase.replace("_", " "))  # fmt: skip
        quote = _of(quotes, symbol)
        seconds = np.asarray(quote["time_ns"], dtype=np.float64) / 1e9
        for side, colour in (("bid", "tab:green"), ("ask", "tab:red")):
            level = np.asarray([np.nan if v is None else v for v in quote[side]], dtype=float)
            axis.step(seconds, level, where="post", color=colour, linewidth=0.5, label=side)
        value = _of(values, symbol)
        axis.plot(np.asarray(value["time_ns"], dtype=np.float64) / 1e9, value["value"],
                  color="black", linewidth=1.0, label="fundamental")  # fmt: skip
        traded = _of(trades, symbol)
        axis.plot(np.asarray(traded["time_ns"], dtype=np.float64) / 1e9, traded["price"], ".",
                  markersize=1.5, color="tab:blue", label="trades")  # fmt: skip
        axis.set_title(symbol)
        axis.set_ylabel("price (fen)")
        axis.set_xlim(0, scenario.run_ns / 1e9)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                    fontsize=7, frameon=False)  # fmt: skip
    axes[-1][0].set_xlabel("virtual time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _of(table: pa.Table, symbol: str) -> dict[str, list[Any]]:
    """The rows of `symbol`, as columns."""
    names = table.column("symbol").to_pylist()
    rows = [index for index, name in enumerate(names) if name == symbol]
    return {column: table.column(column).take(rows).to_pylist() for column in table.column_names}


def throughput(blocks: Mapping[str, Sequence[Any]], path: Path) -> None:
    """Messages per wall-clock second over the run, block by block, against virtual time."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    wall = np.asarray(blocks["wall_s"], dtype=np.float64)
    commands = np.asarray(blocks["commands"], dtype=np.float64)
    virtual = np.asarray(blocks["time_ns"], dtype=np.float64) / 1e9
    if len(wall) > 1:
        spans = np.diff(wall, prepend=0.0)
        rate = np.divide(commands, spans, out=np.zeros_like(commands), where=spans > 0)
        axis.plot(virtual, rate, linewidth=0.8)
    axis.set_xlabel("virtual time (s)")
    axis.set_ylabel("messages / wall s")
    axis.set_title("in-process throughput (agents + venue + blocks)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def network_throughput(sent_s: Sequence[float], replied_s: Sequence[float], path: Path) -> None:
    """Messages sent (offered, on the schedule) and replies received per wall second."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    end = max([*sent_s, *replied_s, 1.0])
    width = max(0.1, end / 100)  # about a hundred buckets, none under 100 ms
    bins = np.arange(0.0, end + width, width)
    for values, name in ((sent_s, "sent (offered)"), (replied_s, "replies")):
        counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
        axis.stairs(counts / width, edges, label=name, linewidth=0.9)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("wall time from the start (s)")
    axis.set_ylabel("messages / s")
    axis.set_title("network throughput")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def latency_percentiles(percentiles_ms: Mapping[float, float], path: Path) -> None:
    """Latency (scheduled send to reply) against percentile, on the usual HDR axis: the
    x position of percentile p is 1 / (1 - p), so the tail gets the room."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    points = sorted((p, v) for p, v in percentiles_ms.items() if p < 100.0)
    if points:
        x = np.asarray([1.0 / (1.0 - p / 100.0) for p, _ in points])
        axis.plot(x, [v for _, v in points], marker="o", linewidth=0.9)
        axis.set_xscale("log")
        axis.set_xticks(x)
        axis.set_xticklabels([f"{p:g}%" for p, _ in points])
    axis.set_xlabel("percentile")
    axis.set_ylabel("latency (ms)")
    axis.set_title("latency from the scheduled send to the reply")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
