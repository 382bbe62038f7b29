"""gRPC backend overhead: an MCP call to a gRPC method against an MCP call to a no-op Python tool, same gateway, same
run; and 20 concurrent clients' calls per second of each.

The server is the test shop (tests/fixtures/grpc_shop.py, a grpcio server in a process of its own, methods found by
reflection) and, where g++ and grpc++ are installed (Debian's libgrpc++-dev and protobuf-compiler-grpc, which `make
bench` installs), the same GetItem in C++ (bench/grpc_shop.cc, built into bench/results/): a Python server's own
round trip is about as large as the goal, a C++ one's about half. Each server gets its own run; the gateway is
`aperture serve` over streamable HTTP with two backends, `shop` (kind grpc) and `base` (kind python,
bench/_noop_tools.py). Rows run interleaved, in rounds, so drift on a noisy machine hits them alike. A third row
calls the server directly with grpcio. What the gateway adds to the unary call ("over grpcio") is the gRPC row's
p50 less the no-op row's (the MCP hop every tool call pays, whatever its backend) and less grpcio's direct call
(the gRPC round trip itself). Then the gateway's runner in this process (no MCP, no HTTP, no other process to wait
for) against grpcio's direct call: the gateway's own share. The goals (issue 22): the gateway adds at most 0.5 ms
p50 over calling the server directly with grpcio, and the gRPC tool keeps at least half of the no-op tool's calls
per second with 20 clients.
Prints a table and writes bench/results/grpc_calls.json.

    .venv/bin/python -m bench.grpc_calls [--calls 1000] [--concurrent-calls 4000] [--clients 20]
                                         [--servers python,cpp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import grpc
import grpc.aio
from google.protobuf import message_factory
from mcp import Client
from rich.console import Console
from rich.table import Table

from aperture.config import load_config
from aperture.gateway import Gateway
from bench._processes import APERTURE, ROOT, Call, Row, free_port, http_process, interleaved, write_results

SHOP = ROOT / "tests" / "fixtures" / "grpc_shop.py"
CPP_SHOP = ROOT / "bench" / "grpc_shop.cc"
CPP_BUILD = ROOT / "bench" / "results" / "grpc_shop_cpp"
PROTOS = ROOT / "tests" / "fixtures" / "grpc"
GET_ITEM = "shop:shop.v1.Inventory.GetItem"
ARGS = {"sku": "SKU-1"}
console = Console()


def mcp_call(client: Client, tool_id: str) -> Call:
    async def call() -> None:
        result = await client.call_tool("run_tool", {"tool_id": tool_id, "args": ARGS})
        if result.is_error:
            raise RuntimeError(f"{tool_id} failed: {result.content}")

    return call


def direct_call(channel: grpc.aio.Channel) -> Call:
    """GetItem with grpcio alone: the request class from the server's own descriptors (the shop's pool)."""
    sys.path.insert(0, str(SHOP.parent))
    from grpc_shop import POOL

    request: Any = message_factory.GetMessageClass(POOL.FindMessageTypeByName("shop.v1.GetItemRequest"))
    response = message_factory.GetMessageClass(POOL.FindMessageTypeByName("shop.v1.Item"))
    invoke: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        "/shop.v1.Inventory/GetItem",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )

    async def call() -> None:
        await invoke(request(sku="SKU-1"), timeout=10)

    return call


async def throughput(calls: list[Call], total: int) -> float:
    """Calls per second of `len(calls)` clients, each calling in a loop until `total` calls are done."""
    left = total

    async def client(call: Call) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(client, call)
    return total / (time.perf_counter() - started)


def cpp_shop() -> tuple[Path | None, str]:
    """The C++ shop, built (once, again when its source is newer) into bench/results; or None and why not."""
    binary = CPP_BUILD / "grpc_shop"
    if binary.exists() and binary.stat().st_mtime >= CPP_SHOP.stat().st_mtime:
        return binary, ""
    missing = [t for t in ("g++", "protoc", "grpc_cpp_plugin", "pkg-config") if shutil.which(t) is None]
    if missing or subprocess.run(["pkg-config", "--exists", "grpc++"], check=False).returncode != 0:
        return None, "no C++ gRPC toolchain (apt-get install g++ pkg-config libgrpc++-dev protobuf-compiler-grpc)"
    CPP_BUILD.mkdir(parents=True, exist_ok=True)
    protos = ["shop/v1/common.proto", "shop/v1/shop.proto"]
    plugin = f"--plugin=protoc-gen-grpc={shutil.which('grpc_cpp_plugin')}"
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"], capture_output=True, text=True, check=True
    ).stdout.split()
    steps = [
        ["protoc", f"-I{PROTOS}", f"--cpp_out={CPP_BUILD}", f"--grpc_out={CPP_BUILD}", plugin, *protos],
        ["g++", "-O2", "-std=c++17", f"-I{CPP_BUILD}", str(CPP_SHOP)]
        + [str(CPP_BUILD / name.replace(".proto", suffix)) for name in protos for suffix in (".pb.cc", ".grpc.pb.cc")]
        + ["-o", str(binary), *flags, "-lgrpc++_reflection"],
    ]
    with console.status("building the C++ shop (bench/grpc_shop.cc, about 20 s) ..."):
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return None, f"{step[0]} failed: {done.stderr.strip()[-300:]}"
    return binary, ""


def config(path: Path, shop_port: int) -> Path:
    body = {
        "search": {"strategy": "bm25"},  # this bench is about calls, not search
        "backends": [
            {"name": "shop", "kind": "grpc", "target": f"127.0.0.1:{shop_port}"},
            {"name": "base", "kind": "python", "module": "_noop_tools", "path": str(ROOT / "bench")},
        ],
    }
    path.write_text(json.dumps(body))
    return path


async def runner_rows(cfg: Path, channel: grpc.aio.Channel, calls: int) -> list[dict[str, Any]]:
    """The gateway's own cost, without the MCP and HTTP layers and the other processes' scheduling: its runner in
    this process calls the no-op tool and GetItem, interleaved with grpcio's direct call."""
    async with Gateway(load_config(cfg)) as gateway:

        def via_runner(tool_id: str) -> Call:
            async def call() -> None:
                result = await gateway.runner.run(tool_id, ARGS)
                if result.is_error:
                    raise RuntimeError(f"{tool_id} failed: {result.text}")

            return call

        rows = [
            Row("no-op tool, runner", via_runner("base:noop")),
            Row("gRPC GetItem, runner", via_runner(GET_ITEM)),
            Row("gRPC GetItem, grpcio direct", direct_call(channel)),
        ]
        await interleaved(rows, calls)
    figures = [row.figures() for row in rows]
    figures[1]["added_p50_ms"] = round(figures[1]["p50_ms"] - figures[0]["p50_ms"], 3)
    figures[1]["added_p99_ms"] = round(figures[1]["p99_ms"] - figures[0]["p99_ms"], 3)
    figures[1]["over_direct_p50_ms"] = round(figures[1]["p50_ms"] - figures[2]["p50_ms"], 3)
    return figures


async def run(server: list[str], calls: int, concurrent_calls: int, clients: int) -> dict[str, Any]:
    """Every row against the shop that `server` (its command line, without the port) starts."""
    shop_port, gateway_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp) / "aperture.json", shop_port)
        serve = [APERTURE, "serve", "--config", str(cfg), "--transport", "http", "--port", str(gateway_port)]
        url = f"http://127.0.0.1:{gateway_port}/mcp"
        with http_process([*server, str(shop_port)], shop_port), http_process(serve, gateway_port):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{shop_port}")
            async with Client(url) as client:
                rows = [
                    Row("no-op tool, gateway", mcp_call(client, "base:noop")),
                    Row("gRPC GetItem, gateway", mcp_call(client, GET_ITEM)),
                    Row("gRPC GetItem, grpcio direct", direct_call(channel)),
                ]
                console.print(f"{calls} sequential calls per row, interleaved ...")
                await interleaved(rows, calls)
            sequential = [row.figures() for row in rows]
            base, via, direct = sequential
            via["added_p50_ms"] = round(via["p50_ms"] - base["p50_ms"], 3)
            via["added_p99_ms"] = round(via["p99_ms"] - base["p99_ms"], 3)
            # The overhead: what the gateway adds to grpcio's own call. The MCP hop (the no-op row) is what
            # the agent pays for any tool, so it is taken out; the gRPC round trip itself is grpcio's direct row.
            via["over_direct_p50_ms"] = round(via["added_p50_ms"] - direct["p50_ms"], 3)
            console.print(f"{clients} concurrent clients, {concurrent_calls} calls per row, two rounds ...")
            rates: dict[str, list[float]] = {"noop": [], "grpc": [], "direct": []}
            async with AsyncExitStack() as stack:
                sessions = [await stack.enter_async_context(Client(url)) for _ in range(clients)]
                noop_calls = [mcp_call(c, "base:noop") for c in sessions]
                grpc_calls = [mcp_call(c, GET_ITEM) for c in sessions]
                await throughput(noop_calls + grpc_calls, 200)  # warm-up
                for _ in range(2):
                    rates["noop"].append(await throughput(noop_calls, concurrent_calls))
                    rates["grpc"].append(await throughput(grpc_calls, concurrent_calls))
                    rates["direct"].append(await throughput([direct_call(channel)] * clients, concurrent_calls))
            console.print(f"{calls} calls per row in this process (the gateway's runner, no MCP, no HTTP) ...")
            in_process = await runner_rows(cfg, channel, calls)
            await channel.close()
    concurrent = {name: round(statistics.fmean(values), 1) for name, values in rates.items()}
    return {
        "sequential": sequential,
        "in_process": in_process,
        "concurrent": {
            "clients": clients,
            "calls_per_row": concurrent_calls,
            "noop_calls_per_s": concurrent["noop"],
            "grpc_calls_per_s": concurrent["grpc"],
            "direct_grpc_calls_per_s": concurrent["direct"],
            "grpc_share_of_noop": round(concurrent["grpc"] / concurrent["noop"], 3),
        },
        "goals": {"over_direct_p50_ms_at_most": 0.5, "share_of_noop_at_least": 0.5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per row")
    parser.add_argument("--concurrent-calls", type=int, default=4000, help="calls per row with concurrent clients")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--servers", default="python,cpp", help="shops to run against: python, cpp (where it builds)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in args.servers.split(","):
        if name == "python":
            server = [sys.executable, str(SHOP)]
        elif name == "cpp":
            binary, why = cpp_shop()
            if binary is None:
                console.print(f"[yellow]skipping the C++ shop: {why}[/yellow]")
                continue
            server = [str(binary)]
        else:
            parser.error(f"no server {name!r}: choose python, cpp")
        console.print(f"[bold]{name} shop[/bold]")
        results[name] = anyio.run(run, server, args.calls, args.concurrent_calls, args.clients)
        report(name, results[name], args.calls)
    console.print(f"wrote {write_results('grpc_calls', {'servers': results})}")


def report(server: str, result: dict[str, Any], calls: int) -> None:
    table = Table(title=f"gRPC backend overhead, {server} shop: {calls} sequential calls per row (streamable HTTP)")
    for column in ("row", "p50 ms", "p99 ms", "mean ms", "+p50 ms vs no-op", "+p99 ms vs no-op", "over grpcio"):
        table.add_column(column, justify="right")
    for r in result["sequential"]:
        added = ("", "", "")
        if "added_p50_ms" in r:
            added = (f"{r['added_p50_ms']:+.3f}", f"{r['added_p99_ms']:+.3f}", f"{r['over_direct_p50_ms']:+.3f}")
        table.add_row(r["row"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}", *added)
    console.print(table)
    console.print(
        "over grpcio: p50 of the gRPC call via the gateway, less the MCP hop (the no-op row) and grpcio's own call "
        "(the direct row): what the gateway adds to the unary call (goal ≤ 0.5 ms)"
    )
    inner = Table(title=f"The same in this process ({server} shop): the gateway's runner, no MCP or HTTP layer")
    for column in ("row", "p50 ms", "p99 ms", "+p50 ms vs no-op", "+p50 ms vs grpcio"):
        inner.add_column(column, justify="right")
    for r in result["in_process"]:
        extra = (f"{r['added_p50_ms']:+.3f}", f"{r['over_direct_p50_ms']:+.3f}") if "added_p50_ms" in r else ("", "")
        inner.add_row(r["row"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", *extra)
    console.print(inner)
    c = result["concurrent"]
    rates = Table(title=f"{c['clients']} concurrent clients, {server} shop: calls per second")
    for column in ("no-op via gateway", "gRPC via gateway", "share of no-op", "gRPC direct (grpcio)"):
        rates.add_column(column, justify="right")
    rates.add_row(
        f"{c['noop_calls_per_s']:.0f}", f"{c['grpc_calls_per_s']:.0f}", f"{c['grpc_share_of_noop']:.0%}",
        f"{c['direct_grpc_calls_per_s']:.0f}",
    )  # fmt: skip
    console.print(rates)


if __name__ == "__main__":
    main()
