"""Catalogs for the benchmarks: BFCL's function definitions (read from ../shared) and synthetic ones."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aperture.execution import CallContext, HealthStatus
from aperture.model import Tool, ToolId

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks"
BFCL = SHARED / "bfcl"
BFCL_FILES = [
    "BFCL_v4_simple_python.json",
    "BFCL_v4_multiple.json",
    "BFCL_v4_parallel.json",
    "BFCL_v4_parallel_multiple.json",
    "BFCL_v4_live_simple.json",
    "BFCL_v4_live_multiple.json",
]
# BFCL writes Python type names; JSON Schema wants its own.
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "int": "integer", "bool": "boolean"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def json_schema(schema: Any) -> Any:
    """A BFCL parameter schema in JSON Schema terms."""
    if isinstance(schema, dict):
        out = {k: json_schema(v) for k, v in schema.items() if k != "optional"}
        kind = out.get("type")
        if isinstance(kind, str):
            if kind in ("any", "Any"):
                out.pop("type")
            else:
                out["type"] = _TYPES.get(kind, kind)
        return out
    if isinstance(schema, list):
        return [json_schema(v) for v in schema]
    return schema


@dataclass(frozen=True)
class Entry:
    question: str
    gold: list[str]


def bfcl_tools(limit: int | None = None, namespace: str = "bfcl") -> list[Tool]:
    """Unique BFCL function definitions as tools, in file order."""
    tools: dict[str, Tool] = {}
    for line in _lines():
        for fn in line["function"]:
            name = _UNSAFE.sub("_", fn["name"])[:128]
            if name in tools:
                continue
            tools[name] = Tool(
                id=ToolId(namespace, name),
                description=fn.get("description", ""),
                input_schema=json_schema(fn.get("parameters") or {"type": "object", "properties": {}}),
                backend_kind="static",
            )
            if limit is not None and len(tools) >= limit:
                return list(tools.values())
    return list(tools.values())


def bfcl_entries(names: set[str]) -> list[Entry]:
    """Questions whose gold functions all lie in `names`."""
    answers: dict[str, list[str]] = {}
    for file in BFCL_FILES:
        path = BFCL / "possible_answer" / file
        for raw in path.read_text().splitlines():
            data = json.loads(raw)
            answers[data["id"]] = [_UNSAFE.sub("_", next(iter(call))) for call in data["ground_truth"]]
    entries = []
    for line in _lines():
        gold = answers.get(line["id"])
        if not gold or not set(gold) <= names:
            continue
        question = " ".join(turn["content"] for turns in line["question"] for turn in turns if turn["role"] == "user")
        entries.append(Entry(question=question, gold=gold))
    return entries


def missing_data(what: str) -> str | None:
    """Why `what` cannot run here, when the public retrieval data beside the checkout is not there."""
    if SHARED.is_dir():
        return None
    return (
        f"{what} needs the public tool-retrieval data sets (BFCL, MetaTool, ...) in {SHARED}, a folder beside "
        "this checkout that the project's own machines provide; it is not part of the repository"
    )


def _lines() -> Iterator[dict[str, Any]]:
    if (why := missing_data("BFCL's catalog")) is not None:
        raise SystemExit(why)
    for file in BFCL_FILES:
        for raw in (BFCL / file).read_text().splitlines():
            yield json.loads(raw)


class StaticBackend:
    """A backend that only lists fixed tool definitions (for measuring discovery, not execution)."""

    kind = "static"

    def __init__(self, name: str, tools: Sequence[Tool]) -> None:
        self.name = name
        self._tools = list(tools)

    async def list_tools(self) -> Sequence[Tool]:
        return self._tools

    async def get_tool(self, name: str) -> Tool | None:
        return next((t for t in self._tools if t.name == name), None)

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        return {"tool": name, "args": args}

    async def health(self) -> HealthStatus:
        return HealthStatus(healthy=True)

    async def aclose(self) -> None:
        return None


# --- synthetic catalogs ------------------------------------------------------------------------

SERVICES = (
    "github gitlab jira linear slack discord notion confluence stripe paypal shopify salesforce hubspot "
    "zendesk twilio sendgrid mailchimp aws gcp azure kubernetes docker postgres mysql redis mongodb "
    "elastic datadog sentry pagerduty grafana figma dropbox gdrive onedrive calendar gmail outlook zoom "
    "spotify youtube twitter reddit weather maps geocode translate finance crypto news wikipedia arxiv "
    "pubmed sec edgar airtable sheets excel pdf"
).split()
VERBS = (
    "get list create update delete search find fetch send post upload download export import sync "
    "archive restore approve reject assign close merge deploy rollback schedule cancel translate "
    "summarize convert validate compute"
).split()
OBJECTS = (
    "issue pull_request comment repository branch commit release ticket sprint epic message channel "
    "thread user team page database record invoice payment refund customer subscription order product "
    "inventory campaign contact lead deal email event meeting recording file folder document spreadsheet "
    "report dashboard alert incident metric log trace cluster pod deployment instance bucket secret key "
    "forecast route address article"
).split()
QUALIFIERS = ["", "", "", "by_id", "details", "status", "batch", "history", "summary", "v2", "for_user", "in_bulk"]
PURPOSES = (
    "for auditing", "for reporting", "so a team can review it", "with pagination", "filtered by date range",
    "including metadata", "with retry on rate limits", "for the current workspace", "across all projects",
)  # fmt: skip
PARAM_NAMES = ("id name query limit cursor owner project status since until format include_archived region").split()


def synthetic_tools(count: int, seed: int = 7) -> list[Tool]:
    """`count` tools with names and descriptions shaped like real API tools (service, verb, object)."""
    rng = random.Random(seed)
    tools: dict[str, Tool] = {}
    while len(tools) < count:
        service, verb, obj, qual = rng.choice(SERVICES), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(QUALIFIERS)
        name = "_".join(p for p in (verb, obj, qual) if p)
        namespace = f"{service}{rng.randint(1, max(1, count // 2000))}" if count > 20_000 else service
        key = f"{namespace}:{name}"
        if key in tools:
            continue
        noun = obj.replace("_", " ")
        params = rng.sample(PARAM_NAMES, k=rng.randint(1, 4))
        tools[key] = Tool(
            id=ToolId(namespace, name),
            description=f"{verb.capitalize()} a {noun} in {service.capitalize()} {rng.choice(PURPOSES)}. "
            f"Returns the {noun} {rng.choice(['as JSON', 'with its fields', 'and related items', 'or an error'])}.",
            input_schema={"type": "object", "properties": _params(params, noun), "required": params[:1]},
            tags=(service, obj.split("_")[0]),
            backend_kind="static",
        )
    return list(tools.values())


def _params(names: Sequence[str], noun: str) -> dict[str, Any]:
    return {p: {"type": "string", "description": f"The {p.replace('_', ' ')} of the {noun}."} for p in names}


def synthetic_queries(tools: Sequence[Tool], count: int, seed: int = 11) -> list[str]:
    """Queries an agent might write for tools of the catalog."""
    rng = random.Random(seed)
    out = []
    for tool in rng.sample(list(tools), k=min(count, len(tools))):
        verb, *rest = tool.name.split("_")
        out.append(f"{verb} {' '.join(rest[:2])} in {tool.namespace.rstrip('0123456789')}")
    return out
