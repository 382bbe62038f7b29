"""What the lean `tools/call` path accepts, and the caller it offers backends during such a call.

The lean path (stdio and HTTP transports) answers `tools/call` without the SDK's session objects. It
takes a request only when it can answer exactly as the SDK would; `parse` says which those are. During
the call a backend may ask the caller things (sampling, elicitation) or send it log messages:
`LeanPeer` sends the former on the connection's own channel, as the SDK path does, and the latter on
the call's own stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

ResultT = TypeVar("ResultT", bound=BaseModel)
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Send a notification on the call's stream: `(method, params)`."""

HANDSHAKE_VERSIONS = ("2025-06-18", "2025-11-25")
"""Handshake-era versions whose `CallToolResult` the lean path writes as the SDK does (older ones lack
`structuredContent`, which the SDK would sieve out)."""

# Request `_meta` keys the lean path answers exactly as the SDK would (others, like a 2026-07-28 log-level
# opt-in, take the SDK's path).
_KNOWN_META = frozenset(
    {
        mcp_types.PROTOCOL_VERSION_META_KEY,
        mcp_types.CLIENT_INFO_META_KEY,
        mcp_types.CLIENT_CAPABILITIES_META_KEY,
        "progressToken",
    }
)


@dataclass(frozen=True, slots=True)
class LeanRequest:
    """A `tools/call` the lean path can answer."""

    name: str
    arguments: dict[str, Any] | None
    progress_token: str | int | None
    envelope_version: str | None
    """The 2026-07-28 envelope's protocol version; None on a handshake-era request."""

    @property
    def modern(self) -> bool:
        return self.envelope_version is not None


def parse(params: Any) -> LeanRequest | None:
    """The call in `params`, or None when the SDK's path must take it (it also produces its errors)."""
    if not isinstance(params, dict):
        return None
    name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta") or {}
    if not isinstance(name, str) or not isinstance(arguments, dict | None) or not isinstance(meta, dict):
        return None
    if not meta.keys() <= _KNOWN_META:
        return None
    token = meta.get("progressToken")
    if token is not None and (not isinstance(token, str | int) or isinstance(token, bool)):
        return None
    version = meta.get(mcp_types.PROTOCOL_VERSION_META_KEY)
    if version is not None and version not in MODERN_PROTOCOL_VERSIONS:
        return None
    return LeanRequest(name, arguments, token, version)


def progress_reporter(
    token: str | int | None, notify: Notify
) -> Callable[[float, float | None, str | None], Awaitable[None]] | None:
    """Report progress as `notifications/progress` with the caller's token (None when it asked for none)."""
    if token is None:
        return None

    async def report(progress: float, total: float | None, message: str | None) -> None:
        update = {"progressToken": token, "progress": progress, "total": total, "message": message}
        await notify("notifications/progress", {k: v for k, v in update.items() if v is not None})

    return report


class LeanPeer:
    """The caller of a lean call, for what a backend sends it during the call.

    Requests (sampling, elicitation) go on the connection's own channel, as `ServerSession.send_request`
    does when no request is named; log messages go on the call's stream, and only on handshake-era
    connections (2026-07-28 delivers logs only to requests that opted in, which take the SDK's path).
    """

    def __init__(self, connection: Any, notify: Notify, *, logs: bool) -> None:
        self._connection = connection  # `_connection`: what the surface keys log levels by, as on a session
        self._notify = notify
        self._logs = logs

    @property
    def protocol_version(self) -> str:
        return str(self._connection.protocol_version)

    async def send_request(self, request: BaseModel, result_type: type[ResultT], *_: Any, **__: Any) -> ResultT:
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        result = await self._connection.outbound.send_raw_request(data["method"], data.get("params"), None)
        return result_type.model_validate(result, by_name=False)

    async def send_log_message(
        self, level: str, data: Any, logger: str | None = None, related_request_id: Any = None
    ) -> None:
        if self._logs:
            params = {"level": level, "data": data, **({"logger": logger} if logger else {})}
            await self._notify("notifications/message", params)


def known_handshake_version(connection: Any) -> str | None:
    """The connection's handshake-era protocol version when the lean path writes its results, else None."""
    version = getattr(connection, "protocol_version", None)
    return version if version in HANDSHAKE_VERSIONS else None


def ready(connection: Any) -> bool:
    """Whether the connection finished its handshake (`notifications/initialized`), or needs none (2026-07-28)."""
    initialized = getattr(connection, "initialized", None)
    return initialized is not None and initialized.is_set()
