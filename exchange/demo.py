"""`jinlian demo`: a short, readable trading session on the matching engine, in process."""

from __future__ import annotations

from exchange.wire import event_to_dict
from matching.commands import AddInstrument, CancelOrder, Command, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.events import AuctionUncrossed, Event, TradeExecuted
from matching.types import OrderKind, Phase, Side, TimeInForce

SYMBOL = "600000.SH"


def _limit(order_id: int, account: str, side: Side, price: int, quantity: int) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id,
        symbol=SYMBOL,
        account=account,
        side=side,
        kind=OrderKind.LIMIT,
        price=price,
        quantity=quantity,
    )


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _show_book(engine: MatchingEngine) -> None:
    bids, asks = engine.depth(SYMBOL, 5)
    print(f"  {'bid qty':>9} {'bid':>8} | {'ask':<8} {'ask qty':<9}")
    for row in range(max(len(bids), len(asks))):
        bid = f"{bids[row][1]:>9,} {_yuan(bids[row][0]):>8}" if row < len(bids) else " " * 18
        ask = f"{_yuan(asks[row][0]):<8} {asks[row][1]:<9,}" if row < len(asks) else ""
        print(f"  {bid} | {ask}")


def _show_events(events: list[Event]) -> None:
    for event in events:
        if isinstance(event, TradeExecuted):
            aggressor = "auction" if event.aggressor is None else event.aggressor.name.lower()
            print(
                f"  trade #{event.trade_id}: {event.quantity:,} @ {_yuan(event.price)} "
                f"buy #{event.buy_order_id} ({event.buy_account}) / sell #{event.sell_order_id} "
                f"({event.sell_account}), aggressor {aggressor}"
            )
        elif isinstance(event, AuctionUncrossed) and event.price is not None:
            print(f"  uncross at {_yuan(event.price)} for {event.volume:,} shares")
        else:
            fields = event_to_dict(event)
            kind = fields.pop("type")
            fields.pop("symbol", None)
            print(f"  {kind}: " + ", ".join(f"{key} {value}" for key, value in fields.items()))


def _step(engine: MatchingEngine, title: str, commands: list[Command]) -> None:
    print(f"\n{title}")
    for command in commands:
        _show_events(engine.apply(command))


def main() -> int:
    engine = MatchingEngine()
    print(f"Jinlian demo: {SYMBOL}, tick 0.01, lot 100, reference 10.00, limits +/-10%")
    _step(
        engine,
        "Opening call auction: orders rest without matching",
        [
            AddInstrument(
                symbol=SYMBOL, tick_size=1, lot=100, reference_price=1000, price_limit_pct=10
            ),
            SetPhase(symbol=SYMBOL, phase=Phase.CALL_AUCTION),
            _limit(1, "BANK-A", Side.BUY, 1005, 500),
            _limit(2, "BROKER-B", Side.BUY, 1002, 300),
            _limit(3, "BROKER-C", Side.SELL, 998, 400),
            _limit(4, "FUND-D", Side.SELL, 1003, 600),
        ],
    )
    _show_book(engine)
    price, volume, imbalance = engine.indicative(SYMBOL)
    assert price is not None
    print(f"  indicative: {volume:,} shares at {_yuan(price)}, imbalance {imbalance:+,}")
    _step(
        engine,
        "Continuous trading opens: the book uncrosses at one price",
        [SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS)],
    )
    _show_book(engine)
    _step(
        engine,
        "A sell meets the bid; an IOC buy sweeps two levels and its remainder is cancelled",
        [
            _limit(5, "BROKER-B", Side.SELL, 1000, 200),
            _limit(7, "FUND-D", Side.SELL, 1004, 300),
            PlaceOrder(
                order_id=6,
                symbol=SYMBOL,
                account="BANK-A",
                side=Side.BUY,
                kind=OrderKind.LIMIT,
                price=1004,
                quantity=1000,
                tif=TimeInForce.IOC,
            ),
            _limit(8, "BROKER-C", Side.BUY, 1001, 200),
            CancelOrder(order_id=2, symbol=SYMBOL),
            CancelOrder(order_id=8, symbol=SYMBOL),
        ],
    )
    _show_book(engine)
    print(f"\nstate hash {engine.state_hash()[:16]}..., {len(engine)} orders resting")
    return 0
