"""The tool index: every tool in the catalog, searchable, swapped atomically when the catalog changes."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from aperture.discovery.bm25 import BM25Strategy
from aperture.discovery.confidence import (
    DENSE_THRESHOLDS,
    LEXICAL_THRESHOLDS,
    PAGE_HITS,
    Confidence,
    Overlap,
    evidence,
    near_exact,
    page_evidence,
)
from aperture.discovery.document import SearchDoc
from aperture.discovery.prerequisites import Prerequisites
from aperture.discovery.semantic import DenseScorer, DenseStrategy, HybridScorer, HybridStrategy
from aperture.discovery.strategy import Scorer, SearchStrategy
from aperture.discovery.text import tokenize
from aperture.model import Tool, ToolSummary

Visibility = tuple[Hashable, Callable[[str], bool]]
"""Which tools a caller may see: a hashable naming the caller's rights (equal rights, equal answers: masks
are cached by it) and a test of one tool key."""
MAX_MASKS = 64

logger = logging.getLogger(__name__)

_Positions = npt.NDArray[np.int64]

MAX_INTENT = 1000
MAX_QUERY = 1000
"""Longest search query, in characters: a query is a few words, and scoring costs grow with its length."""
# The intent is context, the query is the request: the intent's scores count half as much.
INTENT_WEIGHT = 0.5
# Runs of identifier characters in a query, candidates for an exact tool name or id.
_IDENTIFIER_RUN = re.compile(r"[A-Za-z0-9_.:/\-]+")
# A name "looks like an identifier" when it has a separator or a camelCase hump; plain words ("search")
# only count as exact matches when they are the whole query.
_IDENTIFIER_LIKE = re.compile(r"[_.:/\-]|[a-z][A-Z]")
_EMBED_CHUNK = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """One page of ranked results.

    Attributes:
        hits: the summaries on this page, best first.
        total: how many tools matched at all.
        version: the index version the page came from (cursors check it).
        next_offset: where the next page starts, or None on the last page.
        reason: why there are no hits or why they do not fit, in words for the caller; empty otherwise.
        confidence: how well the best match fits the query (`none` when there is no hit).
        evidence: the calibrated evidence `confidence` was judged on: the top hit's, or when that is below the
            `none` threshold, the first few hits' together (see `aperture.discovery.confidence`).
        exact: how many hits lead because the query names them exactly.
    """

    hits: list[ToolSummary]
    total: int
    version: int
    next_offset: int | None = None
    reason: str = ""
    confidence: Confidence = Confidence.NONE
    evidence: float = 0.0
    exact: int = 0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    docs: tuple[SearchDoc, ...] = ()
    scorer: Scorer | None = None
    positions: Mapping[str, int] = field(default_factory=dict)
    by_namespace: Mapping[str, _Positions] = field(default_factory=dict)
    by_tag: Mapping[str, _Positions] = field(default_factory=dict)
    exact: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    prerequisites: Prerequisites | None = None
    complete: bool = True  # the scorer is the strategy's own, not the fallback's


class ToolIndex:
    """Search over tools with a pluggable strategy (BM25 by default).

    `update` builds a complete new snapshot and swaps it in with one assignment, so a search running
    concurrently sees either the old index or the new one, never half of each. Unchanged tools keep
    their tokenized documents across updates.

    With a `fallback` strategy (BM25 in front of a hybrid one, say), `update` swaps in the fallback's
    scorer at once and builds the strategy's own in a worker thread, swapping it in when it is ready:
    embedding a large catalog takes minutes, and search works meanwhile.

    With `prerequisites` (the default), a top hit that needs an id the request does not give brings the tool
    that produces it just below itself (see `aperture.discovery.prerequisites`).
    """

    def __init__(
        self,
        strategy: SearchStrategy | None = None,
        *,
        fallback: SearchStrategy | None = None,
        prerequisites: bool = True,
    ) -> None:
        self.strategy: SearchStrategy = strategy or BM25Strategy()
        self.fallback = fallback
        self.prerequisites = prerequisites
        self.build_error: BaseException | None = None
        self._snapshot = _Snapshot(version=0)
        # Visibility masks of the current version, by the caller's rights (see `Visibility`).
        self._masks: dict[tuple[int, Hashable], npt.NDArray[np.bool_]] = {}
        self._ready = threading.Event()
        self._ready.set()
        self._build_lock = threading.Lock()  # one background build at a time
        self._builder: threading.Thread | None = None
        self._closed = False
        self._swap_lock = threading.Lock()
        # (tools embedded, tools to embed) while the strategy's own index is being built in the background.
        self._warming: tuple[int, int] | None = None

    @property
    def version(self) -> int:
        return self._snapshot.version

    @property
    def ready(self) -> bool:
        """Whether searches use the strategy's own scorer (not the fallback's while it is being built)."""
        return self._snapshot.complete

    @property
    def serving(self) -> str:
        """The name of the strategy answering searches now."""
        return self.strategy.name if self._snapshot.complete or self.fallback is None else self.fallback.name

    @property
    def warming(self) -> float | None:
        """While the strategy's own index is being built in the background, the share of the catalog
        embedded so far (0 to 1); None when it serves (or its build failed, or there is no fallback)."""
        progress = self._warming
        if progress is None or self._snapshot.complete:
            return None
        done, total = progress
        return min(done / total, 1.0) if total else 0.0

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the strategy's own scorer serves (or its build failed); False on timeout."""
        return self._ready.wait(timeout)

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
        unchanged = len(docs) == len(old.docs) and all(a is b for a, b in zip(docs, old.docs, strict=True))
        if unchanged and old.docs and old.complete:
            # The same tools (a backend re-listed without change): keep the built scorer, take the new version.
            # Not while a background build runs: it swaps in only for the snapshot it started from.
            with self._swap_lock:
                if self._snapshot is old:
                    self._snapshot = replace(old, version=old.version + 1 if version is None else version)
                    return
        namespaces: dict[str, list[int]] = defaultdict(list)
        tags: dict[str, list[int]] = defaultdict(list)
        exact: dict[str, list[int]] = defaultdict(list)
        for i, doc in enumerate(docs):
            namespaces[doc.tool.namespace].append(i)
            for tag in doc.tool.tags:
                tags[tag.lower()].append(i)
            exact[doc.tool.key.lower()].append(i)
            exact[doc.tool.name.lower()].append(i)
        background = self.fallback is not None and bool(docs)
        builder = self.fallback if background and self.fallback is not None else self.strategy
        snapshot = _Snapshot(
            version=old.version + 1 if version is None else version,
            docs=tuple(docs),
            scorer=builder.build(docs) if docs else None,
            positions=MappingProxyType({doc.tool.key: i for i, doc in enumerate(docs)}),
            by_namespace=MappingProxyType({k: np.array(v, dtype=np.int64) for k, v in namespaces.items()}),
            by_tag=MappingProxyType({k: np.array(v, dtype=np.int64) for k, v in tags.items()}),
            exact=MappingProxyType({k: tuple(dict.fromkeys(v)) for k, v in exact.items()}),
            prerequisites=Prerequisites.of(docs) if self.prerequisites else None,
            complete=not background,
        )
        with self._swap_lock:
            if background:
                self._ready.clear()
                self._warming = (0, len(docs))
            self._snapshot = snapshot
        logger.info("indexed %d tools (%s) in %.1f ms", len(docs), builder.name, (time.perf_counter() - started) * 1000)
        if background:
            logger.info(
                "building the %s index of %d tools in the background; %s serves searches until it is ready",
                self.strategy.name,
                len(docs),
                builder.name,
            )
            self._builder = threading.Thread(target=self._build, args=(snapshot,), name="aperture-index", daemon=True)
            self._builder.start()
        else:
            self._ready.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop background building (between chunks of embeddings) and wait for the worker to finish, so
        no model call is cut off when the process exits."""
        self._closed = True
        builder = self._builder
        if builder is not None:
            builder.join(timeout)

    def _build(self, snapshot: _Snapshot) -> None:
        """Build the strategy's own scorer for `snapshot` and swap it in, unless a newer update came first."""
        with self._build_lock:
            if self._closed or self._snapshot.version != snapshot.version:
                return  # superseded: the newer update's thread builds its own
            started = time.perf_counter()

            def embedded(count: int) -> None:
                done, total = self._warming or (0, len(snapshot.docs))
                self._warming = (done + count, total)

            try:
                _warm(
                    self.strategy,
                    snapshot.docs,
                    lambda: self._closed or self._snapshot.version != snapshot.version,
                    embedded,
                )
                if self._closed:
                    return
                scorer = self.strategy.build(snapshot.docs)
            except Exception as exc:  # a worker thread has no caller to raise to: log, keep the fallback
                logger.exception("building the %s index failed; searches keep using the fallback", self.strategy.name)
                self.build_error = exc
                self._warming = None
                self._ready.set()
                return
            with self._swap_lock:
                if self._snapshot is not snapshot:
                    return
                self._snapshot = replace(snapshot, scorer=scorer, complete=True)
                self.build_error = None
                self._warming = None
                self._ready.set()
            _return_freed_memory()
            logger.info(
                "the %s index of %d tools is ready (%.1f s); it serves searches now",
                self.strategy.name,
                len(snapshot.docs),
                time.perf_counter() - started,
            )

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
        intent: str | None = None,
        unavailable: Mapping[str, str] | None = None,
        hide_unavailable: bool = False,
        visible: Visibility | None = None,
    ) -> SearchPage:
        """Rank the tools for `query`, keep those in `namespace` having every tag in `tags`, return one page.

        Args:
            intent: what the caller is trying to do, in a sentence: ranked with half the query's weight.
            unavailable: namespace -> why its backend is down; those tools are marked, or left out with
                `hide_unavailable`.
            visible: which tools the caller may see; the others are left out before paging, so pages
                are full and `total` counts only what the caller may see.

        A tool whose exact id or name appears in the query ranks first (several such: first by score).
        """
        snap = self._snapshot
        if not snap.docs or snap.scorer is None:
            return SearchPage(
                hits=[], total=0, version=snap.version, reason="The catalog is empty: no tools are registered."
            )
        unavailable = unavailable or {}
        allowed = self._allowed(snap, namespace, tags)
        if hide_unavailable and unavailable:
            allowed = self._without(snap, allowed, unavailable)
        if allowed is not None and not allowed.any():
            filtered = self._allowed(snap, namespace, tags)
            if filtered is not None and not filtered.any():
                reason = self._why_filtered(snap, namespace, tags)
            else:
                reason = (
                    f"Every matching tool belongs to a backend that is down ({', '.join(sorted(unavailable))}). "
                    "Retry later, or tell the user the tools are unavailable now."
                )
            return SearchPage(hits=[], total=0, version=snap.version, reason=reason)
        mask = self._visible(snap, visible)
        if mask is not None:  # after the filter reasons, which would tell what is hidden
            allowed = mask if allowed is None else allowed & mask
        scores = snap.scorer.scores(query)
        if intent and intent.strip():
            scores = scores + np.float32(INTENT_WEIGHT) * snap.scorer.scores(intent)
        exact = self._exact(snap, query)
        if allowed is not None:
            scores = scores * allowed  # (a quarter of the time np.where takes: it costs a toolset nothing)
            exact = [i for i in exact if allowed[i]]
        if snap.prerequisites is not None:
            scores = snap.prerequisites.expand(scores, query, allowed)
        order = scores
        if exact:
            # Named tools lead: lift them above every other score for the ordering only.
            order = scores.copy()
            order[exact] += np.float32(float(scores.max()) + 1.0)
        candidates = np.flatnonzero(order > 0)
        total = int(candidates.size)
        need = offset + limit
        ranks = max(need, PAGE_HITS)  # confidence reads the first few hits whatever the page
        if total > ranks:
            candidates = candidates[np.argpartition(-order[candidates], ranks - 1)[:ranks]]
        ranked = candidates[np.lexsort((candidates, -order[candidates]))]
        page = ranked[offset:need]
        hits = [self._summary(snap.docs[i].tool, float(scores[i]), unavailable) for i in page]
        confidence, value = (
            self._confidence(snap, query, ranked[:PAGE_HITS], bool(exact)) if total else (Confidence.NONE, 0.0)
        )
        if not total:
            reason = (
                "No tool matches these words. Try other words or synonyms, describe the task instead of naming "
                "a tool, or browse with list_tools; if nothing fits, tell the user no available tool can do this."
            )
        elif confidence is Confidence.NONE:
            reason = (
                "Nothing in the catalog fits this request well: these are only the closest tools. Stop "
                "searching and tell the user no available tool can do this, unless one of them clearly does; "
                "or rephrase once with other words."
            )
        else:
            reason = ""
        return SearchPage(
            hits=hits,
            total=total,
            version=snap.version,
            next_offset=need if need < total else None,
            reason=reason,
            confidence=confidence,
            evidence=value,
            exact=len(exact),
        )

    @staticmethod
    def _summary(tool: Tool, score: float, unavailable: Mapping[str, str]) -> ToolSummary:
        summary = ToolSummary.of(tool, score)
        why = unavailable.get(tool.namespace)
        return summary if why is None else replace(summary, available=False, unavailable_reason=why)

    @staticmethod
    def _exact(snap: _Snapshot, query: str) -> list[int]:
        """Positions of the tools whose exact id or name is in `query` (case-insensitive, whole identifiers)."""
        whole = query.strip().strip("`'\"").lower()
        found = list(snap.exact.get(whole, ()))
        for run in _IDENTIFIER_RUN.findall(query):
            run = run.rstrip(".:/-")
            if _IDENTIFIER_LIKE.search(run):
                found += snap.exact.get(run.lower(), ())
        return list(dict.fromkeys(found))

    @staticmethod
    def _confidence(snap: _Snapshot, query: str, first: _Positions, exact: bool) -> tuple[Confidence, float]:
        """How well the best matches fit, from absolute signals (see `aperture.discovery.confidence`): `strong`
        from the top hit's evidence, `none` from the `first` few hits' together when the top's alone would say
        it (the page's evidence is never below the top's, so the others are read only then: most searches pay
        for one hit, as before)."""
        dense = _dense_part(snap.scorer)
        if dense is not None and len(dense.vectors) < len(snap.docs):
            dense = None
        tokens = tokenize(query)
        overlap = Overlap.of(tokens, snap.docs[first[0]])
        cosine = dense.cosine(query, int(first[0])) if dense is not None else None
        value = evidence(overlap, cosine)
        if exact or near_exact(tokens, snap.docs[first[0]], overlap, cosine):
            return Confidence.STRONG, value
        thresholds = DENSE_THRESHOLDS if dense is not None else LEXICAL_THRESHOLDS
        top = value
        if top < thresholds.none_below and len(first) > 1:
            overlaps = [overlap] + [Overlap.of(tokens, snap.docs[i]) for i in first[1:]]
            cosines = [dense.cosine(query, int(i)) for i in first] if dense is not None else None
            value = page_evidence(overlaps, cosines)
        return thresholds.judge(value, top=top), value

    def page(
        self,
        *,
        limit: int,
        offset: int = 0,
        namespace: str | None = None,
        backend_kind: str | None = None,
        visible: Visibility | None = None,
    ) -> SearchPage:
        """Tools in catalog order (no query), optionally of one namespace or backend kind, and visible."""
        snap = self._snapshot
        docs: Sequence[SearchDoc] = snap.docs
        if namespace is not None:
            docs = [snap.docs[i] for i in snap.by_namespace.get(namespace, ())]
        if backend_kind is not None:
            docs = [d for d in docs if d.tool.backend_kind == backend_kind]
        if visible is not None:
            docs = [d for d in docs if visible[1](d.tool.key)]
        chunk = docs[offset : offset + limit]
        total = len(docs)
        return SearchPage(
            hits=[ToolSummary.of(d.tool, 0.0) for d in chunk],
            total=total,
            version=snap.version,
            next_offset=offset + limit if offset + limit < total else None,
            reason="" if chunk else ("The catalog is empty." if not snap.docs else "No tool matches these filters."),
        )

    def _visible(self, snap: _Snapshot, visible: Visibility | None) -> npt.NDArray[np.bool_] | None:
        """The caller's visibility mask over this snapshot, computed once per version and set of rights."""
        if visible is None:
            return None
        rights, may_see = visible
        key = (snap.version, rights)
        mask = self._masks.get(key)
        if mask is None:
            mask = np.fromiter((may_see(doc.tool.key) for doc in snap.docs), dtype=bool, count=len(snap.docs))
            if len(self._masks) >= MAX_MASKS or any(version != snap.version for version, _ in self._masks):
                self._masks = {}
            self._masks[key] = mask
        return mask

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
    def _without(
        snap: _Snapshot, allowed: npt.NDArray[np.bool_] | None, unavailable: Mapping[str, str]
    ) -> npt.NDArray[np.bool_] | None:
        hidden = [snap.by_namespace[ns] for ns in unavailable if ns in snap.by_namespace]
        if not hidden:
            return allowed
        mask = np.ones(len(snap.docs), dtype=bool) if allowed is None else allowed.copy()
        mask[np.concatenate(hidden)] = False
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


def _dense_part(scorer: Scorer | None) -> DenseScorer | None:
    """The dense scorer inside `scorer` (itself, or a hybrid's), whose raw cosines calibrate confidence."""
    if isinstance(scorer, DenseScorer):
        return scorer
    if isinstance(scorer, HybridScorer):
        return scorer.dense
    return None


def _warm(
    strategy: SearchStrategy,
    docs: Sequence[SearchDoc],
    superseded: Callable[[], bool],
    embedded: Callable[[int], None] = lambda count: None,
) -> None:
    """Fill the embedding cache of a dense or hybrid `strategy` in chunks, logging progress and calling
    `embedded(count)` as tools are embedded (or found cached), so building its scorer afterwards reads vectors
    from the cache; stops early when `superseded()`."""
    dense = strategy.dense if isinstance(strategy, HybridStrategy) else strategy
    if not isinstance(dense, DenseStrategy):
        return
    texts = [dense.text(doc) for doc in docs]
    started = time.perf_counter()
    for start in range(0, len(texts), _EMBED_CHUNK):
        if superseded():
            return
        dense.cache.embed(dense.embedder, texts[start : start + _EMBED_CHUNK], progress=embedded)
        done = min(start + _EMBED_CHUNK, len(texts))
        if len(texts) > _EMBED_CHUNK:
            logger.info("embedding tools: %d of %d (%.0f s)", done, len(texts), time.perf_counter() - started)


def _return_freed_memory() -> None:
    """Hand memory freed by a build back to the system (glibc keeps it otherwise; no-op elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
