"""The WebSocket endpoint (`/ws`): accepting connections, logon, and handing each request to
its handler.

The gateway sends a `challenge` (a fresh nonce); the broker logs on by signing the nonce, its
clock's time and its name with the Ed25519 key the genesis holds for it
(`exchange.gateway.api.logon_message`); a member logs on the same way with its node key. Until
then only `logon` and `ping` are accepted; a wrong key, unknown identity, reused nonce or a
timestamp outside the receive window is answered with an error and the connection closes. The
connections not yet logged on, the sessions per identity and each session's message rate are
bounded (`exchange.gateway.session.Limits`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

import aiohttp
from aiohttp import web

from exchange.gateway import api
from exchange.gateway.api import ApiError, Request
from exchange.gateway.rest import error_response
from exchange.gateway.session import Session
from exchange.gateway.state import GatewayState
from ledger.keys import PublicKey
from ledger.node import describe

BROKER_REQUESTS: Final = frozenset(
    {"place", "cancel", "amend", "cancel_all", "order_status", "open_orders", "replay"}
)  # a member session may not send these

Handler = Callable[[Session, Request], ApiError | None]


class Sessions:
    """The `/ws` endpoint: connections, logon, request dispatch, and closing them all."""

    def __init__(
        self,
        state: GatewayState,
        handlers: Mapping[str, Handler],
        on_disconnect: Callable[[Session], None],
    ) -> None:
        self.state = state
        self.handlers = dict(handlers)  # request type -> handler, for logged-on sessions
        self.on_disconnect = on_disconnect  # a `cancel_on_disconnect` session went away
        self.upgrading = 0  # connections between the upgrade request and their session
        self.session_ids = itertools.count(1)
        # identity -> its clock minus ours at its last logon with a valid signature (bounded by
        # the genesis): what /health shows when a logon is refused for its time
        self.logon_clock_offsets_ns: dict[str, int] = {}

    async def on_socket(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        limits, sessions = state.limits, state.sessions
        pending = self.upgrading + sum(not s.logged_on for s in sessions.values())
        if pending >= limits.pending_sessions_max:  # each may hold a little until its timeout
            return error_response(503, ApiError(api.BUSY, f"{pending} connections are waiting "
                                  f"to log on (pending_sessions_max {limits.pending_sessions_max})"
                                  "; retry later"))  # fmt: skip
        ws = web.WebSocketResponse(
            max_msg_size=limits.frame_bytes_max, heartbeat=limits.heartbeat_s
        )  # a longer frame is refused from its header (1009), never read
        self.upgrading += 1  # counted as pending while the handshake is written
        try:
            await ws.prepare(request)
        finally:
            self.upgrading -= 1
        node = state.node
        assert node is not None
        node.sockets.add(ws)
        session = Session(next(self.session_ids), ws, limits, tokens=float(limits.messages_per_s),
                          fault=node.fault)  # fmt: skip
        sessions[session.id] = session
        writer = node.spawn(session.write(), "session", partial(self._writer_failed, session))
        session.send({"type": "challenge", "nonce": session.nonce, "server_time_ns": state.clock(),
                      "window_ms": limits.logon_window_ms})  # fmt: skip
        timeout = asyncio.get_running_loop().call_later(
            limits.logon_timeout_s, self._logon_timeout, session
        )
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                if session.closing is not None:
                    break
                self._handle(session, frame.data)
                if session.logged_on:
                    timeout.cancel()
        finally:
            timeout.cancel()
            del sessions[session.id]
            node.sockets.discard(ws)
            if session.cancel_on_disconnect:
                self.on_disconnect(session)
            session.closing = session.closing or "closed"
            session.wake.set()
            session.space.set()
            await asyncio.wait([writer], timeout=1.0)  # its failure is the supervisor's
            writer.cancel()
        return ws

    def _writer_failed(self, session: Session, error: BaseException) -> None:
        """The session's writer died: close its socket (code 1011), so that the broker
        reconnects instead of waiting for replies that would never be written."""
        assert self.state.node is not None
        session.closing = f"internal error: {describe(error)}"[:120]
        self.state.node.spawn(session.ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR,
                                               message=session.closing.encode()),
                              "reply")  # fmt: skip

    def close_all(self, failed: bool) -> None:
        """The exchange failed or is stopping: close every session once its replies are
        written."""
        for session in self.state.sessions.values():
            if session.closing is None:
                session.close_code = (aiohttp.WSCloseCode.INTERNAL_ERROR if failed
                                      else aiohttp.WSCloseCode.GOING_AWAY)  # fmt: skip
                session.closing = "exchange failed" if failed else "exchange stopping"
                session.wake.set()

    def _logon_timeout(self, session: Session) -> None:
        if not session.logged_on and session.closing is None:
            timeout_s = self.state.limits.logon_timeout_s
            self._fail(session, None, ApiError(api.LOGON_TIMEOUT, f"no logon within {timeout_s} s"))

    def _fail(self, session: Session, request: Any, error: ApiError) -> None:
        """Answer `error` and close the connection (logon failures)."""
        self.state.counters["rejected_logons"] += 1
        session.send(error.to_dict(request))
        session.closing = f"{error.code}: {error.message}"[:120]
        session.wake.set()

    def _handle(self, session: Session, data: bytes | str) -> None:
        state = self.state
        parsed = api.parse_request(data, state.limits.message_bytes_max)
        if not session.allow():
            limit = state.limits.messages_per_s
            request_id = parsed.request if isinstance(parsed, Request) else parsed[1]
            state.error(session, request_id, ApiError(api.RATE_LIMITED,
                        f"more than {limit} messages per second"), limit=limit)  # fmt: skip
            return
        if not isinstance(parsed, Request):
            error, request_id = parsed
            if not session.logged_on:
                self._fail(session, request_id, error)
            else:
                state.error(session, request_id, error)
            return
        if parsed.type == "ping":
            session.send({"type": "pong", "request": parsed.request, "time_ns": state.clock()})
            return
        if parsed.type == "logon":
            self._logon(session, parsed)
            return
        if not session.logged_on:
            self._fail(session, parsed.request, ApiError(
                api.NOT_LOGGED_ON, f"{parsed.type} before logon: only logon and ping are "
                "accepted until then", "type"))  # fmt: skip
            return
        if parsed.type in BROKER_REQUESTS and session.broker is None:
            error = ApiError(api.NOT_ALLOWED, f"{parsed.type} needs a broker logon", "type")
            state.error(session, parsed.request, error)
            return
        handler = self.handlers.get(parsed.type)
        assert handler is not None, parsed.type
        failure = handler(session, parsed)
        if failure is not None:
            state.error(session, parsed.request, failure)

    def _logon(self, session: Session, request: Request) -> None:
        state, args = self.state, request.args
        if session.logged_on:
            state.error(session, request.request,
                        ApiError(api.ALREADY_LOGGED_ON, "this session is logged on"))  # fmt: skip
            return
        name = args["broker"] or args["member"]
        if args["broker"] is not None:
            broker = state.brokers.get(name)
            key = None if broker is None else broker.public_key
            identity = "broker"
        else:
            member = state.members.get(name)
            key = None if member is None else member.public_key
            identity = "member"
        if key is None:
            self._fail(
                session,
                request.request,
                ApiError(api.UNKNOWN_IDENTITY, f"no {identity} {name!r} in the genesis", identity),
            )
            return  # fmt: skip
        if args["nonce"] != session.nonce:
            self._fail(session, request.request, ApiError(
                api.BAD_NONCE, f"nonce {args['nonce']!r:.80} is not this connection's challenge",
                "nonce"))  # fmt: skip
            return
        skew_ms = abs(state.clock() - args["timestamp_ns"]) / 1e6
        self._note_logon_clock(key, name, session.nonce, args)
        if skew_ms > state.limits.logon_window_ms:
            self._fail(session, request.request, ApiError(
                api.STALE_TIMESTAMP, f"timestamp_ns {args['timestamp_ns']} is {skew_ms:.0f} ms "
                f"from the exchange's clock (window {state.limits.logon_window_ms} ms)",
                "timestamp_ns"))  # fmt: skip
            return
        message = api.logon_message(state.genesis.chain_id, name, session.nonce,
                                    args["timestamp_ns"])  # fmt: skip
        try:
            signature = bytes.fromhex(args["signature"])
        except ValueError:
            signature = b""
        if not key.verify(message, signature):
            self._fail(session, request.request, ApiError(
                api.BAD_SIGNATURE, f"the signature does not verify with {name}'s key in the "
                "genesis", "signature"))  # fmt: skip
            return
        session.nonce = ""  # used: a replayed logon on this connection fails too
        self._logged_on(session, request, identity, name)

    def _logged_on(self, session: Session, request: Request, identity: str, name: str) -> None:
        """A logon whose signature verified: within the identity's session limit, the session
        is its, and the reply gives the limits and the next report index."""
        state, limits = self.state, self.state.limits
        held = sum(1 for other in state.sessions.values() if other.identity == name)
        if held >= limits.sessions_per_broker_max:
            self._fail(session, request.request, ApiError(
                api.TOO_MANY_SESSIONS, f"{name} has {held} sessions open, the limit "
                f"(sessions_per_broker_max {limits.sessions_per_broker_max})",
                identity))  # fmt: skip
            return
        if identity == "broker":
            session.broker = name
            session.cancel_on_disconnect = request.args["cancel_on_disconnect"]
        else:
            session.member = state.members[name]
        state.counters["logons"] += 1
        log_ = state.reports.log(name) if identity == "broker" else None
        session.send({"type": "logged_on", "request": request.request, identity: name,
                      "session": session.id,
                      "next_report": None if log_ is None else log_.next_index,
                      "limits": {"messages_per_s": limits.messages_per_s,
                                 "message_bytes_max": limits.message_bytes_max,
                                 "open_orders_per_account": limits.open_orders_per_account,
                                 "backlog_max": limits.backlog_max,
                                 "backlog_bytes_max": limits.backlog_bytes_max,
                                 "sessions_per_broker_max": limits.sessions_per_broker_max},
                      "cancel_on_disconnect": session.cancel_on_disconnect})  # fmt: skip

    def _note_logon_clock(
        self, key: PublicKey, name: str, nonce: str, args: dict[str, Any]
    ) -> None:
        """Remember how far a logon's clock is from ours, if the signature proves the time
        (a refused logon's too: /health shows who is outside the window, and by how much)."""
        message = api.logon_message(self.state.genesis.chain_id, name, nonce,
                                    args["timestamp_ns"])  # fmt: skip
        try:
            signature = bytes.fromhex(args["signature"])
        except ValueError:
            return
        if key.verify(message, signature):
            self.logon_clock_offsets_ns[name] = args["timestamp_ns"] - self.state.clock()
