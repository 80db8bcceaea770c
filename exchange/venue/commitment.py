"""An incremental, exact commitment to the whole venue state: what `state_hash` returns.

Construction (a homomorphic multiset hash, AdHash / LtHash style, as Solana's accounts lattice
hash): the state is a set of entities, each written as the canonical bytes of one flat JSON
array `[tag, key..., value...]` (orjson, sorted keys in nested objects). Each entry is hashed
to a 2048-bit integer with SHAKE-256 (256 bytes of output, little-endian), and the accumulator
is the sum of these integers modulo 2^2048. The state hash is
`SHA-256(b"jinlian/v1/state\\n" || accumulator as 256 little-endian bytes)`.

Because the sum is commutative and invertible, changing one entity costs one subtraction and
one addition: `state_hash` costs O(entities changed since the last call), not O(state). Two
states have equal accumulators iff (up to collisions of the multiset hash) they have the same
entities, so every entity must carry everything that affects future behaviour, including
*order*: a resting order's entity names the order ahead of it in its price level's queue
(`prev`, or null at the head), which is what time priority is; a remembered command outcome
names the outcome remembered before it, which decides what is forgotten first.

The entities (tag: key -> value), with exactly the content of `Venue.snapshot()`:

- `g`: the globals (snapshot versions, day, day open, last trade ids, counters, operator,
  regulator, the outcome window size and each actor's highest forgotten command id: a handful
  of members, at most FORGOTTEN_ACTORS_MAX). Small: rehashed each time.
- `k` symbol -> the book's instrument rules and phase; `u` symbol -> the venue's listing rules.
- `o` order id -> symbol, side, price, open quantity, account, tif, post only, stp group and
  mode, `prev` (see above) and its lock row (account, amount, holder) in the asset its side
  pays with, or null (a GROSS order holds, it has no lock): one hash per changed order covers
  both.
- `r` asset -> kind, issuer, currency, mode, fee schedule, issued, redeemed, gross.
- `a` account -> broker, frozen.
- `b` (asset, account) -> available, locked (absent when both are 0, as in the snapshot);
  `e` and `p` (asset, account) -> cycle escrow and net position (absent when 0);
  `l` (asset, lock owner) -> account, amount, holder, for a lock no live order's entity holds
  (none while the venue's invariant holds);
  `h` (asset, symbol, account) -> what the account's resting orders on the GROSS instrument
  `symbol` hold in `asset` (absent when 0).
- `t` / `n` (account, symbol) -> shares bought today / bought today but not yet delivered.
- `s` / `v` [actor, command id] -> `prev` [actor, command id], command row and event rows:
  settlement's and the venue's remembered outcomes, in the order they were remembered.

Security: the multiset hash is collision resistant if finding a non-trivial combination of
entries that sums to 0 modulo 2^m is hard. Wagner's generalised birthday algorithm finds such
sums in about 2^(2*sqrt(m)) work; Bellare and Micciancio recommend m of well over 1,000 bits
for 80-bit security. With m = 2048 the attack costs about 2^90 at the very least and more in
practice (LtHash, which Solana adopted, uses the same 2048-byte state for 128-bit targets with
16-bit lanes; a single 2048-bit modulus has no lane carries to exploit). The entries come from
sequenced commands an attacker partly controls, so the margin matters; SHA-256 over the
accumulator keeps the header field at 32 bytes.

Change tracking comes from the commands and the events the venue returned (`touch`), never
from hooks in the venue: every state change the venue makes is told by an event or follows
from the command (see `touch` for the table). Tests compare the incremental commitment with
the one recomputed from `Venue.snapshot()` after random command sequences. All commands must go
through `touch` (`VenueMachine.apply` does it): a change made behind its back is not seen.

Memory: each entity keeps its 2048-bit element (300 bytes) so that a change costs one hash, not
two; with the queue links about 0.55 KB per resting order. Entry bytes are not kept: each bytes
object orjson returns holds a 4 KB buffer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Final

import orjson

from exchange.venue.outcomes import event_row
from exchange.venue.types import BrokerCommand, DayBegun, InstrumentListed
from exchange.venue.venue import SNAPSHOT_VERSION as VENUE_VERSION
from exchange.venue.venue import Venue
from matching.book import Order
from matching.engine import SNAPSHOT_VERSION as MATCHING_VERSION
from matching.events import (
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    PhaseChanged,
    SelfTradePrevented,
    TradeExecuted,
)
from matching.types import Side
from settlement import commands as sc
from settlement.codec import to_row
from settlement.engine import SNAPSHOT_VERSION as SETTLEMENT_VERSION
from settlement.events import (
    AssetNetted,
    CycleSettled,
    PositionSettled,
    TradeCleared,
    TradeSettled,
)
from settlement.registry import Registry

MODULUS_BITS: Final = 2048
MODULUS_BYTES: Final = MODULUS_BITS // 8
MASK: Final = (1 << MODULUS_BITS) - 1
DOMAIN: Final = b"jinlian/v1/state\n"
_SORTED: Final = orjson.OPT_SORT_KEYS
_shake = hashlib.shake_256
_from_bytes = int.from_bytes

Key = tuple[Any, ...]
OutcomeKey = tuple[str, int]  # (actor, command id): a remembered command outcome
BUY: Final = Side.BUY
_BUY: Final = int(Side.BUY)
Level = tuple[str, int, int]  # symbol, side, price

VENUE_KEYS: Final = frozenset(
    {
        "version",
        "matching",
        "settlement",
        "day",
        "day_open",
        "rules",
        "bought_today",
        "pending_today",
        "outcomes",
    }
)
MATCHING_KEYS: Final = frozenset({"version", "last_trade_id", "books"})
BOOK_KEYS: Final = frozenset(
    {"symbol", "tick_size", "lot", "reference_price", "price_limit_pct", "phase", "orders"}
)
SETTLEMENT_KEYS: Final = frozenset(
    {
        "version",
        "operator",
        "regulator",
        "accounts",
        "assets",
        "trade_id_last",
        "trade_count",
        "cycle_id",
        "cycle_trade_count",
        "outcomes_max",
        "forgotten_ids",
        "outcomes",
    }
)
REGISTRY_KEYS: Final = frozenset(
    {
        "asset",
        "kind",
        "issuer",
        "currency",
        "mode",
        "fees",
        "issued",
        "redeemed",
        "balances",
        "locks",
        "holds",
        "escrow",
        "positions",
        "gross",
    }
)


def entry_hash(entry: bytes) -> int:
    """The entry's element of the group: SHAKE-256 to 2048 bits, little-endian."""
    return _from_bytes(_shake(entry).digest(MODULUS_BYTES), "little")


def finish(accumulator: int) -> bytes:
    """The 32-byte state hash of an accumulator."""
    return hashlib.sha256(DOMAIN + (accumulator & MASK).to_bytes(MODULUS_BYTES, "little")).digest()


def _dumps(value: list[Any]) -> bytes:
    return orjson.dumps(value, option=_SORTED)


def _check_keys(what: str, row: dict[str, Any], keys: frozenset[str]) -> None:
    """A snapshot field the commitment does not know would be state it does not cover."""
    if set(row) != keys:
        unknown = sorted(set(row) ^ keys)
        raise ValueError(f"{what} fields {unknown} are not covered by the commitment")


# -- the entities, from a snapshot ---------------------------------------------------------


def snapshot_entries(snapshot: dict[str, Any]) -> Iterator[tuple[Key, bytes]]:
    """Every entity of the state `snapshot` describes, as (key, entry bytes). O(state)."""
    _check_keys("venue snapshot", snapshot, VENUE_KEYS)
    matching, settlement = snapshot["matching"], snapshot["settlement"]
    _check_keys("matching snapshot", matching, MATCHING_KEYS)
    _check_keys("settlement snapshot", settlement, SETTLEMENT_KEYS)
    yield (
        ("g",),
        _global_entry(
            snapshot["version"],
            matching["version"],
            settlement["version"],
            snapshot["day"],
            snapshot["day_open"],
            matching["last_trade_id"],
            settlement["operator"],
            settlement["regulator"],
            settlement["trade_id_last"],
            settlement["trade_count"],
            settlement["cycle_id"],
            settlement["cycle_trade_count"],
            settlement["outcomes_max"],
            settlement["forgotten_ids"],
        ),
    )
    registries = {row["asset"]: row for row in settlement["assets"]}
    for row in registries.values():
        _check_keys("registry snapshot", row, REGISTRY_KEYS)
    locks = {
        (row["asset"], owner): [account, amount, holder]
        for row in registries.values()
        for owner, account, amount, holder in row["locks"]
    }
    for book in matching["books"]:
        _check_keys("book snapshot", book, BOOK_KEYS)
        symbol = book["symbol"]
        yield (
            ("k", symbol),
            _book_entry(
                symbol,
                book["tick_size"],
                book["lot"],
                book["reference_price"],
                book["price_limit_pct"],
                book["phase"],
            ),
        )
        currency = registries[symbol]["currency"]
        tails: dict[tuple[int, int], int] = {}
        for oid, side, price, *rest in book["orders"]:
            prev = tails.get((side, price))
            tails[side, price] = oid
            lock = locks.pop((currency if side == _BUY else symbol, oid), None)
            yield ("o", oid), _dumps(["o", oid, symbol, side, price, *rest, prev, lock])
    for (asset, owner), (account, amount, holder) in locks.items():
        yield ("l", asset, owner), _dumps(["l", asset, owner, account, amount, holder])
    for symbol, currency, t_plus, lot, upper_limit in snapshot["rules"]:
        yield ("u", symbol), _dumps(["u", symbol, currency, t_plus, lot, upper_limit])
    for account, symbol, quantity in snapshot["bought_today"]:
        yield ("t", account, symbol), _dumps(["t", account, symbol, quantity])
    for account, symbol, quantity in snapshot["pending_today"]:
        yield ("n", account, symbol), _dumps(["n", account, symbol, quantity])
    prev_id = None
    for command_row, event_rows in snapshot["outcomes"]:
        command_id = (command_row["actor"], command_row["command_id"])
        yield ("v", command_id), _dumps(["v", command_id, prev_id, command_row, event_rows])
        prev_id = command_id
    for account, broker, frozen in settlement["accounts"]:
        yield ("a", account), _dumps(["a", account, broker, frozen])
    for row in settlement["assets"]:
        asset = row["asset"]
        yield (
            ("r", asset),
            _dumps(
                [
                    "r",
                    asset,
                    row["kind"],
                    row["issuer"],
                    row["currency"],
                    row["mode"],
                    row["fees"],
                    row["issued"],
                    row["redeemed"],
                    row["gross"],
                ]
            ),
        )
        for account, available, locked in row["balances"]:
            yield ("b", asset, account), _dumps(["b", asset, account, available, locked])
        for symbol, account, amount in row["holds"]:
            yield ("h", asset, symbol, account), _hold_entry(asset, symbol, account, amount)
        for account, amount in row["escrow"]:
            yield ("e", asset, account), _dumps(["e", asset, account, amount])
        for account, amount in row["positions"]:
            yield ("p", asset, account), _dumps(["p", asset, account, amount])
    prev_id = None
    for key, command_row, event_rows in settlement["outcomes"]:
        command_id = tuple(key)  # [actor, command id]
        yield ("s", command_id), _dumps(["s", command_id, prev_id, command_row, event_rows])
        prev_id = command_id


def commitment_of_snapshot(snapshot: dict[str, Any]) -> bytes:
    """The state hash recomputed from scratch: what `StateCommitment.digest` must equal."""
    accumulator = 0
    for _, entry in snapshot_entries(snapshot):
        accumulator += entry_hash(entry)
    return finish(accumulator)


def _hold_entry(asset: str, symbol: str, account: str, amount: int) -> bytes:
    return _dumps(["h", asset, symbol, account, amount])


def _global_entry(*values: Any) -> bytes:
    return _dumps(["g", *values])


def _book_entry(
    symbol: str, tick: int, lot: int, reference: int, limit_pct: int | None, phase: int
) -> bytes:
    return _dumps(["k", symbol, tick, lot, reference, limit_pct, phase])


def _registry_entry(registry: Registry) -> bytes:
    fees = registry.fees
    return _dumps(
        [
            "r",
            registry.asset,
            int(registry.kind),
            registry.issuer,
            registry.currency,
            int(registry.mode),
            [fees.commission_bps, fees.stamp_duty_bps, fees.fee_account, fees.tax_account],
            registry.issued,
            registry.redeemed,
            registry.gross,
        ]
    )


# -- the incremental commitment ------------------------------------------------------------


class StateCommitment:
    """The multiset hash of a live venue, kept up to date from what each command did.

    Call `touch(command, events)` after every `venue.apply(command)` and `digest()` whenever a
    state hash is due (once per block). `touch` only records keys (O(events)); `digest` brings
    the changed entities up to date, O(entities changed since the last digest).
    """

    __slots__ = (
        "_account",
        "_accounts",
        "_accumulator",
        "_appended",
        "_assets",
        "_balance_entries",
        "_bought_keys",
        "_currency",
        "_cycle",
        "_entries",
        "_escrow_keys",
        "_fee_symbols",
        "_holds",
        "_level",
        "_next",
        "_order_entries",
        "_orders",
        "_outcome_ids",
        "_pairs",
        "_pending_keys",
        "_position_keys",
        "_prev",
        "_settlement_outcomes",
        "_stray",
        "_symbols",
        "_tail",
        "_today",
        "_today_all",
        "_venue_outcome_ids",
        "_venue_outcomes",
        "venue",
    )

    def __init__(self, venue: Venue) -> None:
        """Build the commitment of `venue` as it is now. O(state), once."""
        self.venue = venue
        # each entity's element of the group (not its bytes: orjson's output holds 4 KB)
        self._entries: dict[Key, int] = {}  # every entity but the orders and balances
        self._order_entries: dict[int, int] = {}  # `o` entities by order id
        self._balance_entries: dict[tuple[str, str], int] = {}  # `b` by (asset, account)
        self._accumulator = 0
        # the committed queues: order id -> the order ahead / behind, its level; level -> tail
        self._prev: dict[int, int | None] = {}
        self._next: dict[int, int | None] = {}
        self._level: dict[int, Level] = {}
        self._tail: dict[Level, int] = {}
        self._account: dict[int, str] = {}  # order id -> account, for committed orders
        self._stray: dict[tuple[str, int], str] = {}  # (asset, owner) -> account: `l` locks
        self._currency: dict[str, str] = {}  # symbol -> its cash asset
        self._escrow_keys: set[tuple[str, str]] = set()
        self._position_keys: set[tuple[str, str]] = set()
        self._bought_keys: set[tuple[str, str]] = set()
        self._pending_keys: set[tuple[str, str]] = set()
        self._settlement_outcomes = _OrderedSection("s")
        self._venue_outcomes = _OrderedSection("v")
        # what changed since the last digest
        self._orders: dict[int, str] = {}  # order id -> symbol
        self._appended: dict[int, None] = {}  # joined the back of a queue, in that order
        self._pairs: set[tuple[str, str]] = set()  # (asset, account): b, e, p
        self._holds: set[tuple[str, str, str]] = set()  # (asset, symbol, account): h
        self._fee_symbols: set[str] = set()
        self._assets: set[str] = set()
        self._accounts: set[str] = set()
        self._symbols: set[str] = set()
        self._today: set[tuple[str, str]] = set()
        self._today_all = False
        self._cycle = False
        self._outcome_ids: set[OutcomeKey] = set()
        self._venue_outcome_ids: set[OutcomeKey] = set()
        self._build()

    def _build(self) -> None:
        snapshot = self.venue.snapshot()
        entries, order_entries = self._entries, self._order_entries
        accumulator = 0
        for key, entry in snapshot_entries(snapshot):
            value = entry_hash(entry)
            if key[0] == "o":
                order_entries[key[1]] = value
            elif key[0] == "b":
                self._balance_entries[key[1], key[2]] = value
            else:
                entries[key] = value
                if key[0] == "l":
                    self._stray[key[1], key[2]] = orjson.loads(entry)[3]
            accumulator += value
        self._accumulator = accumulator & MASK
        for book in snapshot["matching"]["books"]:
            symbol = book["symbol"]
            for row in book["orders"]:
                self._link(row[0], (symbol, row[1], row[2]), row[4])
        for row in snapshot["settlement"]["assets"]:
            asset = row["asset"]
            self._escrow_keys.update((asset, account) for account, _ in row["escrow"])
            self._position_keys.update((asset, account) for account, _ in row["positions"])
        self._bought_keys.update((a, s) for a, s, _ in snapshot["bought_today"])
        self._pending_keys.update((a, s) for a, s, _ in snapshot["pending_today"])
        self._settlement_outcomes.ids.update(
            dict.fromkeys(tuple(row[0]) for row in snapshot["settlement"]["outcomes"])
        )
        self._venue_outcomes.ids.update(
            dict.fromkeys((row[0]["actor"], row[0]["command_id"]) for row in snapshot["outcomes"])
        )
        for section in (self._settlement_outcomes, self._venue_outcomes):
            prev = None
            for command_id in section.ids:
                section.prev[command_id] = prev
                prev = command_id

    # -- recording what a command changed ------------------------------------------------

    def touch(self, command: Any, events: list[Any]) -> None:
        """Record what `command`, which gave `events`, may have changed. O(events).

        Orders: every event naming an order id (accepted, trade, cancelled, reduced, amended,
        expired, self-trade prevented) marks it and its locks; acceptance and an amend that
        loses priority put it at the back of its queue. Trades (settled or cleared) mark both
        parties' balances in both assets, the fee and tax accounts, both registries and the
        buyer's shares bought today. Other commands mark the fields they name.
        """
        orders = self._orders
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                orders[event.buy_order_id] = event.symbol
                orders[event.sell_order_id] = event.symbol
            elif kind is TradeSettled or kind is TradeCleared:
                asset, currency, buyer, seller = (
                    event.asset,
                    event.currency,
                    event.buyer,
                    event.seller,
                )
                self._pairs.update(
                    ((asset, buyer), (asset, seller), (currency, buyer), (currency, seller))
                )
                self._fee_symbols.add(asset)
                self._assets.add(asset)
                self._assets.add(currency)
                self._today.add((buyer, asset))
            elif kind is OrderAccepted:
                order_id = event.order_id
                orders[order_id] = event.symbol
                self._appended.pop(order_id, None)
                self._appended[order_id] = None
            elif kind is OrderCancelled or kind is OrderReduced or kind is OrderExpired:
                orders[event.order_id] = event.symbol
            elif kind is OrderAmended:
                order_id = event.order_id
                orders[order_id] = event.symbol
                if not event.priority_kept:
                    self._appended.pop(order_id, None)
                    self._appended[order_id] = None
            elif kind is SelfTradePrevented:
                orders[event.taker_order_id] = event.symbol
                orders[event.maker_order_id] = event.symbol
            elif kind is PhaseChanged or kind is InstrumentListed:
                self._symbols.add(event.symbol)
            elif kind is PositionSettled:
                self._pairs.add((event.asset, event.account))
            elif kind is AssetNetted:
                self._assets.add(event.asset)
                self._cycle = True
            elif kind is CycleSettled or kind is DayBegun:
                self._cycle = self._cycle or kind is CycleSettled
                self._today_all = True
        if type(command) is not BrokerCommand:
            self._touch_command(command)

    def _touch_command(self, command: Any) -> None:
        """What a calendar, listing or settlement command names."""
        symbol = getattr(command, "symbol", None)
        if symbol is not None:
            self._symbols.add(symbol)
        command_id = getattr(command, "command_id", None)
        if command_id is None:
            return
        key = (command.actor, command_id)  # outcomes are remembered per actor
        self._outcome_ids.add(key)
        asset = getattr(command, "asset", None)
        if asset is not None:
            self._assets.add(asset)
        for name in ("account", "source", "destination"):
            account = getattr(command, name, None)
            if account is not None:
                self._accounts.add(account)
                if asset is not None:
                    self._pairs.add((asset, account))
        kind = type(command)
        if kind is sc.SetFeeSchedule or kind is sc.SettleCycle:
            self._venue_outcome_ids.add(key)
        if kind is sc.SetFeeSchedule and command.asset in self.venue._rules:
            # a new schedule re-funds every resting buy of the instrument
            symbol = command.asset
            for order in self.venue.matching.book(symbol).resting():
                self._orders[order.order_id] = symbol
        if kind is sc.SettleCycle:
            self._cycle = True
            self._today_all = True

    # -- bringing the accumulator up to date ---------------------------------------------

    def digest(self) -> bytes:
        """The 32-byte state hash. O(entities changed since the last call)."""
        venue = self.venue
        settlement = venue.settlement
        self._flush_orders()
        pairs = self._pairs
        for symbol in self._fee_symbols:
            security = settlement.registry(symbol)
            fees = security.fees
            pairs.add((security.currency, fees.fee_account))
            pairs.add((security.currency, fees.tax_account))
        if self._cycle:
            pairs.update(self._escrow_keys)
            pairs.update(self._position_keys)
            self._assets.update(asset for asset, _ in self._escrow_keys)
            self._assets.update(asset for asset, _ in self._position_keys)
        update = self._update
        registries = settlement._registries
        self._rehash_balances(pairs)
        for key in self._holds:
            asset, symbol, account = key
            amount = registries[asset].holds.get(symbol, {}).get(account, 0)
            update(("h", *key), _hold_entry(*key, amount) if amount else None)
        for asset in self._assets:
            registry = registries.get(asset)
            update(("r", asset), None if registry is None else _registry_entry(registry))
        brokers, frozen = settlement._brokers, settlement._frozen
        for account in self._accounts:
            broker = brokers.get(account)
            update(
                ("a", account),
                None if broker is None else _dumps(["a", account, broker, account in frozen]),
            )
        books, rules = venue.matching._books, venue._rules
        for symbol in self._symbols:
            book = books.get(symbol)
            if book is None:
                update(("k", symbol), None)
            else:
                instrument = book.instrument
                update(
                    ("k", symbol),
                    _book_entry(
                        symbol,
                        instrument.tick_size,
                        instrument.lot,
                        instrument.reference_price,
                        instrument.price_limit_pct,
                        int(book.phase),
                    ),
                )
            rule = rules.get(symbol)
            update(
                ("u", symbol),
                None
                if rule is None
                else _dumps(["u", symbol, rule.currency, rule.t_plus, rule.lot, rule.upper_limit]),
            )
        self._flush_today()
        self._settlement_outcomes.sync(self, settlement._outcomes, self._outcome_ids, _s_value)
        self._venue_outcomes.sync(self, venue._outcomes._rows, self._venue_outcome_ids, _v_value)
        update(
            ("g",),
            _global_entry(
                VENUE_VERSION,
                MATCHING_VERSION,
                SETTLEMENT_VERSION,
                venue.day,
                venue.day_open,
                venue.matching.last_trade_id,
                settlement.operator,
                settlement.regulator,
                settlement.last_trade_id,
                settlement.trade_count,
                settlement.cycle_id,
                settlement.cycle_trade_count,
                settlement._outcomes_max,
                settlement.forgotten_ids(),
            ),
        )
        self._clear()
        self._accumulator &= MASK
        return finish(self._accumulator)

    def _rehash_balances(self, pairs: set[tuple[str, str]]) -> None:
        """Bring the `b`, `e` and `p` entities of `pairs` (asset, account) up to date."""
        registries = self.venue.settlement._registries
        balances, update = self._balance_entries, self._update
        escrow_keys, position_keys = self._escrow_keys, self._position_keys
        added: list[int] = []
        removed: list[int] = []
        for pair in pairs:
            asset, account = pair
            registry = registries.get(asset)
            if registry is None:
                continue
            available = registry.available.get(account, 0)
            locked = registry.locked.get(account, 0)
            old = balances.get(pair)
            if available or locked:
                entry = _dumps(["b", asset, account, available, locked])
                value = _from_bytes(_shake(entry).digest(MODULUS_BYTES), "little")
                if value != old:
                    if old is not None:
                        removed.append(old)
                    added.append(value)
                    balances[pair] = value
            elif old is not None:
                removed.append(old)
                del balances[pair]
            # escrow and positions exist only while a cleared trade is pending (gross > 0,
            # which Registry.check asserts), so a gross registry skips them
            if registry.gross or pair in escrow_keys or pair in position_keys:
                for tag, table, keys in (
                    ("e", registry.escrow, escrow_keys),
                    ("p", registry.positions, position_keys),
                ):
                    amount = table.get(account, 0)
                    if amount:
                        keys.add(pair)
                        update((tag, asset, account), _dumps([tag, asset, account, amount]))
                    elif pair in keys:
                        keys.discard(pair)
                        update((tag, asset, account), None)
        self._accumulator += sum(added) - sum(removed)

    def _clear(self) -> None:
        self._orders.clear()
        self._appended.clear()
        self._pairs.clear()
        self._holds.clear()
        self._fee_symbols.clear()
        self._assets.clear()
        self._accounts.clear()
        self._symbols.clear()
        self._today.clear()
        self._today_all = False
        self._cycle = False
        self._outcome_ids.clear()
        self._venue_outcome_ids.clear()

    def _update(self, key: Key, entry: bytes | None) -> None:
        """Make `key`'s entity `entry` (None: no such entity)."""
        entries = self._entries
        old = entries.get(key)
        if entry is None:
            if old is not None:
                self._accumulator -= old
                del entries[key]
            return
        value = entry_hash(entry)
        if value != old:
            self._accumulator += value - (old or 0)
            entries[key] = value

    def _flush_orders(self) -> None:
        """Replay the block's queue changes on the committed queues, then rehash the orders
        whose content, lock or `prev` changed. A live order's entity holds its lock (in the
        asset its side pays with); any other lock is an `l` entity of its own."""
        resting = self.venue.matching._index
        rules = self.venue._rules
        level_of, appended = self._level, self._appended
        account_of, pairs, stray, holds = self._account, self._pairs, self._stray, self._holds
        changed: dict[int, None] = {}
        for order_id, symbol in self._orders.items():
            order: Order | None = resting.get(order_id)
            level = level_of.get(order_id)
            if level is None and order is None:
                continue  # placed and done since the last digest: nothing to commit
            rule = rules[symbol]
            if level is not None:  # the committed order's account: its funds may change
                asset = rule.currency if level[1] == _BUY else symbol
                pairs.add((asset, account_of[order_id]))
                holds.add((asset, symbol, account_of[order_id]))
                if order is None or order_id in appended:
                    behind = self._unlink(order_id)
                    if behind is not None:
                        changed[behind] = None
            changed[order_id] = None
            if order is None:  # done: whatever it still holds is a stray lock
                if stray or order_id in rule.cash.locks or order_id in rule.security.locks:
                    self._strays(order_id, symbol, rule.currency, order)
            else:
                if order.side is BUY:
                    pairs.add((rule.currency, order.account))
                    holds.add((rule.currency, symbol, order.account))
                    other = rule.security.locks
                else:
                    pairs.add((symbol, order.account))
                    holds.add((symbol, symbol, order.account))
                    other = rule.cash.locks
                if stray or order_id in other:
                    self._strays(order_id, symbol, rule.currency, order)
        for order_id in appended:
            order = resting.get(order_id)
            if order is not None:
                self._link(order_id, (order.symbol, int(order.side), order.price), order.account)
        self._rehash_orders(changed)

    def _rehash_orders(self, changed: dict[int, None]) -> None:
        """Bring the entities of `changed` orders up to date (inline: the hot loop)."""
        resting = self.venue.matching._index
        rules = self.venue._rules
        level_of, prev_of = self._level, self._prev
        order_entries = self._order_entries
        added: list[int] = []
        removed: list[int] = []
        for order_id in changed:
            order = resting.get(order_id)
            old = order_entries.get(order_id)
            if order is None:
                if old is not None:
                    removed.append(old)
                    del order_entries[order_id]
                continue
            assert level_of[order_id][2] == order.price, f"order {order_id} moved in its queue"
            rule = rules[order.symbol]
            locks = rule.cash.locks if order.side is BUY else rule.security.locks
            entry = _dumps(
                [
                    "o",
                    order_id,
                    order.symbol,
                    order.side,
                    order.price,
                    order.quantity,
                    order.account,
                    order.tif,
                    order.post_only,
                    order.stp_group,
                    order.stp_mode,
                    prev_of[order_id],
                    locks.get(order_id),
                ]
            )
            value = _from_bytes(_shake(entry).digest(MODULUS_BYTES), "little")
            if value == old:
                continue
            if old is not None:
                removed.append(old)
            added.append(value)
            order_entries[order_id] = value
        self._accumulator += sum(added) - sum(removed)

    def _strays(self, order_id: int, symbol: str, currency: str, order: Order | None) -> None:
        """Locks under `order_id` that no live order's entity holds (none while the venue's
        invariant holds: a done order holds nothing)."""
        registries = self.venue.settlement._registries
        stray = self._stray
        for asset in (symbol, currency):
            if order is not None and asset == (currency if order.side is BUY else symbol):
                row = None  # held in the order's entity
            else:
                row = registries[asset].locks.get(order_id)
            key = (asset, order_id)
            old_account = stray.get(key)
            if row is None and old_account is None:
                continue
            if old_account is not None:
                self._pairs.add((asset, old_account))
                del stray[key]
            if row is None:
                self._update(("l", asset, order_id), None)
            else:
                stray[key] = row[0]
                self._pairs.add((asset, row[0]))
                self._update(("l", asset, order_id), _dumps(["l", asset, order_id, *row]))

    def _link(self, order_id: int, level: Level, account: str) -> None:
        tail = self._tail.get(level)
        self._prev[order_id] = tail
        self._next[order_id] = None
        if tail is not None:
            self._next[tail] = order_id
        self._tail[level] = order_id
        self._level[order_id] = level
        self._account[order_id] = account

    def _unlink(self, order_id: int) -> int | None:
        """Take an order out of its committed queue; the order behind it, whose `prev`
        changed, or None."""
        prev = self._prev.pop(order_id)
        behind = self._next.pop(order_id)
        level = self._level.pop(order_id)
        del self._account[order_id]
        if prev is not None:
            self._next[prev] = behind
        if behind is not None:
            self._prev[behind] = prev
        elif prev is None:
            del self._tail[level]
        else:
            self._tail[level] = prev
        return behind

    def _flush_today(self) -> None:
        update = self._update
        bought, pending = self.venue.shares_today()
        for tag, tables, committed in (
            ("t", bought, self._bought_keys),
            ("n", pending, self._pending_keys),
        ):
            if self._today_all:
                keys = committed | {(a, s) for s, table in tables.items() for a in table}
            else:
                keys = self._today
            for key in keys:
                table = tables.get(key[1])
                quantity = None if table is None else table.get(key[0])
                if quantity is None:
                    committed.discard(key)
                    update((tag, *key), None)
                else:
                    committed.add(key)
                    update((tag, *key), _dumps([tag, key[0], key[1], quantity]))


def _s_value(outcome: tuple[Any, tuple[Any, ...]]) -> tuple[Any, Any]:
    command, events = outcome
    return to_row(command), [to_row(event) for event in events]


def _v_value(outcome: tuple[Any, tuple[Any, ...]]) -> tuple[Any, Any]:
    command, events = outcome
    return to_row(command), [event_row(event) for event in events]


class _OrderedSection:
    """A mirror of an insertion-ordered table of remembered outcomes (oldest first), whose
    entities name the command id remembered before them. Tables only grow at the back and
    forget at the front; an id seen again keeps its place."""

    __slots__ = ("ids", "prev", "tag")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.ids: dict[Any, None] = {}  # OutcomeKey
        self.prev: dict[Any, Any] = {}  # OutcomeKey -> OutcomeKey | None

    def sync(
        self,
        commitment: StateCommitment,
        table: dict[Any, Any],  # OutcomeKey -> outcome
        touched: set[Any],  # OutcomeKey
        value: Any,
    ) -> None:
        if not touched:
            return
        ids, prev_of, tag = self.ids, self.prev, self.tag
        rehash: set[OutcomeKey] = {command_id for command_id in touched if command_id in table}
        while ids:
            first = next(iter(ids))
            if first in table:
                break
            del ids[first], prev_of[first]
            rehash.discard(first)  # a head promoted by an earlier round, forgotten too
            commitment._update((tag, first), None)
            if ids:
                head = next(iter(ids))
                prev_of[head] = None
                rehash.add(head)
        new: list[OutcomeKey] = []
        for command_id in reversed(table):
            if command_id in ids:
                break
            new.append(command_id)
        for command_id in reversed(new):
            prev_of[command_id] = next(reversed(ids)) if ids else None
            ids[command_id] = None
            rehash.add(command_id)
        for command_id in rehash:
            command_row, event_rows = value(table[command_id])
            commitment._update(
                (tag, command_id),
                _dumps([tag, command_id, prev_of[command_id], command_row, event_rows]),
            )
