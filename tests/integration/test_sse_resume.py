"""A long call over streamable HTTP lets go of its SSE stream; the client resumes with Last-Event-ID (SEP-1699).

A real `aperture serve --transport http` with `server.sse_poll_after` set and the fixture upstream behind
it, driven with raw HTTP as a 2025-11-25 client: the POST stream is primed with an event id and a retry
interval, closes before the answer, and a GET with the last event id replays what was missed, answer
included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import serving_http
from tests.mcp_helpers import initialize_request

pytestmark = pytest.mark.anyio
VERSION = "2025-11-25"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    upstream = {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}
    config = tmp_path / "poll.json"
    config.write_text(
        json.dumps({"server": {"expose": "passthrough", "sse_poll_after": 0.3}, "mcpServers": {"up": upstream}})
    )
    with serving_http(config) as url:
        yield url


async def events(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The SSE events of a response, as dicts of their fields (`data` parsed when it is JSON)."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[field] = json.loads(value) if field == "data" and value else value
    if event:
        yield event


HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def answer_to(event: dict[str, Any], request_id: int) -> bool:
    return isinstance(event.get("data"), dict) and event["data"].get("id") == request_id and "result" in event["data"]


def progress_of(seen: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [
        (e["data"]["params"]["progress"], e["data"]["params"]["total"])
        for e in seen
        if isinstance(e.get("data"), dict) and e["data"].get("method") == "notifications/progress"
    ]


async def open_session(http: httpx2.AsyncClient, url: str, version: str = VERSION) -> dict[str, str]:
    response = await http.post(url, json=initialize_request(version), headers=HEADERS)
    assert response.status_code == 200
    session = {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**HEADERS, **session})
    return session


async def call_until_closed(
    http: httpx2.AsyncClient, url: str, session: dict[str, str], steps: int
) -> list[dict[str, Any]]:
    """Call `slow` (request id 2, like every client's first call) and read its stream until the server closes it."""
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "up__slow", "arguments": {"steps": steps}, "_meta": {"progressToken": "p"}},
    }
    seen: list[dict[str, Any]] = []
    async with http.stream("POST", url, json=call, headers={**HEADERS, **session}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for event in events(stream):
            seen.append(event)
    return seen


async def resume(http: httpx2.AsyncClient, url: str, session: dict[str, str], last_id: str) -> list[dict[str, Any]]:
    resumed: list[dict[str, Any]] = []
    headers = {"accept": "text/event-stream", "last-event-id": last_id, **session}
    async with http.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        with anyio.fail_after(10):
            async for event in events(stream):
                resumed.append(event)
                if answer_to(event, 2):
                    break
    return resumed


async def test_a_closed_stream_is_resumed_with_last_event_id(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url)
        seen = await call_until_closed(http, url, session, steps=100)
        first, last = seen[0], seen[-1]
        assert first["data"] == "" and "id" in first and first.get("retry") == "1000"  # primed, with a retry hint
        assert not any(answer_to(e, 2) for e in seen)  # the stream closed before the answer

        resumed = await resume(http, url, session, last["id"])
        assert resumed[-1]["data"]["result"]["content"][0]["text"] == "done after 100 steps"
        progress = progress_of(seen + resumed)
        assert progress == sorted(progress) and len(set(progress)) == len(progress)  # nothing twice, in order


async def test_resuming_replays_only_the_own_session_events(url: str) -> None:
    # Two clients, both with request id 2 in flight: a resumed stream must carry only its own session's events.
    async with httpx2.AsyncClient(timeout=10) as http:
        sessions = [await open_session(http, url), await open_session(http, url)]
        seen: dict[int, list[dict[str, Any]]] = {}

        async def one(index: int, steps: int) -> None:
            seen[index] = await call_until_closed(http, url, sessions[index], steps)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0, 60)
            tg.start_soon(one, 1, 80)
        for index, steps in ((0, 60), (1, 80)):
            resumed = await resume(http, url, sessions[index], seen[index][-1]["id"])
            assert resumed[-1]["data"]["result"]["content"][0]["text"] == f"done after {steps} steps"
            assert {total for _, total in progress_of(seen[index] + resumed)} == {steps}


async def test_a_session_opened_at_2025_11_25_is_primed_whatever_a_later_header_says(url: str) -> None:
    # The client proved at initialize that it reads priming events; a stale header on a call does not undo it.
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url)
        seen = await call_until_closed(http, url, {**session, "mcp-protocol-version": "2025-03-26"}, steps=100)
        assert seen[0]["data"] == "" and "id" in seen[0]
        assert not any(answer_to(e, 2) for e in seen)
        resumed = await resume(http, url, session, seen[-1]["id"])
        assert resumed[-1]["data"]["result"]["content"][0]["text"] == "done after 100 steps"


async def test_an_older_session_is_neither_primed_nor_let_go(url: str) -> None:
    # A 2025-03-26 client cannot parse an empty priming event nor resume: its stream stays open to the answer.
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, version="2025-03-26")
        seen = await call_until_closed(http, url, session, steps=40)
        assert all(event.get("data") != "" for event in seen)
        assert answer_to(seen[-1], 2) and seen[-1]["data"]["result"]["content"][0]["text"] == "done after 40 steps"
