"""Auth rules cover every federated MCP method as they cover tools: resources, templates, prompts, completion,
subscriptions and listen streams. What a caller may not see is left out, and asking for it gets the answer
an unknown one gets. Through the official MCP client, against two real upstream processes."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

from aperture.config import parse_config
from aperture.execution import CallContext
from aperture.gateway import Gateway
from aperture.ops import OPEN
from aperture.ops.identity import IDENTITY_KEY, Identity
from aperture.surface.mcp import McpSurface, federation
from aperture.surface.mcp.federation import VisibleBus
from tests.conftest import FIXTURES
from tests.integration.conftest import serving_http
from tests.mcp_helpers import run

pytestmark = pytest.mark.anyio

# Namespace `secret` is for admins only; of `docs`, one resource and one prompt are.
RULES = [
    {"tools": "secret:*", "roles": ["admin"]},
    {"tools": "docs:docs://notes/private", "roles": ["admin"]},
    {"tools": "docs:brief", "roles": ["admin"]},
]
ADMIN = CallContext(meta={IDENTITY_KEY: Identity(name="root", method="jwt", roles=frozenset({"admin"}))})
FORBIDDEN_URIS = ("secret://notes/public", "secret://items/7", "docs://notes/private")
UNKNOWN_URI = "nowhere://x"


def federation_config(**auth: Any) -> dict[str, Any]:
    """Upstreams `docs` and `secret`, with the rules above."""
    server = str(FIXTURES / "resource_server.py")
    backends = [{"name": name, "kind": "mcp", "command": [sys.executable, server, name]} for name in ("docs", "secret")]
    return {
        "search": {"strategy": "bm25"},
        "backends": backends,
        "ops": {"auth": {"enabled": True, "rules": RULES, **auth}},
    }


@asynccontextmanager
async def federated(role: str, mode: Any = "auto") -> AsyncIterator[tuple[Gateway, Client]]:
    """A gateway over upstreams `docs` and `secret` with the rules above, and a client calling with `role`."""
    config = parse_config(federation_config(local_roles=[role]))
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server, mode=mode, cache=None) as client:
        yield gateway, client


def unknown_resource(uri: str) -> str:
    return f"No upstream offers the resource {uri!r}; resources/list shows what is available."


async def refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(MCPError) as refused:
        await call
    return refused.value.error.code, refused.value.error.message


async def test_resources_list_shows_only_resources_the_caller_may_read() -> None:
    async with federated("dev") as (_, client):
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
    assert listed == ["docs://notes/public"]


async def test_resource_templates_list_shows_only_templates_the_caller_may_see() -> None:
    async with federated("dev") as (_, client):
        listed = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    assert listed == ["docs://items/{id}"]


async def test_reading_a_forbidden_resource_answers_as_for_an_unknown_one() -> None:
    async with federated("dev") as (_, client):
        unknown = await refusal(client.read_resource(UNKNOWN_URI))
        assert unknown == (mcp_types.INVALID_PARAMS, unknown_resource(UNKNOWN_URI))
        for uri in FORBIDDEN_URIS:  # listed, matched by a template, forbidden by a rule on one URI
            assert await refusal(client.read_resource(uri)) == (mcp_types.INVALID_PARAMS, unknown_resource(uri)), uri
        for uri in ("docs://notes/public", "docs://items/7"):
            assert (await client.read_resource(uri)).contents[0].text == uri  # type: ignore[union-attr]


async def test_subscribing_to_a_forbidden_resource_answers_as_for_an_unknown_one() -> None:
    async with federated("dev", mode="legacy") as (gateway, client):
        updated: list[str] = []
        heard = anyio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, mcp_types.ResourceUpdatedNotification):
                updated.append(str(message.params.uri))
                heard.set()

        client._session._message_handler = on_message  # type: ignore[union-attr]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # a handshake-era client
            for uri in (UNKNOWN_URI, *FORBIDDEN_URIS):
                assert await refusal(client.subscribe_resource(uri)) == (
                    mcp_types.INVALID_PARAMS,
                    unknown_resource(uri),
                ), uri
                await client.unsubscribe_resource(uri)  # not subscribed: answered alike, unknown or forbidden
            await client.subscribe_resource("docs://notes/public")
            for uri in FORBIDDEN_URIS:  # changes the caller may not hear of, then one it may
                await gateway.run(f"{uri.split(':')[0]}:touch", {"uri": uri}, ADMIN)
            await gateway.run("docs:touch", {"uri": "docs://notes/public"}, ADMIN)
            with anyio.fail_after(5):
                await heard.wait()
            await client.unsubscribe_resource("docs://notes/public")
    assert updated == ["docs://notes/public"]


async def test_prompts_list_shows_only_prompts_the_caller_may_use() -> None:
    async with federated("dev") as (_, client):
        assert [p.name for p in (await client.list_prompts()).prompts] == ["docs__summarize"]


async def test_getting_a_forbidden_prompt_answers_as_for_an_unknown_one() -> None:
    async with federated("dev") as (_, client):
        for name in ("nope", "secret__summarize", "secret__brief", "docs__brief"):
            # The list of prompts in the error names only those the caller may use.
            expected = (mcp_types.INVALID_PARAMS, f"No prompt {name!r}. Prompts: docs__summarize.")
            assert await refusal(client.get_prompt(name, {"topic": "x"})) == expected, name
        got = await client.get_prompt("docs__summarize", {"topic": "x"})
        assert got.messages[0].content.text == "docs summarize x"  # type: ignore[union-attr]


async def test_a_hidden_prompt_never_changes_the_name_a_visible_one_is_listed_under() -> None:
    # With bare names, `summarize` is unique among the prompts the dev may use: secret's must not make it
    # `docs__summarize` (which would tell the dev that another backend has one).
    config = parse_config({**federation_config(local_roles=["dev"]), "server": {"namespaced": False}})
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server, cache=None) as client:
        assert [p.name for p in (await client.list_prompts()).prompts] == ["summarize"]
        got = await client.get_prompt("summarize", {"topic": "x"})
        assert got.messages[0].content.text == "docs summarize x"  # type: ignore[union-attr]
        for name in ("docs__summarize", "secret__summarize", "brief"):
            expected = (mcp_types.INVALID_PARAMS, f"No prompt {name!r}. Prompts: summarize.")
            assert await refusal(client.get_prompt(name, {"topic": "x"})) == expected, name
        ref = mcp_types.PromptReference(name="summarize")
        assert (await client.complete(ref, {"name": "topic", "value": "b"})).completion.values == ["beta"]


async def test_completion_for_a_forbidden_prompt_or_template_answers_as_for_an_unknown_one() -> None:
    prompt, template = mcp_types.PromptReference, mcp_types.ResourceTemplateReference
    async with federated("dev") as (_, client):

        async def values(ref: Any, argument: str) -> list[str]:
            return (await client.complete(ref, {"name": argument, "value": ""})).completion.values

        for ref in (prompt(name="nope"), prompt(name="secret__summarize"), prompt(name="docs__brief")):
            assert await values(ref, "topic") == [], ref
        for uri in ("nowhere://{id}", "secret://items/{id}"):
            assert await values(template(uri=uri), "id") == [], uri
        assert await values(prompt(name="docs__summarize"), "topic") == ["alpha", "beta"]
        assert await values(template(uri="docs://items/{id}"), "id") == ["1", "2", "3"]


async def test_a_listen_stream_hears_only_of_resources_the_caller_may_read() -> None:
    watched = [UNKNOWN_URI, *FORBIDDEN_URIS, "docs://notes/public"]
    async with federated("dev") as (gateway, client):
        assert client.protocol_version == "2026-07-28"  # sessionless: no resources/subscribe, only listen
        async with client.listen(resource_subscriptions=watched) as subscription:
            # Acknowledged alike: a forbidden URI looks like an unknown one.
            assert subscription.honored.resource_subscriptions == watched
            for uri in FORBIDDEN_URIS:  # changes the caller may not hear of, then one it may
                await gateway.run(f"{uri.split(':')[0]}:touch", {"uri": uri}, ADMIN)
            await gateway.run("docs:touch", {"uri": "docs://notes/public"}, ADMIN)
            with anyio.fail_after(5):
                first = await subscription.__anext__()
    assert first == ResourceUpdated(uri="docs://notes/public")


async def test_a_caller_the_rules_allow_sees_and_reaches_everything() -> None:
    async with federated("admin") as (gateway, client):
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert resources == {f"{ns}://notes/{n}" for ns in ("docs", "secret") for n in ("public", "private")}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {"docs://items/{id}", "secret://items/{id}"}
        for uri in FORBIDDEN_URIS:
            assert (await client.read_resource(uri)).contents[0].text == uri  # type: ignore[union-attr]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {f"{ns}__{p}" for ns in ("docs", "secret") for p in ("summarize", "brief")}
        got = await client.get_prompt("secret__summarize", {"topic": "x"})
        assert got.messages[0].content.text == "secret summarize x"  # type: ignore[union-attr]
        ref = mcp_types.ResourceTemplateReference(uri="secret://items/{id}")
        assert (await client.complete(ref, {"name": "id", "value": "2"})).completion.values == ["2"]
        async with client.listen(resource_subscriptions=["secret://notes/private"]) as subscription:
            await gateway.run("secret:touch", {"uri": "secret://notes/private"}, ADMIN)
            with anyio.fail_after(5):
                assert await subscription.__anext__() == ResourceUpdated(uri="secret://notes/private")


def counted_listings(gateway: Gateway, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The listings (resources, templates, prompts) the gateway asks of upstream `name` from now on, in order."""
    backend: Any = gateway.registry.get(name)
    listings: list[str] = []
    for method in ("list_resources", "list_resource_templates", "list_prompts"):
        original = getattr(backend, method)

        async def counted(original: Any = original, method: str = method) -> Any:
            listings.append(method)
            return await original()

        monkeypatch.setattr(backend, method, counted)
    return listings


async def test_a_hidden_thing_costs_the_lookups_an_unknown_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not answered faster than an unknown one: both make the gateway list the upstreams again.
    monkeypatch.setattr(federation, "RELIST_EVERY", 0.0)  # every miss lists again (else once a second)
    async with federated("dev") as (gateway, client):
        lookups = counted_listings(gateway, "docs", monkeypatch)
        await client.list_resources()
        await client.list_prompts()
        await client.list_resource_templates()

        async def lookups_of(ask: Any) -> list[str]:
            del lookups[:]
            with contextlib.suppress(MCPError):
                await ask()
            return sorted(lookups)

        template = mcp_types.ResourceTemplateReference
        for unknown, hidden in (
            (lambda: client.read_resource(UNKNOWN_URI), lambda: client.read_resource("docs://notes/private")),
            (lambda: client.get_prompt("nope"), lambda: client.get_prompt("docs__brief")),
            (
                lambda: client.complete(template(uri="nowhere://{id}"), {"name": "id", "value": ""}),
                lambda: client.complete(template(uri="secret://items/{id}"), {"name": "id", "value": ""}),
            ),
        ):
            counted_unknown = await lookups_of(unknown)
            assert counted_unknown and await lookups_of(hidden) == counted_unknown


async def test_a_flood_of_unknown_lookups_lists_the_upstreams_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each miss (an unknown or hidden URI, template or prompt) makes the gateway list the upstreams again;
    # a caller sending misses as fast as it can must not turn each into a listing of every upstream.
    monkeypatch.setattr(federation, "RELIST_EVERY", 60.0)  # (the test must not depend on the clock)
    async with federated("dev") as (gateway, client):
        listings = counted_listings(gateway, "docs", monkeypatch)

        async def miss(n: int) -> None:
            with contextlib.suppress(MCPError):
                await client.read_resource(f"nowhere://{n}")
            with contextlib.suppress(MCPError):
                await client.get_prompt(f"nope{n}")

        for n in range(30):
            await miss(n)
        async with anyio.create_task_group() as tg:
            for n in range(30, 60):
                tg.start_soon(miss, n)
    assert sorted(listings) == ["list_prompts", "list_resource_templates", "list_resources"]


async def test_upstream_log_messages_sent_outside_any_call_reach_no_client() -> None:
    # Sent outside any call, an upstream's log message belongs to no caller (issue 17, item 1): it is dropped
    # and counted, so it cannot reach a client whose caller may not see that namespace, nor any other.
    config = parse_config(federation_config(local_roles=["dev"]))
    heard: list[str] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        heard.append(str(params.logger))

    async with Gateway(config) as gateway:
        surface = McpSurface(gateway)
        upstreams = [gateway.registry.get(name) for name in ("secret", "docs")]
        async with Client(surface.server, mode="legacy", cache=None, logging_callback=on_log) as client:
            await client.list_tools()  # a known connection from now on
            await surface.federation.watch("secret://notes/public", OPEN)  # secret logs, then docs
            await surface.federation.watch("docs://notes/public", OPEN)
            with anyio.fail_after(5):
                while not all(getattr(b, "unrouted", {}).get("log", 0) for b in upstreams):
                    await anyio.sleep(0.01)  # the count is state the upstreams' reader tasks change
            await client.list_tools()  # anything sent to this client before this answer has arrived by now
    assert heard == []


async def test_over_http_each_api_key_holder_sees_and_hears_only_its_resources(tmp_path: Path) -> None:
    # A real `aperture serve` process; a sessionless (2026-07-28) caller is whoever each request's key says.
    keys = {"dev": "k-" + "d" * 30, "admin": "k-" + "a" * 30}
    api_keys = [{"name": r, "sha256": hashlib.sha256(k.encode()).hexdigest(), "roles": [r]} for r, k in keys.items()]
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(federation_config(api_keys=api_keys)))
    with serving_http(path) as url:
        async with (
            httpx2.AsyncClient(headers={"x-api-key": keys["dev"]}, timeout=30) as dev_http,
            httpx2.AsyncClient(headers={"x-api-key": keys["admin"]}, timeout=30) as admin_http,
            Client(streamable_http_client(url, http_client=dev_http), cache=None) as dev,
            Client(streamable_http_client(url, http_client=admin_http), cache=None) as admin,
        ):
            assert dev.protocol_version == "2026-07-28"
            assert [str(r.uri) for r in (await dev.list_resources()).resources] == ["docs://notes/public"]
            assert [p.name for p in (await dev.list_prompts()).prompts] == ["docs__summarize"]
            for uri in FORBIDDEN_URIS:
                assert await refusal(dev.read_resource(uri)) == (mcp_types.INVALID_PARAMS, unknown_resource(uri))
            assert len((await admin.list_resources()).resources) == 4
            async with dev.listen(resource_subscriptions=[*FORBIDDEN_URIS, "docs://notes/public"]) as subscription:
                for uri in FORBIDDEN_URIS:  # the admin changes what the dev may not hear of, then what it may
                    assert not (await run(admin, f"{uri.split(':')[0]}:touch", {"uri": uri})).is_error
                assert not (await run(admin, "docs:touch", {"uri": "docs://notes/public"})).is_error
                with anyio.fail_after(10):
                    assert await subscription.__anext__() == ResourceUpdated(uri="docs://notes/public")


async def test_a_listener_registered_outside_a_listen_request_hears_of_no_resource() -> None:
    # Closed, not open: should the SDK register listen streams some other way, nothing leaks.
    bus = VisibleBus(InMemorySubscriptionBus(), lambda uri, access: True)
    heard: list[ServerEvent] = []
    unsubscribe = bus.subscribe(heard.append)
    await bus.publish(ResourceUpdated(uri="docs://notes/public"))
    await bus.publish(ToolsListChanged())
    unsubscribe()
    assert heard == [ToolsListChanged()]
