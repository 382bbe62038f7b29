"""The bounded event store behind resumable SSE streams."""

from __future__ import annotations

import mcp_types
import pytest
from mcp.server.streamable_http import EventMessage

from aperture.surface.mcp.events import MemoryEventStore

pytestmark = pytest.mark.anyio


def note(n: int) -> mcp_types.JSONRPCNotification:
    return mcp_types.JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def replay(store: MemoryEventStore, after: str) -> tuple[str | None, list[int]]:
    sent: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        sent.append(event)

    stream = await store.replay_events_after(after, collect)
    return stream, [event.message.params["n"] for event in sent]  # type: ignore[union-attr,index]


async def test_replay_sends_only_the_later_events_of_the_same_stream() -> None:
    store = MemoryEventStore()
    assert store  # an empty store still counts as configured
    priming = await store.store_event("a", None)
    first = await store.store_event("a", note(1))
    await store.store_event("b", note(99))
    await store.store_event("a", note(2))
    assert await replay(store, priming) == ("a", [1, 2])  # the priming event carries no message
    assert await replay(store, first) == ("a", [2])
    assert await replay(store, "12345") == (None, [])
    assert await replay(store, "not-an-id") == (None, [])


async def test_memory_is_bounded_per_stream_and_in_streams() -> None:
    store = MemoryEventStore(per_stream=3, max_streams=2)
    ids = [await store.store_event("a", note(i)) for i in range(5)]
    assert store.size == 3
    assert await replay(store, ids[0]) == (None, [])  # dropped: nothing to resume from
    assert await replay(store, ids[2]) == ("a", [3, 4])
    await store.store_event("b", note(10))
    await store.store_event("c", note(20))  # a third stream pushes out the least recently written
    assert await replay(store, ids[3]) == (None, [])
    assert store.size == 2


async def test_memory_is_bounded_in_bytes_dropping_the_oldest_events_first() -> None:
    size = len(mcp_types.jsonrpc_message_adapter.dump_json(note(1000), by_alias=True, exclude_none=True))
    store = MemoryEventStore(max_bytes=3 * size)
    first = await store.store_event("a", None)
    for n in range(1000, 1010):
        await store.store_event("a" if n % 2 else "b", note(n))
    assert store.bytes_held <= 3 * size
    assert store.size == 3  # the three newest; the priming event (no message) went with its stream's oldest
    assert await replay(store, first) == (None, [])
    big = mcp_types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"x": "y" * 10_000})
    await store.store_event("c", big)  # larger than the whole budget: kept by no one
    assert store.bytes_held <= 3 * size
