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

What changed comes from the cores themselves: the matching engine, the settlement engine
(and its registries) and the venue each record the keys of the entities they change as they
change them (`matching.changes`, `settlement.changes`, `exchange.venue.changes`), and
`digest` drains the three records. The commitment has no table of what a command or an event
changes, and reads the cores only through their public queries (a test checks that it reads
no other class's private attribute). Tests compare the incremental commitment with the one
recomputed from `Venue.snapshot()` after random command sequences.

Memory: each entity keeps its 2048-bit element (300 bytes) so that a change costs one hash, not
two; with the queue links about 0.55 KB per resting order. Entry bytes are not kept: each bytes
object orjson returns holds a 4 KB buffer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import orjson

from exchange.venue.outcomes import event_row
from exchange.venue.venue import SNAPSHOT_VERSION as VENUE_VERSION
from exchange.venue.venue import Venue
from matching.book import Order
from matching.engine import SNAPSHOT_VERSION as MATCHING_VERSION
from matching.types import Side
from settlement.codec import to_row
from settlement.corporate_actions import entity_key as action_key
from settlement.engine import SNAPSHOT_VERSION as SETTLEMENT_VERSION
from settlement.registry import Registry
from settlement.supply_chain import entity_key

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
    # supply-chain finance enters the snapshot (and the commitment) once it has state
    # and so do corporate actions (bonds' terms, dividends)
    optional = snapshot.keys() & {"supply_chain", "corporate_actions"}
    _check_keys("venue snapshot", snapshot, VENUE_KEYS | optional)
    for row in snapshot.get("supply_chain", ()):
        yield entity_key(row), _dumps(row)
    for row in snapshot.get("corporate_actions", ()):
        yield action_key(row), _dumps(row)
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
    """The multiset hash of a live venue, kept up to date from what its cores changed.

    The matching engine, the settlement engine and the venue each record the entities they
    change (`track_changes` on each: `matching.changes`, `settlement.changes`,
    `exchange.venue.changes`); `digest()`, whenever a state hash is due (once per block),
    drains the three records and brings those entities up to date: O(entities changed since
    the last digest). The commitment keeps no model of what a command or an event changes. It
    is the cores' one reader: a second commitment on the same venue is refused (asserted).
    """

    __slots__ = (
        "_account",
        "_accumulator",
        "_action_changes",
        "_balance_entries",
        "_bought_keys",
        "_entries",
        "_escrow_keys",
        "_level",
        "_matching_changes",
        "_next",
        "_order_entries",
        "_pending_keys",
        "_position_keys",
        "_prev",
        "_settlement_changes",
        "_settlement_outcomes",
        "_stray",
        "_supply_chain_changes",
        "_tail",
        "_venue_changes",
        "_venue_outcomes",
        "venue",
    )

    def __init__(self, venue: Venue) -> None:
        """Build the commitment of `venue` as it is now, and follow its cores' records of
        changes from now on. O(state), once."""
        self.venue = venue
        self._matching_changes = venue.matching.track_changes()
        self._settlement_changes = venue.settlement.track_changes()
        self._venue_changes = venue.track_changes()
        self._supply_chain_changes = venue.supply_chain.track_changes()
        self._action_changes = venue.corporate_actions.track_changes()
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
        self._escrow_keys: set[tuple[str, str]] = set()
        self._position_keys: set[tuple[str, str]] = set()
        self._bought_keys: set[tuple[str, str]] = set()
        self._pending_keys: set[tuple[str, str]] = set()
        self._settlement_outcomes = _OrderedSection("s")
        self._venue_outcomes = _OrderedSection("v")
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

    # -- bringing the accumulator up to date ---------------------------------------------

    def digest(self) -> bytes:
        """The 32-byte state hash. O(entities changed since the last call)."""
        venue = self.venue
        settlement = venue.settlement
        changed = self._settlement_changes
        self._flush_orders()
        self._rehash_balances(changed.balances)
        update = self._update
        registries = settlement.registries()
        for key in changed.holds:
            asset, symbol, account = key
            amount = registries[asset].holds.get(symbol, {}).get(account, 0)
            update(("h", *key), _hold_entry(*key, amount) if amount else None)
        for asset in changed.assets:
            update(("r", asset), _registry_entry(registries[asset]))
        brokers, frozen = settlement.account_tables()
        for account in changed.accounts:
            update(("a", account), _dumps(["a", account, brokers[account], account in frozen]))
        self._flush_instruments()
        self._flush_today()
        self._settlement_outcomes.sync(update, settlement.outcomes(), changed.outcomes, _s_value)
        # Own loop variables: compiled, `key` keeps the type of the holds' keys above (three
        # strings) and an entity key of another length would fail its run-time check.
        entity = venue.supply_chain.entity
        for chain_key in self._supply_chain_changes:
            row = entity(chain_key)
            update(chain_key, None if row is None else _dumps(row))
        self._supply_chain_changes.clear()
        entity = venue.corporate_actions.entity
        for changed_key in self._action_changes:
            row = entity(changed_key)
            update(changed_key, None if row is None else _dumps(row))
        self._action_changes.clear()
        self._venue_outcomes.sync(update, venue.outcomes(), self._venue_changes.outcomes, _v_value)
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
                settlement.outcomes_max,
                settlement.forgotten_ids(),
            ),
        )
        self._matching_changes.clear()
        changed.clear()
        self._venue_changes.clear()
        self._accumulator &= MASK
        return finish(self._accumulator)

    def _flush_instruments(self) -> None:
        """The `k` and `u` entities of the books matching changed and the listings the venue
        made (books and listings are never taken away)."""
        matching, listed, update = self.venue.matching, self.venue.listed(), self._update
        for symbol in self._matching_changes.books:
            book = matching.book(symbol)
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
        for symbol in self._venue_changes.rules:
            rule = listed[symbol]
            update(
                ("u", symbol),
                _dumps(["u", symbol, rule.currency, rule.t_plus, rule.lot, rule.upper_limit]),
            )

    def _rehash_balances(self, pairs: set[tuple[str, str]]) -> None:
        """Bring the `b`, `e` and `p` entities of `pairs` (asset, account) up to date."""
        registries = self.venue.settlement.registries()
        balances, update = self._balance_entries, self._update
        escrow_keys, position_keys = self._escrow_keys, self._position_keys
        added: list[int] = []
        removed: list[int] = []
        for pair in pairs:
            asset, account = pair
            registry = registries[asset]
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
        resting = self.venue.matching.order_index()
        listed = self.venue.listed()
        level_of = self._level
        queued = self._matching_changes.queued
        changed: dict[int, None] = {}
        # locks whose place may have changed: every lock settlement changed, and those under
        # the id of an order that left or joined the book (held in its entity, or stray)
        lock_keys = set(self._settlement_changes.locks)
        for order_id in (*self._matching_changes.orders, *queued):  # (one in both: a no-op)
            order: Order | None = resting.get(order_id)
            level = level_of.get(order_id)
            if level is None and order is None:
                continue  # placed and done since the last digest: nothing to commit
            if level is not None and (order is None or order_id in queued):
                behind = self._unlink(order_id)
                if behind is not None:
                    changed[behind] = None
            changed[order_id] = None
            symbol = level[0] if order is None else order.symbol  # type: ignore[index]
            lock_keys.add((symbol, order_id))
            lock_keys.add((listed[symbol].currency, order_id))
        for order_id in queued:
            order = resting.get(order_id)
            if order is not None:
                self._link(order_id, (order.symbol, int(order.side), order.price), order.account)
        self._place_locks(lock_keys, changed)
        self._rehash_orders(changed)

    def _place_locks(self, keys: set[tuple[str, int]], changed: dict[int, None]) -> None:
        """Each lock (asset, owner) of `keys` in the entity of the live order `owner` if it
        pays with `asset` (marked in `changed`), else in an `l` entity of its own (none while
        the venue's invariant holds: a done order holds nothing)."""
        resting = self.venue.matching.order_index()
        listed, registries = self.venue.listed(), self.venue.settlement.registries()
        stray = self._stray
        for key in keys:
            asset, owner = key
            order = resting.get(owner)
            if order is not None:
                rule = listed[order.symbol]
                if asset == (rule.currency if order.side is BUY else order.symbol):
                    changed[owner] = None
                    row = None  # held in the order's entity
                else:
                    row = registries[asset].locks.get(owner)
            else:
                row = registries[asset].locks.get(owner)
            if row is None:
                if stray.pop(key, None) is not None:
                    self._update(("l", asset, owner), None)
            else:
                stray[key] = row[0]
                self._update(("l", asset, owner), _dumps(["l", asset, owner, *row]))

    def _rehash_orders(self, changed: dict[int, None]) -> None:
        """Bring the entities of `changed` orders up to date (inline: the hot loop)."""
        resting = self.venue.matching.order_index()
        listed = self.venue.listed()
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
            rule = listed[order.symbol]
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
        keys = self._venue_changes.today
        for tag, tables, committed in (
            ("t", bought, self._bought_keys),
            ("n", pending, self._pending_keys),
        ):
            for key in keys:
                table = tables.get(key[1])
                quantity = None if table is None else table.get(key[0])
                if quantity is None:
                    if key in committed:
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
        update: Callable[[Key, bytes | None], None],
        table: Mapping[Any, Any],  # OutcomeKey -> outcome
        touched: set[Any],  # OutcomeKey: remembered since the last sync
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
            update((tag, first), None)
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
            update(
                (tag, command_id),
                _dumps([tag, command_id, prev_of[command_id], command_row, event_rows]),
            )
