"""One upstream session per client (`isolation: per_client`), for upstreams that ask back during calls.

A shared upstream session cannot tell, on stdio, which client's call a sampling or elicitation request
belongs to once calls overlap (see `mcp_routing`). Giving each client its own session (its own process, for
a stdio upstream) removes the question: whatever arrives on a client's session is that client's. Sessions
start on a client's first call, close when the client has been idle for `idle_timeout` seconds (or once
its connection object is freed), and at most `limit` run at once (the least recently used idle one makes
room).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc

from aperture.execution.backend import CallContext
from aperture.model import BackendUnavailableError

logger = logging.getLogger(__name__)


class Session(Protocol):
    """What a per-client session is to this module: an `McpBackend` of its own."""

    async def start(self, task_group: anyio.abc.TaskGroup) -> None: ...

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(eq=False, slots=True)
class _Lease:
    session: Session
    client: Callable[[], object | None]
    """The client (its connection) this session is for; None once it is gone."""
    busy: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ClientSessions:
    """The per-client sessions of one upstream.

    Args:
        backend: the backend's name, for messages.
        make: a new, unstarted session to the same upstream.
        limit: most sessions at once.
        idle_timeout: seconds a client's session stays open after its last call ended.
    """

    def __init__(
        self, backend: str, make: Callable[[], Session], *, limit: int, idle_timeout: float, kind: str
    ) -> None:
        self._backend = backend
        self._make = make
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._kind = kind
        self._leases: dict[int, _Lease] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._reaper = anyio.CancelScope()

    def __len__(self) -> int:
        return len(self._leases)

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run the idle reaper in `task_group` (sessions start there too)."""
        self._task_group = task_group
        task_group.start_soon(self._reap_forever)

    async def aclose(self) -> None:
        """Close every session."""
        self._reaper.cancel()
        leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            await self._close(lease)

    @asynccontextmanager
    async def lease(self, ctx: CallContext) -> AsyncIterator[Session | None]:
        """The session of the client making this call, started on its first call; None for a call that names
        no client (it takes the shared session)."""
        client = _client_of(ctx)
        if client is None or self._task_group is None:
            yield None
            return
        lease = self._leases.get(id(client))
        if lease is not None and lease.client() is not client:
            lease = None  # that client is gone, and its id was reused
        if lease is None:
            lease = await self._open(client, self._task_group)  # counted busy from the start
        else:
            lease.busy += 1
        try:
            yield lease.session
        finally:
            lease.busy -= 1
            lease.last_used = time.monotonic()

    async def _open(self, client: object, task_group: anyio.abc.TaskGroup) -> _Lease:
        await self._reap()
        if len(self._leases) >= self.limit:
            idle = [lease for lease in self._leases.values() if not lease.busy]
            if not idle:
                raise BackendUnavailableError(
                    f"Upstream '{self._backend}' already runs {self.limit} per-client sessions (its "
                    "`client_sessions` limit), all with calls in flight. Retry when one of them finishes; the "
                    "operator can raise `client_sessions` for this backend.",
                    backend_kind=self._kind,
                )
            oldest = min(idle, key=lambda lease: lease.last_used)
            await self._drop(oldest, "to make room for a new client")
        # Busy while it starts (no reaper closes it), and listed before, so the client's next call waits for it.
        lease = _Lease(self._make(), _reference(client), busy=1)
        self._leases[id(client)] = lease
        logger.info("upstream %s: a session of its own for a new client (%d open)", self._backend, len(self._leases))
        try:
            await lease.session.start(task_group)
        except BaseException:
            lease.busy -= 1
            raise
        return lease

    async def _reap_forever(self) -> None:
        with self._reaper:
            while True:
                await anyio.sleep(max(0.05, min(self.idle_timeout / 2, 5.0)))  # also notices clients gone
                await self._reap()

    async def _reap(self) -> None:
        """Close the sessions of clients that are gone or idle for longer than `idle_timeout`."""
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if lease.busy:
                continue
            if lease.client() is None:
                await self._drop(lease, "its client is gone")
            elif now - lease.last_used > self.idle_timeout:
                await self._drop(lease, f"idle for {self.idle_timeout:g} s")

    async def _drop(self, lease: _Lease, why: str) -> None:
        for key, held in list(self._leases.items()):
            if held is lease:
                del self._leases[key]
        logger.info("upstream %s: closing a client's session (%s)", self._backend, why)
        await self._close(lease)

    async def _close(self, lease: _Lease) -> None:
        with anyio.CancelScope(shield=True):
            await lease.session.aclose()


def _client_of(ctx: CallContext) -> object | None:
    """The client a call comes from: its connection (shared by all its calls), else its session object."""
    peer = ctx.peer
    if peer is None:
        return None
    connection: object | None = getattr(peer, "_connection", None)
    return connection if connection is not None else peer


def _reference(client: object) -> Callable[[], object | None]:
    try:
        return weakref.ref(client)
    except TypeError:  # not weakly referable: held until the session is reaped for idleness
        return lambda: client
