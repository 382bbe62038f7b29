"""Observe: spans, metrics (Prometheus text) and JSON call logs with secrets redacted."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aperture.ops.observe import REDACTED, Redactor
from aperture.surface.mcp import McpSurface
from aperture.surface.mcp.transport import http_app
from tests.mcp_helpers import error_of, run, serving
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


DEV_KEY, ADMIN_KEY = "k-dev-" + "d" * 24, "k-admin-" + "a" * 24
REFUSALS = 3  # calls refused by each refusing layer


def refusing_ops(chain: list[str] | None) -> dict[str, Any]:
    """Every layer on; t:lookup limited to one call an hour, t:boom's backend breaks after one failure,
    admin:* only for admins (the caller in the test is a dev)."""
    keys = [("ci", DEV_KEY, ["dev"]), ("root", ADMIN_KEY, ["admin"])]
    ops: dict[str, Any] = {
        "auth": {
            "enabled": True,
            "api_keys": [{"name": n, "sha256": hashlib.sha256(k.encode()).hexdigest(), "roles": r} for n, k, r in keys],
            "rules": [{"tools": "admin:*", "roles": ["admin"]}],
        },
        "resilience": {
            "enabled": True,
            "rate_limits": {"tools": {"t:lookup": "1/hour"}},
            "breaker": {"failures": 1, "cooldown": 600},
        },
        "cache": {"enabled": True},
        "observe": {"enabled": True, "tracing": False},
    }
    if chain is not None:
        ops["chain"] = chain
    return ops


@pytest.mark.parametrize(
    "chain", [None, ["observe", "auth", "resilience", "cache"]], ids=["default-chain", "observe-first"]
)
async def test_refused_calls_are_counted_once_whatever_the_chain_order(chain: list[str] | None) -> None:
    async with ops_gateway(refusing_ops(chain)) as gw, serving(http_app(McpSurface(gw))) as url:
        async with (
            httpx2.AsyncClient(headers={"x-api-key": DEV_KEY}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert not (await run(client, "t:lookup", {"word": "a"})).is_error
            assert error_of(await run(client, "t:boom", {}))["code"] == "execution_failed"  # opens the breaker
            for i in range(REFUSALS):
                assert error_of(await run(client, "t:lookup", {"word": str(i)}))["code"] == "rate_limited"
                assert error_of(await run(client, "admin:reset", {}))["code"] == "forbidden"
                assert error_of(await run(client, "t:boom", {}))["details"]["breaker"] == "open"
            refused = await http.post(url, json={}, headers={"x-api-key": "not-a-key"})
            assert refused.status_code == 401
        async with httpx2.AsyncClient(timeout=30) as http:
            full = (await http.get(url.removesuffix("/mcp") + "/metrics", headers={"x-api-key": ADMIN_KEY})).text
            public = (await http.get(url.removesuffix("/mcp") + "/metrics")).text
    lookup, reset, boom = (
        f'tool_id="{t}",tool_name="{t[t.index(":") + 1 :]}",tool_namespace="{t[: t.index(":")]}"'
        for t in ("t:lookup", "admin:reset", "t:boom")
    )
    assert f"tool_exec_rate_limited_total{{{lookup}}} {REFUSALS}.0" in full
    assert f'tool_exec_refused_total{{reason="rate_limit",{lookup}}} {REFUSALS}.0' in full
    assert f'tool_exec_refused_total{{reason="forbidden",{reset}}} {REFUSALS}.0' in full
    assert f'tool_exec_refused_total{{reason="breaker_open",{boom}}} {REFUSALS}.0' in full
    assert "http_requests_unauthorized_total 1.0" in full
    for reason in ("rate_limit", "forbidden", "breaker_open"):  # scrapeable without a credential, summed
        assert f'tool_exec_refused_total{{reason="{reason}"}} {REFUSALS}.0' in public
    assert f"tool_exec_rate_limited_total {REFUSALS}.0" in public
