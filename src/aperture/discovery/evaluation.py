"""Retrieval evaluation: a catalog and labelled queries from JSON lines, ranked through `ToolIndex`, scored.

Files (one JSON object a line; blank lines are skipped):

- `TOOLS.jsonl`: `{"id", "name", "namespace", "description", "input_schema", "tags", "title",
  "namespace_description"}`. Only `id` or `name`, and `description`, are required. `namespace_description`
  is what the tool's server says about itself (indexed with the namespace). An `id` with a colon is parsed
  as `namespace:name`; a bare `id` or `name` gets the `namespace` field, else `catalog`. MCP's
  `inputSchema` is accepted too, and so is a JSON array of such objects: what `aperture tools --json`
  prints. Without `description`, a `short_description` (what `aperture search --json` prints) is read
  instead.
- `QUERIES.jsonl`: `{"query", "gold": [tool ids], "intent"}` (`intent` optional). A gold id may be the full
  `namespace:name` or a bare name that only one tool has.

Other fields (a catalog's own `category`, say) are ignored, with one warning a file that names them.

Metrics, each averaged over the queries (binary relevance, gold set G, ranked list r):

- `recall@k`: |G ∩ r[:k]| / |G|, so a query with two gold tools and one found scores 0.5.
- `ndcg@k`: DCG@k / ideal DCG@k, with DCG = Σ 1/log2(rank + 1) over gold tools in r[:k], ideal = the
  same with all min(|G|, k) gold tools ranked first.
- `completeness@k`: 1 when every gold tool is in r[:k], else 0.

What is measured is what the gateway serves: queries go through `ToolIndex.search` with the given
strategy. Each metric pass is a function of a list of `Ranking`s (`retrieval_metrics` here), so another
pass over another data set (abstention on unanswerable queries, say) reuses `rank` and adds one function.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aperture.discovery.index import ToolIndex
from aperture.discovery.strategy import SearchStrategy
from aperture.model import ApertureError, Tool, ToolId
from aperture.model.errors import ErrorCode, InvalidToolIdError

DEFAULT_NAMESPACE = "catalog"
DEPTH = 10
RECALL_AT = (1, 5, 10)
NDCG_AT = (5, 10)
COMPLETE_AT = (5, 10)
METRICS = (
    *(f"recall@{k}" for k in RECALL_AT),
    *(f"ndcg@{k}" for k in NDCG_AT),
    *(f"completeness@{k}" for k in COMPLETE_AT),
)
_TOOL_KEYS = ("id", "name", "namespace", "description", "input_schema", "tags", "title", "namespace_description")
_TOOL_ALIASES = ("inputSchema", "short_description")
# What `aperture tools --json` and `search --json` print beside the fields above: read, or known and unused.
_TOOL_LISTING_KEYS = frozenset({"score", "backend_kind"})
_QUERY_KEYS = ("query", "gold", "intent")

Warn = Callable[[str], None]
logger = logging.getLogger(__name__)


class EvalDataError(ApertureError):
    """A tools or queries file that cannot be evaluated: says which file, which line and what is wrong."""

    code = ErrorCode.INVALID_REQUEST

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        # A line of a JSON-lines file; for a JSON array, `line` counts its items (negated, see `_records`).
        where = str(path) if line is None else f"{path}:{line}" if line > 0 else f"{path}: item {-line}"
        super().__init__(f"{where}: {problem}", details={"file": str(path), "line": line, "problem": problem})
        self.path = str(path)
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalQuery:
    """One labelled query: the text, the ids of the tools that answer it, and where it was read."""

    query: str
    gold: tuple[str, ...]
    intent: str | None = None
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Ranking:
    """What the index answered for one query: tool ids and scores best first, how long it took, and the
    confidence the search said (`strong`, `weak` or `none`; empty when not recorded)."""

    query: EvalQuery
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    latency_ms: float
    confidence: str = ""

    def found(self, k: int) -> int:
        """How many gold tools are in the top `k`."""
        top = set(self.ids[:k])
        return sum(1 for g in self.query.gold if g in top)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalReport:
    """The outcome of one evaluation run."""

    strategy: str
    tools: int
    metrics: Mapping[str, float]
    latency_ms: Mapping[str, float]
    build_ms: float
    rankings: tuple[Ranking, ...]

    @property
    def queries(self) -> int:
        return len(self.rankings)

    def misses(self, k: int = 5) -> list[Ranking]:
        """Rankings that leave a gold tool out of the top `k`, in file order."""
        return [r for r in self.rankings if r.found(k) < len(r.query.gold)]

    def to_dict(self) -> dict[str, Any]:
        """The report as `aperture eval retrieval --json` prints it."""
        return {
            "metrics": {name: round(value, 4) for name, value in self.metrics.items()},
            "latency_ms": {name: round(value, 3) for name, value in self.latency_ms.items()},
            "build_ms": round(self.build_ms, 1),
            "strategy": self.strategy,
            "tools": self.tools,
            "queries": self.queries,
        }


# --- loading ----------------------------------------------------------------------------------


def load_tools(path: Path | str, *, warn: Warn = logger.warning) -> list[Tool]:
    """Read `TOOLS.jsonl` (or a JSON array of tools) into tools.

    Args:
        warn: gets one message naming the fields the file has that are not read, if any.

    Raises:
        EvalDataError: naming the file, the line and the problem (bad JSON, a missing or mistyped field,
            an invalid or duplicate id, an empty file).
    """
    tools: list[Tool] = []
    first_line: dict[str, int] = {}
    ignored = _tool_fields(path)
    for number, record in _records(path):
        ignored.note(number, record)
        tool = _tool(path, number, record, ignored)
        if tool.key in first_line:
            raise EvalDataError(path, number, f"duplicate tool id {tool.key!r} (first on line {first_line[tool.key]})")
        first_line[tool.key] = number
        tools.append(tool)
    if not tools:
        raise EvalDataError(path, None, "no tools: expected one JSON object a line")
    ignored.report(warn)
    return tools


def load_queries(path: Path | str, tools: Sequence[Tool], *, warn: Warn = logger.warning) -> list[EvalQuery]:
    """Read `QUERIES.jsonl`, resolving each gold id against `tools`.

    Args:
        warn: gets one message naming the fields the file has that are not read, if any.

    Raises:
        EvalDataError: naming the file, the line and the problem (bad JSON, a missing field, an empty
            gold list, a gold id that is not in the catalog, with the closest ids).
    """
    aliases = _aliases(tools)
    queries = []
    ignored = _IgnoredFields(path, _QUERY_KEYS)
    for number, record in _records(path):
        ignored.note(number, record)
        text = ignored.required(number, record, "query")
        if not text.strip():
            raise EvalDataError(path, number, "'query' is empty")
        gold = record.get("gold")
        if gold is None:
            problem = "missing 'gold': the list of tool ids that answer the query"
            raise EvalDataError(path, number, problem + ignored.typo_of("gold", record))
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise EvalDataError(path, number, f"'gold' must be a list of tool id strings, got {_shown(gold)}")
        if not gold:
            raise EvalDataError(path, number, "'gold' is empty: name at least one tool that answers the query")
        resolved = [_resolve(path, number, g, aliases) for g in gold]
        intent = _string(path, number, record, "intent") or None
        queries.append(EvalQuery(query=text, gold=tuple(dict.fromkeys(resolved)), intent=intent, line=number))
    if not queries:
        raise EvalDataError(path, None, "no queries: expected one JSON object a line")
    ignored.report(warn)
    return queries


class _IgnoredFields:
    """The fields of a file that are not read: counted as the records go by, reported once at the end."""

    def __init__(self, path: Path | str, read: Sequence[str], known: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.read = read
        self.known = known
        self.seen: Counter[str] = Counter()
        self.first: dict[str, int] = {}

    def note(self, number: int, record: Mapping[str, Any]) -> None:
        for key in record:
            if key not in self.read and key not in self.known:
                self.seen[key] += 1
                self.first.setdefault(key, number)

    def typo_of(self, key: str, record: Mapping[str, Any]) -> str:
        """`; did you mean ...` when the record has an unread field spelled like `key`."""
        unread = [k for k in record if k not in self.read and k not in self.known]
        close = difflib.get_close_matches(key, unread, n=1, cutoff=0.6)
        return f" (it has {close[0]!r}: a misspelling of {key!r}?)" if close else ""

    def required(self, number: int, record: Mapping[str, Any], key: str) -> str:
        if key not in record:
            raise EvalDataError(self.path, number, f"missing {key!r}" + self.typo_of(key, record))
        return _string(self.path, number, record, key)

    def report(self, warn: Warn) -> None:
        if not self.seen:
            return
        fields = ", ".join(f"{key} ({count} of them, first at {self._where(key)})" for key, count in self.seen.items())
        warn(f"{self.path}: ignored field(s) {fields}; the fields read are {', '.join(self.read)}")

    def _where(self, key: str) -> str:
        number = self.first[key]
        return f"line {number}" if number > 0 else f"item {-number}"


def _tool_fields(path: Path | str) -> _IgnoredFields:
    return _IgnoredFields(path, (*_TOOL_KEYS, *_TOOL_ALIASES), _TOOL_LISTING_KEYS)


def _records(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each object of a JSON-lines file with its line number, or of a JSON array with minus its position."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalDataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise EvalDataError(path, None, "is a directory, not a JSON-lines file") from None
    except UnicodeDecodeError as exc:
        raise EvalDataError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise EvalDataError(path, None, f"cannot be read ({exc.strerror})") from None
    if text.lstrip().startswith("["):
        yield from _array_items(path, text)
        return
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvalDataError(path, number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise EvalDataError(path, number, f"expected a JSON object, got {_shown(record)}")
        yield number, record


def _array_items(path: Path | str, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        raise EvalDataError(path, None, problem) from None
    if not isinstance(items, list):
        raise EvalDataError(path, None, f"expected a JSON array of objects or JSON lines, got {_shown(items)}")
    for position, record in enumerate(items, 1):
        if not isinstance(record, dict):
            raise EvalDataError(path, -position, f"expected a JSON object, got {_shown(record)}")
        yield -position, record


def _tool(path: Path | str, number: int, record: dict[str, Any], ignored: _IgnoredFields | None = None) -> Tool:
    ignored = ignored or _tool_fields(path)
    raw_id = _string(path, number, record, "id")
    name = _string(path, number, record, "name")
    namespace = _string(path, number, record, "namespace")
    if not raw_id and not name:
        raise EvalDataError(
            path, number, "missing 'id' or 'name': every tool needs one" + ignored.typo_of("id", record)
        )
    key = "description" if "description" in record else "short_description"
    if key not in record:
        problem = "missing 'description': search needs the tool's description"
        raise EvalDataError(path, number, problem + ignored.typo_of("description", record))
    description = _string(path, number, record, key)
    try:
        if raw_id and ":" in raw_id:
            tool_id = ToolId.parse(raw_id)
            if namespace and namespace != tool_id.namespace:
                raise EvalDataError(
                    path, number, f"'id' {raw_id!r} and 'namespace' {namespace!r} disagree; drop one of them"
                )
        else:
            tool_id = ToolId(namespace or DEFAULT_NAMESPACE, raw_id or name)
    except InvalidToolIdError as exc:
        raise EvalDataError(path, number, exc.message) from None
    if raw_id and name and name != tool_id.name:
        raise EvalDataError(path, number, f"'id' {raw_id!r} and 'name' {name!r} disagree; drop one of them")
    schema = record.get("input_schema", record.get("inputSchema", {"type": "object", "properties": {}}))
    if not isinstance(schema, dict):
        raise EvalDataError(path, number, f"'input_schema' must be a JSON Schema object, got {_shown(schema)}")
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise EvalDataError(path, number, f"'tags' must be a list of strings, got {_shown(tags)}")
    title = _string(path, number, record, "title") or None
    return Tool(
        id=tool_id,
        description=description,
        title=title,
        input_schema=schema,
        tags=tuple(tags),
        backend_kind="eval",
        namespace_description=_string(path, number, record, "namespace_description"),
    )


def _string(path: Path | str, number: int, record: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise EvalDataError(path, number, f"missing {key!r}")
        return ""
    if not isinstance(value, str):
        raise EvalDataError(path, number, f"{key!r} must be a string, got {_shown(value)}")
    return value


def _aliases(tools: Sequence[Tool]) -> dict[str, str | list[str]]:
    """Every way a gold id may name a tool -> its key (or the keys, when a bare name is ambiguous)."""
    names = Counter(t.name for t in tools)
    out: dict[str, str | list[str]] = {}
    for tool in tools:
        if names[tool.name] == 1:
            out.setdefault(tool.name, tool.key)
        else:
            shared = out.setdefault(tool.name, [])
            if isinstance(shared, list):
                shared.append(tool.key)
    for tool in tools:
        out[str(tool.id)] = tool.key
        out[tool.key] = tool.key
    return out


def _resolve(path: Path | str, number: int, gold: str, aliases: Mapping[str, str | list[str]]) -> str:
    found = aliases.get(gold)
    if isinstance(found, str):
        return found
    if isinstance(found, list):
        raise EvalDataError(
            path, number, f"gold id {gold!r} is ambiguous: several tools have that name ({', '.join(found)})"
        )
    closest = difflib.get_close_matches(gold, [k for k in aliases if ":" in k], n=3)
    hint = f"; did you mean {', '.join(closest)}?" if closest else "; gold ids must name tools of the tools file"
    raise EvalDataError(path, number, f"gold id {gold!r} is not in the catalog{hint}")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# --- ranking and metrics ----------------------------------------------------------------------


def build_index(
    tools: Sequence[Tool], strategy: SearchStrategy, *, prerequisites: bool = True
) -> tuple[ToolIndex, float]:
    """An index over `tools` with `strategy`, and how long building it took in milliseconds."""
    index = ToolIndex(strategy, prerequisites=prerequisites)
    started = time.perf_counter()
    index.update(tools)
    return index, (time.perf_counter() - started) * 1000


def rank(
    index: ToolIndex,
    queries: Sequence[EvalQuery],
    *,
    depth: int = DEPTH,
    on_query: Callable[[], None] | None = None,
) -> list[Ranking]:
    """Ask `index` each query, timing each search; `on_query` is called after each (for progress bars).

    A query's intent goes to the index's `intent` argument, as `search_tools` passes it. The first query is
    asked once untimed beforehand, so one-off warm-up costs do not count as latency.
    """
    if queries:
        index.search(queries[0].query, limit=depth)
    out = []
    for query in queries:
        started = time.perf_counter()
        page = index.search(query.query, limit=depth, intent=query.intent)
        elapsed = (time.perf_counter() - started) * 1000
        out.append(
            Ranking(
                query=query,
                ids=tuple(hit.id for hit in page.hits),
                scores=tuple(hit.score for hit in page.hits),
                latency_ms=elapsed,
                confidence=page.confidence.value,
            )
        )
        if on_query is not None:
            on_query()
    return out


def recall_at(ranking: Ranking, k: int) -> float:
    """The share of the gold tools found in the top `k`."""
    return ranking.found(k) / len(ranking.query.gold)


def ndcg_at(ranking: Ranking, k: int) -> float:
    """Normalised discounted cumulative gain at `k`, with every gold tool equally relevant."""
    gold = set(ranking.query.gold)
    dcg = sum(1 / np.log2(rank + 2) for rank, tool_id in enumerate(ranking.ids[:k]) if tool_id in gold)
    ideal = sum(1 / np.log2(rank + 2) for rank in range(min(len(gold), k)))
    return float(dcg / ideal)


def complete_at(ranking: Ranking, k: int) -> float:
    """1.0 when every gold tool is in the top `k`, else 0.0."""
    return 1.0 if ranking.found(k) == len(ranking.query.gold) else 0.0


def retrieval_metrics(rankings: Sequence[Ranking]) -> dict[str, float]:
    """Recall, nDCG and completeness at the usual cutoffs, averaged over `rankings` (see the module doc)."""
    if not rankings:
        return dict.fromkeys(METRICS, 0.0)
    metrics = {}
    for k in RECALL_AT:
        metrics[f"recall@{k}"] = float(np.mean([recall_at(r, k) for r in rankings]))
    for k in NDCG_AT:
        metrics[f"ndcg@{k}"] = float(np.mean([ndcg_at(r, k) for r in rankings]))
    for k in COMPLETE_AT:
        metrics[f"completeness@{k}"] = float(np.mean([complete_at(r, k) for r in rankings]))
    return metrics


def latency_summary(rankings: Sequence[Ranking]) -> dict[str, float]:
    """Median and 99th percentile of the search latency in milliseconds (linear interpolation)."""
    if not rankings:
        return {"p50": 0.0, "p99": 0.0}
    latencies = np.array([r.latency_ms for r in rankings])
    return {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}


def evaluate(
    tools: Sequence[Tool],
    queries: Sequence[EvalQuery],
    strategy: SearchStrategy,
    *,
    on_query: Callable[[], None] | None = None,
    prerequisites: bool = True,
) -> RetrievalReport:
    """Index `tools` with `strategy`, rank every query, and score the rankings.

    `prerequisites=False` ranks without bringing the producers of needed ids (a baseline's plain ranking).
    """
    index, build_ms = build_index(tools, strategy, prerequisites=prerequisites)
    rankings = rank(index, queries, on_query=on_query)
    return RetrievalReport(
        strategy=strategy.name,
        tools=len(index),
        metrics=retrieval_metrics(rankings),
        latency_ms=latency_summary(rankings),
        build_ms=build_ms,
        rankings=tuple(rankings),
    )
