"""A venue with a bond and a share, driven by JSON lines through the venue's wire parser, with
`Venue.check` and the incremental state commitment (against the one from scratch) after each
command: the tests of bonds and corporate actions share it."""

from __future__ import annotations

from typing import Any

import orjson

from exchange.venue import wire
from exchange.venue.commitment import StateCommitment, commitment_of_snapshot
from exchange.venue.venue import Venue

OPERATOR = "EXCHANGE"
REGULATOR = "CSRC"
DEPOSITORY = "CSDC"
CASH = "CNY"
BOND = "GB26"
SHARE = "SH01"
ISSUER = "TREASURY"  # the bond's issuer account, which pays its coupons
COMPANY = "COMPANY"  # the share's issuer account, which pays its dividends
INVESTORS = ("A1", "A2", "B1", "B2")
CASH_START = 10_000_000_00
START, COUPON, MATURITY = 20260101, 20260701, 20270101
BOND_TERMS: dict[str, Any] = {
    "type": "define_bond",
    "bond": BOND,
    "issuer": ISSUER,
    "face_value": 10_000,
    "coupon_bps": 350,
    "start": START,
    "coupon_days": [COUPON],
    "maturity": MATURITY,
}


class BondFlow:
    """`send(dict)` applies one JSON command and returns its events as dicts."""

    def __init__(self, *, commitment_every: int = 1) -> None:
        self.venue = Venue(operator=OPERATOR, regulator=REGULATOR)
        self.commitment = StateCommitment(self.venue)
        self.commitment_every = commitment_every
        self.sent = 0
        self.ids: dict[str, int] = {}
        self.order_id = 0

    def send(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        parsed = wire.parse_venue_line(orjson.dumps(command))
        assert not isinstance(parsed, wire.WireError), parsed
        events = [wire.event_to_dict(e) for e in self.venue.apply(parsed)]
        self.venue.check()
        self.sent += 1
        if self.sent % self.commitment_every == 0:
            snapshot = self.venue.snapshot()
            assert self.commitment.digest() == commitment_of_snapshot(snapshot)
            restored = Venue.restore(orjson.loads(orjson.dumps(snapshot)))
            assert restored.snapshot() == snapshot
            restored.check()  # the bonds' accruals are derived again
        return events

    def member(self, actor: str, command: dict[str, Any]) -> list[dict[str, Any]]:
        """A member's command, numbered with the actor's next id."""
        self.ids[actor] = self.ids.get(actor, 0) + 1
        return self.send({**command, "actor": actor, "command_id": self.ids[actor]})

    def setup(self, *, terms: dict[str, Any] | None = None, holdings: int = 100) -> None:
        """Cash, accounts, the bond with `terms` (issued: A1 `holdings` units, B1 as many)
        and the share, both listed (T+0 bond, T+1 share), and the cash of each account."""
        self.member(OPERATOR, {"type": "define_asset", "asset": CASH, "kind": "cash",
                               "issuer": "PBOC"})  # fmt: skip
        for asset in (BOND, SHARE):
            self.member(OPERATOR, {"type": "define_asset", "asset": asset, "kind": "security",
                                   "issuer": DEPOSITORY})  # fmt: skip
        for account in (ISSUER, COMPANY, *INVESTORS):
            self.member(OPERATOR, {"type": "open_account", "account": account, "broker": "BRK"})
            self.member("PBOC", {"type": "deposit", "asset": CASH, "account": account,
                                 "amount": CASH_START})  # fmt: skip
        defined = self.member(DEPOSITORY, terms or BOND_TERMS)
        assert defined[0]["type"] == "bond_defined", defined
        for asset, t_plus, price in ((BOND, 0, 10_000), (SHARE, 1, 1_000)):
            for account in ("A1", "B1"):
                self.member(DEPOSITORY, {"type": "issue", "asset": asset, "account": account,
                                         "amount": holdings})  # fmt: skip
            listed = self.send({"type": "list_instrument", "symbol": asset, "tick_size": 1,
                                "lot": 1, "reference_price": price, "price_limit_pct": None,
                                "t_plus": t_plus})  # fmt: skip
            assert listed[-1]["type"] == "instrument_listed", listed

    def day(self, day: int, *, continuous: bool = True) -> list[dict[str, Any]]:
        """End the open day, begin `day` and open both books; the begin's events."""
        if self.venue.day_open:
            self.send({"type": "end_day", "day": self.venue.day})
        events = self.send({"type": "begin_day", "day": day})
        if continuous:
            for symbol in (BOND, SHARE):
                self.send({"type": "set_phase", "symbol": symbol, "phase": "continuous"})
        return events

    def order(
        self, account: str, side: str, symbol: str, price: int, quantity: int, tif: str = "gtc"
    ) -> list[dict[str, Any]]:
        self.order_id += 1
        return self.send({"type": "place", "broker": "BRK", "order_id": self.order_id,
                          "symbol": symbol, "side": side, "tif": tif,
                          "price": price, "quantity": quantity, "account": account})  # fmt: skip

    def cash(self, account: str) -> int:
        settlement = self.venue.settlement
        return settlement.available(CASH, account) + settlement.locked(CASH, account)

    def units(self, asset: str, account: str) -> int:
        settlement = self.venue.settlement
        return settlement.available(asset, account) + settlement.locked(asset, account)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The events of `kind`, each without its type."""
    return [{k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == kind]
