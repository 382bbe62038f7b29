"""Shared state in the real Redis, and what happens when Redis goes away mid-run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from aperture.ops.shared import RedisBreakers, RedisBuckets, RedisLink
from tests.ops.conftest import REDIS_URL, Calls, ops_gateway

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def redis_proxy() -> AsyncIterator[tuple[int, anyio.CancelScope]]:
    """A TCP proxy to the real Redis; cancelling the scope it yields cuts every connection (Redis 'dies')."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def pipe(source: SocketStream, sink: SocketStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()

    async def serve(client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", 6379) as upstream, anyio.create_task_group() as tg:
            tg.start_soon(pipe, client, upstream)
            tg.start_soon(pipe, upstream, client)

    proxy = anyio.CancelScope()

    async def run() -> None:
        with proxy:
            async with listener:
                await listener.serve(serve)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield port, proxy
        proxy.cancel()


async def test_buckets_and_breakers_live_in_redis(prefix: str) -> None:
    one, two = RedisLink(REDIS_URL, prefix=prefix), RedisLink(REDIS_URL, prefix=prefix)
    try:
        assert await RedisBuckets(one).take("k", 1, 60) == 0
        assert 59 < await RedisBuckets(two).take("k", 1, 60) <= 60
        breakers_one, breakers_two = RedisBreakers(one), RedisBreakers(two)
        assert await breakers_one.record("b", False, 1, 30) == "open"
        assert 29 < await breakers_two.check("b", 30) <= 30 and breakers_two.state("b") == "open"
        assert await breakers_two.record("b", True, 1, 30) == "closed"
        assert await breakers_one.check("b", 30) == 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_stopping_mid_run_degrades_to_in_process_state(prefix: str) -> None:
    calls = Calls()
    async with redis_proxy() as (port, cut):
        ops = {
            "redis": {"url": f"redis://127.0.0.1:{port}/0", "prefix": prefix, "retry_after": 60},
            "resilience": {"enabled": True, "shared": True, "rate_limits": {"global": "1000/minute"}},
            "cache": {"enabled": True, "store": "redis"},
        }
        async with ops_gateway(ops, calls) as gw:
            assert (await gw.run("t:lookup", {"word": "a"})).text == "A"
            assert (await gw.ops.health.readiness())["redis"]["state"] == "ok"
            cut.cancel()
            with anyio.fail_after(10):
                results = [await gw.run("t:lookup", {"word": str(i)}) for i in range(20)]
            assert all(not r.is_error for r in results)  # nothing fails: limits and breakers run in-process
            ready = await gw.ops.health.readiness()
            assert ready["status"] == "ready" and ready["redis"]["state"] == "degraded"
            assert gw.ops.resilience.breaker_states(["t"]) == {"t": "closed"}
