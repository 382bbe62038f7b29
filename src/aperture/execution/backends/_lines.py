"""Cutting an upstream's byte stream into lines in linear time, with a cap on how much of a line is held.

Used for stdio upstreams (one JSON-RPC message per line) and for the server-sent events of HTTP upstreams.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable

from aperture.execution.backends.mcp_raw import ID_PREFIX

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The default cap on one message from an upstream (`max_message_bytes` in a backend's configuration)."""

_HEAD_BYTES = 4096
"""How much of a line must have arrived before its id is read off its head (shorter lines never matter)."""
_RESPONSE_HEAD = re.compile(
    rb'\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*"('
    + re.escape(ID_PREFIX.encode())
    + rb'\d+)"\s*,\s*"(?:result|error)"'
)
"""The head of a response to one of the lean channel's requests, written in the usual key order."""


class LineTooLongError(Exception):
    """The upstream sent a line (one message) longer than the cap."""


class LineSplitter:
    """Cuts a byte stream into lines in linear time, holding at most `limit` bytes of an unfinished line.

    Each chunk is searched for newlines once, and an unfinished line grows in place in a bytearray that
    becomes the line when its newline comes (never joined or copied at the end). A line is refused
    (`LineTooLongError`) as soon as it passes `limit`, before more of it is held. A long line answering
    a request nobody waits for any more (`abandoned(id)` is true for the id on its head: the call timed
    out or was cancelled) is dropped as it arrives.
    """

    def __init__(self, limit: int, abandoned: Callable[[str], bool] | None = None) -> None:
        self.limit = limit
        self._abandoned = abandoned
        self._buffer = bytearray()  # grows in place (realloc, amortised): no copy of what came before
        self._length = 0  # of the unfinished line, dropped parts included
        self._dropping = False
        self._head_read = False
        self._line_id: str | None = None
        self.dropped_lines = 0

    @property
    def held(self) -> int:
        """Bytes of the unfinished line held in memory."""
        return 0 if self._dropping else self._length

    def feed(self, chunk: bytes) -> list[bytes | bytearray]:
        """The lines `chunk` completes, without their newlines (a line that came in several chunks is the
        bytearray it was gathered in: handed over, not copied).

        Raises:
            LineTooLongError: the unfinished line has passed `limit`.
        """
        lines: list[bytes | bytearray] = []
        start = 0
        view = memoryview(chunk)
        while (end := chunk.find(b"\n", start)) != -1:
            self._grow(end - start)
            if self._dropping:
                self.dropped_lines += 1
            elif self._buffer:
                self._buffer += view[start:end]
                lines.append(self._buffer)
                self._buffer = bytearray()
            else:
                lines.append(chunk[start:end])
            self._length = 0
            self._dropping = self._head_read = False
            self._line_id = None
            start = end + 1
        if start < len(chunk):
            self._grow(len(chunk) - start)
            if not self._dropping:
                self._buffer += view[start:]
                self._check_abandoned()
        return lines

    def _grow(self, size: int) -> None:
        self._length += size
        if self._length > self.limit:
            self._buffer = bytearray()
            self._dropping = True
            raise LineTooLongError(f"sent a line longer than {self.limit} bytes")

    def _check_abandoned(self) -> None:
        if self._abandoned is None or self._length < _HEAD_BYTES:
            return
        if not self._head_read:
            self._head_read = True
            match = _RESPONSE_HEAD.match(self._buffer, 0, 256)
            self._line_id = match.group(1).decode("ascii") if match else None
        if self._line_id is not None and self._abandoned(self._line_id):
            logger.debug("dropping the answer to %s as it arrives: nobody waits for it", self._line_id)
            self._buffer = bytearray()
            self._dropping = True

    def rest(self) -> bytes | None:
        """The unfinished line (the stream ended without its newline), or None when there is none."""
        if self._dropping or not self._buffer:
            return None
        return bytes(self._buffer)


async def text_lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[str]:
    """Lines of a byte stream as text, without their ends (`\\r\\n`, `\\n` or a lone `\\r`, as server-sent events
    allow), each yielded as soon as it is complete; the last one even without an end.

    Raises:
        LineTooLongError: a line passed `limit` bytes (raised as it arrives, not once it is whole).
    """
    splitter = LineSplitter(limit)
    after_cr = False
    async for chunk in chunks:
        if after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the second half of a \r\n cut between chunks
        if b"\r" in chunk:
            after_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif chunk:
            after_cr = False
        for line in splitter.feed(chunk):
            yield line.decode("utf-8", "replace")
    rest = splitter.rest()
    if rest is not None:
        yield rest.decode("utf-8", "replace")
