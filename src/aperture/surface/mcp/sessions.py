"""How the gateway adapts the SDK's streamable-HTTP sessions, each as it is admitted.

Two things the SDK does not do per session, done by wrapping its transport when the session manager
admits it (private hooks: if they disappear, the gateway logs it and goes on without the feature):

- an event store of its own for every session, so one client's resumed stream "2" is never another's;
- streams primed, and closable mid-call, by the protocol version the session was initialised with.
  The SDK goes by each request's `mcp-protocol-version` header alone; a client that initialised with
  2025-11-25 or later reads priming events whatever a later header says (the conformance suite's
  SSE-polling scenario opens its session at 2025-11-25, then sends its call marked 2025-03-26).

It also lets the session limits (`session_limits`) follow sessions as they are admitted and discarded,
and give each session its own idle expiry. Every private part of the SDK's session manager and
transport the gateway touches is reached from here.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from aperture.surface.mcp.events import MemoryEventStore

logger = logging.getLogger(__name__)

PRIMED_FROM = "2025-11-25"
"""The first protocol version whose clients read the empty priming event (and so may have streams closed)."""

_initialised_with: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


EVENT_STORE_BYTES = 1024 * 1024
"""What a session's event store may hold, in bytes of JSON (also at most 32 streams of 128 events)."""


def adapt_sessions(manager: StreamableHTTPSessionManager, *, event_store_bytes: int = EVENT_STORE_BYTES) -> None:
    """Wrap the manager's session admission so every new transport is adapted (see the module docstring)."""
    admit = getattr(manager, "_admit_session", None)
    if admit is None:
        logger.warning("this MCP SDK has no per-session hook: SSE streams will not be resumable")
        manager.event_store = None
        return

    def admit_adapted(*args: Any, **kwargs: Any) -> Any:
        transport = admit(*args, **kwargs)
        if transport is not None:
            transport._event_store = MemoryEventStore(per_stream=128, max_streams=32, max_bytes=event_store_bytes)
            _version_by_initialise(transport)
        return transport

    manager._admit_session = admit_adapted  # type: ignore[method-assign]


def follow_sessions(
    manager: StreamableHTTPSessionManager, *, admitted: Callable[[str], None], discarded: Callable[[str], None]
) -> bool:
    """Call `admitted(session_id)` as the manager admits a session (in the context of the request that opens
    it, before that request is served) and `discarded(session_id)` each time it discards one (however the
    session ended: DELETE, idle expiry, a failed opening request; possibly more than once).

    Returns False, having changed nothing, when this SDK has no such hooks.
    """
    admit = getattr(manager, "_admit_session", None)
    discard = getattr(manager, "_discard_session", None)
    if admit is None or discard is None:
        logger.warning("this MCP SDK's session manager has changed: sessions are not limited per caller")
        return False

    def admit_followed(*args: Any, **kwargs: Any) -> Any:
        transport = admit(*args, **kwargs)
        session_id = getattr(transport, "mcp_session_id", None)
        if session_id is not None:
            admitted(session_id)
        return transport

    async def discard_followed(session_id: str, transport: Any) -> None:
        discarded(session_id)
        await discard(session_id, transport)

    manager._admit_session = admit_followed  # type: ignore[method-assign]
    manager._discard_session = discard_followed  # type: ignore[method-assign]
    return True


def live_transport(manager: StreamableHTTPSessionManager, session_id: str) -> Any:
    """The SDK's transport of an open session, or None."""
    sessions = getattr(manager, "_server_instances", None)
    transport = sessions.get(session_id) if isinstance(sessions, dict) and session_id else None
    if transport is None or getattr(transport, "is_terminated", True):
        return None
    return transport


def expire_after(manager: StreamableHTTPSessionManager, session_id: str, seconds: float) -> None:
    """Close the session once it has had no request in flight for `seconds` (from its next idle moment on;
    the manager's `session_idle_timeout` is every session's default)."""
    transport = live_transport(manager, session_id)
    if transport is not None and getattr(transport, "_idle_timeout", None) is not None:
        transport._idle_timeout = seconds


def session_version(transport: Any, header: str) -> str:
    """The version a request on `transport` is served at: its header's, or the session's if that is newer."""
    initialised = _initialised_with.get(transport, "")
    return max(header, initialised)


def _version_by_initialise(transport: Any) -> None:
    mint = getattr(transport, "_mint_priming_event", None)
    create = getattr(transport, "_create_session_message", None)
    if mint is None or create is None:
        logger.warning("this MCP SDK's transport has changed: streams are primed by each request's header")
        return

    async def mint_priming_event(stream_id: Any, protocol_version: str) -> Any:
        return await mint(stream_id, session_version(transport, protocol_version))

    def create_session_message(message: Any, request: Any, request_id: Any, protocol_version: str) -> Any:
        if getattr(message, "method", None) == "initialize" and protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            _initialised_with[transport] = protocol_version
        return create(message, request, request_id, session_version(transport, protocol_version))

    transport._mint_priming_event = mint_priming_event
    transport._create_session_message = create_session_message


def on_close(connection: object, forget: Callable[[object], object]) -> None:
    """Call `forget(connection)` when the SDK closes `connection` (its per-connection exit stack); a
    coroutine function is awaited. What a surface keeps per connection is dropped this way, not by weak
    keys: what it keeps (the connection's session) refers to the connection, so the key would never die."""
    stack = getattr(connection, "exit_stack", None)
    if not isinstance(stack, contextlib.AsyncExitStack):  # not the SDK's Connection: nothing says when it closes
        logger.debug("cannot tell when connection %r closes; what is kept for it stays", connection)
    elif inspect.iscoroutinefunction(forget):
        stack.push_async_callback(forget, connection)
    else:
        stack.callback(forget, connection)
