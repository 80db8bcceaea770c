"""PNG charts of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend
import numpy as np
import pyarrow as pa


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
