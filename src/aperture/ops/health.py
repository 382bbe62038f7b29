"""Health: liveness and readiness in Kubernetes conventions, with each backend's state and latency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aperture.execution import BackendRegistry
from aperture.ops.settings import HealthSettings


class HealthChecker:
    """Builds the `/healthz` and `/readyz` bodies (and what `aperture health` prints).

    Args:
        registry: the backends to check.
        settings: which backends readiness requires, and the per-check timeout.
        extras: more facts for the report (Redis state, breaker states), each a function of no arguments.
    """

    def __init__(
        self,
        registry: BackendRegistry,
        settings: HealthSettings,
        *,
        breakers: Callable[[list[str]], dict[str, str]] | None = None,
        redis: Callable[[], dict[str, Any]] | None = None,
        audit: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self._breakers = breakers
        self._redis = redis
        self._audit = audit

    def liveness(self) -> dict[str, Any]:
        """The process is up and serving (no backend checks: liveness must not depend on them)."""
        return {"status": "ok"}

    async def readiness(self) -> dict[str, Any]:
        """`{status: ready|not_ready, config, backends: [...], redis?}`; ready when every required backend is
        healthy. A degraded Redis is reported but does not make the gateway unready (it falls back)."""
        statuses = await self.registry.health_check(timeout=self.settings.timeout)
        failures = self.registry.snapshot.failures
        names = self.registry.names()
        breakers = self._breakers(names) if self._breakers is not None else {}
        required = set(self.settings.required if self.settings.required is not None else names)
        rows = []
        ready = True
        for name in names:
            status = statuses.get(name)
            healthy = bool(status and status.healthy) and name not in failures
            state = "up" if healthy else "down"
            if breakers.get(name, "closed") != "closed":
                state = f"breaker {breakers[name]}"
            row: dict[str, Any] = {
                "name": name,
                "state": state,
                "healthy": healthy,
                "required": name in required,
                "latency_ms": round(status.latency_ms, 3) if status else None,
                "message": failures.get(name) or (status.message if status else ""),
            }
            if name in breakers:
                row["breaker"] = breakers[name]
            rows.append(row)
            if name in required and not healthy:
                ready = False
        missing = sorted(required - set(names))
        if missing:
            ready = False
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "config": "loaded", "backends": rows}
        if missing:
            body["missing"] = missing
        if self._redis is not None:
            body["redis"] = self._redis()
        if self._audit is not None:
            body["audit"] = self._audit()
        return body
