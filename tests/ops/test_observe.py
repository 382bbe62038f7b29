"""Observe: spans, metrics (Prometheus text) and JSON call logs with secrets redacted."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aperture.ops.observe import REDACTED, Redactor
from tests.ops.conftest import Calls, ops_gateway

pytestmark = pytest.mark.anyio


async def test_each_call_gets_a_span_with_the_tool_attributes(calls: Calls) -> None:
    async with ops_gateway({"observe": {"enabled": True}}, calls) as gw:
        exporter = InMemorySpanExporter()
        gw.ops.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        await gw.run("t:lookup", {"word": "a"})
        await gw.run("t:boom", {})
        ok, failed = exporter.get_finished_spans()
        assert ok.name == "tool.exec.t.lookup" and failed.name == "tool.exec.t.boom"
        assert ok.attributes is not None and failed.attributes is not None
        assert ok.attributes["tool.id"] == "t:lookup" and ok.attributes["tool.namespace"] == "t"
        assert ok.attributes["tool.name"] == "lookup" and ok.attributes["tool.outcome"] == "ok"
        assert failed.attributes["tool.outcome"] == "execution_failed"


async def test_metrics_are_served_in_prometheus_text(calls: Calls) -> None:
    ops = {"observe": {"enabled": True}, "cache": {"enabled": True}, "resilience": {"enabled": True}}
    async with ops_gateway(ops, calls) as gw:
        for _ in range(2):
            await gw.run("t:lookup", {"word": "a"})
        await gw.run("t:boom", {})
        await gw.run("nope:nothing", {})
        text = gw.ops.telemetry.prometheus_text().decode()
    # The default chain puts observe inside the cache: a hit is counted as a cache hit, not an execution.
    assert 'tool_exec_total{tool_id="t:lookup",tool_name="lookup",tool_namespace="t"} 1.0' in text
    assert "tool_exec_duration_milliseconds_bucket" in text
    assert 'tool_exec_errors_total{error_code="execution_failed"' in text
    assert 'tool_cache_lookups_total{result="hit",tool_id="t:lookup"} 1.0' in text
    assert 'tool_id="unknown"' in text  # unknown ids do not blow up the label set


async def test_call_logs_are_json_with_secrets_redacted(calls: Calls, caplog: pytest.LogCaptureFixture) -> None:
    ops = {"observe": {"enabled": True, "logs": True, "redact": ["word"]}}
    async with ops_gateway(ops, calls) as gw:
        with caplog.at_level(logging.INFO, logger="aperture.ops.calls"):
            await gw.run("t:lookup", {"word": "hunter2"})
    record = json.loads(caplog.records[-1].getMessage())
    assert record["tool_id"] == "t:lookup" and record["outcome"] == "ok" and record["identity"] == "local"
    assert record["args"] == {"word": REDACTED} and record["duration_ms"] >= 0


def test_redaction_reaches_nested_values() -> None:
    redact = Redactor()
    args = {"q": "x", "auth": {"API_KEY": "k", "items": [{"password": "p", "n": 1}]}, "Authorization": "Bearer t"}
    assert redact(args) == {
        "q": "x",
        "auth": {"API_KEY": REDACTED, "items": [{"password": REDACTED, "n": 1}]},
        "Authorization": REDACTED,
    }
