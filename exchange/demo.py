"""`jinlian demo`: a short, readable trading day on the venue, in process.

Registries and funded accounts, an opening call auction, continuous trading, and after each
step the book and what every account holds: the locks that fund resting orders and the
delivery-versus-payment of every trade.
"""

from __future__ import annotations

from exchange import compiled
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT, Funding, registry_setup
from exchange.venue.types import BeginDay, BrokerCommand, EndDay, ListInstrument, VenueCommand
from exchange.venue.venue import Venue
from exchange.venue.wire import event_to_dict
from matching.commands import CancelOrder, PlaceOrder, SetPhase
from matching.events import AuctionUncrossed, TradeExecuted
from matching.types import OrderKind, Phase, Side, TimeInForce
from settlement.events import TradeSettled

SYMBOL = "600000.SH"
OPERATOR = "EXCHANGE"
ACCOUNTS = {"BANK-A": "CICC", "FUND-B": "CITIC", "RETAIL-C": "HTSC", "RETAIL-D": "HTSC"}
QUIET = {"accepted", "phase_changed", "instrument_added", "day_begun", "day_ended"}


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def _order(
    order_id: int, account: str, side: Side, price: int | None, quantity: int, **extra: object
) -> BrokerCommand:
    kind = OrderKind.LIMIT if price is not None else OrderKind.MARKET
    command = PlaceOrder(
        order_id=order_id,
        symbol=SYMBOL,
        account=account,
        side=side,
        kind=kind,
        price=price,
        quantity=quantity,
        **extra,  # type: ignore[arg-type]
    )
    return BrokerCommand(broker=ACCOUNTS[account], command=command)


def _setup() -> list[VenueCommand]:
    funding = Funding(
        operator=OPERATOR,
        cash_issuer="PBOC",
        security_issuer="CSDC",
        cash=2_000_000,
        shares=1_000,
        commission_bps=3,
        stamp_duty_bps=5,
    )
    return [
        *registry_setup(funding, SYMBOL, ACCOUNTS),
        ListInstrument(
            symbol=SYMBOL, tick_size=1, lot=100, reference_price=1000, price_limit_pct=10
        ),
        BeginDay(day=20261123),
    ]


def _show_book(venue: Venue) -> None:
    bids, asks = venue.matching.depth(SYMBOL, 5)
    print(f"  {'bid qty':>9} {'bid':>8} | {'ask':<8} {'ask qty':<9}")
    for row in range(max(len(bids), len(asks), 1)):
        bid = f"{bids[row][1]:>9,} {_yuan(bids[row][0]):>8}" if row < len(bids) else " " * 18
        ask = f"{_yuan(asks[row][0]):<8} {asks[row][1]:<9,}" if row < len(asks) else ""
        print(f"  {bid} | {ask}")


def _show_holdings(venue: Venue) -> None:
    settlement = venue.settlement
    print(
        f"  {'account':<9} {'cash free':>13} {'cash locked':>12} {'shares free':>12} {'locked':>7}"
    )
    for account in [*ACCOUNTS, FEE_ACCOUNT, TAX_ACCOUNT]:
        print(
            f"  {account:<9} {_yuan(settlement.available('CNY', account)):>13} "
            f"{_yuan(settlement.locked('CNY', account)):>12} "
            f"{settlement.available(SYMBOL, account):>12,} "
            f"{settlement.locked(SYMBOL, account):>7,}"
        )


def _step(venue: Venue, title: str, commands: list[VenueCommand], *, quiet: bool = False) -> None:
    print(f"\n{title}")
    for command in commands:
        events = venue.apply(command)
        if quiet:
            continue
        for event in events:
            if isinstance(event, TradeExecuted):
                print(
                    f"  trade #{event.trade_id}: {event.quantity:,} @ {_yuan(event.price)} "
                    f"{event.buy_account} buys from {event.sell_account}"
                )
            elif isinstance(event, TradeSettled):
                print(
                    f"    DvP: {event.quantity:,} shares to {event.buyer}, "
                    f"{_yuan(event.buyer_paid)} paid, {_yuan(event.seller_received)} received, "
                    f"commission {_yuan(event.commission)} each side, "
                    f"stamp duty {_yuan(event.stamp_duty)}"
                )
            elif isinstance(event, AuctionUncrossed) and event.price is not None:
                print(f"  uncross at {_yuan(event.price)} for {event.volume:,} shares")
            else:
                fields = event_to_dict(event)
                kind = fields.pop("type")
                if kind not in QUIET:
                    fields.pop("symbol", None)
                    detail = ", ".join(f"{key} {value}" for key, value in fields.items())
                    print(f"  {kind}: {detail}")
    venue.check()


def main() -> int:
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    print(f"Jinlian demo: {SYMBOL}, tick 0.01, lot 100, reference 10.00, limits +/-10%,")
    print("commission 3 bps each side, stamp duty 5 bps on the seller, T+1")
    print(compiled.describe())
    _step(
        venue, "Registries, accounts at three brokers, the listing, a new day", _setup(), quiet=True
    )
    _show_holdings(venue)
    _step(
        venue,
        "Opening call auction: orders rest without matching; buys lock cash, sells lock shares",
        [
            SetPhase(symbol=SYMBOL, phase=Phase.CALL_AUCTION),
            _order(1, "BANK-A", Side.BUY, 1005, 500),
            _order(2, "FUND-B", Side.BUY, 1002, 300),
            _order(3, "RETAIL-C", Side.SELL, 998, 400),
            _order(4, "RETAIL-D", Side.SELL, 1003, 600),
        ],
    )
    _show_book(venue)
    price, volume, imbalance = venue.matching.indicative(SYMBOL)
    assert price is not None
    print(f"  indicative: {volume:,} shares at {_yuan(price)}, imbalance {imbalance:+,}")
    _show_holdings(venue)
    _step(
        venue,
        "Continuous trading opens: the book uncrosses at one price, each trade settles DvP",
        [SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS)],
    )
    _show_book(venue)
    _step(
        venue,
        "An IOC buy sweeps two levels; its remainder is cancelled and its lock released",
        [
            _order(5, "RETAIL-D", Side.SELL, 1004, 300),
            _order(6, "FUND-B", Side.BUY, 1004, 1_000, tif=TimeInForce.IOC),
        ],
    )
    _step(
        venue,
        "T+1: BANK-A cannot sell what it bought today; HTSC cannot cancel another broker's order",
        [
            _order(7, "BANK-A", Side.SELL, 1006, 1_400),
            BrokerCommand(broker="HTSC", command=CancelOrder(order_id=2, symbol=SYMBOL)),
        ],
    )
    _step(venue, "End of day: day orders expire and release their locks", [EndDay(day=20261123)])
    _show_holdings(venue)
    print(f"\nstate hash {venue.state_hash()[:16]}... (the commitment every block header signs)")
    return 0
