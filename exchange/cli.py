"""The `jinlian` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from exchange.venue import wire
from exchange.venue.venue import Venue
from matching.engine import MatchingEngine
from matching.types import name_of


def run_match(lines: Iterable[bytes], out: BinaryIO, *, final_book: bool) -> int:
    """Apply JSON-lines commands to a fresh matching engine, writing JSON-lines events."""
    engine = MatchingEngine()
    _run_lines(lines, out, wire.parse_line, engine.apply)
    if final_book:
        _write_books(engine, out)
    out.flush()
    return 0


def run_venue(
    lines: Iterable[bytes],
    out: BinaryIO,
    *,
    operator: str,
    regulator: str,
    final_book: bool,
    state_hash: bool,
) -> int:
    """Apply JSON-lines venue commands to a fresh venue, writing JSON-lines events."""
    venue = Venue(operator=operator, regulator=regulator)
    _run_lines(lines, out, wire.parse_venue_line, venue.apply)
    if final_book:
        _write_books(venue.matching, out)
    if state_hash:
        out.write(orjson.dumps({"type": "state", "state_hash": venue.state_hash()}) + b"\n")
    out.flush()
    return 0


def _run_lines(
    lines: Iterable[bytes],
    out: BinaryIO,
    parse: Callable[[bytes], Any],
    apply: Callable[[Any], Sequence[Any]],
) -> None:
    write = out.write
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = parse(line)
        if isinstance(parsed, wire.WireError):
            write(orjson.dumps(parsed.to_dict(line=number)) + b"\n")
            continue
        for event in apply(parsed):
            write(orjson.dumps(wire.event_to_dict(event)) + b"\n")


def _write_books(engine: MatchingEngine, out: BinaryIO) -> None:
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
        out.write(orjson.dumps({"type": "book", "symbol": symbol, "orders": orders}) + b"\n")


def _match(arguments: argparse.Namespace) -> int:
    return run_match(sys.stdin.buffer, sys.stdout.buffer, final_book=arguments.final_book)


def _venue(arguments: argparse.Namespace) -> int:
    return run_venue(
        sys.stdin.buffer,
        sys.stdout.buffer,
        operator=arguments.operator,
        regulator=arguments.regulator,
        final_book=arguments.final_book,
        state_hash=arguments.state_hash,
    )


def _init(arguments: argparse.Namespace) -> int:
    from exchange.consortium.init import indexing_nodes, init_consortium

    try:
        genesis = init_consortium(
            arguments.directory, members=arguments.members, brokers=arguments.brokers
        )
    except (ValueError, FileExistsError) as error:
        print(f"jinlian init: {error}", file=sys.stderr)
        return 2
    voters = sum(member.voting for member in genesis.members)
    print(
        f"wrote {arguments.directory}/genesis.json (hash {genesis.hash.hex()[:16]}...): "
        f"exchange + {voters} voting members (quorum {genesis.quorum()}), "
        f"{len(genesis.brokers)} brokers, {len(genesis.instruments)} instruments"
    )
    indexing = indexing_nodes(arguments.directory)
    for member in genesis.members:
        index = "indexes" if member.name in indexing else ""
        print(f"  {member.name:<12} {member.role.value:<10} {member.address:<16} {index}".rstrip())
    print(
        f'analysts\' tables: built by {", ".join(indexing)} (node.json "index"); any other '
        f"node builds them on demand with `jinlian index {arguments.directory}/<member>`"
    )
    return 0


def _bench(arguments: argparse.Namespace) -> int:
    if arguments.target == "gateway":
        from exchange.bench import gateway_bench

        return gateway_bench.main(arguments)
    if arguments.target == "simulate":
        from simulator import bench as simulate_bench

        simulated: int = simulate_bench.main(arguments)
        return simulated
    if arguments.target == "ledger":
        from exchange.bench import ledger_bench

        return ledger_bench.main(arguments)
    if arguments.target == "machine":
        from exchange.bench import machine_bench

        outcome: int = machine_bench.main(arguments)
        return outcome
    if arguments.target == "finance":
        from exchange.bench import finance_bench

        financed: int = finance_bench.main(arguments)
        return financed
    if arguments.target == "venue":
        from exchange.bench import venue_bench

        result: int = venue_bench.main(arguments)
        return result
    from exchange.bench import matching_bench

    return matching_bench.main(arguments)


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="a shipped scenario (smoke, realistic, stress) or a file")
    parser.add_argument(
        "--mode", choices=["inprocess", "network"], default="inprocess",
        help="inprocess: a virtual clock drives the venue and builds the ledger (no sockets); "
             "network: client processes trade with a running consortium over the broker API",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="the run's only source of randomness")
    parser.add_argument(
        "--out", type=Path, help="output directory, empty or absent (default: sim-SCENARIO-seedN)"
    )
    parser.add_argument("--no-ledger", action="store_true",
                        help="in-process: the venue alone, no blocks and no consortium (fast); "
                             "the simulator's tables and report only")  # fmt: skip
    sweep = parser.add_argument_group("sweeps (the scenario's [sweep] table)")
    sweep.add_argument("--sweep", action="store_true",
                       help="run every point of the grid, each in a worker process, into "
                            "--out/point-K, and write --out/results.parquet")  # fmt: skip
    sweep.add_argument("--point", type=int, metavar="K", help="run point K of the grid alone")
    sweep.add_argument("--workers", type=int, help="worker processes [one per core]")
    sweep.add_argument("--executor", default="local",
                       help="local (worker processes) or dask://HOST:PORT (a Dask scheduler; "
                            "needs the `dask` extra) [local]")  # fmt: skip
    network = parser.add_argument_group("network mode")
    network.add_argument("--speed", type=float, default=1.0,
                         help="virtual seconds per wall second (time compression) [1]")  # fmt: skip
    network.add_argument("--connect", metavar="ADDRESS",
                         help="the running exchange (host:port); default: start a consortium "
                              "for the scenario in --out and stop it after the run")  # fmt: skip
    network.add_argument(
        "--consortium",
        type=Path,
        metavar="DIR",
        help="with --connect: the consortium directory (genesis, keys)",
    )
    network.add_argument(
        "--processes",
        type=int,
        default=2,
        help="client processes, brokers partitioned among them [2]",
    )
    network.add_argument(
        "--base-port", type=int, default=7400, help="the local consortium's first port [7400]"
    )
    network.add_argument("--init-only", action="store_true",
                         help="only write the scenario's consortium into --out (to start it "
                              "with `jinlian up` and --connect to it)")  # fmt: skip


def _simulate(arguments: argparse.Namespace) -> int:
    from simulator import cli as simulate_cli

    return simulate_cli.main(arguments)


def _demo(arguments: argparse.Namespace) -> int:
    from exchange import demo

    return demo.main()


def _build(arguments: argparse.Namespace) -> int:
    from exchange import compiled_build

    return compiled_build.main(arguments)


def _verify(arguments: argparse.Namespace) -> int:
    from exchange.consortium import audit as ledger_audit

    try:
        report = ledger_audit.verify_node(arguments.node)
    except ledger_audit.UsageError as error:
        print(f"jinlian verify: {error}", file=sys.stderr)
        return 2
    print(ledger_audit.format_report(report))
    return 0 if report.ok else 1


def _index(arguments: argparse.Namespace) -> int:
    from exchange.consortium import audit as ledger_audit

    try:
        before, after = ledger_audit.index_node(arguments.node)
    except ledger_audit.UsageError as error:
        print(f"jinlian index: {error}", file=sys.stderr)
        return 1
    print(
        f"indexed blocks {before + 1} to {after}: the derived tables hold blocks 1 to {after}"
        if after > before
        else f"the derived tables already hold every block (1 to {after})"
    )
    return 0


def _receipt(arguments: argparse.Namespace) -> int:
    from exchange.consortium import audit as ledger_audit
    from ledger.receipt import ReceiptError

    try:
        receipt = (
            ledger_audit.trade_receipt(arguments.node, arguments.trade)
            if arguments.order is None
            else ledger_audit.order_receipt(arguments.node, arguments.order)
        )
        data = ledger_audit.receipt_bytes(receipt)
        if arguments.out is None:
            sys.stdout.buffer.write(data)
        else:
            arguments.out.write_bytes(data)
    except (ledger_audit.UsageError, ReceiptError) as error:
        print(f"jinlian receipt: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"jinlian receipt: {arguments.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def _verify_receipt(arguments: argparse.Namespace) -> int:
    from exchange.consortium import audit as ledger_audit

    try:
        failure = ledger_audit.verify_receipt_file(arguments.file, arguments.genesis)
    except ledger_audit.UsageError as error:
        print(f"jinlian verify-receipt: {error}", file=sys.stderr)
        return 2
    print("OK" if failure is None else f"FAILED: {failure}")
    return 0 if failure is None else 1


def _export(arguments: argparse.Namespace) -> int:
    from exchange.analysis.export import export_node
    from exchange.consortium.audit import UsageError

    try:
        counts = export_node(arguments.node, arguments.out)
    except UsageError as error:
        print(f"jinlian export: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"jinlian export: {arguments.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    for name, rows in counts.items():
        print(f"{arguments.out / (name + '.parquet')}: {rows} rows")
    return 0


TTL_UNITS_NS: dict[str, int] = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_ttl(text: str) -> int:
    """`30s`, `15m` or `8h` in ns. Raises ValueError naming the text."""
    number, unit = text[:-1], text[-1:]
    if unit not in TTL_UNITS_NS or not number.isdigit() or len(number) > 6:
        raise ValueError(f"--ttl {text!r:.40} is not a duration such as 30s, 15m or 8h")
    return int(number) * TTL_UNITS_NS[unit]


def identity_token(directory: Path, ttl_ns: int, now_ns: int) -> str:
    """A token (`ledger.auth`) minted from the key in `directory` (DIR/<member> or
    DIR/brokers/<broker>, as `jinlian init` lays them out) for the identity that the
    consortium's genesis gives that key. Raises ValueError or OSError naming the problem."""
    from ledger import auth
    from ledger.genesis import load_genesis
    from ledger.keys import load_private_key

    name = directory.resolve().name
    found = [p / "genesis.json" for p in (directory, *directory.resolve().parents[:2])]
    genesis_path = next((path for path in found if path.is_file()), None)
    if genesis_path is None:
        raise ValueError(f"no genesis.json in {directory} or the two directories above it")
    genesis = load_genesis(genesis_path)
    keys = [member.public_key for member in genesis.members if member.name == name]
    keys += [broker.public_key for broker in genesis.brokers if broker.name == name]
    if not keys:
        raise ValueError(f"{name!r} is neither a member nor a broker in {genesis_path}")
    key = load_private_key(directory / "key.pem")
    if key.public_key not in keys:
        raise ValueError(f"{directory / 'key.pem'} is not {name}'s key in {genesis_path}")
    return auth.mint_token(key, genesis.chain_id, name, now_ns, ttl_ns)


def _token(arguments: argparse.Namespace) -> int:
    import time

    try:
        token = identity_token(arguments.directory, parse_ttl(arguments.ttl), time.time_ns())
    except (ValueError, OSError) as error:
        print(f"jinlian token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _add_audit_commands(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check a node's whole store from the genesis (signatures, re-execution)"
    )
    verify.add_argument("node", type=Path, help="the node directory, DIR/<member>")
    verify.set_defaults(run=_verify)
    index = commands.add_parser(
        "index", help="build a node's derived tables (orders, trades...) up to its tip"
    )
    index.add_argument("node", type=Path, help="the node directory, DIR/<member>")
    index.set_defaults(run=_index)
    receipt = commands.add_parser(
        "receipt", help="write the receipt of a trade or an order with its proofs"
    )
    receipt.add_argument("node", type=Path, help="the node directory, DIR/<member>")
    which = receipt.add_mutually_exclusive_group(required=True)
    which.add_argument("--trade", type=int, help="the trade id: the command that traded")
    which.add_argument("--order", type=int, help="the order id: the command that placed it")
    receipt.add_argument("--out", type=Path, help="the file to write (default: stdout)")
    receipt.set_defaults(run=_receipt)
    check = commands.add_parser("verify-receipt", help="check a trade or order receipt offline")
    check.add_argument("file", type=Path)
    check.add_argument("--genesis", type=Path, required=True, help="the genesis file")
    check.set_defaults(run=_verify_receipt)
    export = commands.add_parser("export", help="write a node's ledger tables as Parquet files")
    export.add_argument("node", type=Path, help="the node directory, DIR/<member>")
    export.add_argument("--out", type=Path, required=True, help="the directory to write")
    export.set_defaults(run=_export)
    token = commands.add_parser(
        "token",
        help="print a short-lived REST token (header 'Authorization: Jinlian-Token <token>')",
    )
    token.add_argument("directory", type=Path, help="DIR/<member> or DIR/brokers/<broker>")
    token.add_argument("--ttl", default="8h", help="lifetime: 30s, 15m, 8h; at most 24h [8h]")
    token.set_defaults(run=_token)
    soak = commands.add_parser(
        "soak", help="run a consortium under every command kind and kill -9s, then check it"
    )
    soak.add_argument("--minutes", type=float, required=True, help="how long to drive it")
    soak.add_argument("--dir", type=Path, help="an empty directory (default: a new temp dir)")
    soak.add_argument("--seed", type=int, default=1, help="the workload's and kills' seed [1]")
    soak.add_argument(
        "--past-windows", action="store_true",
        help="go on after --minutes until the outcome windows are passed (10 minutes more at most)",
    )  # fmt: skip
    soak.set_defaults(run=_soak)


def _soak(arguments: argparse.Namespace) -> int:
    from exchange.consortium import soak

    logging.basicConfig(level=logging.ERROR, format="%(asctime)s soak %(levelname)s %(message)s")
    return soak.main(arguments)


def _node(arguments: argparse.Namespace) -> int:
    from exchange.consortium import nodes

    return _run_node(lambda: nodes.run_node(arguments.directory), "node")


def _exchange(arguments: argparse.Namespace) -> int:
    from exchange.consortium import nodes

    return _run_node(
        lambda: nodes.run_exchange(
            arguments.directory, feed=arguments.feed, recover=arguments.recover
        ),
        "exchange",
    )


def _up(arguments: argparse.Namespace) -> int:
    from exchange.consortium import nodes

    return _run_node(lambda: nodes.run_up(arguments.directory, demo=arguments.demo), "up")


def _run_node(run: Callable[[], int], name: str) -> int:
    from exchange.consortium.audit import UsageError

    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s {name} %(levelname)s %(message)s"
    )
    try:
        return run()
    except (UsageError, OSError, ValueError) as error:
        print(f"jinlian {name}: {error}", file=sys.stderr)
        return 2


def _add_node_commands(commands: Any) -> None:
    node = commands.add_parser("node", help="run one member node (DIR/<member>)")
    node.add_argument("directory", type=Path)
    node.set_defaults(run=_node)
    exchange = commands.add_parser("exchange", help="run the exchange of a consortium DIR")
    exchange.add_argument("directory", type=Path)
    exchange.add_argument(
        "--feed", action="store_true",
        help="also serve /submit, the raw sequencer feed (benchmarks and tests on a private host:"
        " it takes any command from anyone who reaches the port)",
    )  # fmt: skip
    exchange.add_argument(
        "--recover", action="store_true",
        help="rebuild a lost exchange: its store is empty (a new machine with the old key); "
        "the blocks come back from the members (docs/ledger.md, Recovery)",
    )  # fmt: skip
    exchange.set_defaults(run=_exchange)
    up = commands.add_parser(
        "up", help="start the exchange and every member as processes (init DIR if empty)"
    )
    up.add_argument("directory", type=Path, nargs="?", default=Path("consortium"))
    up.add_argument("--demo", action="store_true", help="run a scripted trading session")
    up.set_defaults(run=_up)


def _seeded_flow_options(target: argparse.ArgumentParser, *, messages: int) -> None:
    """The options of a benchmark over the seeded flow (`exchange.bench.flow`)."""
    target.add_argument("--seed", type=int, default=1)
    target.add_argument("--messages", type=int, default=messages, help="timed commands")
    target.add_argument("--depth", type=int, default=20_000, help="orders resting first")
    target.add_argument("--rounds", type=int, default=3, help="alternating rounds; median kept")


def _add_finance_bench(targets: Any) -> None:
    finance = targets.add_parser(
        "finance", help="supply-chain finance (splits, transfers, maturity) beside venue trading"
    )
    _seeded_flow_options(finance, messages=50_000)
    finance.add_argument("--pieces", type=int, default=2_000, help="commitments issued")
    finance.add_argument("--suppliers", type=int, default=200)
    finance.add_argument("--json", action="store_true", help="one JSON object on stdout")
    finance.set_defaults(run=_bench)


def _simulate_bench_arguments(target: argparse.ArgumentParser) -> None:
    target.add_argument("--scenario", default="realistic", help="a shipped name or file")
    target.add_argument("--seed", type=int, default=1)
    target.add_argument("--json", action="store_true", help="one JSON object on stdout")
    target.add_argument(
        "--no-ledger", action="store_true",
        help="only the runs without the ledger (under a minute, not several)",
    )  # fmt: skip
    target.add_argument(
        "--rounds", type=int, default=2,
        help="runs without the ledger, each with a timed one (medians)",
    )  # fmt: skip
    target.set_defaults(run=_bench)


def _add_bench_commands(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks, run on purpose")
    targets = bench.add_subparsers(dest="target", required=True)
    matching = targets.add_parser("matching", help="the matching engine against a bare baseline")
    _seeded_flow_options(matching, messages=200_000)
    matching.add_argument(
        "--memory-orders", type=int, default=1_000_000, help="resting orders for the memory figure"
    )
    matching.add_argument(
        "--flow",
        choices=("dense", "sparse-deep", "sparse-shallow"),
        default="dense",
        help="dense: orders crowd a few levels near the touch; sparse: most open a new level",
    )
    matching.set_defaults(depth=None)  # each flow's own: 20,000, or 500 for sparse-shallow
    matching.add_argument("--json", action="store_true", help="one JSON object on stdout")
    matching.set_defaults(run=_bench)
    venue_target = targets.add_parser(
        "venue", help="the venue (funding, holds and locks, DvP) against matching alone"
    )
    _seeded_flow_options(venue_target, messages=200_000)
    venue_target.add_argument(
        "--net-trades", type=int, default=1_000_000, help="trades in the model-3 netting figure"
    )
    venue_target.add_argument("--net-accounts", type=int, default=1_000)
    venue_target.add_argument("--json", action="store_true", help="one JSON object on stdout")
    venue_target.set_defaults(run=_bench)
    _add_finance_bench(targets)
    machine_target = targets.add_parser(
        "machine", help="the ledger's state machine (JSON in, event bytes, state hash) vs venue"
    )
    _seeded_flow_options(machine_target, messages=100_000)
    machine_target.add_argument("--block", type=int, default=1_000, help="commands per block")
    machine_target.add_argument("--json", action="store_true", help="one JSON object on stdout")
    machine_target.set_defaults(run=_bench)

    ledger_target = targets.add_parser(
        "ledger", help="exchange + 4 members as processes: commands finalized per second"
    )
    ledger_target.add_argument("--seed", type=int, default=1)
    ledger_target.add_argument(
        "--messages", type=int, default=50_000, help="commands of the saturation run"
    )
    ledger_target.add_argument("--depth", type=int, default=20_000, help="orders resting first")
    ledger_target.add_argument("--base-port", type=int, default=7600, help="first of 5 ports")
    ledger_target.add_argument(
        "--rate", type=int, default=None, help="one open-loop run at this many commands/s"
    )
    ledger_target.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of each open-loop run (a run shorter than 30 s never counts as sustained)",
    )
    ledger_target.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="N",
        help="feed N commands, then print RSS and the store's bytes per command",
    )
    ledger_target.add_argument(
        "--steps", type=int, default=6, help="open-loop runs of the sweep for the max rate"
    )
    ledger_target.add_argument(
        "--viewers", type=int, default=0,
        help="web console market pages open on the exchange during the run (docs/console.md)",
    )  # fmt: skip
    ledger_target.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ledger_target.set_defaults(run=_bench)
    simulate_target = targets.add_parser(
        "simulate", help="the realistic scenario in-process: agents + venue + blocks, messages/s"
    )
    _simulate_bench_arguments(simulate_target)

    gateway_target = targets.add_parser(
        "gateway", help="brokers' orders over WebSockets into the running consortium, open-loop"
    )
    gateway_target.add_argument(
        "--rates", type=int, nargs="+", default=[1_000, 2_000, 4_000, 7_000, 10_000, 14_000],
        help="offered orders/s, stepped up until one is not sustained",
    )  # fmt: skip
    gateway_target.add_argument("--seconds", type=float, default=4.0, help="per offered rate")
    gateway_target.add_argument("--sessions", type=int, default=2, help="client processes")
    gateway_target.add_argument("--base-port", type=int, default=7700,
                                help="first of 5 ports (the ledger run: 10 above)")  # fmt: skip
    gateway_target.add_argument("--ledger-messages", type=int, default=10_000,
                                help="the same-run bench ledger's saturation run")  # fmt: skip
    gateway_target.add_argument("--ledger-depth", type=int, default=5_000,
                                help="the same-run bench ledger's resting orders")  # fmt: skip
    gateway_target.add_argument("--ledger-steps", type=int, default=4,
                                help="the same-run bench ledger's sweep steps")  # fmt: skip
    gateway_target.add_argument("--ledger-seconds", type=float, default=3.0,
                                help="each sweep step of the same-run bench ledger")  # fmt: skip
    gateway_target.add_argument("--json", action="store_true", help="one JSON object on stdout")
    gateway_target.set_defaults(run=_bench)


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

    venue = commands.add_parser(
        "venue", help="the venue (matching + settlement): JSON-lines commands in, events out"
    )
    venue.add_argument("--operator", default="EXCHANGE", help="the exchange's member id")
    venue.add_argument("--regulator", default="CSRC", help="the regulator's member id")
    venue.add_argument("--final-book", action="store_true", help="end with the books")
    venue.add_argument("--state-hash", action="store_true", help="end with the state hash")
    venue.set_defaults(run=_venue)

    init = commands.add_parser(
        "init", help="write genesis, keys and node configs for a local consortium"
    )
    init.add_argument("directory", type=Path)
    init.add_argument("--members", type=int, default=4, help="voting members, 3f + 1")
    init.add_argument("--brokers", type=int, default=3)
    init.set_defaults(run=_init)

    _add_bench_commands(commands)

    simulate = commands.add_parser(
        "simulate", help="run a market simulation scenario; write its ledger, tables and charts"
    )
    _simulate_arguments(simulate)
    simulate.set_defaults(run=_simulate)

    demo = commands.add_parser("demo", help="a short in-process trading session")
    demo.set_defaults(run=_demo)
    build = commands.add_parser(
        "build", help="compile the pure core with mypyc (once per source hash; docs/venue.md)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument(
        "--check", action="store_true", help="only say whether a C compiler and headers are here"
    )
    build.set_defaults(run=_build)
    _add_audit_commands(commands)
    _add_node_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    result: int = arguments.run(arguments)
    return result


if __name__ == "__main__":
    sys.exit(main())
