"""The tool index: every tool in the catalog, searchable, swapped atomically when the catalog changes."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from aperture.discovery.bm25 import BM25Strategy
from aperture.discovery.document import SearchDoc
from aperture.discovery.strategy import Scorer, SearchStrategy
from aperture.model import Tool, ToolSummary

logger = logging.getLogger(__name__)

_Positions = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """One page of ranked results.

    Attributes:
        hits: the summaries on this page, best first.
        total: how many tools matched at all.
        version: the index version the page came from (cursors check it).
        next_offset: where the next page starts, or None on the last page.
        reason: why there are no hits, in words for the caller; empty when there are hits.
    """

    hits: list[ToolSummary]
    total: int
    version: int
    next_offset: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    docs: tuple[SearchDoc, ...] = ()
    scorer: Scorer | None = None
    positions: Mapping[str, int] = field(default_factory=dict)
    by_namespace: Mapping[str, _Positions] = field(default_factory=dict)
    by_tag: Mapping[str, _Positions] = field(default_factory=dict)


class ToolIndex:
    """Search over tools with a pluggable strategy (BM25 by default).

    `update` builds a complete new snapshot and swaps it in with one assignment, so a search running
    concurrently sees either the old index or the new one, never half of each. Unchanged tools keep
    their tokenized documents across updates.
    """

    def __init__(self, strategy: SearchStrategy | None = None) -> None:
        self.strategy: SearchStrategy = strategy or BM25Strategy()
        self._snapshot = _Snapshot(version=0)

    @property
    def version(self) -> int:
        return self._snapshot.version

    def __len__(self) -> int:
        return len(self._snapshot.docs)

    def update(self, tools: Iterable[Tool], *, version: int | None = None) -> None:
        """Replace the indexed tools. `version` (default: one more than now) identifies the new index."""
        started = time.perf_counter()
        old = self._snapshot
        reuse = {doc.tool.key: doc for doc in old.docs}
        docs = []
        for tool in tools:
            doc = reuse.get(tool.key)
            docs.append(doc if doc is not None and doc.tool is tool else SearchDoc.of(tool))
        namespaces: dict[str, list[int]] = defaultdict(list)
        tags: dict[str, list[int]] = defaultdict(list)
        for i, doc in enumerate(docs):
            namespaces[doc.tool.namespace].append(i)
            for tag in doc.tool.tags:
                tags[tag.lower()].append(i)
        self._snapshot = _Snapshot(
            version=old.version + 1 if version is None else version,
            docs=tuple(docs),
            scorer=self.strategy.build(docs) if docs else None,
            positions=MappingProxyType({doc.tool.key: i for i, doc in enumerate(docs)}),
            by_namespace=MappingProxyType({k: np.array(v, dtype=np.int64) for k, v in namespaces.items()}),
            by_tag=MappingProxyType({k: np.array(v, dtype=np.int64) for k, v in tags.items()}),
        )
        logger.info("indexed %d tools in %.1f ms", len(docs), (time.perf_counter() - started) * 1000)

    def get(self, key: str) -> Tool | None:
        snap = self._snapshot
        position = snap.positions.get(key)
        return snap.docs[position].tool if position is not None else None

    def tools(self) -> list[Tool]:
        return [doc.tool for doc in self._snapshot.docs]

    def namespaces(self) -> dict[str, int]:
        """Namespace -> number of tools."""
        return {ns: len(positions) for ns, positions in self._snapshot.by_namespace.items()}

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        offset: int = 0,
        namespace: str | None = None,
        tags: Sequence[str] = (),
    ) -> SearchPage:
        """Rank the tools for `query`, keep those in `namespace` having every tag in `tags`, return one page."""
        snap = self._snapshot
        if not snap.docs or snap.scorer is None:
            return SearchPage(
                hits=[], total=0, version=snap.version, reason="The catalog is empty: no tools are registered."
            )
        allowed = self._allowed(snap, namespace, tags)
        if allowed is not None and not allowed.any():
            return SearchPage(hits=[], total=0, version=snap.version, reason=self._why_filtered(snap, namespace, tags))
        scores = snap.scorer.scores(query)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0).astype(np.float32)
        candidates = np.flatnonzero(scores > 0)
        total = int(candidates.size)
        need = offset + limit
        if total > need:
            candidates = candidates[np.argpartition(-scores[candidates], need - 1)[:need]]
        ranked = candidates[np.lexsort((candidates, -scores[candidates]))]
        page = ranked[offset:need]
        hits = [ToolSummary.of(snap.docs[i].tool, float(scores[i])) for i in page]
        reason = "" if hits else "No tool matches these words; try other words, synonyms, or list_tools."
        return SearchPage(
            hits=hits,
            total=total,
            version=snap.version,
            next_offset=need if need < total else None,
            reason=reason,
        )

    def page(
        self, *, limit: int, offset: int = 0, namespace: str | None = None, backend_kind: str | None = None
    ) -> SearchPage:
        """Tools in catalog order (no query), optionally of one namespace or backend kind."""
        snap = self._snapshot
        docs: Sequence[SearchDoc] = snap.docs
        if namespace is not None:
            docs = [snap.docs[i] for i in snap.by_namespace.get(namespace, ())]
        if backend_kind is not None:
            docs = [d for d in docs if d.tool.backend_kind == backend_kind]
        chunk = docs[offset : offset + limit]
        total = len(docs)
        return SearchPage(
            hits=[ToolSummary.of(d.tool, 0.0) for d in chunk],
            total=total,
            version=snap.version,
            next_offset=offset + limit if offset + limit < total else None,
            reason="" if chunk else ("The catalog is empty." if not snap.docs else "No tool matches these filters."),
        )

    @staticmethod
    def _allowed(snap: _Snapshot, namespace: str | None, tags: Sequence[str]) -> npt.NDArray[np.bool_] | None:
        if namespace is None and not tags:
            return None
        mask = np.ones(len(snap.docs), dtype=bool)
        if namespace is not None:
            ns_mask = np.zeros(len(snap.docs), dtype=bool)
            ns_mask[snap.by_namespace.get(namespace, np.empty(0, dtype=np.int64))] = True
            mask &= ns_mask
        for tag in tags:
            tag_mask = np.zeros(len(snap.docs), dtype=bool)
            tag_mask[snap.by_tag.get(tag.lower(), np.empty(0, dtype=np.int64))] = True
            mask &= tag_mask
        return mask

    @staticmethod
    def _why_filtered(snap: _Snapshot, namespace: str | None, tags: Sequence[str]) -> str:
        if namespace is not None and namespace not in snap.by_namespace:
            known = ", ".join(sorted(snap.by_namespace)[:20])
            return f"No namespace '{namespace}'. Known namespaces: {known}."
        missing = [t for t in tags if t.lower() not in snap.by_tag]
        if missing:
            return f"No tool has the tag(s) {', '.join(map(repr, missing))}; drop them or see list_tools."
        return "No tool matches all of these filters together; loosen the namespace or tags filter."
