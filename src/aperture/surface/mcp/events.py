"""A bounded in-memory event store, so a client whose SSE stream broke can resume it (SEP-1699).

With it the HTTP endpoint primes each stream with an event id and a retry interval; a client that
reconnects with `Last-Event-ID` gets the messages it missed on that stream. Memory is bounded three
times: events per stream, streams, and bytes of JSON held, dropping the oldest events first.
Resumption is best effort, as the specification allows: a client that comes back after its events
were dropped gets nothing replayed.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter


class MemoryEventStore(EventStore):
    """Keeps the last `per_stream` events of each stream, of at most `max_streams` streams, and (with
    `max_bytes`) at most that many bytes of messages as JSON."""

    def __init__(self, *, per_stream: int = 256, max_streams: int = 1024, max_bytes: int | None = None) -> None:
        self._per_stream = per_stream
        self._max_streams = max_streams
        self._max_bytes = max_bytes
        self._bytes = 0
        self._counter = itertools.count(1)
        # Stream -> its events in order (number, message, size), least recently written stream first.
        self._streams: OrderedDict[StreamId, deque[tuple[int, JSONRPCMessage | None, int]]] = OrderedDict()
        self._stream_of: dict[int, StreamId] = {}

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        number = next(self._counter)
        size = 0
        if self._max_bytes is not None and message is not None:
            size = len(jsonrpc_message_adapter.dump_json(message, by_alias=True, exclude_none=True))
        events = self._streams.get(stream_id)
        if events is None:
            events = self._streams[stream_id] = deque()
            while len(self._streams) > self._max_streams:
                _, dropped = self._streams.popitem(last=False)
                for old, _, old_size in dropped:
                    self._forget(old, old_size)
        else:
            self._streams.move_to_end(stream_id)
        if len(events) >= self._per_stream:
            old, _, old_size = events.popleft()
            self._forget(old, old_size)
        events.append((number, message, size))
        self._stream_of[number] = stream_id
        self._bytes += size
        if self._max_bytes is not None:
            self._shrink(self._max_bytes)
        return str(number)

    def _shrink(self, limit: int) -> None:
        """Drop the oldest events, least recently written stream first, until at most `limit` bytes are held."""
        while self._bytes > limit and self._streams:
            stream_id, events = next(iter(self._streams.items()))
            if not events:
                del self._streams[stream_id]
                continue
            old, _, old_size = events.popleft()
            self._forget(old, old_size)

    def _forget(self, number: int, size: int) -> None:
        self._stream_of.pop(number, None)
        self._bytes -= size

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        try:
            after = int(last_event_id)
        except ValueError:
            return None  # not an id this store gave out
        stream_id = self._stream_of.get(after)
        if stream_id is None:
            return None
        for number, message, _ in list(self._streams.get(stream_id, ())):
            if number > after and message is not None:
                await send_callback(EventMessage(message, str(number)))
        return stream_id

    @property
    def size(self) -> int:
        """Events held. (Not `__len__`: the SDK tests the store for truth, and an empty one must count.)"""
        return len(self._stream_of)

    @property
    def bytes_held(self) -> int:
        """Bytes of JSON of the messages held (counted only with `max_bytes`)."""
        return self._bytes
