"""Gateways with the operations layer configured, over in-process Python backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from aperture.config import Config, parse_config
from aperture.execution import BackendRegistry, PythonBackend
from aperture.gateway import Gateway
from aperture.model import BackendUnavailableError

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: Redis "down" without stopping Redis


class Calls:
    """What the tools saw, for assertions."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> int:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name]


def tools_backend(calls: Calls, name: str = "t") -> PythonBackend:
    backend = PythonBackend(name)

    @backend.tool(read_only=True)
    def lookup(word: str) -> str:
        """Look a word up (read-only)."""
        calls.hit("lookup")
        return word.upper()

    @backend.tool
    def append(word: str) -> str:
        """Append a word (not idempotent)."""
        calls.hit("append")
        return word

    @backend.tool(idempotent=True)
    def flaky(fail_times: int) -> str:
        """Fails with a retryable error the first `fail_times` calls."""
        if calls.hit("flaky") <= fail_times:
            raise BackendUnavailableError("upstream hiccup")
        return "ok"

    @backend.tool
    def boom() -> str:
        """Always fails."""
        calls.hit("boom")
        raise RuntimeError("kaput")

    @backend.tool(read_only=True)
    async def slow(seconds: float) -> str:
        """Sleeps."""
        calls.hit("slow")
        await anyio.sleep(seconds)
        return "done"

    return backend


def ops_config(ops: dict[str, Any], **extra: Any) -> Config:
    return parse_config({"search": {"strategy": "bm25"}, "ops": ops, **extra})


@asynccontextmanager
async def ops_gateway(ops: dict[str, Any], calls: Calls | None = None, **extra: Any) -> AsyncIterator[Gateway]:
    registry = BackendRegistry()
    await registry.register(tools_backend(calls or Calls()))
    admin = PythonBackend("admin")

    @admin.tool
    def reset() -> str:
        """Reset everything (admins only)."""
        return "reset"

    await registry.register(admin)
    async with Gateway(ops_config(ops, **extra), registry=registry) as gateway:
        yield gateway


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"aperture-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def calls() -> Calls:
    return Calls()


GatewayFactory = Callable[..., Any]
