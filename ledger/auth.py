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

Peer links (a WebSocket between two genesis members: the exchange dialling a member's
`/ledger`) start with `PeerHandshake`, a sans-IO mutual challenge-response. The listener sends
`peer_challenge` (its chain id, genesis hash, member id, a fresh nonce, its clock); the dialer
answers `peer_hello`, signed over the listener's nonce, its own fresh nonce, both member ids,
the chain id and the genesis hash; the listener answers `peer_welcome`, signed over the
dialer's nonce and the same fields. Each side checks the other's signature against the key
its own genesis lists, so a wrong key, another chain or a tampered genesis fails by name, and
nothing else may flow on the link until both have proved themselves. A side that refuses
sends `peer_refused` (code and message) and closes. The time fields are not checked (the
nonces make every proof fresh); they tell each side how far the other's clock is from its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from ledger.canonical import INTEGER_MAX, canonical_bytes
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
FORBIDDEN: Final = "forbidden"  # authenticated, but this identity may not call the endpoint
# peer links (`PeerHandshake`), also on the wire: append only
WRONG_CHAIN: Final = "wrong_chain"
WRONG_GENESIS: Final = "wrong_genesis"
NOT_A_PEER: Final = "not_a_peer"  # a member that may not open this link, or the wrong member
PEER_REFUSED: Final = "peer_refused"  # the other side refused us (its message, unverified)
HANDSHAKE_TIMEOUT: Final = "handshake_timeout"
CLOSED: Final = "closed"

PEER_PURPOSE: Final = "jinlian-peer-link"
NONCE_BYTES: Final = 32
HANDSHAKE_BYTES_MAX: Final = 4096  # one handshake frame; a larger one is refused unread
PEER_REFUSED_CHARS_MAX: Final = 300  # of the other side's refusal, as we log it


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


def request_signer(
    key: PrivateKey, chain_id: str, identity: str, clock: Callable[[], int]
) -> Callable[[str], str]:
    """`authorization(path)`: the header value for a GET of `path` now, by `clock` (ns)."""
    return lambda path: sign_request(key, chain_id, identity, "GET", path, clock())


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


# ---- peer links ----


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What one side of a peer link knows: its chain, genesis, member id and key, and every
    genesis member's name and public key by id."""

    chain_id: str
    genesis_hash: bytes
    member_id: int
    key: PrivateKey
    members: Mapping[int, tuple[str, PublicKey]]

    def name(self, member_id: int) -> str:
        known = self.members.get(member_id)
        return f"member {member_id}" if known is None else f"{known[0]} (member {member_id})"


def peer_proof_message(
    *,
    chain_id: str,
    genesis_hash: bytes,
    role: str,
    signer: int,
    peer: int,
    challenge: bytes,
    nonce: bytes,
    time_ns: int,
) -> bytes:
    """The bytes one side of a peer link signs: the other side's nonce (`challenge`), its own
    (`nonce`), who signs for whom in which role, on which chain and genesis."""
    return canonical_bytes(
        {
            "chain_id": chain_id,
            "challenge": challenge.hex(),
            "genesis": genesis_hash.hex(),
            "nonce": nonce.hex(),
            "peer": peer,
            "purpose": PEER_PURPOSE,
            "role": role,
            "signer": signer,
            "time_ns": time_ns,
        }
    )


_PEER_FIELDS: Final[dict[str, frozenset[str]]] = {
    "peer_challenge": frozenset({"type", "chain_id", "genesis", "member", "nonce", "time_ns"}),
    "peer_hello": frozenset(
        {
            "type",
            "chain_id",
            "genesis",
            "member",
            "peer",
            "challenge",
            "nonce",
            "time_ns",
            "signature",
        }
    ),
    "peer_welcome": frozenset({"type", "member", "peer", "time_ns", "signature"}),
    "peer_refused": frozenset({"type", "code", "message"}),
}


class PeerHandshake:
    """One side of a peer link's mutual authentication, sans-IO: the shell passes every frame
    it receives (and its clock) to `receive` and sends the frames it returns; `start` gives the
    listener's first frame. Done when `peer` (the authenticated member id) or `error` is set;
    after an error the shell sends what `receive` returned (a `peer_refused`) and closes.

    `dialer`: this side opened the connection, to member `expect`. A listener accepts only
    the members in `allowed`. `nonce` is fresh randomness from the shell (NONCE_BYTES).
    """

    def __init__(
        self,
        identity: PeerIdentity,
        *,
        nonce: bytes,
        dialer: bool,
        expect: int | None = None,
        allowed: Collection[int] = (),
    ) -> None:
        assert len(nonce) == NONCE_BYTES, f"nonce of {len(nonce)} bytes, not {NONCE_BYTES}"
        assert not dialer or expect is not None, "a dialer knows whom it dials"
        self.identity = identity
        self.nonce = nonce
        self.dialer = dialer
        self.expect = expect
        self.allowed = allowed
        self.peer: int | None = None
        self.claimed: int | None = None  # who the other side says it is, before proof
        self.error: AuthError | None = None
        self.peer_nonce = b""
        self.clock_offset_ns: int | None = None  # the other side's clock minus ours

    @property
    def done(self) -> bool:
        return self.peer is not None or self.error is not None

    def start(self, now_ns: int) -> list[bytes]:
        if self.dialer:
            return []
        identity = self.identity
        return [_frame({"type": "peer_challenge", "chain_id": identity.chain_id,
                        "genesis": identity.genesis_hash.hex(), "member": identity.member_id,
                        "nonce": self.nonce.hex(), "time_ns": now_ns})]  # fmt: skip

    def receive(self, data: bytes | str, now_ns: int) -> list[bytes]:
        """The frames to send in answer to one received frame."""
        if self.done:
            return []
        value = _parse_peer_frame(data)
        if isinstance(value, AuthError):
            return self._fail(value)
        kind = value["type"]
        if kind == "peer_refused":
            who = self.identity.name(self.expect) if self.expect is not None else "the peer"
            text = f"{value['code']!s:.40}: {value['message']!s}"[:PEER_REFUSED_CHARS_MAX]
            self.error = AuthError(PEER_REFUSED, f"{who} refused the handshake: {text}")
            return []
        expected = "peer_challenge" if self.dialer and not self.peer_nonce else (
            "peer_welcome" if self.dialer else "peer_hello")  # fmt: skip
        if kind != expected:
            return self._fail(AuthError(MALFORMED, f"expected {expected}, got {kind}"))
        if kind == "peer_challenge":
            return self._on_challenge(value, now_ns)
        if kind == "peer_hello":
            return self._on_hello(value, now_ns)
        return self._on_welcome(value, now_ns)

    def _on_challenge(self, value: dict[str, object], now_ns: int) -> list[bytes]:
        assert self.expect is not None
        error = self._same_chain(value) or self._expected_member(value["member"], self.expect)
        if error is not None:
            return self._fail(error)
        self.peer_nonce = _nonce(value["nonce"])
        self.clock_offset_ns = _time(value["time_ns"]) - now_ns
        identity = self.identity
        proof = self._proof("dialer", self.expect, self.peer_nonce, now_ns)
        return [_frame({"type": "peer_hello", "chain_id": identity.chain_id,
                        "genesis": identity.genesis_hash.hex(), "member": identity.member_id,
                        "peer": self.expect, "challenge": self.peer_nonce.hex(),
                        "nonce": self.nonce.hex(), "time_ns": now_ns,
                        "signature": proof.hex()})]  # fmt: skip

    def _on_hello(self, value: dict[str, object], now_ns: int) -> list[bytes]:
        identity = self.identity
        member = value["member"]
        self.claimed = member if type(member) is int else None
        error = self._same_chain(value) or self._expected_member(value["peer"], identity.member_id)
        if error is not None:
            return self._fail(error)
        if self.claimed not in self.allowed:
            return self._fail(AuthError(
                NOT_A_PEER, f"member {member!r:.40} may not open this link (only "
                f"{', '.join(identity.name(m) for m in sorted(self.allowed))})"))  # fmt: skip
        assert self.claimed is not None
        if value["challenge"] != self.nonce.hex():
            return self._fail(AuthError(MALFORMED, "peer_hello.challenge is not our nonce"))
        self.peer_nonce = _nonce(value["nonce"])
        time_ns = _time(value["time_ns"])
        error = self._check_proof(value, "dialer", self.claimed, time_ns)
        if error is not None:
            return self._fail(error)
        self.peer = self.claimed
        self.clock_offset_ns = time_ns - now_ns
        proof = self._proof("listener", self.peer, self.peer_nonce, now_ns)
        return [_frame({"type": "peer_welcome", "member": identity.member_id, "peer": self.peer,
                        "time_ns": now_ns, "signature": proof.hex()})]  # fmt: skip

    def _on_welcome(self, value: dict[str, object], now_ns: int) -> list[bytes]:
        assert self.expect is not None
        error = self._expected_member(value["member"], self.expect) or self._expected_member(
            value["peer"], self.identity.member_id
        )
        if error is not None:
            return self._fail(error)
        time_ns = _time(value["time_ns"])
        error = self._check_proof(value, "listener", self.expect, time_ns)
        if error is not None:
            return self._fail(error)
        self.peer = self.expect
        self.clock_offset_ns = time_ns - now_ns
        return []

    def _same_chain(self, value: dict[str, object]) -> AuthError | None:
        identity = self.identity
        if value["chain_id"] != identity.chain_id:
            return AuthError(WRONG_CHAIN, f"chain id {value['chain_id']!r:.80} is not ours "
                             f"({identity.chain_id!r})")  # fmt: skip
        if value["genesis"] != identity.genesis_hash.hex():
            ours = identity.genesis_hash.hex()
            return AuthError(WRONG_GENESIS, f"genesis hash {value['genesis']!r:.80} is not ours "
                             f"({ours}): the genesis files differ")  # fmt: skip
        return None

    def _expected_member(self, value: object, expected: int) -> AuthError | None:
        if value != expected or type(value) is not int:
            return AuthError(NOT_A_PEER, f"member {value!r:.40} where "
                             f"{self.identity.name(expected)} was expected")  # fmt: skip
        return None

    def _proof(self, role: str, peer: int, challenge: bytes, now_ns: int) -> bytes:
        identity = self.identity
        return identity.key.sign(peer_proof_message(
            chain_id=identity.chain_id, genesis_hash=identity.genesis_hash, role=role,
            signer=identity.member_id, peer=peer, challenge=challenge, nonce=self.nonce,
            time_ns=now_ns))  # fmt: skip

    def _check_proof(
        self, value: dict[str, object], role: str, signer: int, time_ns: int
    ) -> AuthError | None:
        identity = self.identity
        known = identity.members.get(signer)
        if known is None:
            return AuthError(UNKNOWN_IDENTITY, f"member {signer} is not in the genesis")
        message = peer_proof_message(
            chain_id=identity.chain_id, genesis_hash=identity.genesis_hash, role=role,
            signer=signer, peer=identity.member_id, challenge=self.nonce,
            nonce=self.peer_nonce, time_ns=time_ns)  # fmt: skip
        signature = value["signature"]
        if not isinstance(signature, str) or not _verifies(known[1], message, signature):
            return AuthError(BAD_SIGNATURE, f"{identity.name(signer)}'s proof does not verify "
                             "with its genesis key: it runs with another key")  # fmt: skip
        return None

    def _fail(self, error: AuthError) -> list[bytes]:
        self.error = error
        return [_frame({"type": "peer_refused", "code": error.code, "message": error.message})]


def _frame(value: dict[str, object]) -> bytes:
    return orjson.dumps(value)


def _parse_peer_frame(data: bytes | str) -> dict[str, object] | AuthError:
    """A handshake frame, its fields' types checked, or why not (naming the value)."""
    if len(data) > HANDSHAKE_BYTES_MAX:
        return AuthError(MALFORMED, f"handshake frame of {len(data)} bytes, at most "
                         f"{HANDSHAKE_BYTES_MAX}")  # fmt: skip
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return AuthError(MALFORMED, f"handshake frame is not JSON: {error}")
    if not isinstance(value, dict):
        return AuthError(MALFORMED, f"handshake frame is a {type(value).__name__}, not an object")
    kind = value.get("type")
    fields = _PEER_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return AuthError(MALFORMED, f"handshake frame type {kind!r:.40} before authentication")
    if set(value) != fields:
        extra, missing = sorted(set(value) - fields), sorted(fields - set(value))
        return AuthError(MALFORMED, f"{kind}: unknown fields {extra!r:.80}, missing {missing}")
    for name in ("member", "peer", "time_ns"):
        if name in value and (type(value[name]) is not int or not 0 <= value[name] <= INTEGER_MAX):
            return AuthError(MALFORMED, f"{kind}.{name}: {value[name]!r:.40} is not an integer")
    for name in ("nonce", "challenge"):
        if name in value and _nonce(value[name]) == b"":
            return AuthError(MALFORMED, f"{kind}.{name}: {value[name]!r:.80} is not "
                             f"{NONCE_BYTES} bytes of hex")  # fmt: skip
    for name in ("chain_id", "genesis", "signature", "code", "message"):
        if name in value and not isinstance(value[name], str):
            return AuthError(MALFORMED, f"{kind}.{name}: {value[name]!r:.40} is not a string")
    return value


def _nonce(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES:
        return b""
    try:
        return bytes.fromhex(value)
    except ValueError:
        return b""


def _time(value: object) -> int:
    assert type(value) is int, "checked by _parse_peer_frame"
    return value
