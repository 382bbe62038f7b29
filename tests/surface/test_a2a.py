"""The A2A surface through the official `a2a-sdk` client against a live server on 127.0.0.1: the card, a search →
describe → run conversation in data parts, text requests, streaming, cancellation, auth and task ownership."""

from __future__ import annotations

import anyio
import httpx
import pytest
from a2a.client import A2AClientError
from a2a.helpers import get_data_parts
from a2a.types import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError
from mcp import Client

from aperture.surface.mcp import McpSurface
from tests.surface.a2a_serving import (
    ADMIN_KEY,
    AUTH,
    DEV_KEY,
    JSONRPC,
    REST,
    ROOT,
    a2a_client,
    a2a_gateway,
    artifact_data,
    data,
    events,
    final_task,
    status_text,
    text,
)

pytestmark = pytest.mark.anyio


def artifact_error(task: Task) -> object:
    """The structured error a failed task's status message carries."""
    (error,) = get_data_parts(task.status.message.parts)
    return error


async def test_the_card_names_the_operations_the_toolsets_and_both_bindings() -> None:
    async with a2a_gateway() as served, httpx.AsyncClient() as http:
        card = (await http.get(served.base_url + "/.well-known/agent-card.json")).json()
    assert [s["id"] for s in card["skills"]] == ["search", "describe", "run", "toolset:text", "toolset:dates"]
    assert {(i["protocolBinding"], i["url"]) for i in card["supportedInterfaces"]} == {
        ("JSONRPC", served.base_url + "/a2a"),
        ("HTTP+JSON", served.base_url + "/a2a"),
    }
    assert card["capabilities"]["streaming"] is True and not card["capabilities"].get("extendedAgentCard")
    assert "securitySchemes" not in card  # no auth configured: none asked for
    run = next(s for s in card["skills"] if s["id"] == "run")
    assert '"op": "run"' in run["examples"][0]


async def test_with_auth_the_public_card_lists_the_operations_and_the_extended_card_what_the_caller_may_use() -> None:
    async with a2a_gateway(AUTH) as served:
        async with httpx.AsyncClient() as http:
            public = (await http.get(served.base_url + "/.well-known/agent-card.json")).json()
        assert [s["id"] for s in public["skills"]] == ["search", "describe", "run"]
        assert public["securitySchemes"] == {
            "apiKey": {
                "apiKeySecurityScheme": {
                    "location": "header",
                    "name": "X-API-Key",
                    "description": "An API key from the gateway's operator.",
                }
            }
        }
        assert public["capabilities"]["extendedAgentCard"] is True
        for binding in (JSONRPC, REST):  # the dev key is bound to the toolset text: only it is listed
            async with a2a_client(served.base_url, key=DEV_KEY, binding=binding) as client:
                extended = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
            assert [s.id for s in extended.skills] == ["search", "describe", "run", "toolset:text"]
        async with a2a_client(served.base_url, key=ADMIN_KEY) as client:
            extended = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
        assert [s.id for s in extended.skills] == ["search", "describe", "run", "toolset:text", "toolset:dates"]


async def test_a_search_describe_run_conversation_in_data_parts() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        found = await final_task(client, data({"op": "search", "query": "turn a title into a url slug", "limit": 3}))
        assert found.status.state == TaskState.TASK_STATE_COMPLETED
        hits = artifact_data(found)
        assert hits["tools"][0]["id"] == "toolbox:slugify" and hits["confidence"] in ("strong", "weak")
        described = artifact_data(await final_task(client, data({"op": "describe", "tool_id": "toolbox:slugify"})))
        assert described["input_schema"]["required"] == ["text"]
        ran = await final_task(
            client, data({"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "Hello A2A", "max_length": 20}})
        )
        assert ran.status.state == TaskState.TASK_STATE_COMPLETED
        (artifact,) = ran.artifacts
        assert artifact.parts[0].text == "hello-a2a"
        assert artifact_data(ran)["tool_id"] == "toolbox:slugify"


async def test_plain_text_is_a_search_answered_with_ranked_tools_and_the_confidence() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        task = await final_task(client, text("convert kilometres to miles"))
    (artifact,) = task.artifacts
    lines = artifact.parts[0].text.splitlines()
    assert lines[0].startswith("confidence: ") and lines[1].startswith("1. toolbox:convert_units: ")
    assert artifact_data(task)["tools"][0]["id"] == "toolbox:convert_units"


@pytest.mark.parametrize("binding", [JSONRPC, REST], ids=["jsonrpc", "rest"])
async def test_a_streaming_run_reports_progress_then_the_result_as_an_artifact(binding: str) -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, binding=binding) as client:
        served.gate.go.set()
        stream = await events(client, data({"op": "run", "tool_id": "work:slow"}))
    kinds = [event.WhichOneof("payload") for event in stream]
    assert kinds == ["task", "status_update", "artifact_update", "status_update"]
    started = stream[0].task.status
    assert started.state == TaskState.TASK_STATE_WORKING and status_text(started.message) == "run_tool work:slow"
    progress = stream[1].status_update
    assert status_text(progress.status.message) == "1/2 halfway" and progress.metadata["total"] == 2
    assert stream[2].artifact_update.artifact.parts[0].text == "done"
    assert stream[3].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_cancelling_a_task_cancels_the_tool_call_at_its_backend() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False, polling=True) as client:
        started = await final_task(client, data({"op": "run", "tool_id": "work:slow"}))
        with anyio.fail_after(5):
            await served.gate.started.wait()
        cancelled = await client.cancel_task(CancelTaskRequest(id=started.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        with anyio.fail_after(5):
            await served.gate.cancelled.wait()
        again = await client.get_task(GetTaskRequest(id=started.id))
        assert again.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_caller_resubscribes_to_a_running_task_and_sees_it_finish() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False, polling=True) as client:
        started = await final_task(client, data({"op": "run", "tool_id": "work:slow"}))
        with anyio.fail_after(5):
            await served.gate.started.wait()
        seen = []
        async with a2a_client(served.base_url) as streaming:
            with anyio.fail_after(10):
                async for event in streaming.subscribe(SubscribeToTaskRequest(id=started.id)):
                    seen.append(event)
                    if len(seen) == 1:
                        served.gate.go.set()
        assert seen[0].task.id == started.id
        assert seen[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_calls_without_credentials_are_refused_and_with_them_answered() -> None:
    async with a2a_gateway(AUTH) as served:
        async with httpx.AsyncClient() as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
            refused = await http.post(served.base_url + "/a2a", json=body, headers={"A2A-Version": "1.0"})
        assert refused.status_code == 401 and "Authentication required" in refused.json()["message"]
        assert refused.headers["www-authenticate"].startswith("Bearer resource_metadata=")
        async with a2a_client(served.base_url, key="not-a-key", streaming=False) as client:
            with pytest.raises(A2AClientError, match="401"):
                await final_task(client, text("slugify"))
        async with a2a_client(served.base_url, key=ADMIN_KEY, streaming=False) as client:
            task = await final_task(client, text("slugify"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_a_task_of_another_caller_is_answered_as_an_unknown_one() -> None:
    async with a2a_gateway(AUTH) as served:
        async with a2a_client(served.base_url, key=ADMIN_KEY, streaming=False, polling=True) as owner:
            task = await final_task(owner, data({"op": "run", "tool_id": "work:slow"}))
            with anyio.fail_after(5):
                await served.gate.started.wait()
        answers = []
        async with a2a_client(served.base_url, key=DEV_KEY) as other:
            for task_id in (task.id, "no-such-task"):
                found = []
                for call in (
                    other.get_task(GetTaskRequest(id=task_id)),
                    other.cancel_task(CancelTaskRequest(id=task_id)),
                ):
                    with pytest.raises(TaskNotFoundError) as refused:
                        await call
                    found.append(str(refused.value))
                with pytest.raises(TaskNotFoundError) as refused:
                    async for _ in other.subscribe(SubscribeToTaskRequest(id=task_id)):
                        pass
                found.append(str(refused.value))
                answers.append(found)
        assert answers[0] == answers[1]
        assert not served.gate.cancelled.is_set()  # the owner's task runs on
        async with a2a_client(served.base_url, key=ADMIN_KEY, streaming=False) as owner:
            assert (await owner.get_task(GetTaskRequest(id=task.id))).status.state == TaskState.TASK_STATE_WORKING
            served.gate.go.set()


async def test_one_operations_configuration_governs_both_surfaces_and_metrics_name_the_surface() -> None:
    ops = {
        "observe": {"enabled": True, "tracing": False},
        "cache": {"enabled": True},
        "resilience": {"enabled": True, "rate_limits": {"tools": {"toolbox:hash_text": "2/hour"}}},
    }
    async with a2a_gateway(ops) as served, a2a_client(served.base_url, streaming=False) as client:
        mcp = Client(McpSurface(served.gateway).server)
        async with mcp:
            first = await final_task(client, data({"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "A b"}}))
            assert first.status.state == TaskState.TASK_STATE_COMPLETED
            await mcp.call_tool("run_tool", {"tool_id": "toolbox:slugify", "args": {"text": "A b"}})  # from the cache
            hashed = {"op": "run", "tool_id": "toolbox:hash_text", "args": {"text": "x"}}
            assert (await final_task(client, data(hashed))).status.state == TaskState.TASK_STATE_COMPLETED
            await mcp.call_tool("run_tool", {"tool_id": "toolbox:hash_text", "args": {"text": "y"}})
            limited = await final_task(client, data({**hashed, "args": {"text": "z"}}))
        assert limited.status.state == TaskState.TASK_STATE_FAILED
        assert "rate_limited" in str(artifact_error(limited))
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(served.base_url + "/metrics")).text
    slug = 'tool_id="toolbox:slugify",tool_name="slugify",tool_namespace="toolbox"'
    assert f'tool_exec_total{{surface="a2a",{slug}}} 1.0' in metrics
    assert 'tool_cache_lookups_total{result="hit",tool_id="toolbox:slugify"} 1.0' in metrics


async def test_recipe_skills_are_card_skills_and_run_as_data_parts() -> None:
    skills = {"paths": [str(ROOT / "examples" / "skills")]}
    async with a2a_gateway(skills=skills) as served:
        async with httpx.AsyncClient() as http:
            card = (await http.get(served.base_url + "/.well-known/agent-card.json")).json()
        recipe = next(s for s in card["skills"] if s["id"] == "skills:slug_fingerprint")
        assert recipe["description"].startswith("Fingerprint a title") and "recipe" in recipe["tags"]
        async with a2a_client(served.base_url, streaming=False) as client:
            ask = {"op": "run", "tool_id": "skills:slug_fingerprint", "args": {"title": "Hello A2A"}}
            ran = await final_task(client, data(ask))
        assert ran.status.state == TaskState.TASK_STATE_COMPLETED, ran.status
