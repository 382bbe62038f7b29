"""The result cache: what is cached, where, for how long, and how it is invalidated."""

from __future__ import annotations

from pathlib import Path

import anyio
import mcp_types
import pytest

from aperture.ops.cache import CachedResult, MemoryStore, RedisStore
from aperture.ops.shared import RedisLink
from tests.ops.conftest import CLOSED_PORT_URL, REDIS_URL, Calls, ops_gateway

pytestmark = pytest.mark.anyio


async def test_read_only_results_are_cached_by_arguments(calls: Calls) -> None:
    async with ops_gateway({"cache": {"enabled": True}}, calls) as gw:
        first = await gw.run("t:lookup", {"word": "a"})
        again = await gw.run("t:lookup", {"word": "a"})
        other = await gw.run("t:lookup", {"word": "b"})
        assert first.text == again.text == "A" and other.text == "B"
        assert calls.counts["lookup"] == 2


async def test_tools_that_are_not_read_only_or_idempotent_are_not_cached(calls: Calls) -> None:
    async with ops_gateway({"cache": {"enabled": True}}, calls) as gw:
        for _ in range(2):
            await gw.run("t:append", {"word": "a"})
        assert calls.counts["append"] == 2


async def test_config_globs_add_and_exclude_tools(calls: Calls) -> None:
    ops = {"cache": {"enabled": True, "tools": ["t:append"], "exclude": ["t:lookup"]}}
    async with ops_gateway(ops, calls) as gw:
        for _ in range(2):
            await gw.run("t:append", {"word": "a"})
            await gw.run("t:lookup", {"word": "a"})
        assert calls.counts == {"append": 1, "lookup": 2}


async def test_errors_are_never_cached(calls: Calls) -> None:
    async with ops_gateway({"cache": {"enabled": True}}, calls) as gw:
        await gw.run("t:flaky", {"fail_times": 1})
        assert (await gw.run("t:flaky", {"fail_times": 1})).text == "ok"
        assert (await gw.run("t:flaky", {"fail_times": 1})).text == "ok"
        assert calls.counts["flaky"] == 2


async def test_invalidation_by_tool_and_by_namespace(calls: Calls) -> None:
    async with ops_gateway({"cache": {"enabled": True}}, calls) as gw:
        cache = gw.ops.cache
        assert cache is not None
        await gw.run("t:lookup", {"word": "a"})
        assert await cache.invalidate("t:lookup") == 1
        await gw.run("t:lookup", {"word": "a"})
        await gw.run("t:slow", {"seconds": 0})
        assert await cache.invalidate(namespace="t") == 2
        await gw.run("t:lookup", {"word": "a"})
        assert calls.counts["lookup"] == 3
        with pytest.raises(ValueError, match="tool id or a namespace"):
            await cache.invalidate()


async def test_entries_expire_after_their_ttl() -> None:
    store = MemoryStore(10)
    await store.set("t:x:1", CachedResult((mcp_types.TextContent(text="v"),), None, 0.05))
    assert await store.get("t:x:1") is not None
    await anyio.sleep(0.08)
    assert await store.get("t:x:1") is None


async def test_the_file_store_survives_a_restart(tmp_path: Path) -> None:
    ops = {"cache": {"enabled": True, "store": "file", "directory": str(tmp_path / "cache")}}
    calls = Calls()
    for _ in range(2):
        async with ops_gateway(ops, calls) as gw:
            assert (await gw.run("t:lookup", {"word": "a"})).text == "A"
    assert calls.counts["lookup"] == 1
    async with ops_gateway(ops, calls) as gw:
        assert gw.ops.cache is not None and await gw.ops.cache.invalidate(namespace="t") == 1


async def test_the_redis_store_shares_results_and_invalidates(prefix: str) -> None:
    ops = {"cache": {"enabled": True, "store": "redis"}, "redis": {"url": REDIS_URL, "prefix": prefix}}
    calls = Calls()
    async with ops_gateway(ops, calls) as one, ops_gateway(ops, calls) as two:
        assert (await one.run("t:lookup", {"word": "a"})).text == "A"
        hit = await two.run("t:lookup", {"word": "a"})
        assert hit.text == "A" and hit.structured == {"result": "A"} and calls.counts["lookup"] == 1
        assert two.ops.cache is not None and await two.ops.cache.invalidate(namespace="t") == 1


async def test_a_redis_cache_that_is_down_misses_instead_of_failing(calls: Calls) -> None:
    ops = {"cache": {"enabled": True, "store": "redis"}, "redis": {"url": CLOSED_PORT_URL}}
    async with ops_gateway(ops, calls) as gw:
        for _ in range(2):
            assert (await gw.run("t:lookup", {"word": "a"})).text == "A"
        assert calls.counts["lookup"] == 2
        assert gw.ops.link is not None and gw.ops.link.health()["state"] == "degraded"
        ready = await gw.ops.health.readiness()
        assert ready["status"] == "ready" and ready["redis"]["state"] == "degraded"
        assert "run in-process" in ready["redis"]["message"]


async def test_redis_store_round_trips_content(prefix: str) -> None:
    link = RedisLink(REDIS_URL, prefix=prefix)
    store = RedisStore(link)
    value = CachedResult((mcp_types.TextContent(text="hi"),), {"a": [1, 2]}, 5)
    await store.set("t:x:abc", value)
    assert await store.get("t:x:abc") == value
    assert await store.delete_prefix("t:x:") == 1
    await link.aclose()
