"""The bridge between a sandboxed program and the gateway: length-prefixed JSON frames (a 4-byte big-endian
length, then that many bytes of UTF-8 JSON) over one socket, with a cap on each frame and on the total.

The sandbox side of the same format is in `_prelude.py` (standard library only). Messages:

- gateway -> sandbox, once: `{"op": "start", "code": "..."}`
- sandbox -> gateway: `{"op": "call", "method": "search" | "describe" | "run", "params": {...}}`, answered by
  `{"ok": true, "value": ...}` or `{"ok": false, "error": "..."}`
- sandbox -> gateway, last: `{"op": "done", "ok": true, "value": ...}` or `{"op": "done", "ok": false, "error": ...}`
"""

from __future__ import annotations

import json
import struct
from typing import Any

import anyio
from anyio.abc import ByteStream

HEADER = struct.Struct(">I")
METHODS = frozenset({"search", "describe", "run"})


class BridgeError(Exception):
    """The sandbox broke the protocol (a malformed, oversized or unexpected frame), or went over a cap."""


class Bridge:
    """The gateway's end of one execution's bridge: reads and writes frames within the caps.

    Args:
        stream: the socket to the sandbox.
        max_frame: the largest frame either side may send, in bytes.
        max_bytes: all frames of the execution together, both directions, in bytes.
    """

    def __init__(self, stream: ByteStream, *, max_frame: int, max_bytes: int) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self.max_frame = max_frame
        self.max_bytes = max_bytes
        self.bytes = 0
        """Bytes sent and received so far."""

    def _count(self, size: int) -> None:
        self.bytes += HEADER.size + size
        if self.bytes > self.max_bytes:
            raise BridgeError(f"the program's tool calls moved more than {self.max_bytes} bytes")

    async def _read_exact(self, count: int) -> bytes | None:
        while len(self._buffer) < count:
            try:
                chunk = await self._stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def receive(self) -> dict[str, Any] | None:
        """The next message; None when the sandbox closed its end.

        Raises:
            BridgeError: an oversized frame, bytes that are not a JSON object, or more bytes than allowed.
        """
        header = await self._read_exact(HEADER.size)
        if header is None:
            return None
        (size,) = HEADER.unpack(header)
        if size > self.max_frame:
            raise BridgeError(f"the program sent a bridge message of {size} bytes (at most {self.max_frame})")
        self._count(size)
        body = await self._read_exact(size)
        if body is None:
            raise BridgeError("the program closed the bridge in the middle of a message")
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BridgeError(f"the program sent a bridge message that is not JSON ({exc})") from None
        if not isinstance(message, dict):
            raise BridgeError("the program sent a bridge message that is not a JSON object")
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """Send `message`.

        Raises:
            BridgeError: it is larger than a frame may be, or the total goes over its cap.
        """
        body = encode(message)
        if len(body) > self.max_frame:  # a tool's answer too large: the program is told, and may ask for less
            body = encode(
                {
                    "ok": False,
                    "error": f"the answer ({len(body)} bytes) is larger than a tool answer in "
                    f"code may be ({self.max_frame} bytes); ask for less (a smaller limit, a filter)",
                }
            )
        self._count(len(body))
        await self._stream.send(HEADER.pack(len(body)) + body)


def encode(message: dict[str, Any]) -> bytes:
    """`message` as a frame body (compact UTF-8 JSON)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def parse_call(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`(method, params)` of a call message.

    Raises:
        BridgeError: anything else (a forged or unknown message).
    """
    method, params = message.get("method"), message.get("params")
    if message.get("op") != "call" or method not in METHODS or not isinstance(params, dict):
        raise BridgeError(f"the program sent an unknown bridge message (op {str(message.get('op'))[:40]!r})")
    return method, params
