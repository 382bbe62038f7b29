"""The A2A task store keeps at most `max_tasks` tasks, each for `task_ttl` seconds after its last update, per
owner; and the card names a bearer scheme for JWTs as it names the API-key one."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from a2a.client import A2AClientError
from a2a.server.context import ServerCallContext
from a2a.types import ListTasksRequest, Task, TaskState, TaskStatus

from aperture.ops.identity import Identity
from aperture.surface.a2a import BoundedTaskStore, CallerUser
from tests.surface.a2a_serving import a2a_client, a2a_gateway, data, final_task

pytestmark = pytest.mark.anyio
SECRET = "a-shared-secret-of-at-least-32-bytes!"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def owner(name: str) -> ServerCallContext:
    return ServerCallContext(user=CallerUser(Identity(name=name, method="api_key"), authenticated=True))


def task(task_id: str) -> Task:
    return Task(id=task_id, context_id="c", status=TaskStatus(state=TaskState.TASK_STATE_WORKING))


async def test_the_store_keeps_the_most_recently_updated_tasks_up_to_its_bound() -> None:
    store = BoundedTaskStore(max_tasks=2, ttl=60, clock=Clock())
    alice, bob = owner("alice"), owner("bob")
    await store.save(task("a1"), alice)
    await store.save(task("b1"), bob)
    await store.save(task("a1"), alice)  # updated: now the most recent
    await store.save(task("a2"), alice)
    assert len(store) == 2
    assert await store.get("b1", bob) is None  # the least recently updated went
    assert (await store.get("a1", alice)) is not None and (await store.get("a2", alice)) is not None
    assert await store.get("a1", bob) is None  # another owner's task is not there for bob
    listed = await store.list(ListTasksRequest(), alice)
    assert sorted(t.id for t in listed.tasks) == ["a1", "a2"]


async def test_a_task_not_updated_for_its_ttl_is_gone() -> None:
    clock = Clock()
    store = BoundedTaskStore(max_tasks=10, ttl=60, clock=clock)
    alice = owner("alice")
    await store.save(task("old"), alice)
    clock.now += 30
    await store.save(task("new"), alice)
    clock.now += 31
    assert await store.get("old", alice) is None and len(store) == 1
    assert await store.get("new", alice) is not None
    await store.delete("new", alice)
    assert len(store) == 0 and await store.get("new", alice) is None


async def test_with_jwt_auth_the_card_names_a_bearer_scheme_and_a_token_is_accepted() -> None:
    ops: dict[str, Any] = {
        "auth": {"enabled": True, "local_roles": [], "jwt": {"algorithms": ["HS256"], "secret": SECRET}}
    }
    async with a2a_gateway(ops) as served:
        async with httpx.AsyncClient() as http:
            card = (await http.get(served.base_url + "/.well-known/agent-card.json")).json()
        assert card["securitySchemes"] == {
            "bearer": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT from the configured issuer.",
                }
            }
        }
        token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            answer = await http.get(served.base_url + "/a2a/tasks/none", headers={"A2A-Version": "1.0"})
        assert answer.status_code == 404  # authenticated: the task is simply not found
        async with a2a_client(served.base_url, key=None, streaming=False) as anonymous:
            with pytest.raises(A2AClientError, match="401"):
                await final_task(anonymous, data({"op": "search", "query": "x"}))
