"""The audit log: one `record(event, identity, target, outcome)` for every path that must leave a trace, shipped
in order to a sink (a JSONL file or a Redis stream). While the sink cannot take records they wait in a bounded spool
on local disk and are replayed, in order and exactly once, when it is back; nothing is lost without being counted."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import anyio

from aperture.model import ApertureError, AuditUnavailableError, ConfigError
from aperture.ops.access import current_toolset
from aperture.ops.identity import Identity
from aperture.ops.settings import AuditSpoolSettings
from aperture.ops.shared import RedisLink

logger = logging.getLogger(__name__)

BATCH = 256
"""Records shipped to the sink in one write."""
MAX_PENDING = 100_000
"""Records waiting in memory for the writer task; more are dropped (and counted) rather than held."""
COALESCE = 0.005
"""Seconds the writer waits after a record arrives, so a batch carries several (one sink write per batch)."""
SLOTS = 16
"""Spool files per directory: each running gateway locks one, so replicas on one host never share a file."""
_TARGET_MAX = 200
_LOG_EVERY = 10.0  # seconds between error lines while records are being dropped

# Each record carries its writer (one per gateway process) and a sequence number; Redis remembers the last
# number written per writer, so a batch resent after a lost reply, or replayed after a crash, is written once.
_XADD_ONCE = """
local written = 0
for i = 2, #ARGV do
  local r = cjson.decode(ARGV[i])
  local last = tonumber(redis.call('HGET', KEYS[2], r[1]) or '0')
  if r[2] > last then
    if ARGV[1] == '' then
      redis.call('XADD', KEYS[1], '*', unpack(r[3]))
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(r[3]))
    end
    redis.call('HSET', KEYS[2], r[1], r[2])
    written = written + 1
  end
end
redis.call('EXPIRE', KEYS[2], 2592000)
return written
"""


class AuditSinkDown(Exception):
    """The sink did not take the records; they stay spooled."""


class AuditSink(Protocol):
    """Where audit records end up: `write` takes records in order, or raises `AuditSinkDown`."""

    name: str

    async def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class FileAudit:
    """Audit records as JSON lines in a file."""

    name = "file"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    async def write(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            self._file.write("".join(_line(r) for r in records))
            self._file.flush()
        except OSError as exc:
            raise AuditSinkDown(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class RedisAudit:
    """Audit records in a Redis stream (`{prefix}audit`, trimmed to about `maxlen` entries unless it is None),
    each written once."""

    name = "redis"

    def __init__(self, link: RedisLink, maxlen: int | None = 100_000) -> None:
        self._link = link
        self.key = f"{link.prefix}audit"
        self._written = f"{link.prefix}audit:written"  # writer -> last sequence number in the stream
        self._maxlen = maxlen
        self._script = link.script(_XADD_ONCE)

    async def write(self, records: Sequence[dict[str, Any]]) -> None:
        payload = [
            json.dumps([r["writer"], r["seq"], [x for k, v in r.items() for x in (k, _text(v))]]) for r in records
        ]
        keys = [self.key, self._written]
        maxlen = "" if self._maxlen is None else self._maxlen
        answer = await self._link.run(lambda _: self._script(keys=keys, args=[maxlen, *payload]))
        if answer is None:
            raise AuditSinkDown(self._link.last_error or "Redis is unreachable")

    def close(self) -> None:
        """Nothing to close: the Redis pool belongs to the operations layer."""


class Spool:
    """Records waiting on local disk, oldest first.

    `spool-N.jsonl` holds them and `spool-N.offset` says how far they have been shipped; N is a slot this
    process locks, so a restarted gateway replays what its predecessor left. Nothing touches the disk until a
    record is spooled (or a slot from before is found).
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.backlog = 0  # records not shipped yet
        self.size = 0  # bytes in the file
        self.offset = 0  # bytes shipped
        self.path: Path | None = None
        self._lock: IO[str] | None = None
        self._file: IO[bytes] | None = None
        if directory.is_dir():
            self._open()

    @property
    def backlog_bytes(self) -> int:
        """Bytes of records not shipped yet."""
        return self.size - self.offset

    @property
    def full(self) -> bool:
        """True when another record (of about a kilobyte) would not fit."""
        return self.backlog_bytes + 1024 > self.max_bytes

    def _open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for slot in range(SLOTS):
            lock = (self.directory / f"spool-{slot}.lock").open("a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            break
        else:
            raise ConfigError(
                f"all {SLOTS} audit spool slots in {self.directory} are held by running gateways; give this one "
                "its own ops.auth.audit_spool.directory"
            )
        self._lock = lock
        self.path = self.directory / f"spool-{slot}.jsonl"
        # Records name callers: readable by the gateway's user only.
        self._file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self.size = os.fstat(self._file.fileno()).st_size
        mark = self.path.with_suffix(".offset")
        with contextlib.suppress(OSError, ValueError):
            self.offset = min(int(mark.read_text() or 0), self.size)
        if self.size:
            with self.path.open("rb") as file:
                file.seek(-1, os.SEEK_END)
                cut = file.read(1) != b"\n"
            if cut:  # a line cut short by a crash: made a line of its own (unreadable, so counted as dropped)
                self._file.write(b"\n")
                self._file.flush()
                self.size += 1
        if self.backlog_bytes:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                self.backlog = sum(1 for _ in file)
            logger.warning("audit spool %s holds %d records from before: replaying them", self.path, self.backlog)

    def append(self, records: Sequence[dict[str, Any]]) -> int:
        """Append what fits (in order, stopping at the first that does not); return how many were kept."""
        if self._file is None:
            self._open()
        assert self._file is not None
        lines: list[bytes] = []
        room = self.max_bytes - self.backlog_bytes
        for record in records:
            line = _line(record).encode()
            if len(line) > room:
                break
            room -= len(line)
            lines.append(line)
        if lines:
            data = b"".join(lines)
            self._file.write(data)
            self._file.flush()
            self.size += len(data)
            self.backlog += len(lines)
        return len(lines)

    def head(self, limit: int) -> tuple[list[dict[str, Any]], int, int]:
        """Up to `limit` of the oldest records, the offset after them, and how many lines were unreadable."""
        if self.path is None or not self.backlog_bytes:
            return [], self.offset, 0
        records: list[dict[str, Any]] = []
        broken = 0
        with self.path.open("rb") as file:
            file.seek(self.offset)
            end = self.offset
            for line in file:
                end += len(line)
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                    records.append(record)
                except ValueError:
                    broken += 1
                if len(records) + broken >= limit:
                    break
        return records, end, broken

    def advance(self, offset: int, count: int) -> None:
        """Mark everything before `offset` (`count` records) as shipped; an emptied spool is truncated."""
        assert self.path is not None and self._file is not None
        self.backlog = max(0, self.backlog - count)
        mark = self.path.with_suffix(".offset")
        if offset >= self.size:
            self._file.truncate(0)
            self.size = self.offset = self.backlog = 0
        else:
            self.offset = offset
        scratch = mark.with_suffix(".tmp")
        scratch.write_text(str(self.offset))
        os.replace(scratch, mark)

    def close(self) -> None:
        """Close the files and give the slot up."""
        for handle in (self._file, self._lock):
            if handle is not None:
                handle.close()
        self._file = self._lock = None


class AuditLog:
    """Takes audit records from any path (`record` never blocks and never raises) and ships them in order.

    `run` is the writer task. While the sink is down records go to the spool, and every record after them
    too (so order holds), until the spool has been replayed; when the spool is full the records that do not
    fit are dropped and counted, or, with `on_full: refuse`, `admit` refuses the calls that would need one.

    Args:
        sink: where records go.
        spool: where they wait while the sink is down.
        settings: the spool's settings (`on_full`, `replay_every`).
        on_count: called with (outcome, how many) for every written, spooled, replayed, dropped or refused.
    """

    def __init__(
        self,
        sink: AuditSink,
        spool: Spool,
        settings: AuditSpoolSettings,
        *,
        on_count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.settings = settings
        self.writer = secrets.token_hex(8)
        self.counts = dict.fromkeys(("written", "spooled", "replayed", "dropped", "refused"), 0)
        self.sink_error: str | None = None
        self._on_count = on_count
        self._seq = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self._closed = False
        self._logged_drop = -math.inf
        self._progress = anyio.Event()  # set whenever records reach the sink

    def record(
        self, event: str, identity: Identity | None, target: str | None = None, outcome: str = "ok", **fields: Any
    ) -> None:
        """Record that `identity` did `event` on `target` with `outcome` (never arguments: pass only facts).

        The toolset the request came through (`/mcp/{toolset}`, `serve --toolset`) is recorded as `toolset`,
        unless `fields` names it."""
        self._seq += 1
        if "toolset" not in fields and (toolset := current_toolset.get()) is not None:
            fields["toolset"] = toolset
        elif fields.get("toolset", "") is None:
            del fields["toolset"]
        record = {
            "ts": datetime.now(UTC).isoformat(),
            "event": event,
            "identity": identity.name if identity is not None else "anonymous",
            "method": identity.method if identity is not None else "none",
            "target": (target or "")[:_TARGET_MAX],
            "outcome": outcome,
            **fields,
            "writer": self.writer,
            "seq": self._seq,
        }
        if self._closed:
            self._drop(1, f"{event} was recorded after the audit log was closed")
            return
        if len(self._pending) >= MAX_PENDING:
            self._drop(1, "the audit writer is behind")
            return
        self._pending.append(record)
        self._wake.set()

    def admit(self, op: str) -> None:
        """Refuse `op` when records cannot be kept and the operator asked for that (`on_full: refuse`).

        Raises:
            AuditUnavailableError: saying the call was refused because it could not be audited.
        """
        if self.settings.on_full != "refuse" or not self.spool.full:
            return
        self._count("refused", 1)
        raise AuditUnavailableError(
            f"{op} was refused: this gateway must record every call in its audit log, and cannot right now (the "
            "audit sink is unreachable and the local spool is full). Nothing was run. Retry in a minute; if it "
            "persists, tell an operator.",
            op=op,
            details={"retry_after": self.settings.replay_every},
        )

    def stats(self) -> dict[str, Any]:
        """Counts and state, for /readyz and `aperture health`."""
        state = "ok" if self.sink_error is None and not self.spool.backlog else "spooling"
        if self.spool.full:
            state = "full"
        return {
            "sink": self.sink.name,
            "state": state,
            **self.counts,
            "pending": len(self._pending),
            "spooled_now": self.spool.backlog,
            "spool_bytes": self.spool.backlog_bytes,
            "spool_max_bytes": self.spool.max_bytes,
        }

    async def drained(self) -> None:
        """Return once every record so far is in the sink (nothing pending, nothing spooled)."""
        while self.spool.backlog or self._pending or self._lock.locked():
            if self._progress.is_set():
                self._progress = anyio.Event()
            with anyio.move_on_after(self.settings.replay_every):  # the writer may hold the lock without progress
                await self._progress.wait()

    async def run(self) -> None:
        """The writer task: ship records as they come; while some are spooled, retry every `replay_every`."""
        while not self._closed:
            waiting = self.spool.backlog or self._pending  # left over by a failed attempt: try again soon
            with anyio.move_on_after(self.settings.replay_every if waiting else math.inf):
                await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(COALESCE)  # records of the next few calls join this batch: one write for them all
            try:
                await self.flush()
            except Exception:  # a bug here must not take the gateway down; the records stay where they are
                logger.exception("the audit writer failed; retrying in %g s", self.settings.replay_every)

    async def flush(self) -> None:
        """Ship what waits (spool first, then memory) until done or the sink fails."""
        try:
            async with self._lock:
                await self._ship_all()
        finally:
            self._progress.set()

    async def _ship_all(self) -> None:
        """The body of `flush`, under its lock."""
        while not self._closed:
            if self.spool.backlog:
                if self._pending:  # behind the spooled ones, to keep the order
                    self._spool(list(self._pending))
                    self._pending.clear()
                batch, end, broken = self.spool.head(BATCH)
                if broken:
                    self._drop(broken, f"{broken} unreadable lines in the spool {self.spool.path}")
                if batch and not await self._ship(batch):
                    return
                self.spool.advance(end, len(batch) + broken)
                self._count("replayed", len(batch))
                self._progress.set()
                continue
            if not self._pending:
                return
            batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            try:
                shipped = await self._ship(batch)
            except BaseException:  # cancelled mid-write: the batch goes back first in line
                self._pending.extendleft(reversed(batch))
                raise
            if not shipped:
                self._spool([*batch, *self._pending])
                self._pending.clear()
                return
            self._count("written", len(batch))
            self._progress.set()

    async def _ship(self, batch: list[dict[str, Any]]) -> bool:
        try:
            await self.sink.write(batch)
        except AuditSinkDown as exc:
            if self.sink_error is None:
                logger.error("audit sink %s is down (%s): records go to the local spool", self.sink.name, exc)
            self.sink_error = str(exc)
            return False
        if self.sink_error is not None:
            logger.warning("audit sink %s is back: replaying %d spooled records", self.sink.name, self.spool.backlog)
            self.sink_error = None
        return True

    def _spool(self, records: list[dict[str, Any]]) -> None:
        try:
            kept = self.spool.append(records)
        except (OSError, ConfigError) as exc:
            self._drop(len(records), f"the spool cannot be written ({exc})")
            return
        self._count("spooled", kept)
        if kept < len(records):
            self._drop(len(records) - kept, f"the spool is full ({self.spool.max_bytes} bytes)")

    def _drop(self, count: int, why: str) -> None:
        self._count("dropped", count)
        now = time.monotonic()
        if now - self._logged_drop >= _LOG_EVERY:
            self._logged_drop = now
            logger.error(
                "audit records dropped: %s; %d dropped since start (see ops.auth.audit_spool)",
                why,
                self.counts["dropped"],
            )

    def _count(self, outcome: str, count: int) -> None:
        if count:
            self.counts[outcome] += count
            if self._on_count is not None:
                self._on_count(outcome, count)

    async def aclose(self, timeout: float = 3.0) -> None:
        """Ship what waits (for at most `timeout` seconds), spool the rest, close the sink and the spool."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
            await self.flush()
        async with self._lock:
            self._closed = True  # the writer task stops; what could not be shipped waits on disk for the next start
            if self._pending:
                self._spool(list(self._pending))
                self._pending.clear()
            self._wake.set()
        self.sink.close()
        self.spool.close()


def outcome_of(error: BaseException) -> str:
    """The outcome an audit record gives a failure: the error's code."""
    if isinstance(error, ApertureError):
        return str(error.code)
    code = getattr(error, "code", None)
    return f"error {code}" if code is not None else type(error).__name__


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
