"""Who is calling: signed request headers and short-lived tokens against the genesis keys.

Every identity in the genesis (a member or a broker) holds an Ed25519 key whose public half
the genesis lists. An HTTP caller proves who it is with one header, in one of two forms:

- `Authorization: Jinlian <identity> <timestamp_ns> <signature hex>`: a signature over the
  canonical JSON of `{chain_id, identity, method, path, purpose: "jinlian-request",
  timestamp_ns}`, where `path` is the request's path with its query string exactly as sent.
  It is accepted while `timestamp_ns` is within the window of the server's clock (the logon
  window), so a captured header is useless for another path, another chain or later.
- `Authorization: Jinlian-Token <identity>.<issued_ns>.<expires_ns>.<signature hex>`: a token
  minted offline from the identity's key (`jinlian token`), signed over the canonical JSON of
  `{chain_id, expires_ns, identity, issued_ns, purpose: "jinlian-token"}`; accepted from
  `issued_ns` minus the window until `expires_ns`, for at most `TOKEN_TTL_MAX_NS`. A browser
  holds the token, never the key.

`authenticate` checks either form and returns the identity or an `AuthError` naming what was
wrong. It reads no clock: the caller passes its time. Pure apart from signature checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ledger.canonical import canonical_bytes
from ledger.keys import PrivateKey, PublicKey

SCHEME: Final = "Jinlian"
TOKEN_SCHEME: Final = "Jinlian-Token"
HEADER_BYTES_MAX: Final = 1024
WINDOW_NS: Final = 30 * 10**9  # how far a caller's clock may be from the server's
TOKEN_TTL_MAX_NS: Final = 24 * 3600 * 10**9
SIGNATURE_HEX_CHARS: Final = 128

# error codes, on the wire in REST error bodies: append only
MISSING: Final = "unauthenticated"
MALFORMED: Final = "malformed_authorization"
UNKNOWN_IDENTITY: Final = "unknown_identity"
STALE: Final = "stale_timestamp"
EXPIRED: Final = "expired_token"
BAD_SIGNATURE: Final = "bad_signature"


@dataclass(frozen=True, slots=True)
class AuthError:
    """Why a caller is not authenticated: a stable `code` and a message naming the value."""

    code: str
    message: str


def request_message(
    chain_id: str, identity: str, method: str, path: str, timestamp_ns: int
) -> bytes:
    """The bytes an identity signs for one HTTP request."""
    return canonical_bytes(
        {
            "chain_id": chain_id,
            "identity": identity,
            "method": method.upper(),
            "path": path,
            "purpose": "jinlian-request",
            "timestamp_ns": timestamp_ns,
        }
    )


def token_message(chain_id: str, identity: str, issued_ns: int, expires_ns: int) -> bytes:
    """The bytes an identity signs to mint a token."""
    return canonical_bytes(
        {
            "chain_id": chain_id,
            "expires_ns": expires_ns,
            "identity": identity,
            "issued_ns": issued_ns,
            "purpose": "jinlian-token",
        }
    )


def sign_request(
    key: PrivateKey, chain_id: str, identity: str, method: str, path: str, timestamp_ns: int
) -> str:
    """The `Authorization` header value for one request (`path` with its query string)."""
    signature = key.sign(request_message(chain_id, identity, method, path, timestamp_ns))
    return f"{SCHEME} {identity} {timestamp_ns} {signature.hex()}"


def mint_token(key: PrivateKey, chain_id: str, identity: str, issued_ns: int, ttl_ns: int) -> str:
    """A token valid for `ttl_ns` from `issued_ns`; the `Authorization` value is
    `f"{TOKEN_SCHEME} {token}"`. Raises ValueError for a ttl outside 1..TOKEN_TTL_MAX_NS."""
    if not 0 < ttl_ns <= TOKEN_TTL_MAX_NS:
        raise ValueError(f"ttl {ttl_ns} ns is not in 1..{TOKEN_TTL_MAX_NS} ns (24 h)")
    expires_ns = issued_ns + ttl_ns
    signature = key.sign(token_message(chain_id, identity, issued_ns, expires_ns))
    return f"{identity}.{issued_ns}.{expires_ns}.{signature.hex()}"


def authenticate(
    header: str | None,
    *,
    chain_id: str,
    keys: Mapping[str, PublicKey],
    method: str,
    path: str,
    now_ns: int,
    window_ns: int = WINDOW_NS,
) -> str | AuthError:
    """The identity that `header` (an `Authorization` value, or None) proves, or why not.

    `keys` maps every identity allowed to call (members and brokers by name) to its genesis
    key. Checks, in order: present, size, scheme and shape, known identity, time, signature.
    """
    if header is None or not header.strip():
        return AuthError(MISSING, "no Authorization header: sign the request (docs/api.md)")
    if len(header) > HEADER_BYTES_MAX:
        return AuthError(MALFORMED, f"Authorization is {len(header)} bytes; at most 1024")
    scheme, _, rest = header.strip().partition(" ")
    if scheme == SCHEME:
        return _signed_request(rest, chain_id, keys, method, path, now_ns, window_ns)
    if scheme == TOKEN_SCHEME:
        return _token(rest, chain_id, keys, now_ns, window_ns)
    return AuthError(MALFORMED, f"scheme {scheme[:40]!r} is neither {SCHEME} nor {TOKEN_SCHEME}")


def _signed_request(
    rest: str,
    chain_id: str,
    keys: Mapping[str, PublicKey],
    method: str,
    path: str,
    now_ns: int,
    window_ns: int,
) -> str | AuthError:
    parts = rest.split(" ")
    if len(parts) != 3 or not parts[1].isdigit():
        return AuthError(MALFORMED, f"{rest[:200]!r} is not '<identity> <timestamp_ns> <sig>'")
    identity, timestamp_text, signature_hex = parts
    key = keys.get(identity)
    if key is None:
        return AuthError(UNKNOWN_IDENTITY, f"identity {identity[:80]!r} may not call this node")
    timestamp_ns = int(timestamp_text)
    skew_ns = abs(now_ns - timestamp_ns)
    if skew_ns > window_ns:
        return AuthError(
            STALE,
            f"timestamp_ns {timestamp_ns} is {skew_ns // 10**6} ms from the server's clock "
            f"(window {window_ns // 10**6} ms)",
        )
    message = request_message(chain_id, identity, method, path, timestamp_ns)
    if not _verifies(key, message, signature_hex):
        return AuthError(
            BAD_SIGNATURE,
            f"the signature does not verify with {identity}'s genesis key over {method} {path}",
        )
    return identity


def _token(
    token: str, chain_id: str, keys: Mapping[str, PublicKey], now_ns: int, window_ns: int
) -> str | AuthError:
    parts = token.strip().rsplit(".", 3)
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
        return AuthError(
            MALFORMED, f"token {token[:200]!r} is not '<identity>.<issued>.<expires>.<sig>'"
        )
    identity, issued_text, expires_text, signature_hex = parts
    key = keys.get(identity)
    if key is None:
        return AuthError(UNKNOWN_IDENTITY, f"identity {identity[:80]!r} may not call this node")
    issued_ns, expires_ns = int(issued_text), int(expires_text)
    if not 0 < expires_ns - issued_ns <= TOKEN_TTL_MAX_NS:
        return AuthError(MALFORMED, f"token lifetime {expires_ns - issued_ns} ns is over 24 h")
    if now_ns >= expires_ns:
        return AuthError(EXPIRED, f"the token expired at {expires_ns} (now {now_ns})")
    if now_ns < issued_ns - window_ns:
        return AuthError(STALE, f"the token is issued at {issued_ns}, in the future (now {now_ns})")
    if not _verifies(key, token_message(chain_id, identity, issued_ns, expires_ns), signature_hex):
        return AuthError(
            BAD_SIGNATURE, f"the token's signature does not verify with {identity}'s key"
        )
    return identity


def _verifies(key: PublicKey, message: bytes, signature_hex: str) -> bool:
    if len(signature_hex) != SIGNATURE_HEX_CHARS:
        return False
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return False
    return key.verify(message, signature)
