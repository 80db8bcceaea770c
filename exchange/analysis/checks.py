"""Verification, reconciliation and conservation, callable from a notebook.

Nothing here re-implements a check of the ledger: the whole-store audit is `ledger.audit`
(through `exchange.consortium.audit.verify_node`, as `jinlian verify` runs it), certificates are
checked by `ledger.block.check_certificate`, Merkle proofs by `ledger.receipt` (the receipt a
broker would be given, checked as `jinlian verify-receipt` does), and re-execution is
`ledger.machine.re_execute` on a `VenueMachine` built from the genesis. This module arranges
their answers as DataFrames and adds what is specific to analysis:

- `reconcile`: member nodes compared block by block (header hash, state hash, trades and
  balance changes), the real-time replacement for end-of-day reconciliation files;
- `conservation`: per asset, the sum of all holdings equals the genesis supply plus what was
  issued or deposited minus what was redeemed or withdrawn, and no holding is negative;
- `state_balances`: the re-executed venue's balances (available, locked) at the tip, compared
  with the balances summed from the derived tables.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pandas as pd

from exchange.analysis.tables import IndexBehindWarning, NodeLedger
from exchange.consortium.audit import find_trade, trade_in, verify_node
from exchange.consortium.init import venue_from_genesis
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from ledger.audit import AuditReport
from ledger.block import Block, BlockHeader, check_certificate
from ledger.canonical import sha256
from ledger.machine import execute, re_execute
from ledger.receipt import ReceiptError, build_receipt, check_receipt

MINTING: Final = {"issued": 1, "deposited": 1, "redeemed": -1, "withdrawn": -1, "genesis": 1,
                  "bond_redeemed": -1}  # fmt: skip  # its cash legs net to zero


class ReplayError(Exception):
    """Re-executing the stored blocks did not reproduce a header: the store is not sound."""


def audit(directory: Path | str) -> AuditReport:
    """`jinlian verify` on `DIR/<member>`: signatures, chain, re-execution of every block from
    the genesis, stored events, certificates. Raises `UsageError` for a node that cannot be
    opened; anything wrong inside the store is the report's `failure`."""
    return verify_node(Path(directory))


def state_hash_reproduced(ledger: NodeLedger, report: AuditReport) -> bool:
    """True if the audit's re-execution from the genesis ends at the tip header's state hash."""
    tip = ledger.store.tip()
    if tip is None or report.state_hash is None or not report.ok:
        return False
    header = ledger.store.header(tip[0])
    return header is not None and header.state_hash == report.state_hash


def certificate_checks(ledger: NodeLedger) -> pd.DataFrame:
    """One row per stored block: whether it is certified, by how many votes, and the first
    failure of its certificate against the genesis voters and quorum (None when it holds)."""
    genesis = ledger.genesis
    voters, quorum = genesis.voters(), genesis.quorum()
    tip = ledger.store.tip()
    records = []
    for height in range(1, 0 if tip is None else tip[0] + 1):
        header = ledger.store.header(height)
        certificate = ledger.store.certificate(height)
        failure = None
        if header is not None and certificate is not None:
            error = check_certificate(certificate, header, voters, quorum)
            failure = None if error is None else str(error)
        records.append(
            {
                "height": height,
                "certified": certificate is not None,
                "votes": 0 if certificate is None else len(certificate.votes),
                "quorum": quorum,
                "failure": failure,
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["height", "certified", "votes", "quorum", "failure"]
    )


def trade_proofs(ledger: NodeLedger, trade_ids: Sequence[int]) -> pd.DataFrame:
    """For each trade id: build its receipt from the store (header, certificate, RFC 6962
    inclusion proof of the receipt of the command that traded, in the block's receipts tree) and
    check it with only the genesis as trust root. `verified` is True when the receipt proves
    that very trade final; otherwise `failure` says why (unknown trade, uncertified block, bad
    proof)."""
    genesis = ledger.genesis
    records = []
    for trade_id in trade_ids:
        record: dict[str, Any] = {"trade_id": trade_id, "height": None, "leaf_index": None,
                                  "tree_size": None, "proof_hashes": None, "verified": False,
                                  "failure": None}  # fmt: skip
        try:
            where = find_trade(ledger.store, int(trade_id))
            if where is None:
                raise ReceiptError(f"trade {trade_id} is not in the store")
            receipt = build_receipt(ledger.store, *where)
            leaf = check_receipt(
                receipt,
                genesis_hash=genesis.hash,
                voters=genesis.voters(),
                quorum=genesis.quorum(),
            )
            if trade_in(leaf, int(trade_id)) is None:
                raise ReceiptError(f"the proven leaf has no trade {trade_id}: {leaf}")
            record.update(height=where[0], leaf_index=where[1], tree_size=receipt["tree_size"],
                          proof_hashes=len(receipt["proof"]), verified=True)  # fmt: skip
        except ReceiptError as error:
            record["failure"] = str(error)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    return frame.astype(
        {"height": "Int64", "leaf_index": "Int64", "tree_size": "Int64", "proof_hashes": "Int64"}
    )


def replay(ledger: NodeLedger) -> Iterator[tuple[BlockHeader, Venue]]:
    """Re-execute the stored blocks from the genesis, yielding each header with the venue in
    the state after it (the same object each time: read it, do not keep it). Raises
    `ReplayError` at the first block whose re-execution gives another receipts root or state
    hash. O(commands)."""
    machine = VenueMachine(venue_from_genesis(ledger.genesis))
    tip = ledger.store.tip()
    for height in range(1, 0 if tip is None else tip[0] + 1):
        block = ledger.store.block(height)
        if block is None:
            raise ReplayError(f"block {height} is missing below the tip")
        _, divergence = re_execute(machine, block)
        if divergence is not None:
            raise ReplayError(str(divergence))
        yield block.header, machine.venue


def venue_holdings(venue: Venue) -> pd.DataFrame:
    """Every account's available and locked balance of every asset in `venue`, nonzero rows."""
    engine = venue.settlement
    records = [
        {"account": account, "asset": asset, "available": engine.available(asset, account),
         "locked": engine.locked(asset, account)}
        for asset in engine.assets()
        for account in engine.accounts()
    ]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=["account", "asset", "available", "locked"])
    frame["holding"] = frame["available"] + frame["locked"]
    return frame[frame["holding"] != 0].reset_index(drop=True)


def state_balances(ledger: NodeLedger, changes: pd.DataFrame) -> pd.DataFrame:
    """The re-executed state at the tip against the derived tables: one row per account and
    asset with `available`, `locked`, `holding` from the venue, `table_holding` summed from
    `changes` (`tables.holding_changes`) and `matches`."""
    final: Venue | None = None
    for _, venue in replay(ledger):
        final = venue
    state = venue_holdings(venue_from_genesis(ledger.genesis) if final is None else final)
    table = (
        changes.groupby(["account", "asset"])["holding_delta"]
        .sum()
        .reset_index(name="table_holding")
    )
    merged = state.merge(table, on=["account", "asset"], how="outer")
    merged = merged.fillna(
        {"available": 0, "locked": 0, "holding": 0, "table_holding": 0}
    ).astype({"available": "int64", "locked": "int64", "holding": "int64",
              "table_holding": "int64"})  # fmt: skip
    merged["matches"] = merged["holding"] == merged["table_holding"]
    return merged[(merged["holding"] != 0) | (merged["table_holding"] != 0)].reset_index(drop=True)


def conservation(changes: pd.DataFrame) -> pd.DataFrame:
    """Per asset: the supply from the genesis and from issuance (issued and deposited, minus
    redeemed and withdrawn), the sum of every holding at the tip, the total of all other
    movements (trades, transfers, settlement, fees: zero when nothing is created or lost), the
    lowest holding any account ever had, and `conserved` (holdings = supply, movements net to
    zero, no negative holding)."""
    sign = changes["event"].map(MINTING)
    minted = changes[sign.notna()]
    moved = changes[sign.isna()]
    with_holding = changes.assign(
        holding=changes.groupby(["account", "asset"])["holding_delta"].cumsum()
    )
    frame = pd.DataFrame(
        {
            "supply": minted.groupby("asset")["holding_delta"].sum(),
            "holdings": changes.groupby("asset")["holding_delta"].sum(),
            "movements_net": moved.groupby("asset")["holding_delta"].sum(),
            "lowest_holding": with_holding.groupby("asset")["holding"].min(),
        }
    )
    frame = frame.fillna(0).astype("int64")
    frame["conserved"] = (
        (frame["supply"] == frame["holdings"])
        & (frame["movements_net"] == 0)
        & (frame["lowest_holding"] >= 0)
    )
    return frame.reset_index(names="asset")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """What one node says about each height, for `reconcile`."""

    name: str
    headers: dict[int, tuple[str, str]]  # height -> (header hash, state hash), hex
    trades: dict[int, str]  # height -> digest of the block's trades rows
    balances: dict[int, str]  # height -> digest of the block's balance_changes rows
    certified_height: int
    indexed_height: int = 0  # the derived rows exist up to here (a node may not index)


def node_view(ledger: NodeLedger) -> NodeView:
    """Read one node's headers and per-block digests of its derived rows. O(size)."""
    headers = {}
    for height, block_hash, header in ledger.store.read("SELECT height, hash, header FROM blocks"):
        headers[int(height)] = (bytes(block_hash).hex(), orjson.loads(header)["state_hash"])
    return NodeView(
        name=ledger.name,
        headers=headers,
        trades=_digests(ledger, "trades", "trade_id"),
        balances=_digests(ledger, "balance_changes", "event_idx, leg"),
        certified_height=ledger.store.certified_height(),
        indexed_height=ledger.indexed_height,
    )


def _digests(ledger: NodeLedger, table: str, order: str) -> dict[int, str]:
    rows = ledger.store.read(f"SELECT * FROM {table} ORDER BY height, {order}")
    by_height: dict[int, list[Any]] = {}
    height_column = 1 if table == "trades" else 0
    for row in rows:
        by_height.setdefault(int(row[height_column]), []).append(list(row))
    return {h: sha256(orjson.dumps(values)).hex()[:16] for h, values in by_height.items()}


def reconcile(directories: Sequence[Path | str]) -> pd.DataFrame:
    """Member nodes compared block by block. One row per height up to the highest tip, with
    per node its header hash (short), and `nodes` (how many hold the block), `agree` (every
    node holding it has the same header hash, state hash, trades and balance changes) and
    `differs` (which of those differ). A node behind the others is not a disagreement: its
    missing heights are counted in `missing`. Raises `UsageError` for a node that cannot be
    opened."""
    views = []
    for directory in directories:
        with warnings.catch_warnings():  # a node behind in indexing is handled per height
            warnings.simplefilter("ignore", IndexBehindWarning)
            with NodeLedger.open(directory) as ledger:
                views.append(node_view(ledger))
    top = max((max(view.headers, default=0) for view in views), default=0)
    records = []
    for height in range(1, top + 1):
        record: dict[str, Any] = {"height": height}
        present = [view for view in views if height in view.headers]
        for view in views:
            record[view.name] = view.headers.get(height, ("",))[0][:16] or None
        differs = []
        for what, get in _ASPECTS:
            # derived rows are compared among the nodes that have indexed this height: a node
            # that does not index (node.json "index": false) has none, which is no disagreement
            holders = (
                present
                if what in ("header", "state_hash")
                else [view for view in present if view.indexed_height >= height]
            )
            if len({get(view, height) for view in holders}) > 1:
                differs.append(what)
        record.update(nodes=len(present), missing=len(views) - len(present),
                      agree=not differs, differs=",".join(differs))  # fmt: skip
        records.append(record)
    return pd.DataFrame.from_records(records)


_ASPECTS: Final[tuple[tuple[str, Callable[[NodeView, int], object]], ...]] = (
    ("header", lambda view, height: view.headers[height][0]),
    ("state_hash", lambda view, height: view.headers[height][1]),
    ("trades", lambda view, height: view.trades.get(height)),
    ("balances", lambda view, height: view.balances.get(height)),
)


def reexecution(ledger: NodeLedger) -> pd.DataFrame:
    """An independent copy of the ledger's results: the node's stored commands re-executed
    from the genesis on a fresh venue. One row per height with the `receipts_root` and
    `state_hash` (hex) the re-execution computed, whatever the headers say. O(commands)."""
    machine = VenueMachine(venue_from_genesis(ledger.genesis))
    records = []
    for height, block_bytes in _stored_blocks(ledger):
        execution = execute(machine, block_bytes.commands, block_bytes.times_ns)
        records.append({"height": height, "receipts_root": execution.receipts_root.hex(),
                        "state_hash": execution.state_hash.hex()})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["height", "receipts_root", "state_hash"])


def _stored_blocks(ledger: NodeLedger) -> Iterator[tuple[int, Block]]:
    tip = ledger.store.tip()
    for height in range(1, 0 if tip is None else tip[0] + 1):
        block = ledger.store.block(height)
        if block is None:
            raise ReplayError(f"block {height} is missing below the tip")
        yield height, block


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    """`frame`: one row per height (see `reconcile_copies`); `copies`: the names of what was
    compared; `method`: one sentence saying what was compared with what."""

    frame: pd.DataFrame
    copies: list[str]
    method: str


REEXECUTION: Final = "re-execution"


def reconcile_copies(node: Path | str, consortium: Path | str) -> Reconciliation:
    """`node`'s ledger against every independent copy there is: every other member node of
    the `consortium` directory that holds a store (`reconcile`), and always a re-execution of
    `node`'s commands from the genesis (`reexecution`), whose state hash must equal every
    node's. A run that wrote one node (an in-process simulation writes `bank1` and the
    exchange's store) is compared with what there is and says so; a node is never compared
    with itself. `frame` has `reconcile`'s columns plus `re-execution` (the state hash it
    computed, short) and `agree` covering it too (`differs` names `re-execution`)."""
    node_path = Path(node).resolve()
    nodes = [node_path] + [path for path in member_nodes(consortium) if path.resolve() != node_path]
    frame = reconcile(nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexBehindWarning)
        with NodeLedger.open(node_path) as ledger:
            computed = reexecution(ledger)
            views = {node_path.name: node_view(ledger)}
        for path in nodes[1:]:
            with NodeLedger.open(path) as other:
                views[path.name] = node_view(other)
    states = dict(zip(computed["height"], computed["state_hash"], strict=True))
    frame[REEXECUTION] = [states.get(h, "")[:16] or None for h in frame["height"]]
    agree, differs = list(frame["agree"]), list(frame["differs"])
    for index, height in enumerate(frame["height"]):
        held = [view.headers[height][1] for view in views.values() if height in view.headers]
        if any(state != states.get(height) for state in held):
            agree[index] = False
            differs[index] = ",".join(filter(None, [differs[index], REEXECUTION]))
    frame["agree"], frame["differs"] = agree, differs
    names = [path.name for path in nodes]
    others = names[1:]
    method = (
        f"{names[0]}'s store against "
        + (f"the stores of {', '.join(others)} and " if others else "")
        + f"a re-execution of {names[0]}'s commands from the genesis"
        + ("" if others else " (no other member's store in this directory)")
    )
    return Reconciliation(frame=frame, copies=[*names, REEXECUTION], method=method)


def member_nodes(consortium: Path | str) -> list[Path]:
    """The node directories of a consortium directory that hold a block store, by name."""
    root = Path(consortium)
    return sorted(
        path.parent
        for path in root.glob("*/node.json")
        if (path.parent / orjson.loads(path.read_bytes()).get("store", "")).is_file()
    )
