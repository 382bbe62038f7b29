"""Per-call overhead of the operations chain, side by side in one run: no middleware; every piece configured
but disabled; all enabled (cached JWT verification, rate limit, cache miss, observe); and a Redis cache hit.
Prints a table and writes bench/results/ops.json.

    .venv/bin/python -m bench.ops [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import jwt
from rich.console import Console
from rich.table import Table

from aperture.config import parse_config
from aperture.execution import BackendRegistry, CallContext, PythonBackend
from aperture.gateway import Gateway
from aperture.ops.auth import JwtVerifier
from aperture.ops.identity import IDENTITY_KEY
from aperture.ops.settings import JwtSettings
from bench._processes import write_results

console = Console()
SECRET = "bench-secret-bench-secret-bench-secret"
DISABLED = {
    "auth": {"enabled": False, "rules": [{"tools": "admin:*", "roles": ["admin"]}]},
    "resilience": {"enabled": False, "rate_limits": {"global": "1000000/second"}},
    "cache": {"enabled": False},
    "observe": {"enabled": False},
}
ENABLED = {
    "auth": {"enabled": True, "rules": [{"tools": "admin:*", "roles": ["admin"]}], "local_roles": []},
    "resilience": {
        "enabled": True,
        "rate_limits": {"global": "1000000000/second", "per_identity": "1000000000/second"},
    },
    "cache": {"enabled": True},
    "observe": {"enabled": True},
}


def backend() -> PythonBackend:
    tools = PythonBackend("b")

    @tools.tool(read_only=True)
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    return tools


async def measure(ops: dict[str, Any], calls: int, per_call: Callable[[Gateway, int], Awaitable[Any]]) -> list[float]:
    registry = BackendRegistry()
    await registry.register(backend())
    config = parse_config({"search": {"strategy": "bm25"}, "ops": ops})
    async with Gateway(config, registry=registry) as gateway:
        for i in range(500):  # warm up
            await per_call(gateway, -i - 1)
        samples = []
        for i in range(calls):
            started = time.perf_counter_ns()
            await per_call(gateway, i)
            samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


async def main(calls: int) -> None:
    verifier = JwtVerifier(JwtSettings(algorithms=["HS256"], secret=SECRET))
    token = jwt.encode({"sub": "bench", "exp": time.time() + 3600}, SECRET, algorithm="HS256")
    run_id = uuid.uuid4().hex

    async def plain(gw: Gateway, i: int) -> Any:
        return await gw.run("b:echo", {"text": "hi"})

    async def full(gw: Gateway, i: int) -> Any:
        identity = await verifier.verify(token)  # what the HTTP layer does per request (cached after the first)
        return await gw.run("b:echo", {"text": f"{run_id}{i}"}, CallContext(meta={IDENTITY_KEY: identity}))

    async def hit(gw: Gateway, i: int) -> Any:
        return await gw.run("b:echo", {"text": "same"})

    redis = {"redis": {"url": "redis://127.0.0.1:6379/0", "prefix": f"aperture-bench:{run_id}:"}}
    variants: dict[str, tuple[dict[str, Any], Callable[[Gateway, int], Awaitable[Any]]]] = {
        "none": ({}, plain),
        "configured, disabled": (DISABLED, plain),
        "all enabled (miss)": (ENABLED, full),
        "memory cache hit": ({"cache": {"enabled": True}}, hit),
        "redis cache hit": ({"cache": {"enabled": True, "store": "redis"}, **redis}, hit),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (ops, fn) in variants.items():
        samples = sorted(await measure(ops, calls, fn))
        results[name] = {
            "p50_us": statistics.median(samples),
            "p90_us": samples[int(len(samples) * 0.9)],
            "p99_us": samples[int(len(samples) * 0.99)],
        }
    base = results["none"]["p50_us"]
    table = Table(title=f"ops chain overhead per call ({calls} calls each, in process)")
    for column in ("variant", "p50 µs", "p90 µs", "p99 µs", "p50 over none µs"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for name, row in results.items():
        extra = row["p50_us"] - base
        table.add_row(name, f"{row['p50_us']:.1f}", f"{row['p90_us']:.1f}", f"{row['p99_us']:.1f}", f"{extra:+.1f}")
        row["p50_over_none_us"] = extra
    console.print(table)
    write_results("ops", {"calls": calls, "results": results})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20_000)
    anyio.run(main, parser.parse_args().calls)
