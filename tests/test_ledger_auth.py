"""Signed request headers and tokens (ledger.auth): each check refuses with its own code."""

from __future__ import annotations

from ledger import auth
from ledger.keys import generate_private_key

CHAIN = "jinlian-test"
KEY = generate_private_key()
OTHER = generate_private_key()
KEYS = {"bank1": KEY.public_key, "broker1": OTHER.public_key}
NOW = 1_800_000_000_000_000_000


def check(header: str | None, path: str = "/block/3", now: int = NOW) -> str | auth.AuthError:
    return auth.authenticate(header, chain_id=CHAIN, keys=KEYS, method="GET", path=path, now_ns=now)


def test_a_signed_request_names_its_identity() -> None:
    header = auth.sign_request(KEY, CHAIN, "bank1", "GET", "/block/3", NOW - 10**9)
    assert check(header) == "bank1"


def test_a_signed_request_is_bound_to_path_chain_key_and_time() -> None:
    header = auth.sign_request(KEY, CHAIN, "bank1", "GET", "/block/3", NOW)
    assert isinstance(wrong := check(header, path="/block/4"), auth.AuthError)
    assert wrong.code == auth.BAD_SIGNATURE and "/block/4" in wrong.message
    other_chain = auth.sign_request(KEY, "elsewhere", "bank1", "GET", "/block/3", NOW)
    assert isinstance(error := check(other_chain), auth.AuthError)
    assert error.code == auth.BAD_SIGNATURE
    stolen = auth.sign_request(OTHER, CHAIN, "bank1", "GET", "/block/3", NOW)
    assert isinstance(error := check(stolen), auth.AuthError)
    assert error.code == auth.BAD_SIGNATURE
    late = check(header, now=NOW + auth.WINDOW_NS + 1)
    assert isinstance(late, auth.AuthError) and late.code == auth.STALE
    assert str(NOW) in late.message


def test_refusals_name_the_offending_value() -> None:
    missing = check(None)
    assert isinstance(missing, auth.AuthError) and missing.code == auth.MISSING
    for header in ("Basic abc", "Jinlian bank1 x sig", "Jinlian bank1", "Jinlian-Token x.y"):
        error = check(header)
        assert isinstance(error, auth.AuthError) and error.code == auth.MALFORMED, header
    unknown = auth.sign_request(KEY, CHAIN, "mallory", "GET", "/block/3", NOW)
    error = check(unknown)
    assert isinstance(error, auth.AuthError) and error.code == auth.UNKNOWN_IDENTITY
    assert "mallory" in error.message
    huge = check("Jinlian " + "a" * 2000)
    assert isinstance(huge, auth.AuthError) and huge.code == auth.MALFORMED


def test_a_token_is_valid_until_it_expires() -> None:
    token = auth.mint_token(KEY, CHAIN, "bank1", NOW, 3600 * 10**9)
    header = f"{auth.TOKEN_SCHEME} {token}"
    assert check(header) == "bank1"
    assert check(header, path="/anything/else") == "bank1"
    expired = check(header, now=NOW + 3600 * 10**9)
    assert isinstance(expired, auth.AuthError) and expired.code == auth.EXPIRED
    early = check(header, now=NOW - auth.WINDOW_NS - 1)
    assert isinstance(early, auth.AuthError) and early.code == auth.STALE
    forged = token.rsplit(".", 1)[0] + "." + "00" * 64
    error = check(f"{auth.TOKEN_SCHEME} {forged}")
    assert isinstance(error, auth.AuthError) and error.code == auth.BAD_SIGNATURE
    stretched = token.replace(f".{NOW + 3600 * 10**9}.", f".{NOW + 7200 * 10**9}.")
    error = check(f"{auth.TOKEN_SCHEME} {stretched}")
    assert isinstance(error, auth.AuthError) and error.code == auth.BAD_SIGNATURE


def test_a_token_lives_at_most_a_day() -> None:
    try:
        auth.mint_token(KEY, CHAIN, "bank1", NOW, auth.TOKEN_TTL_MAX_NS + 1)
    except ValueError as error:
        assert str(auth.TOKEN_TTL_MAX_NS + 1) in str(error)
    else:
        raise AssertionError("a token over 24 h was minted")
