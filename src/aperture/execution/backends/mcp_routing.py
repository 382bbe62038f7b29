"""Which call a message from an upstream belongs to, so it reaches only the client that made that call.

An upstream session carries the calls of many clients at once. What the upstream sends back during a call (a
sampling or elicitation request, a progress notification, a log message) must reach the client whose call
raised it, and no other. Over streamable HTTP the link is on the wire: the message rides the call's own POST
response stream. Over stdio (and legacy SSE) nothing links a message to a request, so a message is given to
a call only when that call was the one call in flight for the whole time since it started; otherwise it is
refused (a request) or dropped (a notification). What cannot be matched goes nowhere and is counted, never
to whichever client happened to call last.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aperture.execution.backend import CallContext

logger = logging.getLogger(__name__)

ASKING_METHODS = frozenset({"sampling/createMessage", "elicitation/create"})
"""Server-to-client requests that are put to the calling client (the others the gateway answers itself)."""

UNROUTED_KINDS = ("sampling", "elicitation", "progress", "log")


@dataclass(eq=False, slots=True)
class InFlight:
    """One call in flight on an upstream session (compared by identity: two calls may carry equal contexts)."""

    ctx: CallContext
    serial: int = 0
    """The number of calls begun on the session, this one included, when it began."""
    alone_at_start: bool = True
    ended: bool = False
    lean: bool = False
    """Sent on the lean channel (its progress is matched by the channel's own token)."""


class CallRoutes:
    """The calls in flight on one upstream session, and the match of each message to one of them.

    Args:
        backend: the backend's name, for log records.
        related: whether the transport links messages to calls (streamable HTTP), or not (stdio, SSE).
        one_client: every call on the session comes from one client (`isolation: per_client`): where the
            transport names no call, a message goes to that client on its oldest call in flight.
    """

    def __init__(self, backend: str, *, related: bool, one_client: bool = False) -> None:
        self._backend = backend
        self.related = related
        self.one_client = one_client
        self._calls: dict[int, InFlight] = {}  # by id(): removal in O(1) with thousands in flight
        self._begun = 0
        self._asks: dict[tuple[type, Any], InFlight] = {}
        self.unrouted: Counter[str] = Counter()
        """Messages that matched no call and went nowhere, by kind (`UNROUTED_KINDS`)."""

    def begin(self, ctx: CallContext, *, lean: bool = False) -> InFlight:
        """Record a call about to be sent; from now on it overlaps every call still in flight."""
        self._begun += 1
        call = InFlight(ctx, serial=self._begun, alone_at_start=not self._calls, lean=lean)
        self._calls[id(call)] = call
        return call

    def end(self, call: InFlight) -> None:
        """The call was answered (or given up): nothing that arrives from now on is its."""
        if call.ended:
            return
        call.ended = True
        del self._calls[id(call)]
        for key in [key for key, owner in self._asks.items() if owner is call]:
            del self._asks[key]

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def sole(self) -> InFlight | None:
        """The call in flight, when it is the only one and has been for the whole time since it started (on a
        one-client session: the oldest call in flight)."""
        if self.one_client and self._calls:
            return next(iter(self._calls.values()))  # whichever of its calls: the client is the same
        if len(self._calls) != 1:
            return None
        (call,) = self._calls.values()
        # Nothing was in flight when it began, and nothing began since: it has been alone all along.
        return call if call.alone_at_start and call.serial == self._begun else None

    def note_ask(self, request_id: Any, call: Any) -> None:
        """A server-to-client request with this id arrived on `call`'s own stream (HTTP)."""
        if isinstance(call, InFlight) and not call.ended:
            self._asks[_key(request_id)] = call

    def owner_of_ask(self, request_id: Any) -> InFlight | None:
        """The call a server-to-client request belongs to: the one whose stream carried it, or the sole call."""
        noted = self._asks.pop(_key(request_id), None)
        if noted is not None:
            return None if noted.ended else noted
        return None if self.related else self.sole()

    def owner_of_notice(self, stream_of: Any) -> InFlight | None:
        """The call a log (or other) notification belongs to, given the call whose stream carried it, if any."""
        if isinstance(stream_of, InFlight):
            return None if stream_of.ended else stream_of
        return None if self.related else self.sole()

    def sdk_calls(self) -> int:
        """Calls in flight on the SDK session rather than the lean channel."""
        return sum(1 for call in self._calls.values() if not call.lean)

    def refusal(self, kind: str) -> str:
        """Why a `kind` request (sampling, elicitation) that matched no call is refused: for the upstream."""
        if self.related:
            return (
                f"Aperture refused this {kind} request: it did not arrive on the response stream of a call to "
                f"'{self._backend}' that is still running, so no client can be told to answer it. Send it related "
                "to the tools/call request that needs it."
            )
        if not self._calls:
            return f"Aperture refused this {kind} request: no call to '{self._backend}' is running to answer it."
        return (
            f"Aperture refused this {kind} request: calls to '{self._backend}' overlapped, and this transport "
            "(stdio or SSE) does not say which call a request belongs to, so no client can be told to answer it. "
            f"Set `isolation: per_client` on backend '{self._backend}' to give each client its own upstream "
            "session, or make the call when no other call to it runs."
        )

    def drop(self, kind: str, detail: str) -> None:
        """Count a message that matched no call; it goes nowhere."""
        self.unrouted[kind] += 1
        logger.debug(
            "upstream %s: %s matched no call in flight (%d calls in flight%s); dropped it: %s",
            self._backend,
            kind,
            len(self._calls),
            "" if self.related else ", the transport names no request",
            detail,
        )


def _key(request_id: Any) -> tuple[type, Any]:
    # 1 and "1" are different JSON-RPC ids; 1 and 1.0 are not worth telling apart.
    return (str if isinstance(request_id, str) else int, request_id)
