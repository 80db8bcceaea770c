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
