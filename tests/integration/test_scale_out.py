"""Two gateway processes sharing the real Redis on 127.0.0.1:6379: one rate limit across both, a result
cached by one is a hit on the other, a breaker opened by one is open on the other."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client

from tests.conftest import FIXTURES
from tests.integration.conftest import serving_http

pytestmark = pytest.mark.anyio


def replica_config(tmp_path: Path, prefix: str) -> Path:
    config = {
        "search": {"strategy": "bm25"},
        "backends": [{"name": "ops", "kind": "python", "module": "ops_tools", "path": str(FIXTURES)}],
        "ops": {
            "redis": {"url": "redis://127.0.0.1:6379/0", "prefix": prefix},
            "cache": {"enabled": True, "store": "redis"},
            "observe": {"enabled": True},
            "resilience": {
                "enabled": True,
                "shared": True,
                "rate_limits": {"tools": {"ops:whoami": "5/minute"}},
                "breaker": {"failures": 2, "cooldown": 60},
            },
        },
    }
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def call(url: str, tool_id: str, args: dict[str, object]) -> tuple[bool, str]:
    async with Client(url) as client:
        result = await client.call_tool("run_tool", {"tool_id": tool_id, "args": args})
    text = result.content[0].text if result.content and hasattr(result.content[0], "text") else ""
    return bool(result.is_error), text


async def test_two_replicas_share_limits_cache_and_breakers(tmp_path: Path) -> None:
    config = replica_config(tmp_path, f"aperture-test:{uuid.uuid4().hex[:12]}:")
    with serving_http(config) as one, serving_http(config) as two:
        # A result cached by one replica is a hit on the other (it names the process that ran it).
        first = await call(one, "ops:whoami", {"word": "hello"})
        again = await call(two, "ops:whoami", {"word": "hello"})
        assert not first[0] and again == first
        # The limit of 5 per minute holds across both replicas together (resilience sits outside the cache
        # in the default chain, so the two calls above took two).
        outcomes = [await call(url, "ops:whoami", {"word": str(i)}) for i in range(4) for url in (one, two)]
        refused = [text for is_error, text in outcomes if is_error]
        assert len(refused) == 5 and all(
            t.startswith("Rate limit: 5 per minute for tool 'ops:whoami'") for t in refused
        )
        # A breaker opened by failures on one replica is open on the other.
        for _ in range(2):
            assert (await call(one, "ops:boom", {}))[0]
        is_error, text = await call(two, "ops:boom", {})
        assert is_error and text.startswith("Backend 'ops' is unavailable") and "retry in 60 s" in text
        async with httpx2.AsyncClient() as http:
            ready = (await http.get(two.removesuffix("/mcp") + "/readyz")).json()
            metrics = (await http.get(one.removesuffix("/mcp") + "/metrics")).text
    assert ready["redis"]["state"] == "ok" and json.dumps(ready["backends"][0]["name"]) == '"ops"'
    assert "tool_exec_total" in metrics
