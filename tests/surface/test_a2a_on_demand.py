"""The A2A surface loaded by its first request: a broken install answers A2A's paths with a clear 503 and the
gateway goes on serving everything else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aperture.gateway import Gateway
from aperture.surface.a2a.on_demand import OnDemandA2a

pytestmark = pytest.mark.anyio


async def call(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI app: (status, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b"", "root_path": ""}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), body


async def mcp_side(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"mcp"})


async def test_a_broken_a2a_install_gets_a_clear_503_and_mcp_is_served_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise ImportError(f"No module named 'culsans' (while importing {name})")

    async with Gateway() as gateway:
        app = OnDemandA2a(gateway).beside(mcp_side)
        # Broken only once the gateway has started (the gateway itself imports nothing this way):
        monkeypatch.setattr("aperture.surface.a2a.on_demand.importlib.import_module", broken)
        status, body = await call(app, "/.well-known/agent-card.json")
        assert status == 503
        said = json.loads(body)["error"]
        assert "A2A is not available" in said and "culsans" in said and "'a2a' extra" in said
        assert await call(app, "/mcp") == (200, b"mcp")
