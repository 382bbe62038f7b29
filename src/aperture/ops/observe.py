"""Observability: an OpenTelemetry span per call, call/cache/breaker metrics (Prometheus text at /metrics,
OTLP when configured), and one JSON log line per call with secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aperture.execution import RunFn, RunResult, ToolCall
from aperture.model import Tool, ToolId
from aperture.ops.access import SURFACE_KEY
from aperture.ops.identity import identity_of
from aperture.ops.resilience import Resolve
from aperture.ops.settings import ObserveSettings

calls_logger = logging.getLogger("aperture.ops.calls")
logger = logging.getLogger(__name__)

SECRET_KEYS = ("password", "passwd", "token", "secret", "key", "authorization", "cookie", "credential")
REDACTED = "[redacted]"


class Redactor:
    """Replaces the values of secret-looking keys (any depth) before arguments reach a log record."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        words = [re.escape(w.lower()) for w in (*SECRET_KEYS, *extra)]
        self._pattern = re.compile("|".join(words))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: REDACTED if isinstance(k, str) and self._pattern.search(k.lower()) else self(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


class Telemetry:
    """The OpenTelemetry providers of one gateway: traces (to OTLP when configured) and metrics (read by
    Prometheus at /metrics, and pushed over OTLP when configured). Each gateway has its own registry."""

    def __init__(self, settings: ObserveSettings) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from prometheus_client import CollectorRegistry

        self.settings = settings
        resource = Resource.create({"service.name": settings.service_name})
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = []
        if settings.metrics:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(
                PrometheusMetricReader(registry=self.registry, disable_target_info=True, scope_info_enabled=False)
            )
        self.tracer_provider = TracerProvider(resource=resource)
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            base = settings.otlp_endpoint.rstrip("/")
            timeout = settings.otlp_timeout  # the exporters retry a refused export until this runs out
            spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout)
            self.tracer_provider.add_span_processor(BatchSpanProcessor(spans))
            metrics = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout)
            readers.append(PeriodicExportingMetricReader(metrics, export_timeout_millis=timeout * 1000))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        self.tracer = self.tracer_provider.get_tracer("aperture.ops")
        meter = self.meter_provider.get_meter("aperture.ops")
        self.calls = meter.create_counter("tool.exec.total", description="Tool executions")
        self.errors = meter.create_counter("tool.exec.errors", description="Failed tool executions")
        self.duration = meter.create_histogram("tool.exec.duration", unit="ms", description="Execution duration")
        self.cache_lookups = meter.create_counter("tool.cache.lookups", description="Cache lookups by result")
        self.breaker_changes = meter.create_counter("tool.breaker.transitions", description="Breaker state changes")
        self.rate_limited = meter.create_counter(
            "tool.exec.rate_limited", description="Calls refused by a rate limit or a full bulkhead"
        )
        self.refused = meter.create_counter(
            "tool.exec.refused",
            description="Calls the gateway refused before they ran, by reason (rate_limit, bulkhead, "
            "breaker_open, forbidden, audit_unavailable), wherever observe sits in the chain",
        )
        self.unauthorized = meter.create_counter(
            "http.requests.unauthorized", description="HTTP requests refused with 401 (no or bad credentials)"
        )
        self.audit_records = meter.create_counter(
            "audit.records",
            description="Audit records by what became of them (written, spooled, replayed, "
            "dropped) and calls refused because they could not be audited (refused)",
        )

    def cache_lookup(self, tool_id: str, hit: bool) -> None:
        """Count a cache lookup."""
        self.cache_lookups.add(1, {"tool.id": tool_id, "result": "hit" if hit else "miss"})

    def audit_counted(self, result: str, count: int) -> None:
        """Count audit records written, spooled, replayed or dropped, or calls refused."""
        self.audit_records.add(count, {"result": result})

    def breaker_changed(self, backend: str, state: str) -> None:
        """Count a breaker transition."""
        self.breaker_changes.add(1, {"backend": backend, "state": state})

    def watch_unrouted(self, read: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Report, at each collection, `(backend, kind, count)` of upstream messages that matched no call."""
        from opentelemetry.metrics import CallbackOptions, Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(count, {"backend": backend, "kind": kind}) for backend, kind, count in read()]

        self.meter_provider.get_meter("aperture.ops").create_observable_counter(
            "upstream.messages.unrouted",
            callbacks=[observe],
            description="Messages from upstreams that matched no call in flight and were dropped or refused",
        )

    def prometheus_text(self, *, public: bool = False) -> bytes:
        """The metrics in Prometheus' text format; `public`: summed over the labels that name tools,
        namespaces and backends (what an unauthenticated scraper may see)."""
        from prometheus_client import generate_latest

        return generate_latest(_PublicMetrics(self.registry) if public else self.registry)

    def shutdown(self) -> None:
        """Flush and stop the exporters."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=(self.settings.otlp_timeout + 1) * 1000)


REFUSALS = ("rate_limit", "bulkhead", "breaker_open", "forbidden", "audit_unavailable")
"""Why a middleware refused a call: the `reason` label of `tool.exec.refused`."""
RATE_LIMITS = frozenset({"rate_limit", "bulkhead"})
"""The refusals also counted in `tool.exec.rate_limited` (both answer `rate_limited`)."""

PRIVATE_LABELS = frozenset({"tool_id", "tool_namespace", "tool_name", "backend"})
"""Metric labels that name what is behind the gateway; the public /metrics sums them away."""


class _PublicMetrics:
    """A registry's metrics with `PRIVATE_LABELS` summed away (counters and histogram buckets add up)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        from prometheus_client.metrics_core import Metric

        for family in self._registry.collect():
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a creation time per label set: summing them means nothing
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in PRIVATE_LABELS))
                sums[(sample.name, labels)] = sums.get((sample.name, labels), 0.0) + sample.value
            public = Metric(family.name, family.documentation, family.type, family.unit)
            for (name, labels), value in sums.items():
                public.add_sample(name, dict(labels), value)
            yield public


class Observer:
    """The observe middleware's state; `wrap` is the middleware."""

    def __init__(self, settings: ObserveSettings, telemetry: Telemetry, resolve: Resolve) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.resolve = resolve
        self.redact = Redactor(settings.redact)
        self._attributes: dict[str, tuple[Tool, dict[str, Any], dict[str, str]]] = {}

    def wrap(self, inner: RunFn) -> RunFn:
        """The middleware."""
        telemetry = self.telemetry
        tracing, metrics, logs = self.settings.tracing, self.settings.metrics, self.settings.logs

        async def run(call: ToolCall) -> RunResult:
            span_attrs, metric_attrs = self._attrs(call.tool_id)
            surface = call.ctx.meta.get(SURFACE_KEY) if call.ctx.meta else None
            if isinstance(surface, str):  # (MCP calls carry none: their series stay as they were)
                span_attrs, metric_attrs = {**span_attrs, "surface": surface}, {**metric_attrs, "surface": surface}
            started = time.perf_counter()
            if tracing:
                name = f"tool.exec.{metric_attrs['tool.namespace']}.{metric_attrs['tool.name']}"
                with telemetry.tracer.start_as_current_span(name, attributes=span_attrs) as span:
                    result = await inner(call)
                    outcome = _outcome(result)
                    span.set_attribute("tool.outcome", outcome)
                    if result.is_error:
                        from opentelemetry.trace import Status, StatusCode

                        span.set_status(Status(StatusCode.ERROR, outcome))
            else:
                result = await inner(call)
                outcome = _outcome(result)
            elapsed = (time.perf_counter() - started) * 1000
            if metrics:
                telemetry.calls.add(1, metric_attrs)
                telemetry.duration.record(elapsed, metric_attrs)
                if result.is_error:
                    telemetry.errors.add(1, {**metric_attrs, "error.code": outcome})
            if logs and calls_logger.isEnabledFor(logging.INFO):
                record = {
                    "event": "tool_call",
                    "tool_id": call.tool_id,
                    "identity": identity_of(call.ctx).name,
                    "duration_ms": round(elapsed, 3),
                    "outcome": outcome,
                    "args": self.redact(call.args),
                }
                if isinstance(surface, str):
                    record["surface"] = surface
                calls_logger.info(json.dumps(record, default=str, separators=(",", ":")))
            return result

        return run

    def refused(self, tool_id: str, reason: str) -> None:
        """Count a call a middleware refused (`reason`: one of `REFUSALS`).

        The refusing layer calls this itself, once: observe may sit inside it in the chain (it does by
        default) and then never sees the call, or outside it and then sees it as one more failed call.
        """
        if self.settings.metrics:
            attrs = self._attrs(tool_id)[1]
            self.telemetry.refused.add(1, {**attrs, "reason": reason})
            if reason in RATE_LIMITS:
                self.telemetry.rate_limited.add(1, attrs)

    def _attrs(self, tool_id: Any) -> tuple[dict[str, Any], dict[str, str]]:
        key = tool_id if isinstance(tool_id, str) else repr(tool_id)
        found = self.resolve(key) if isinstance(tool_id, str) else None
        cached = self._attributes.get(key)
        if cached is not None and (found is None or cached[0] is found[0]):
            return cached[1], cached[2]
        if found is None:
            namespace, _, name = key.partition(":")
            metric = {"tool.id": "unknown", "tool.namespace": "unknown", "tool.name": "unknown"}
            return {"tool.id": key[:200], "tool.namespace": namespace[:128], "tool.name": name[:128]}, metric
        tool = found[0]
        parsed: ToolId = tool.id
        span = {
            "tool.id": tool.key,
            "tool.namespace": parsed.namespace,
            "tool.name": parsed.name,
            "tool.version": parsed.version or "",
            "tool.tags": list(tool.tags),
        }
        metric = {"tool.id": tool.key, "tool.namespace": parsed.namespace, "tool.name": parsed.name}
        self._attributes[key] = (tool, span, metric)
        return span, metric


def _outcome(result: RunResult) -> str:
    if not result.is_error:
        return "ok"
    return str(result.error.code) if result.error is not None else "tool_error"
