"""Where A2A tasks live and whose they are: the SDK's in-memory store, bounded in number and age, keyed by the
identity that created each task, so that another caller asking for it gets exactly the answer for an unknown id.

The store is per process: behind a load balancer, a task's requests must reach the replica that holds it
(sticky sessions), as docs/a2a.md says.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task

from aperture.ops.identity import Identity

if TYPE_CHECKING:
    from starlette.requests import Request

    from aperture.gateway import Gateway

IDENTITY_STATE = "aperture.identity"
"""Where the caller's `Identity` is kept in a `ServerCallContext`'s state."""
BASE_URL_STATE = "aperture.base_url"
"""Where the base URL the caller reached the gateway at is kept (for the extended card's interfaces)."""


class CallerUser(User):
    """An Aperture identity as the SDK's user: its name is the task owner (`method:name`, so an API key and a
    token subject of the same name do not share tasks)."""

    def __init__(self, identity: Identity, authenticated: bool) -> None:
        self.identity = identity
        self._authenticated = authenticated

    @property
    def is_authenticated(self) -> bool:
        return self._authenticated

    @property
    def user_name(self) -> str:
        return f"{self.identity.method}:{self.identity.name}"


class CallerContextBuilder(DefaultServerCallContextBuilder):
    """Builds each request's `ServerCallContext` as the SDK does (headers, extensions), with the caller the
    operations layer authenticated as its user, and where the caller reached the gateway."""

    def __init__(self, gateway: Gateway, base_url: Callable[[Request], str]) -> None:
        self._gateway = gateway
        self._base_url = base_url

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[IDENTITY_STATE] = who = self._gateway.caller()  # (set by the HTTP auth layer)
        context.state[BASE_URL_STATE] = self._base_url(request)
        context.user = CallerUser(who, self._gateway.requires_auth)
        return context


def identity_in(context: ServerCallContext | None, fallback: Identity) -> Identity:
    """The caller's identity kept in `context` (else `fallback`)."""
    found = context.state.get(IDENTITY_STATE) if context is not None else None
    return found if isinstance(found, Identity) else fallback


class _Owner(User):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


class BoundedTaskStore(TaskStore):
    """The SDK's in-memory task store, keeping at most `max_tasks` tasks, each for `ttl` seconds after its last
    update; the least recently updated go first. Owner-scoped as the SDK's store is (by `user_name`)."""

    def __init__(self, max_tasks: int, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_tasks = max_tasks
        self.ttl = ttl
        self._clock = clock
        self._store = InMemoryTaskStore()
        self._updated: OrderedDict[tuple[str, str], float] = OrderedDict()  # (owner, task id) -> last save

    def __len__(self) -> int:
        return len(self._updated)

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self._store.save(task, context)
        key = (context.user.user_name, task.id)
        self._updated[key] = self._clock()
        self._updated.move_to_end(key)
        await self._evict()

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        key = (context.user.user_name, task_id)
        updated = self._updated.get(key)
        if updated is None:
            return None
        if self._clock() - updated > self.ttl:
            await self._evict()
            return None
        return await self._store.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        await self._evict()
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self._updated.pop((context.user.user_name, task_id), None)
        await self._store.delete(task_id, context)

    async def _evict(self) -> None:
        too_old = self._clock() - self.ttl
        while self._updated:
            (owner, task_id), updated = next(iter(self._updated.items()))
            if len(self._updated) <= self.max_tasks and updated >= too_old:
                return
            del self._updated[(owner, task_id)]
            await self._store.delete(task_id, ServerCallContext(user=_Owner(owner)))
