"""The audit log while its sink is down: records spooled on local disk (bounded), replayed in order and exactly once
when the sink is back (a redis-server of the test's own, stopped and started again), and counted when dropped or
refused; never lost without a count."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from aperture.model import AuditUnavailableError
from aperture.ops.audit import AuditLog, FileAudit, RedisAudit, Spool
from aperture.ops.settings import AuditSpoolSettings
from aperture.ops.shared import RedisLink
from tests.ops.conftest import CLOSED_PORT_URL, REDIS_URL, ops_gateway

pytestmark = pytest.mark.anyio
KEY = "audit-key-" + "x" * 20
AUTH: dict[str, Any] = {
    "enabled": True,
    "api_keys": [{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}],
    "audit": "redis",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def redis_server(port: int) -> AsyncIterator[Process]:
    """A redis-server of this test's own on `port` (no persistence), ready when yielded, killed on exit."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = await anyio.open_process(command)
    try:
        assert process.stdout is not None
        seen = ""
        with anyio.fail_after(10):
            async for chunk in TextReceiveStream(process.stdout):
                seen += chunk
                if "Ready to accept connections" in seen:
                    break
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()


async def stream(url: str, key: str) -> list[dict[str, str]]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        entries: list[tuple[str, dict[str, str]]] = await client.xrange(key)  # type: ignore[assignment]
        return [fields for _, fields in entries]
    finally:
        await client.aclose()


def spool_settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"directory": str(tmp_path / "spool"), "replay_every": 0.05, **extra}


async def test_records_written_while_redis_is_down_are_replayed_once_and_in_order(tmp_path: Path, prefix: str) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    ops = {
        "auth": {**AUTH, "audit_spool": spool_settings(tmp_path)},
        "redis": {"url": url, "prefix": prefix, "retry_after": 0.1},
    }
    async with ops_gateway(ops) as gw:
        audit = gw.ops.audit
        assert audit is not None
        async with redis_server(port):
            for index in range(20):
                assert (await gw.run("t:lookup", {"word": str(index)})).text == str(index)
            with anyio.fail_after(10):
                await audit.drained()
            assert audit.counts["written"] == 20, audit.counts
        for index in range(30):  # Redis is gone: every call still runs, its record waits on disk
            assert not (await gw.run("t:lookup", {"word": str(index)})).is_error
        await audit.flush()
        assert audit.counts["spooled"] == 30 and audit.spool.backlog == 30
        assert (await gw.ops.health.readiness())["audit"]["state"] == "spooling"
        async with redis_server(port):
            for index in range(5):  # calls made while the spool is replayed come after it
                assert not (await gw.run("t:lookup", {"word": str(index)})).is_error
            with anyio.fail_after(10):
                await audit.drained()
            records = await stream(url, f"{prefix}audit")
    assert audit.counts["replayed"] >= 30 and audit.counts["dropped"] == 0
    # The first server's records died with it (no persistence); the second one holds the rest, exactly once.
    assert [int(r["seq"]) for r in records] == list(range(21, 56))
    assert {(r["event"], r["target"], r["outcome"], r["identity"]) for r in records} == {
        ("run", "t:lookup", "ok", "local")
    }


async def test_a_batch_sent_twice_is_written_once(prefix: str) -> None:
    link = RedisLink(REDIS_URL, prefix=prefix)
    try:
        sink = RedisAudit(link)
        batch = [{"event": "run", "writer": "w1", "seq": n, "outcome": "ok"} for n in (1, 2, 3)]
        await sink.write(batch[:2])
        await sink.write(batch)  # the reply to the first write was lost, say: sent again with one more
        untrimmed = RedisAudit(link, maxlen=None)  # ops.auth.audit_stream_maxlen: null
        await untrimmed.write([{"event": "run", "writer": "w2", "seq": 1, "outcome": "ok"}])  # another writer
        assert [(r["writer"], r["seq"]) for r in await stream(REDIS_URL, f"{prefix}audit")] == [
            ("w1", "1"),
            ("w1", "2"),
            ("w1", "3"),
            ("w2", "1"),
        ]
    finally:
        await link.client.delete(f"{prefix}audit", f"{prefix}audit:written")
        await link.aclose()


async def test_records_spooled_before_a_restart_are_replayed_by_the_next_gateway(tmp_path: Path, prefix: str) -> None:
    down = {"auth": {**AUTH, "audit_spool": spool_settings(tmp_path)}, "redis": {"url": CLOSED_PORT_URL}}
    async with ops_gateway(down) as gw:
        for word in "abc":
            await gw.run("t:lookup", {"word": word})
        assert gw.ops.audit is not None
    assert gw.ops.audit.counts["spooled"] == 3
    assert (tmp_path / "spool" / "spool-0.jsonl").stat().st_mode & 0o777 == 0o600  # records name callers
    up = {"auth": {**AUTH, "audit_spool": spool_settings(tmp_path)}, "redis": {"url": REDIS_URL, "prefix": prefix}}
    async with ops_gateway(up) as gw:
        assert gw.ops.audit is not None
        with anyio.fail_after(10):
            await gw.ops.audit.drained()
        records = await stream(REDIS_URL, f"{prefix}audit")
        assert [int(r["seq"]) for r in records] == [1, 2, 3] and gw.ops.audit.counts["replayed"] == 3
        assert gw.ops.link is not None
        await gw.ops.link.client.delete(f"{prefix}audit", f"{prefix}audit:written")


async def test_a_full_spool_keeps_serving_and_counts_and_logs_what_it_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ops = {
        "auth": {**AUTH, "audit_spool": spool_settings(tmp_path, max_bytes=4096)},
        "redis": {"url": CLOSED_PORT_URL},
        "observe": {"enabled": True, "tracing": False},
    }
    async with ops_gateway(ops) as gw:
        audit = gw.ops.audit
        assert audit is not None
        with caplog.at_level(logging.ERROR, logger="aperture.ops.audit"):
            results = [await gw.run("t:lookup", {"word": str(i)}) for i in range(40)]
            await audit.flush()
        assert not any(r.is_error for r in results)
        kept, dropped = audit.counts["spooled"], audit.counts["dropped"]
        assert kept > 0 and dropped > 0 and kept + dropped == 40
        assert audit.spool.backlog_bytes <= 4096
        assert any("audit records dropped: the spool is full" in r.getMessage() for r in caplog.records)
        metrics = gw.ops.telemetry.prometheus_text().decode()
        assert f'audit_records_total{{result="dropped"}} {dropped}.0' in metrics
        assert f'audit_records_total{{result="spooled"}} {kept}.0' in metrics
        assert (await gw.ops.health.readiness())["audit"]["state"] == "full"


async def test_a_full_spool_refuses_calls_when_configured_so(tmp_path: Path) -> None:
    ops = {
        "auth": {**AUTH, "audit_spool": spool_settings(tmp_path, max_bytes=4096, on_full="refuse")},
        "redis": {"url": CLOSED_PORT_URL},
    }
    async with ops_gateway(ops) as gw:
        audit = gw.ops.audit
        assert audit is not None
        refused = None
        for index in range(100):
            result = await gw.run("t:lookup", {"word": str(index)})
            await audit.flush()
            if result.is_error:
                refused = result
                break
        assert refused is not None and refused.error is not None
        assert refused.error.code == "audit_unavailable" and refused.error.retryable
        assert refused.error.message.startswith(
            "run_tool was refused: this gateway must record every call in its audit log, and cannot right now"
        )
        with pytest.raises(AuditUnavailableError, match=r"^search was refused"):
            gw.search("look a word up")
        assert audit.counts["refused"] == 2 and audit.counts["dropped"] == 0
    lines = (tmp_path / "spool" / "spool-0.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))


async def test_a_record_cut_short_by_a_crash_is_counted_and_the_rest_replayed(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    good = [json.dumps({"event": "run", "writer": "w", "seq": n}) for n in (1, 2)]
    (spool_dir / "spool-0.jsonl").write_text("\n".join(good) + '\n{"event": "run", "wri')  # the crash
    settings = AuditSpoolSettings(directory=str(spool_dir))
    audit = AuditLog(FileAudit(tmp_path / "audit.jsonl"), Spool(spool_dir, settings.max_bytes), settings)
    assert audit.spool.backlog == 3
    await audit.flush()
    await audit.aclose()
    shipped = [json.loads(line)["seq"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert shipped == [1, 2] and audit.counts["replayed"] == 2 and audit.counts["dropped"] == 1
    assert (spool_dir / "spool-0.jsonl").stat().st_size == 0


class FlakySink:
    """A sink with a bug the first time it is called."""

    name = "flaky"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.calls = 0

    async def write(self, records: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the sink")
        self.records += records

    def close(self) -> None:
        pass


async def test_a_failing_writer_neither_stops_the_gateway_nor_loses_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AuditSpoolSettings(directory=str(tmp_path / "spool"), replay_every=0.05)
    sink = FlakySink()
    audit = AuditLog(sink, Spool(tmp_path / "spool", settings.max_bytes), settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(audit.run)
        for n in range(3):
            audit.record("run", None, f"t:{n}")
        with anyio.fail_after(5):
            await audit.drained()
        tg.cancel_scope.cancel()
    assert [r["target"] for r in sink.records] == ["t:0", "t:1", "t:2"] and sink.calls == 2
    assert any("the audit writer failed" in r.getMessage() for r in caplog.records)
