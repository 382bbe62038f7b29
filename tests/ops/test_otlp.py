"""Observe over OTLP/HTTP: spans and metrics reach a real collector endpoint on 127.0.0.1 and decode."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.ops.conftest import Calls, ops_gateway

pytestmark = pytest.mark.anyio


class Collector(ThreadingHTTPServer):
    """The receiving end of OTLP/HTTP (protobuf): keeps every request body by path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: dict[str, list[bytes]] = {}
        self.content_types: set[str] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.setdefault(self.path, []).append(body)
        self.server.content_types.add(self.headers.get("Content-Type", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_spans_and_metrics_are_exported_to_the_configured_collector(collector: Collector, calls: Calls) -> None:
    ops = {"observe": {"enabled": True, "otlp_endpoint": collector.endpoint, "service_name": "aperture-otlp-test"}}
    async with ops_gateway(ops, calls) as gw:
        await gw.run("t:lookup", {"word": "a"})
        await gw.run("t:boom", {})
    # Leaving the gateway shuts the providers down, which flushes both exporters.
    assert collector.content_types == {"application/x-protobuf"}
    spans = []
    for body in collector.received.get("/v1/traces", []):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "aperture-otlp-test"
            spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    by_name = {span.name: {a.key: a.value.string_value for a in span.attributes} for span in spans}
    assert by_name["tool.exec.t.lookup"]["tool.id"] == "t:lookup"
    assert by_name["tool.exec.t.lookup"]["tool.outcome"] == "ok"
    assert by_name["tool.exec.t.boom"]["tool.outcome"] == "execution_failed"
    metrics = set()
    for body in collector.received.get("/v1/metrics", []):
        exported = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in exported.resource_metrics:
            metrics |= {m.name for scope in resource_metrics.scope_metrics for m in scope.metrics}
    assert {"tool.exec.total", "tool.exec.duration", "tool.exec.errors"} <= metrics


async def test_an_unreachable_collector_never_fails_a_call_nor_holds_up_shutdown(calls: Calls) -> None:
    # The discard port: refused. The exporters retry until otlp_timeout runs out (they kept shutdown
    # waiting about 13 s with their own defaults).
    ops = {"observe": {"enabled": True, "otlp_endpoint": "http://127.0.0.1:9", "otlp_timeout": 1}}
    async with ops_gateway(ops, calls) as gw:
        result = await gw.run("t:lookup", {"word": "a"})
        assert not result.is_error
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 8
