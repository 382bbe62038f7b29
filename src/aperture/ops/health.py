"""Health: liveness and readiness in Kubernetes conventions, with each backend's state and latency; messages
never carry an upstream's command line, environment, headers or URL credentials."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aperture.execution import BackendRegistry, HealthStatus
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
        self.code: Callable[[], dict[str, Any]] | None = None
        """Code mode's runtime state (the gateway sets it when code mode is enabled): `{available, ...}`. Enabled
        but unavailable (its runtime cannot run here) makes the gateway not ready: execute_code is offered yet
        would fail every call, so traffic belongs on a replica where it works."""

    def scrub(self, text: str) -> str:
        """`text` without the backends' private strings (see `private_strings`)."""
        if not text:
            return text
        for secret in private_strings(self.registry.get(name) for name in self.registry.names()):
            text = text.replace(secret, REDACTED)
        return text

    def message(self, name: str, status: HealthStatus | None) -> str:
        """What to say about a backend, scrubbed: its own word on being down, asked now (with when its next start
        attempt is), before why its last listing failed, which was true when it failed."""
        if status is not None and not status.healthy:
            return self.scrub(status.message)
        return self.scrub(self.registry.snapshot.failures.get(name) or (status.message if status else ""))

    def liveness(self) -> dict[str, Any]:
        """The process is up and serving (no backend checks: liveness must not depend on them)."""
        return {"status": "ok"}

    async def readiness(self) -> dict[str, Any]:
        """`{status: ready|not_ready, config, backends: [...], redis?, audit?, code?}`; ready when every required
        backend is healthy and, with code mode enabled, its runtime can run. A degraded Redis is reported but
        does not make the gateway unready (it falls back)."""
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
                "message": self.message(name, status),
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
        if self.code is not None:
            body["code"] = self.code()
            if not body["code"].get("available", True):
                body["status"] = "not_ready"
        return body


REDACTED = "[redacted]"
_SHORTEST = 3  # shorter arguments ("-y") are too common to hide, and tell nothing


def private_strings(backends: Iterable[Any]) -> list[str]:
    """What may not be printed about `backends`, longest first: an upstream's command line and each of its
    parts, its environment and header values, and the credentials and query string of its URL.

    Backends are asked duck-typed (`target.command`, `.args`, `.env`, `.url`, `.headers`), so any kind that
    keeps such a target is covered without this module knowing it.
    """
    found: set[str] = set()
    for backend in backends:
        target = getattr(backend, "target", None)
        if target is None:
            continue
        command = getattr(target, "command", None)
        if isinstance(command, str) and command:
            parts = [command, *(str(a) for a in getattr(target, "args", ()) or ())]
            found.add(" ".join(parts))
            found.update(p for p in parts if len(p) >= _SHORTEST)
        for values in (getattr(target, "env", None), getattr(target, "headers", None)):
            if isinstance(values, Mapping):
                found.update(str(v) for v in values.values() if len(str(v)) >= _SHORTEST)
        url = getattr(target, "url", None)
        if isinstance(url, str) and url:
            parts_of = urlsplit(url)
            if parts_of.username or parts_of.password:
                found.update(p for p in (parts_of.username, parts_of.password) if p and len(p) >= _SHORTEST)
            if parts_of.query:
                found.add(parts_of.query)
    return sorted(found, key=len, reverse=True)
