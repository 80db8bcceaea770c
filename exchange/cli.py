"""The `jinlian` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import orjson

from exchange import wire
from matching.engine import MatchingEngine
from matching.types import name_of


def run_match(lines: Iterable[bytes], out: BinaryIO, *, final_book: bool) -> int:
    """Apply JSON-lines commands to a fresh engine, writing JSON-lines events. Returns 0."""
    engine = MatchingEngine()
    write = out.write
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = wire.parse_line(line)
        if isinstance(parsed, wire.WireError):
            write(orjson.dumps(parsed.to_dict(line=number)) + b"\n")
            continue
        for event in engine.apply(parsed):
            write(orjson.dumps(wire.event_to_dict(event)) + b"\n")
    if final_book:
        for symbol in engine.symbols():
            orders = [
                {
                    "order_id": order.order_id,
                    "side": name_of(order.side),
                    "price": order.price,
                    "quantity": order.quantity,
                }
                for order in engine.orders(symbol)
            ]
            write(orjson.dumps({"type": "book", "symbol": symbol, "orders": orders}) + b"\n")
    out.flush()
    return 0


def _match(arguments: argparse.Namespace) -> int:
    return run_match(sys.stdin.buffer, sys.stdout.buffer, final_book=arguments.final_book)


def _bench(arguments: argparse.Namespace) -> int:
    from exchange.bench import matching_bench

    return matching_bench.main(arguments)


def _demo(arguments: argparse.Namespace) -> int:
    from exchange import demo

    return demo.main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jinlian", description="Jinlian: a securities exchange on a shared ledger."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    match = commands.add_parser(
        "match", help="matching engine: JSON-lines commands on stdin, events on stdout"
    )
    match.add_argument(
        "--final-book", action="store_true", help="end with one book line per instrument"
    )
    match.set_defaults(run=_match)

    bench = commands.add_parser("bench", help="benchmarks, run on purpose")
    targets = bench.add_subparsers(dest="target", required=True)
    matching = targets.add_parser("matching", help="the matching engine against a bare baseline")
    matching.add_argument("--seed", type=int, default=1)
    matching.add_argument("--messages", type=int, default=200_000, help="timed messages")
    matching.add_argument("--depth", type=int, default=20_000, help="orders resting at the start")
    matching.add_argument("--rounds", type=int, default=3, help="alternating rounds; median kept")
    matching.add_argument(
        "--memory-orders", type=int, default=1_000_000, help="resting orders for the memory figure"
    )
    matching.add_argument("--json", action="store_true", help="one JSON object on stdout")
    matching.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="a short in-process trading session")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    result: int = arguments.run(arguments)
    return result


if __name__ == "__main__":
    sys.exit(main())
