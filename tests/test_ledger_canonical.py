"""Canonical bytes: sorted keys, integers only, bytes as hex; refusals name the path."""

from __future__ import annotations

import json
import math
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import (
    DEPTH_MAX,
    INTEGER_MAX,
    INTEGER_MIN,
    CanonicalError,
    canonical_bytes,
    digest,
    digest_hex,
    parse_canonical,
    sha256,
)


class Colour(IntEnum):
    RED = 1


def test_known_encoding() -> None:
    value = {"b": [1, -2, True, None], "a": {"z": "文", "y": b"\x00\xab"}, "c": (Colour.RED,)}
    assert canonical_bytes(value) == (
        '{"a":{"y":"00ab","z":"文"},"b":[1,-2,true,null],"c":[1]}'.encode()
    )


def test_digests() -> None:
    assert sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert digest({"a": 1}) == sha256(b'{"a":1}')
    assert digest_hex({"a": 1}) == sha256(b'{"a":1}').hex()


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        (1.5, "$", "float 1.5"),
        ({"order": {"price": 10.25}}, "$.order.price", "float 10.25"),
        ({"legs": [1, 2, {"qty": math.nan}]}, "$.legs[2].qty", "float nan"),
        ([[0, [1, math.inf]]], "$[0][1][1]", "float inf"),
        ({"x": INTEGER_MAX + 1}, "$.x", str(INTEGER_MAX + 1)),
        ({"x": [INTEGER_MIN - 1]}, "$.x[0]", str(INTEGER_MIN - 1)),
        ({"a": {1: "one"}}, "$.a", "key 1"),
        ({"a": {None: "none"}}, "$.a", "key None"),
        ({"s": "ok\ud800"}, "$.s", "not valid Unicode"),
        ({"\udfff": 1}, "$", "not valid Unicode"),
        ({"set": {1, 2}}, "$.set", "type set"),
        ({"bad": object}, "$.bad", "type type"),
    ],
)
def test_refusals_name_the_path_and_value(value: object, path: str, words: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        canonical_bytes(value)
    assert caught.value.path == path
    assert words in str(caught.value)
    assert str(caught.value).startswith(path + ": ")


def test_integer_range_is_signed_64_bit() -> None:
    assert (
        canonical_bytes([INTEGER_MIN, INTEGER_MAX]) == b"[-9223372036854775808,9223372036854775807]"
    )


def test_nesting_is_limited() -> None:
    value: Any = 0
    for _ in range(DEPTH_MAX):
        value = [value]
    assert canonical_bytes(value).startswith(b"[[")
    with pytest.raises(CanonicalError, match="nested deeper"):
        canonical_bytes([value])


def test_parse_canonical_accepts_only_the_canonical_form() -> None:
    assert parse_canonical(b'{"a":[1,"ff"],"b":null}') == {"a": [1, "ff"], "b": None}
    for data in (b'{"b":1,"a":2}', b'{"a": 1}', b"[1,2] ", b'"\\u0041"'):
        with pytest.raises(CanonicalError, match="not in canonical form"):
            parse_canonical(data)
    with pytest.raises(CanonicalError, match=r"\$.a: float 1.0"):
        parse_canonical(b'{"a":1.0}')
    with pytest.raises(CanonicalError, match="not JSON"):
        parse_canonical(b'{"a":')


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INTEGER_MIN, INTEGER_MAX)
    | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_matches_the_standard_library_encoder(value: object) -> None:
    """An independent encoder: stdlib json with sorted keys and no whitespace."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes(value) == expected.encode()


@given(st.dictionaries(st.text(max_size=4).filter(str.isascii), st.integers(0, 9), max_size=8))
def test_insertion_order_does_not_matter(value: dict[str, int]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reordered)


@given(json_values)
def test_round_trip(value: object) -> None:
    data = canonical_bytes(value)
    assert canonical_bytes(parse_canonical(data)) == data


@given(st.binary(max_size=40))
def test_bytes_are_lowercase_hex(data: bytes) -> None:
    assert canonical_bytes({"b": data}) == b'{"b":"' + data.hex().encode() + b'"}'


flat_scalars = (
    st.none()
    | st.booleans()
    | st.integers(INTEGER_MIN - 2, INTEGER_MAX + 2)
    | st.text(st.characters(codec="utf-8"), max_size=6)
    | st.floats(allow_nan=False)
    | st.sampled_from([Colour.RED])
)


@given(st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), flat_scalars, max_size=8))
def test_flat_objects_take_the_fast_path_with_the_same_bytes_and_refusals(
    value: dict[str, Any],
) -> None:
    """Commands and events are flat objects; their fast path must agree with the stdlib
    encoder and refuse exactly what the general path refuses."""
    refused = any(
        isinstance(v, float) or (type(v) is int and not INTEGER_MIN <= v <= INTEGER_MAX)
        for v in value.values()
    )
    if refused:
        with pytest.raises(CanonicalError):
            canonical_bytes(value)
        return
    plain = {k: int(v) if isinstance(v, IntEnum) else v for k, v in value.items()}
    expected = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes(value) == expected.encode()
