"""A2A against MCP: the same `run` of the same trivial tool on the same gateway process, side by side.

One `aperture serve --transport http` serves both surfaces. Rows: MCP streamable HTTP (`run_tool` with the
official client), A2A JSON-RPC and A2A HTTP+JSON (`message:send` with a data part `{op: run}`, the official
`a2a-sdk` client, no streaming), and A2A JSON-RPC streaming. Sequential calls run interleaved in rounds (p50,
p99, and the p50 each adds over MCP); then 20 concurrent clients per surface for a fixed time (requests per
second). Prints a table and writes bench/results/a2a.json.

    .venv/bin/python -m bench.a2a [--calls 500] [--clients 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from a2a.client import Client as A2aClient
from a2a.client import ClientConfig, create_client
from a2a.helpers import new_data_message
from a2a.types import Role, SendMessageRequest, TaskState
from mcp import Client
from rich.console import Console
from rich.table import Table

from bench._processes import (
    APERTURE,
    ROOT,
    Call,
    Row,
    free_port,
    http_process,
    interleaved,
    percentile,
    write_results,
)

console = Console()
ARGS = {"text": "hello"}
TOOL = "t:echo"


def mcp_call(client: Client) -> Call:
    async def call() -> None:
        result = await client.call_tool("run_tool", {"tool_id": TOOL, "args": ARGS})
        if result.is_error:
            raise RuntimeError(f"MCP call failed: {result.content}")

    return call


def a2a_call(client: A2aClient) -> Call:
    async def call() -> None:
        message = new_data_message({"op": "run", "tool_id": TOOL, "args": ARGS}, role=Role.ROLE_USER)
        last = None
        async for event in client.send_message(SendMessageRequest(message=message)):
            last = event
        state = last.task.status.state if last is not None and last.HasField("task") else None
        if last is not None and last.HasField("status_update"):
            state = last.status_update.status.state
        if state != TaskState.TASK_STATE_COMPLETED:
            raise RuntimeError(f"A2A call did not complete: {last}")

    return call


@asynccontextmanager
async def clients(base: str) -> AsyncIterator[dict[str, Call]]:
    """One connected client per row."""
    async with AsyncExitStack() as stack:
        mcp = await stack.enter_async_context(Client(f"{base}/mcp"))
        calls = {"MCP streamable HTTP": mcp_call(mcp)}
        for label, binding, streaming in (
            ("A2A JSON-RPC", "JSONRPC", False),
            ("A2A HTTP+JSON", "HTTP+JSON", False),
            ("A2A JSON-RPC streaming", "JSONRPC", True),
        ):
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding])
            client = await create_client(base, client_config=config)
            stack.push_async_callback(client.close)
            calls[label] = a2a_call(client)
        yield calls


async def sequential(base: str, calls: int, rounds: int = 10) -> list[dict[str, Any]]:
    async with clients(base) as made:
        rows = [Row(label, call) for label, call in made.items()]
        await interleaved(rows, calls, rounds=rounds, warmup=30)
    figures: list[dict[str, Any]] = []
    for row in rows:
        figures.append(
            {
                "row": row.label,
                "calls": len(row.latencies),
                "p50_ms": round(percentile(row.latencies, 0.5), 3),
                "p99_ms": round(percentile(row.latencies, 0.99), 3),
                "mean_ms": round(statistics.fmean(row.latencies), 3),
            }
        )
    base_p50 = figures[0]["p50_ms"]
    for row_figures in figures:
        row_figures["added_p50_ms"] = round(row_figures["p50_ms"] - base_p50, 3)
    return figures


async def concurrent(base: str, label: str, clients_count: int, seconds: float) -> dict[str, Any]:
    """`clients_count` clients of one surface, each calling in a loop for `seconds`: completed calls per second."""
    done = 0
    async with AsyncExitStack() as stack:
        calls: list[Call] = []
        for _ in range(clients_count):
            if label == "MCP streamable HTTP":
                calls.append(mcp_call(await stack.enter_async_context(Client(f"{base}/mcp"))))
            else:
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
                config = ClientConfig(streaming=False, httpx_client=http)
                client = await create_client(base, client_config=config)
                stack.push_async_callback(client.close)
                calls.append(a2a_call(client))
        for call in calls:  # warm each connection
            await call()
        deadline = time.perf_counter() + seconds

        async def loop(call: Call) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call()
                done += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(loop, call)
        elapsed = time.perf_counter() - started
    return {"row": label, "clients": clients_count, "calls": done, "rps": round(done / elapsed, 1)}


async def run(calls: int, clients_count: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "aperture.json"
        backend = {"name": "t", "kind": "python", "module": "faulty", "path": str(ROOT / "tests" / "fixtures")}
        config.write_text(json.dumps({"search": {"strategy": "bm25"}, "backends": [backend]}))
        port = free_port()
        argv = [APERTURE, "serve", "--config", str(config), "--transport", "http", "--port", str(port)]
        with http_process(argv, port):
            base = f"http://127.0.0.1:{port}"
            rows = await sequential(base, calls)
            throughput = [
                await concurrent(base, label, clients_count, seconds)
                for label in ("MCP streamable HTTP", "A2A JSON-RPC")
            ]
    return {"sequential": rows, "concurrent": throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per row")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients per surface")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the concurrent clients call")
    args = parser.parse_args()
    figures = anyio.run(run, args.calls, args.clients, args.seconds)
    table = Table(title=f"run of one echo tool, same gateway: {args.calls} sequential calls per row")
    for column in ("row", "p50 ms", "p99 ms", "mean ms", "+p50 vs MCP"):
        table.add_column(column, justify="right")
    for r in figures["sequential"]:
        table.add_row(
            r["row"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}", f"{r['added_p50_ms']:+.3f}"
        )
    console.print(table)
    rps = Table(title=f"{args.clients} concurrent clients for {args.seconds:g} s")
    for column in ("row", "calls", "requests/s"):
        rps.add_column(column, justify="right")
    for r in figures["concurrent"]:
        rps.add_row(r["row"], str(r["calls"]), f"{r['rps']:.1f}")
    console.print(rps)
    console.print(f"wrote {write_results('a2a', figures)}")


if __name__ == "__main__":
    main()
