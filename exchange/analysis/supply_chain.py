"""Supply-chain finance for analysts: the ledger's payment commitments as tables, and the
questions a core enterprise's treasurer or a factor's analyst asks of them.

The tables are folded from the stored events (`commitment_issued`, `commitment_split`, ...,
docs/supply_chain.md) in ledger order, read up to the tip like `blocks` and `commands`; no
derived table of the indexer holds them. Every row that comes from an event carries its
`height`, `event_idx` (its position among the block's events), `command_idx`, the command's
`time_ns` and `time`, and `day`, the trading day begun last (`day_begun`) when it happened.
Money is integer fen, days `yyyymmdd` integers.

- `days`: one row per trading day begun (`day_begun`), where maturities are paid.

- `participants`: one row per registered participant: bank, role, credit limit (0 until set).
- `commitments`: one row per piece (an issued commitment or a piece split from one): its
  lineage (`root`, `parent`, `depth`), `tier` (1 + the transfers down the supplier tiers in
  its chain; a financing adds none), issuer, holder and holder's role, amount, currency,
  maturity, invoice, recourse, `confirmed`, `pledged` (and `pledgee`), `status`
  (`outstanding` while live: unconfirmed, active or pledged; `split`, `paid`, `failed`),
  `paid` (fen its issuer paid), `recovered` (fen recovered through recourse, and from whom).
- `commitment_transfers`: one row per transfer (`kind` transfer) or financing (`kind`
  financing: `factor`, `price`, `discount` = amount - price, `days` from the financing's day to
  maturity).
- `commitment_payments`: one row per maturity payment (`paid`), failure (`failed`, with `due`,
  the issuer's `available` and the chain of `transferors`) and recourse claim
  (`recourse_claimed`, `recourse_failed` with its `reason`); `payer` is the issuer or the
  transferor claimed against, `moved` the fen that moved.
- `invoices`: one row per registered invoice: hashes, parties, amount, `confirmed`, the piece
  it backs.

`cash_changes` gives the cash each of these events moves, as rows of `holding_changes`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import pandas as pd
import pyarrow as pa

from exchange.analysis.schema import LEDGER_SCHEMAS
from ledger.block import Receipt

# the commands whose receipts can hold supply-chain events: every participant command and
# register_participant/set_credit_limit name a `participant`; maturities are paid at begin_day
_COMMAND_MARKERS: Final = (b"participant", b"begin_day", b"release_pledge")
SCF_EVENTS: Final = frozenset(
    {
        "day_begun",
        "participant_registered",
        "credit_limit_set",
        "invoice_registered",
        "invoice_confirmed",
        "commitment_issued",
        "commitment_confirmed",
        "commitment_split",
        "commitment_transferred",
        "commitment_financed",
        "commitment_pledged",
        "pledge_released",
        "commitment_paid",
        "commitment_failed",
        "recourse_claimed",
        "recourse_failed",
    }
)
LIVE: Final = "outstanding"
_DAY_FIELDS: Final = ("day", "height", "event_idx", "command_idx", "time_ns")
DAY_COUNT_DISCOUNT: Final = 360  # bill discounting's ACT/360, on the face amount
DAY_COUNT_YIELD: Final = 365  # the factor's return on the cash it paid, ACT/365


def yyyymmdd(day: int) -> datetime.date:
    return datetime.date(day // 10_000, day // 100 % 100, day % 100)


def days_between(first: int, last: int) -> int:
    """Calendar days from `first` to `last` (yyyymmdd)."""
    return (yyyymmdd(last) - yyyymmdd(first)).days


@dataclass(slots=True)
class _Fold:
    day: int = 0
    days: list[dict[str, Any]] = field(default_factory=list)
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    pieces: dict[int, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)


TABLES: Final = (
    "days",
    "participants",
    "commitments",
    "commitment_transfers",
    "commitment_payments",
    "invoices",
)


def scf_events(receipts: Iterable[tuple[int, list[Receipt]]]) -> Iterator[dict[str, Any]]:
    """The supply-chain events (and `day_begun`) of the blocks, in ledger order, each with its
    height, event_idx, command_idx and time_ns. Decodes only the events of commands that can
    have produced them. O(commands + their events)."""
    for height, receipts_of_block in receipts:
        index = 0
        for receipt in receipts_of_block:
            command = receipt.command
            if not any(marker in command for marker in _COMMAND_MARKERS):
                index += len(receipt.events)
                continue
            for data in receipt.events:
                event = orjson.loads(data)
                if event.get("type") in SCF_EVENTS:
                    yield {"height": height, "event_idx": index,
                           "command_idx": receipt.index, "time_ns": receipt.time_ns,
                           **event}  # fmt: skip
                index += 1


def fold(events: Iterable[dict[str, Any]]) -> dict[str, pa.Table]:
    """The tables (`TABLES`) from the events in ledger order, each in its fixed schema
    (`schema.LEDGER_SCHEMAS`), integers exact. O(events + pieces)."""
    state = _Fold()
    for event in events:
        kind = event["type"]
        if kind == "day_begun":
            state.day = event["day"]
            state.days.append({name: event[name] for name in _DAY_FIELDS})
            continue
        at = {"height": event["height"], "event_idx": event["event_idx"],
              "command_idx": event["command_idx"], "time_ns": event["time_ns"],
              "day": state.day}  # fmt: skip
        _HANDLERS[kind](state, event, at)
    records = {
        "days": state.days,
        "participants": list(state.participants.values()),
        "commitments": list(state.pieces.values()),
        "commitment_transfers": state.transfers,
        "commitment_payments": state.payments,
        "invoices": list(state.invoices.values()),
    }
    return {name: _table(rows, LEDGER_SCHEMAS[name]) for name, rows in records.items()}


def _table(records: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """The records in `schema` (a missing key is null); each `*time` column from its
    `*time_ns`, exactly (pyarrow reads the integers as nanoseconds)."""
    columns = {}
    for item in schema:
        source = item.name + "_ns" if pa.types.is_timestamp(item.type) else item.name
        values = [record.get(source) for record in records]
        columns[item.name] = pa.array(values, type=item.type)
    return pa.table(columns, schema=schema)


def _registered(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    state.participants[event["participant"]] = {
        "participant": event["participant"], "bank": event["bank"], "role": event["role"],
        "credit_limit": 0, **at,
    }  # fmt: skip


def _limit(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    state.participants[event["participant"]]["credit_limit"] = event["limit"]


def _invoice(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    state.invoices[event["key_hash"]] = {
        "key_hash": event["key_hash"], "content_hash": event["content_hash"],
        "seller": event["seller"], "buyer": event["buyer"], "amount": event["amount"],
        "confirmed": False, "piece": None, **at,
    }  # fmt: skip


def _invoice_confirmed(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    state.invoices[event["key_hash"]]["confirmed"] = True


def _role(state: _Fold, participant: str) -> str | None:
    found = state.participants.get(participant)
    return None if found is None else str(found["role"])


def _issued(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    piece = event["piece"]
    invoice = event["invoice"] or None
    if invoice is not None and invoice in state.invoices:
        state.invoices[invoice]["piece"] = piece
    state.pieces[piece] = {
        "piece": piece, "root": piece, "parent": None, "depth": 0, "tier": 1,
        "issuer": event["issuer"], "holder": event["holder"],
        "holder_role": _role(state, event["holder"]), "amount": event["amount"],
        "currency": event["currency"], "maturity": event["maturity"], "invoice": invoice,
        "recourse": event["recourse"], "confirmed": False, "pledged": False, "pledgee": None,
        "status": LIVE, "transfers": 0, "paid": 0, "recovered": 0, "recovered_from": None,
        **at, "settled_height": None, "settled_time_ns": None,
    }  # fmt: skip


def _confirmed(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    state.pieces[event["piece"]]["confirmed"] = True


def _split(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    parent = state.pieces[event["piece"]]
    parent["status"] = "split"
    for child, amount in zip(event["children"], event["amounts"], strict=True):
        state.pieces[child] = {
            **parent, **at, "piece": child, "parent": parent["piece"],
            "depth": parent["depth"] + 1, "amount": amount, "status": LIVE,
        }  # fmt: skip


def _moved(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    financing = event["type"] == "commitment_financed"
    piece = state.pieces[event["piece"]]
    transferor = event["seller"] if financing else event["transferor"]
    holder = event["factor"] if financing else event["holder"]
    piece["holder"], piece["holder_role"] = holder, _role(state, holder)
    piece["transfers"] += 1
    if not financing:
        piece["tier"] += 1
    price = event["price"] if financing else None
    state.transfers.append({
        **at, "piece": piece["piece"], "kind": "financing" if financing else "transfer",
        "transferor": transferor, "holder": holder, "factor": holder if financing else None,
        "recourse": event["recourse"], "amount": piece["amount"],
        "currency": piece["currency"], "issuer": piece["issuer"],
        "maturity": piece["maturity"], "price": price,
        "discount": None if price is None else piece["amount"] - price,
        "days": days_between(at["day"], piece["maturity"]) if at["day"] else None,
    })  # fmt: skip


def _pledged(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    piece = state.pieces[event["piece"]]
    piece["pledged"], piece["pledgee"] = True, event["pledgee"]


def _released(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    piece = state.pieces[event["piece"]]
    piece["pledged"], piece["pledgee"] = False, None


def _matured(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    paid = event["type"] == "commitment_paid"
    piece = state.pieces[event["piece"]]
    piece["status"] = "paid" if paid else "failed"
    piece["paid"] = event["amount"] if paid else 0
    piece["pledged"], piece["pledgee"] = False, None  # a pledge ends at maturity
    piece["settled_height"], piece["settled_time_ns"] = at["height"], at["time_ns"]
    state.payments.append({
        **at, "event": "paid" if paid else "failed", "piece": piece["piece"],
        "issuer": event["issuer"], "holder": event["holder"], "payer": event["issuer"],
        "amount": event["amount"], "moved": event["amount"] if paid else 0,
        "currency": event["currency"], "maturity": piece["maturity"],
        "due": event.get("due"), "available": event.get("available"),
        "transferors": event.get("transferors"), "reason": None,
    })  # fmt: skip


def _recourse(state: _Fold, event: dict[str, Any], at: dict[str, Any]) -> None:
    claimed = event["type"] == "recourse_claimed"
    piece = state.pieces[event["piece"]]
    if claimed:
        piece["recovered"], piece["recovered_from"] = event["amount"], event["transferor"]
    state.payments.append({
        **at, "event": event["type"], "piece": piece["piece"], "issuer": piece["issuer"],
        "holder": event["holder"], "payer": event["transferor"], "amount": event["amount"],
        "moved": event["amount"] if claimed else 0, "currency": piece["currency"],
        "maturity": piece["maturity"], "due": None, "available": None, "transferors": None,
        "reason": None if claimed else event["reason"],
    })  # fmt: skip


_HANDLERS: Final = {
    "participant_registered": _registered,
    "credit_limit_set": _limit,
    "invoice_registered": _invoice,
    "invoice_confirmed": _invoice_confirmed,
    "commitment_issued": _issued,
    "commitment_confirmed": _confirmed,
    "commitment_split": _split,
    "commitment_transferred": _moved,
    "commitment_financed": _moved,
    "commitment_pledged": _pledged,
    "pledge_released": _released,
    "commitment_paid": _matured,
    "commitment_failed": _matured,
    "recourse_claimed": _recourse,
    "recourse_failed": _recourse,
}


def cash_changes(transfers: pd.DataFrame, payments: pd.DataFrame) -> pd.DataFrame:
    """The cash the supply chain moves, as `holding_changes` rows (two legs per event, payer
    first): a financing's price from the factor to the seller, a maturity payment from the
    issuer to the holder, a recourse claim from the transferor to the holder. The venue's
    derived `balance_changes` table leaves these out."""
    financings = transfers[transfers["kind"] == "financing"]
    moving = payments[payments["moved"] > 0]
    parts = [
        _legs(financings, "commitment_financed", financings["factor"],
              financings["transferor"], financings["price"]),
        _legs(moving, moving["event"].map(_PAYMENT_EVENTS), moving["payer"], moving["holder"],
              moving["moved"]),
    ]  # fmt: skip
    columns = ["height", "event_idx", "leg", "account", "asset", "holding_delta",
               "available_delta", "locked_delta", "event", "command_idx", "time_ns"]  # fmt: skip
    frame = pd.concat([part for part in parts if not part.empty] or [pd.DataFrame()])
    return frame.reindex(columns=columns).reset_index(drop=True)


_PAYMENT_EVENTS: Final = {"paid": "commitment_paid", "recourse_claimed": "recourse_claimed"}


def _legs(
    rows: pd.DataFrame, event: object, payer: pd.Series, payee: pd.Series, amount: pd.Series
) -> pd.DataFrame:
    common = pd.DataFrame({"height": rows["height"], "event_idx": rows["event_idx"],
                           "asset": rows["currency"], "locked_delta": 0, "event": event,
                           "command_idx": rows["command_idx"],
                           "time_ns": rows["time_ns"]})  # fmt: skip
    fen = amount.astype("int64")
    out = common.assign(leg=0, account=payer, holding_delta=-fen, available_delta=-fen)
    into = common.assign(leg=1, account=payee, holding_delta=fen, available_delta=fen)
    return pd.concat([out, into]).sort_values(["height", "event_idx", "leg"], kind="stable")


# -- the analysts' questions -------------------------------------------------------------------


def last_day(days: pd.DataFrame) -> int:
    """The last trading day begun (0 if none): what has matured by now was paid or failed."""
    return 0 if days.empty else int(days["day"].max())


def outstanding(commitments: pd.DataFrame) -> pd.DataFrame:
    """The live pieces (unconfirmed, active or pledged) by issuer, currency, tier and the
    holder's role: pieces, amount (fen), of which pledged, and the issuer's share."""
    live = commitments[commitments["status"] == LIVE].assign(
        pledged_amount=lambda f: f["amount"].where(f["pledged"], 0)
    )
    keys = ["issuer", "currency", "tier", "holder_role"]
    frame = (
        live.groupby(keys, dropna=False)
        .agg(pieces=("piece", "size"), amount=("amount", "sum"), pledged=("pledged_amount", "sum"))
        .reset_index()
    )
    totals = frame.groupby(["issuer", "currency"])["amount"].transform("sum")
    frame["issuer_share"] = (frame["amount"] / totals).astype("float64")
    return frame.astype({"pieces": "int64", "amount": "int64", "pledged": "int64"})


def credit_usage(commitments: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """Per core enterprise: its credit limit, what it has outstanding (all currencies), the
    headroom left and the share of the limit used (NaN without a limit)."""
    cores = participants[participants["role"] == "core_enterprise"]
    live = commitments[commitments["status"] == LIVE]
    used = live.groupby("issuer")["amount"].sum()
    frame = cores[["participant", "bank", "credit_limit"]].rename(columns={"participant": "issuer"})
    frame = frame.assign(outstanding=frame["issuer"].map(used).fillna(0).astype("int64"))
    frame["headroom"] = frame["credit_limit"] - frame["outstanding"]
    limit = frame["credit_limit"].where(frame["credit_limit"] > 0)
    frame["utilisation"] = (frame["outstanding"] / limit).astype("float64")
    return frame.reset_index(drop=True)


def financing_costs(transfers: pd.DataFrame) -> pd.DataFrame:
    """One row per financing with its cost: `discount` (fen), `days` to maturity,
    `discount_rate` (annualised on the face amount, ACT/360, as bills are discounted) and
    `yield_365` (the factor's return on the price it paid, ACT/365). A financing on the
    maturity's eve counts one day at least."""
    financings = transfers[transfers["kind"] == "financing"].copy()
    days = financings["days"].astype("float64").clip(lower=1)
    discount = financings["discount"].astype("float64")
    financings["discount_rate"] = (
        discount / financings["amount"].astype("float64") * DAY_COUNT_DISCOUNT / days
    )
    financings["yield_365"] = (
        discount / financings["price"].astype("float64") * DAY_COUNT_YIELD / days
    )
    columns = ["day", "piece", "issuer", "transferor", "factor", "recourse", "currency", "amount",
               "price", "discount", "days", "maturity", "discount_rate", "yield_365"]  # fmt: skip
    return financings[columns].reset_index(drop=True)


def financing_summary(costs: pd.DataFrame, by: str = "factor") -> pd.DataFrame:
    """`financing_costs` summed `by` factor (or issuer, transferor): financings, face amount,
    price paid, discount, and the face-weighted days and annualised rates."""
    frame = costs.assign(
        weighted_days=costs["days"].astype("float64") * costs["amount"],
        weighted_rate=costs["discount_rate"] * costs["amount"],
        weighted_yield=costs["yield_365"] * costs["amount"],
    )
    grouped = frame.groupby([by, "currency"]).agg(
        financings=("piece", "size"), amount=("amount", "sum"), price=("price", "sum"),
        discount=("discount", "sum"), weighted_days=("weighted_days", "sum"),
        weighted_rate=("weighted_rate", "sum"), weighted_yield=("weighted_yield", "sum"),
    )  # fmt: skip
    face = grouped["amount"].astype("float64")
    grouped["days"] = grouped.pop("weighted_days") / face
    grouped["discount_rate"] = grouped.pop("weighted_rate") / face
    grouped["yield_365"] = grouped.pop("weighted_yield") / face
    return grouped.reset_index()


def maturity_ladder(commitments: pd.DataFrame, cash: pd.Series | None = None) -> pd.DataFrame:
    """What falls due: the live pieces by maturity day, issuer and currency, with pieces,
    amount and the issuer's cumulative amount due by that day; given `cash` (the issuers' cash
    now, indexed by (account, asset), e.g. `issuer_cash`), `covered` says whether that cash
    covers the cumulative amount (a maturity is paid all or nothing per issuer)."""
    live = commitments[commitments["status"] == LIVE]
    frame = (
        live.groupby(["maturity", "issuer", "currency"])
        .agg(pieces=("piece", "size"), amount=("amount", "sum"))
        .reset_index()
        .sort_values(["issuer", "currency", "maturity"], kind="stable")
    )
    frame["cumulative"] = frame.groupby(["issuer", "currency"])["amount"].cumsum()
    frame = frame.astype({"pieces": "int64", "amount": "int64", "cumulative": "int64"})
    if cash is not None:
        keys = list(zip(frame["issuer"], frame["currency"], strict=True))
        frame["cash"] = [int(cash.get(key, 0)) for key in keys]
        frame["covered"] = frame["cash"] >= frame["cumulative"]
    return frame.sort_values(["maturity", "issuer"], kind="stable").reset_index(drop=True)


def issuer_cash(holding_changes: pd.DataFrame, commitments: pd.DataFrame) -> pd.Series:
    """Each issuer's holding of each currency it issued in, now: (account, asset) -> fen."""
    issuers = set(commitments["issuer"])
    mine = holding_changes[holding_changes["account"].isin(issuers)]
    return mine.groupby(["account", "asset"])["holding_delta"].sum().astype("int64")


def failures(commitments: pd.DataFrame, payments: pd.DataFrame) -> pd.DataFrame:
    """One row per failed piece: issuer, holder, amount, the issuer's `due` and `available`
    that day and its `shortfall`, the recourse claims tried and failed, what was `recovered`
    and from whom, and the holder's `loss` still open."""
    failed = payments[payments["event"] == "failed"]
    claims = payments[payments["event"].isin(["recourse_claimed", "recourse_failed"])]
    tried = claims.groupby("piece").size()
    refused = claims[claims["event"] == "recourse_failed"].groupby("piece")["reason"].agg(list)
    pieces = commitments.set_index("piece")
    frame = failed[["day", "piece", "issuer", "holder", "currency", "amount", "due",
                    "available", "transferors"]].copy()  # fmt: skip
    frame["shortfall"] = frame["due"] - frame["available"]
    frame["recourse"] = frame["piece"].map(pieces["recourse"]).astype(bool)
    frame["claims"] = frame["piece"].map(tried).fillna(0).astype("int64")
    frame["refusals"] = frame["piece"].map(refused)
    frame["recovered"] = frame["piece"].map(pieces["recovered"]).astype("int64")
    frame["recovered_from"] = frame["piece"].map(pieces["recovered_from"])
    frame["loss"] = frame["amount"] - frame["recovered"]
    return frame.reset_index(drop=True)


def split_sums(commitments: pd.DataFrame) -> pd.DataFrame:
    """Every split piece with its amount, its children's count and sum, and `ok` when the
    children sum exactly to it (and each names it as parent)."""
    children = (
        commitments.dropna(subset=["parent"]).groupby("parent")["amount"].agg(["size", "sum"])
    )
    splits = commitments[commitments["status"] == "split"][["piece", "issuer", "amount"]].copy()
    splits["children"] = splits["piece"].map(children["size"]).fillna(0).astype("int64")
    splits["children_sum"] = splits["piece"].map(children["sum"]).fillna(0).astype("int64")
    splits["ok"] = (splits["children"] >= 2) & (splits["children_sum"] == splits["amount"])
    orphans = set(children.index) - set(splits["piece"])
    assert not orphans, f"pieces with children but not split: {sorted(orphans)}"
    return splits.reset_index(drop=True)


def settled_once(commitments: pd.DataFrame, payments: pd.DataFrame, day: int) -> pd.DataFrame:
    """Per piece that is not split: how many times it was paid or failed (`settlements`),
    whether it had matured by `day` (the last day begun), and `ok`: a matured piece was paid
    or failed exactly once, in the status it shows; a piece not yet due, never."""
    leaves = commitments[commitments["status"] != "split"][
        ["piece", "issuer", "amount", "maturity", "status"]
    ].copy()
    matured = payments[payments["event"].isin(["paid", "failed"])]
    counts = matured.groupby("piece").size()
    outcome = matured.drop_duplicates("piece").set_index("piece")["event"]
    leaves["settlements"] = leaves["piece"].map(counts).fillna(0).astype("int64")
    leaves["matured"] = leaves["maturity"] <= day
    leaves["ok"] = (
        leaves["matured"]
        & (leaves["settlements"] == 1)
        & (leaves["piece"].map(outcome) == leaves["status"])
    ) | (~leaves["matured"] & (leaves["settlements"] == 0) & (leaves["status"] == LIVE))
    return leaves.reset_index(drop=True)


def issued_conservation(commitments: pd.DataFrame) -> pd.DataFrame:
    """Per issuer and currency: the face issued (original commitments) against where it is
    now (the pieces that were not split: outstanding, paid, failed), and `ok` when nothing
    was created or lost by splits, transfers and financings."""
    originals = commitments[commitments["parent"].isna()]
    leaves = commitments[commitments["status"] != "split"]
    keys = ["issuer", "currency"]
    frame = originals.groupby(keys)["amount"].sum().rename("issued").to_frame()
    by_status = leaves.pivot_table(index=keys, columns="status", values="amount",
                                   aggfunc="sum", fill_value=0)  # fmt: skip
    for status in (LIVE, "paid", "failed"):
        frame[status] = by_status.get(status, 0)
    frame = frame.fillna(0).astype("int64")
    frame["ok"] = frame["issued"] == frame[LIVE] + frame["paid"] + frame["failed"]
    return frame.reset_index()


def cash_flows(changes: pd.DataFrame) -> pd.DataFrame:
    """The supply chain's cash movements in `holding_changes` per event kind and currency:
    paid out, received, and `net` (zero: it only moves cash between participants)."""
    scf = changes[changes["event"].isin(["commitment_financed", "commitment_paid",
                                         "recourse_claimed"])]  # fmt: skip
    frame = scf.assign(
        paid=(-scf["holding_delta"]).clip(lower=0), received=scf["holding_delta"].clip(lower=0)
    )
    grouped = frame.groupby(["event", "asset"]).agg(
        paid=("paid", "sum"), received=("received", "sum"), net=("holding_delta", "sum")
    )
    return grouped.astype("int64").reset_index()
