"""Who may open how many streamable-HTTP sessions, and who may use one: an ASGI layer before the MCP app.

- Open sessions, and the long-lived `subscriptions/listen` streams of 2026-07-28 clients (which have no
  session), are counted per caller: its identity when authentication is on (behind a load balancer many
  clients share one address), its client address when it is off. A caller at
  `server.sessions.max_per_identity` is refused another with 429, so one caller flooding the gateway never
  keeps another from opening its session; all callers together are held to `server.sessions.max_total`
  (503).
- A new session has `server.sessions.initialize_timeout` seconds to send `notifications/initialized`,
  else it is closed: requests it has open by then (a GET stream, say) are ended, and it expires that long
  after its last request. From then on it lives until `idle_timeout` seconds pass without a request in
  flight.
- With authentication on, a session belongs to the identity that opened it: a request naming it from any
  other identity (a POST, a GET stream, a DELETE) is answered 404, as if the session did not exist.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.config import SessionsConfig
from aperture.model.nesting import json_too_deep
from aperture.ops.identity import IDENTITY_KEY, Identity
from aperture.surface.mcp.sessions import expire_after, follow_sessions

logger = logging.getLogger(__name__)

LISTEN = "subscriptions/listen"


@dataclass(slots=True)
class _Opening:
    """A request that may open a session: its caller, and whether the manager admitted a session for it."""

    caller: str
    admitted: bool = False


_opening: ContextVar[_Opening | None] = ContextVar("aperture_session_opening", default=None)


class SessionGuard:
    """Wraps the MCP app (and follows the SDK's session manager); see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        manager: StreamableHTTPSessionManager,
        settings: SessionsConfig,
        *,
        path: str,
        authenticated: bool,
    ) -> None:
        self._app = app
        self._manager = manager
        self._settings = settings
        self._path = path
        self._authenticated = authenticated
        self._owners: dict[str, str] = {}  # session id -> the caller that opened it
        self._held: Counter[str] = Counter()  # caller -> its sessions, listen streams and openings in flight
        self._total = 0
        self._uninitialised: dict[str, float] = {}  # session id -> when its time to initialise runs out
        self._waiting: dict[str, set[anyio.CancelScope]] = {}  # its requests in flight meanwhile
        self._following = follow_sessions(manager, admitted=self._admitted, discarded=self._discarded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._path or not self._following:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        caller = self._caller(scope)
        session_id = headers.get("mcp-session-id")
        if session_id is not None:
            owner = self._owners.get(session_id)
            if owner is not None and self._authenticated and owner != caller:
                logger.warning("refused a request for session %s from a caller other than its owner", session_id[:64])
                await _error(send, 404, INVALID_REQUEST, "Session not found")
                return
            if session_id in self._uninitialised:
                await self._before_initialized(session_id, scope, receive, send)
                return
            await self._app(scope, receive, send)
            return
        version = headers.get("mcp-protocol-version")
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
        elif version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
            await self._open(caller, scope, receive, send)  # no session yet: this one may open one
        elif headers.get("mcp-method") == LISTEN:
            await self._listen(caller, scope, receive, send)
        else:
            await self._app(scope, receive, send)

    def _caller(self, scope: Scope) -> str:
        identity = scope.get(IDENTITY_KEY)
        if self._authenticated and isinstance(identity, Identity):
            return f"{identity.method}:{identity.name}"
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}"

    async def _open(self, caller: str, scope: Scope, receive: Receive, send: Send) -> None:
        # `_refused` awaits only to answer a refusal: the check and the place taken are one step, so
        # concurrent openings cannot all slip under the limit.
        if await self._refused(caller, send):
            return
        opening = _Opening(caller)
        self._hold(caller)
        token = _opening.set(opening)
        try:
            await self._app(scope, receive, send)
        finally:
            _opening.reset(token)
            if not opening.admitted:
                self._release(caller)

    async def _listen(self, caller: str, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._refused(caller, send):
            return
        self._hold(caller)
        try:
            await self._app(scope, receive, send)
        finally:
            self._release(caller)

    async def _refused(self, caller: str, send: Send) -> bool:
        """Refuse (and answer) a caller at its limit, or anyone when the gateway is full."""
        settings = self._settings
        whose = "client address" if caller.startswith("address:") else "identity"
        if self._held[caller] >= settings.max_per_identity:
            logger.warning("refused a new session: caller %s holds %d", caller, self._held[caller])
            await _error(
                send,
                429,
                INVALID_REQUEST,
                f"Too many open sessions for this {whose}: {self._held[caller]} sessions and listen streams are "
                f"open, the most server.sessions.max_per_identity ({settings.max_per_identity}) allows. Close "
                "sessions no longer in use (HTTP DELETE with their Mcp-Session-Id), or wait: idle sessions close "
                f"after {settings.idle_timeout:g} s.",
            )
            return True
        if self._total >= settings.max_total:
            logger.warning("refused a new session: %d sessions and listen streams are open", self._total)
            await _error(
                send,
                503,
                INTERNAL_ERROR,
                f"The gateway holds as many sessions as it takes ({settings.max_total}, server.sessions.max_total); "
                f"retry later: idle sessions close after {settings.idle_timeout:g} s.",
            )
            return True
        return False

    def _hold(self, caller: str) -> None:
        self._held[caller] += 1
        self._total += 1

    def _release(self, caller: str) -> None:
        self._held[caller] -= 1
        if self._held[caller] <= 0:
            del self._held[caller]
        self._total -= 1

    def _admitted(self, session_id: str) -> None:
        """The manager admitted a session, for the request being served: it keeps the request's place."""
        opening = _opening.get()
        if opening is None or opening.admitted:  # not through this layer: counted nowhere
            return
        opening.admitted = True
        self._owners[session_id] = opening.caller
        self._uninitialised[session_id] = anyio.current_time() + self._settings.initialize_timeout
        expire_after(self._manager, session_id, self._settings.initialize_timeout)

    def _discarded(self, session_id: str) -> None:
        self._uninitialised.pop(session_id, None)
        self._waiting.pop(session_id, None)
        caller = self._owners.pop(session_id, None)
        if caller is not None:
            self._release(caller)

    async def _before_initialized(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request on a session not yet initialised: ended when the session's time to initialise runs
        out (unless it initialises first), so no open request keeps an uninitialised session alive."""
        if scope["method"] == "POST":
            receive = await self._watch_initialized(session_id, receive)
        deadline = self._uninitialised.get(session_id)
        if deadline is None:  # this very request initialised it
            await self._app(scope, receive, send)
            return
        waiting = self._waiting.setdefault(session_id, set())
        response = _Response(send)
        with anyio.CancelScope(deadline=deadline) as cancel:
            waiting.add(cancel)
            try:
                await self._app(scope, receive, response.send)
            finally:
                waiting.discard(cancel)
                if not waiting and self._waiting.get(session_id) is waiting:
                    del self._waiting[session_id]
        if cancel.cancelled_caught:
            logger.info("ended a request on session %s: it was not initialised in time", session_id[:64])
            await response.end(
                f"Session not initialised within {self._settings.initialize_timeout:g} s "
                "(server.sessions.initialize_timeout); send notifications/initialized after initialize."
            )

    async def _watch_initialized(self, session_id: str, receive: Receive) -> Receive:
        """Read the body of a POST on a session not yet initialised; once it carries `notifications/initialized`
        the session gets the full idle timeout. Returns a `receive` that hands the body on unchanged."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > DEFAULT_MAX_REQUEST_BODY_SIZE or not message.get("more_body", False):
                break
        if _initialized(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")):
            self._uninitialised.pop(session_id, None)
            for waiting in self._waiting.pop(session_id, ()):
                waiting.deadline = math.inf  # initialised: its requests may take their time
            expire_after(self._manager, session_id, self._settings.idle_timeout)

        async def replayed() -> Message:
            return messages.pop(0) if messages else await receive()

        return replayed


class _Response:
    """Passes a response on, noting how far it got, so that one cut short can still be ended properly."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)

    async def end(self, message: str) -> None:
        """End the response: the body (an SSE stream, say) where it stands, or an error when nothing was sent."""
        if not self.started:
            await _error(self._send, 404, INVALID_REQUEST, message)
        elif not self.finished:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def _initialized(body: bytes) -> bool:
    """Whether a POST body is (or, as a batch, holds) the `notifications/initialized` notification."""
    if b"notifications/initialized" not in body or json_too_deep(body):  # (JsonRpcGuard refuses those first)
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    items = parsed if isinstance(parsed, list) else [parsed]
    return any(isinstance(m, dict) and m.get("method") == "notifications/initialized" for m in items)


async def _error(send: Send, status: int, code: int, message: str) -> None:
    """A JSON-RPC error with no id, as the SDK answers refusals before a request is read."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
