"""Gateways serving skills from a directory, over the example toolbox and a few counting tools."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from aperture.config import parse_config
from aperture.execution import BackendRegistry, PythonBackend
from aperture.gateway import Gateway
from tests.conftest import ROOT
from tests.ops.conftest import Calls, tools_backend

EXAMPLES = ROOT / "examples"
EXAMPLE_SKILLS = EXAMPLES / "skills"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def counting_backend(calls: Calls) -> PythonBackend:
    """`t:lookup`, `t:append`, `t:boom`, `t:slow` (see tests/ops/conftest.py), `t:numbers` and `t:overlap`."""
    backend = tools_backend(calls)
    running = [0]

    @backend.tool(read_only=True)
    async def overlap(item: int, fail: bool = False) -> int:
        """Waits a moment, counting as `overlap_most` the most calls of it ever running at once; fails if asked."""
        calls.hit("overlap")
        running[0] += 1
        calls.counts["overlap_most"] = max(calls.counts.get("overlap_most", 0), running[0])
        try:
            await anyio.sleep(0.05)
            if fail:
                raise RuntimeError(f"item {item} failed")
            return item * 10
        finally:
            running[0] -= 1

    @backend.tool(read_only=True)
    def numbers(count: int) -> list[int]:
        """The numbers 0 .. count-1."""
        calls.hit("numbers")
        return list(range(count))

    return backend


@asynccontextmanager
async def skills_gateway(
    *paths: Path, ops: dict[str, Any] | None = None, calls: Calls | None = None, **settings: Any
) -> AsyncIterator[Gateway]:
    """A gateway with the example toolbox, the counting tools (`t:`), an `admin:reset` tool, and skills from
    `paths` (the example skills when none)."""
    registry = BackendRegistry()
    await registry.register(counting_backend(calls or Calls()))
    admin = PythonBackend("admin")

    @admin.tool
    def reset() -> str:
        """Reset everything (admins only)."""
        return "reset done"

    await registry.register(admin)
    config = parse_config(
        {
            "backends": [{"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(EXAMPLES)}],
            "skills": {"paths": [str(p) for p in paths or (EXAMPLE_SKILLS,)], **settings},
            "search": {"strategy": "bm25"},
            "ops": ops or {},
        }
    )
    async with Gateway(config, registry=registry) as gateway:
        yield gateway


async def until(gateway: Gateway, condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for catalog changes until `condition()` holds."""
    changed = anyio.Event()

    def wake() -> None:
        changed.set()

    gateway.on_tools_changed(wake)
    with anyio.fail_after(within):
        while not condition():
            await changed.wait()
            changed = anyio.Event()


async def reloaded(gateway: Gateway, within: float = 5.0) -> None:
    """Wait until the skills' files were read again (after an edit that changes no tool)."""
    backend = gateway.skills
    assert backend is not None
    before = backend.reloads
    with anyio.fail_after(within):
        while backend.reloads == before:
            await anyio.sleep(0.02)
