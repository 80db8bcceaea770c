"""Canonical bytes: the one encoding that is hashed and signed.

A value is encoded as JSON by orjson with keys sorted (`OPT_SORT_KEYS`, Unicode code point
order, which is also UTF-8 byte order) and no whitespace. Only these types are allowed:

- `None`, `bool`, `str` (valid Unicode: lone surrogates are refused);
- `int` in the signed 64-bit range, which is what SQLite stores and what the wire accepts
  (`IntEnum` members are encoded as their integer value);
- `bytes` and `bytearray`, encoded as lowercase hexadecimal strings;
- `list` and `tuple` (both encoded as JSON arrays);
- `dict` (any `Mapping`) with `str` keys.

Floats are refused everywhere, NaN and infinities included: money, prices and quantities are
integers, and a float in a hash is a value two machines may print differently. Any other type
(dataclasses, sets, `Decimal`) is refused too, so an encoding never depends on a library's
defaults. Every refusal is a `CanonicalError` naming the path of the offending value, such as
`$.commands[3].price`.

Complexity: O(size of the value) time and memory; nesting is limited to `DEPTH_MAX` levels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

import orjson

INTEGER_MIN: Final = -(2**63)
INTEGER_MAX: Final = 2**63 - 1
DEPTH_MAX: Final = 64
_REPR_CHARS_MAX: Final = 80

_SORTED: Final = orjson.OPT_SORT_KEYS


class CanonicalError(ValueError):
    """A value has no canonical encoding. `path` locates it (`$` is the whole value)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def canonical_bytes(value: object) -> bytes:
    """The canonical JSON encoding of `value`.

    Raises `CanonicalError` (naming the path) for a float, a non-string key, an integer outside
    the signed 64-bit range, a lone surrogate, an unsupported type or nesting past `DEPTH_MAX`.
    O(size of the value).
    """
    if type(value) is dict and _flat(value):  # a command or an event: nothing to copy
        return orjson.dumps(value, option=_SORTED)
    try:
        plain = _plain(value, 0)
    except _RefusedError as refused:
        raise CanonicalError(_path(refused.trail), refused.reason) from None
    return orjson.dumps(plain, option=_SORTED)


def _flat(value: dict[object, object]) -> bool:
    """Whether `value` is an object of ASCII keys and plain scalars that orjson already
    encodes canonically (exact ints in range, ASCII strings, bools, null). Anything else,
    including what must be refused, takes the general path. O(fields)."""
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is int:
            if not INTEGER_MIN <= item <= INTEGER_MAX:  # type: ignore[operator]
                return False
        elif kind is str:
            if not item.isascii():  # type: ignore[attr-defined]
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def parse_canonical(data: bytes) -> object:
    """Parse bytes that must be exactly the canonical encoding of what they contain.

    Used on stored or received bytes, so a reordered key, extra whitespace or an uppercase hex
    digit is caught before anything is hashed. Byte strings come back as their hex `str`.
    Raises `CanonicalError` for invalid JSON, a refused value (see `canonical_bytes`) or a
    valid encoding that is not the canonical one. O(len(data)).
    """
    try:
        value: object = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise CanonicalError("$", f"not JSON: {error}") from None
    if canonical_bytes(value) != data:
        raise CanonicalError("$", f"not in canonical form: {_show(data)}")
    return value


def sha256(data: bytes) -> bytes:
    """The 32-byte SHA-256 digest of `data`. O(len(data))."""
    return hashlib.sha256(data).digest()


def digest(value: object) -> bytes:
    """SHA-256 of the canonical bytes of `value`. Raises `CanonicalError` as `canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(value)).digest()


def digest_hex(value: object) -> str:
    """`digest(value)` as 64 lowercase hex digits. Raises `CanonicalError` as `canonical_bytes`."""
    return digest(value).hex()


class _RefusedError(Exception):
    """Raised deep inside `_plain`; each container on the way out adds its key to the trail,
    so the path is only built when something is refused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trail: list[str | int] = []


def _plain(value: object, depth: int) -> object:
    """A copy of `value` made only of the exact types orjson encodes as we intend."""
    if type(value) is str:
        if not value.isascii():
            _check_unicode(value)
        return value
    if type(value) is int:
        if INTEGER_MIN <= value <= INTEGER_MAX:
            return value
        raise _RefusedError(f"integer {value} is outside the signed 64-bit range")
    if value is None or type(value) is bool:
        return value
    if depth >= DEPTH_MAX:
        raise _RefusedError(f"nested deeper than {DEPTH_MAX} levels")
    if type(value) is dict or isinstance(value, Mapping):
        return _plain_mapping(value, depth)
    if type(value) is list or type(value) is tuple:
        return _plain_sequence(value, depth)
    if type(value) is bytes or type(value) is bytearray:
        return value.hex()
    if isinstance(value, float):
        raise _RefusedError(f"float {value!r} is not allowed: use an integer")
    if isinstance(value, int):  # IntEnum and other int subclasses (bool was taken above)
        return _plain(int(value), depth)
    if isinstance(value, str):  # StrEnum and other str subclasses: the underlying text
        return _plain(str.__str__(value), depth)
    raise _RefusedError(f"type {type(value).__name__} is not allowed: {_show(value)}")


def _plain_mapping(value: Mapping[object, object], depth: int) -> dict[str, object]:
    plain: dict[str, object] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _RefusedError(f"key {_show(key)} is not a string")
        if not key.isascii():
            _check_unicode(key)
        if type(item) is int and INTEGER_MIN <= item <= INTEGER_MAX:  # the common case, inline
            plain[key] = item
            continue
        try:
            plain[key] = _plain(item, depth + 1)
        except _RefusedError as refused:
            refused.trail.append(key)
            raise
    return plain


def _plain_sequence(value: list[object] | tuple[object, ...], depth: int) -> list[object]:
    plain: list[object] = []
    append = plain.append
    index = 0
    try:
        for index, item in enumerate(value):  # noqa: B007 (index is read by the handler)
            append(_plain(item, depth + 1))
    except _RefusedError as refused:
        refused.trail.append(index)
        raise
    return plain


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _RefusedError(f"string {_show(text)} is not valid Unicode") from None


def _path(trail: list[str | int]) -> str:
    parts = ["$"]
    for step in reversed(trail):
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(parts)


def _show(value: object) -> str:
    shown = repr(value)
    if len(shown) <= _REPR_CHARS_MAX:
        return shown
    return shown[: _REPR_CHARS_MAX - 3] + "..."
