"""Session limits over streamable HTTP: per caller and in total, fast expiry of sessions never initialised,
and sessions bound to the identity that opened them.

The gateway's HTTP app runs under uvicorn in this process (on 127.0.0.1), driven with raw HTTP as
handshake-era clients and as 2026-07-28 clients holding `subscriptions/listen` streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest

from aperture.config import Config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from aperture.surface.mcp.transport import http_app
from tests.conftest import ROOT
from tests.mcp_helpers import initialize_request, serving

pytestmark = pytest.mark.anyio
VERSION = "2025-11-25"
MODERN = "2026-07-28"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
KEYS = {"alice": "alice-" + "a" * 30, "bob": "bob-" + "b" * 30}
AUTH: dict[str, Any] = {
    "enabled": True,
    "api_keys": [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()} for name, key in KEYS.items()],
}
TOOLBOX = {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")}


@asynccontextmanager
async def gateway_url(sessions: dict[str, Any], *, auth: bool = True) -> AsyncIterator[tuple[str, McpSurface]]:
    """A gateway with the toolbox and these session settings, served over HTTP; yields its URL and surface."""
    config = Config.model_validate(
        {
            "server": {"transport": "http", "sessions": sessions},
            "backends": [TOOLBOX],
            "search": {"strategy": "bm25"},
            "ops": {"auth": AUTH} if auth else {},
        }
    )
    async with Gateway(config) as gateway:
        surface = McpSurface(gateway)
        async with serving(http_app(surface)) as url:
            yield url, surface


def as_caller(name: str) -> dict[str, str]:
    return {"x-api-key": KEYS[name]}


async def initialize(http: httpx2.AsyncClient, url: str, **headers: str) -> httpx2.Response:
    return await http.post(url, json=initialize_request(VERSION), headers={**HEADERS, **headers})


async def open_session(http: httpx2.AsyncClient, url: str, **headers: str) -> dict[str, str]:
    """An initialised session's headers (the caller's own included)."""
    response = await initialize(http, url, **headers)
    assert response.status_code == 200, response.text
    session = {**headers, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = await http.post(url, json=initialized, headers={**HEADERS, **session})
    assert done.status_code == 202
    return session


async def call(http: httpx2.AsyncClient, url: str, session: dict[str, str], request_id: int) -> httpx2.Response:
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "search_tools", "arguments": {"query": "hash"}},
    }
    return await http.post(url, json=message, headers={**HEADERS, **session})


def listen_request() -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"notifications": {"toolsListChanged": True}, "_meta": meta}
    return {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": params}


def listen_headers(**headers: str) -> dict[str, str]:
    return {**HEADERS, "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen", **headers}


async def test_a_caller_at_its_session_limit_is_refused_while_another_still_opens() -> None:
    async with gateway_url({"max_per_identity": 3}) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        alice = [await open_session(http, url, **as_caller("alice")) for _ in range(3)]
        refused = await initialize(http, url, **as_caller("alice"))
        assert refused.status_code == 429
        message = refused.json()["error"]["message"]
        assert "Too many open sessions for this identity: 3" in message
        assert "server.sessions.max_per_identity (3)" in message and "DELETE" in message
        bob = await open_session(http, url, **as_caller("bob"))  # another identity is not held up
        assert (await call(http, url, bob, 2)).status_code == 200

        closed = await http.delete(url, headers=alice[0])  # a closed session gives its place back
        assert closed.status_code == 200
        await open_session(http, url, **as_caller("alice"))
        assert (await initialize(http, url, **as_caller("alice"))).status_code == 429


async def test_concurrent_openings_cannot_slip_under_the_limit() -> None:
    async with gateway_url({"max_per_identity": 3}) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        codes: list[int] = []

        async def attempt() -> None:
            codes.append((await initialize(http, url, **as_caller("alice"))).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(attempt)
        assert sorted(codes) == [200] * 3 + [429] * 9


async def test_listen_streams_of_sessionless_clients_count_against_the_callers_limit() -> None:
    async with gateway_url({"max_per_identity": 2}) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        await open_session(http, url, **as_caller("alice"))
        headers = listen_headers(**as_caller("alice"))
        async with http.stream("POST", url, json=listen_request(), headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert (await initialize(http, url, **as_caller("alice"))).status_code == 429
            second = await http.post(url, json=listen_request(), headers=headers)
            assert second.status_code == 429
            assert "sessions and listen streams" in second.json()["error"]["message"]
            bob = await http.post(url, json=initialize_request(VERSION), headers={**HEADERS, **as_caller("bob")})
            assert bob.status_code == 200
        # The stream has closed: its place is free again, once the gateway has seen it end.
        with anyio.fail_after(5):
            while (await initialize(http, url, **as_caller("alice"))).status_code == 429:
                pass


async def test_all_callers_together_are_held_to_the_total() -> None:
    async with gateway_url({"max_per_identity": 5, "max_total": 2}) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        await open_session(http, url, **as_caller("alice"))
        await open_session(http, url, **as_caller("alice"))
        refused = await initialize(http, url, **as_caller("bob"))
        assert refused.status_code == 503
        assert "server.sessions.max_total" in refused.json()["error"]["message"]


async def test_without_auth_sessions_are_limited_per_client_address() -> None:
    settings = {"max_per_identity": 2}
    async with gateway_url(settings, auth=False) as (url, _), httpx2.AsyncClient(timeout=10) as one:
        await open_session(one, url)
        await open_session(one, url)
        refused = await initialize(one, url)
        assert refused.status_code == 429
        assert "for this client address" in refused.json()["error"]["message"]
        other = httpx2.AsyncHTTPTransport(local_address="127.0.0.2")  # another client (loopback takes 127/8)
        async with httpx2.AsyncClient(timeout=10, transport=other) as two:
            assert (await initialize(two, url)).status_code == 200


async def test_a_session_never_initialised_expires_fast_and_an_initialised_one_stays() -> None:
    settings = {"initialize_timeout": 0.3, "idle_timeout": 600}
    async with gateway_url(settings) as (url, surface), httpx2.AsyncClient(timeout=10) as http:
        manager = surface.server.session_manager
        discarded = anyio.Event()
        discard = manager._discard_session
        response = await initialize(http, url, **as_caller("alice"))  # and never notifications/initialized
        stale = response.headers["mcp-session-id"]

        async def watched(session_id: str, transport: Any) -> None:
            await discard(session_id, transport)
            if session_id == stale:
                discarded.set()

        manager._discard_session = watched  # type: ignore[method-assign]
        kept = await open_session(http, url, **as_caller("alice"))
        with anyio.fail_after(5):
            await discarded.wait()
        gone = {**as_caller("alice"), "mcp-session-id": stale, "mcp-protocol-version": VERSION}
        assert (await call(http, url, gone, 2)).status_code == 404
        assert (await call(http, url, kept, 2)).status_code == 200
        assert kept["mcp-session-id"] in manager._server_instances


async def test_an_open_stream_does_not_keep_a_session_never_initialised_alive() -> None:
    settings = {"initialize_timeout": 0.3, "idle_timeout": 600}
    async with gateway_url(settings) as (url, surface), httpx2.AsyncClient(timeout=10) as http:
        manager = surface.server.session_manager
        discarded = anyio.Event()
        discard = manager._discard_session

        async def watched(session_id: str, transport: Any) -> None:
            await discard(session_id, transport)
            discarded.set()

        manager._discard_session = watched  # type: ignore[method-assign]
        response = await initialize(http, url, **as_caller("alice"))  # and never notifications/initialized
        stale = {**as_caller("alice"), "mcp-session-id": response.headers["mcp-session-id"]}
        headers = {"accept": "text/event-stream", "mcp-protocol-version": VERSION, **stale}
        with anyio.fail_after(5):
            async with http.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
                async for _ in stream.aiter_bytes():  # ends when the gateway ends the stream
                    pass
            await discarded.wait()
        assert not manager._server_instances


@pytest.mark.parametrize("method", ["POST first call", "POST lean call", "GET", "DELETE"])
async def test_a_session_answers_only_the_identity_that_opened_it(method: str) -> None:
    async with gateway_url({}) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        alice = await open_session(http, url, **as_caller("alice"))
        if method == "POST lean call":
            assert (await call(http, url, alice, 2)).status_code == 200  # the next call takes the lean path
        stolen = {**alice, **as_caller("bob")}
        if method.startswith("POST"):
            response = await call(http, url, stolen, 3)
        else:
            response = await http.request(method, url, headers={"accept": "text/event-stream", **stolen})
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "Session not found"
        assert (await call(http, url, alice, 4)).status_code == 200  # still alice's, and alive


def test_sessions_have_sane_defaults() -> None:
    sessions = Config().server.sessions
    assert sessions.idle_timeout == 600 and sessions.initialize_timeout == 10
    assert sessions.max_per_identity == 64 and sessions.max_total == 10_000
    assert sessions.event_store_bytes == 1024 * 1024


def test_a_bad_limit_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="max_per_identity"):
        Config.model_validate({"server": {"sessions": {"max_per_identity": 0}}})
