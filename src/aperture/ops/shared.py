"""State that several replicas share through Redis (rate-limit buckets, breaker state), with in-process
twins that take over while Redis cannot be reached, so a Redis outage degrades the gateway instead of failing it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio

logger = logging.getLogger(__name__)
T = TypeVar("T")

_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local capacity = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1])
local ts = tonumber(data[2])
if tokens == nil then tokens = capacity; ts = now end
local rate = capacity / per
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 1000)
return tostring(wait)
"""

_BREAKER_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local s = redis.call('HMGET', KEYS[1], 'state', 'until')
local state = s[1] or 'closed'
if state == 'closed' then return '0' end
local u = tonumber(s[2]) or 0
if now < u then return tostring(u - now) end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'until', tostring(now + tonumber(ARGV[1])))
return '0'
"""

_BREAKER_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local s = redis.call('HMGET', KEYS[1], 'state', 'failures')
if ARGV[1] == '1' then
  if s[1] then redis.call('DEL', KEYS[1]) end
  return 'closed'
end
local failures = (tonumber(s[2]) or 0) + 1
if s[1] == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + tonumber(ARGV[3])), 'failures', failures)
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 3600)
  return 'open'
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', failures)
redis.call('EXPIRE', KEYS[1], 3600)
return 'closed'
"""


class BucketStore(Protocol):
    """Token buckets by key."""

    async def take(self, key: str, capacity: float, per: float) -> float:
        """Take one token; return 0 when allowed, else the seconds until a token is there."""
        ...


class BreakerStore(Protocol):
    """Circuit-breaker state by backend."""

    async def check(self, key: str, cooldown: float) -> float:
        """0 when a call may go ahead (closed, or the one probe of half-open), else seconds until it may."""
        ...

    async def record(self, key: str, ok: bool, threshold: int, cooldown: float) -> str:
        """Record a call's outcome; return the state after it ('closed' or 'open')."""
        ...

    def state(self, key: str) -> str:
        """The last known state: closed, open or half_open."""
        ...


class LocalBuckets:
    """In-process token buckets."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, capacity: float, per: float) -> float:
        return self.take_now(key, capacity, per)

    def take_now(self, key: str, capacity: float, per: float) -> float:
        """`take` without awaiting (the in-process buckets never wait on I/O)."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (capacity, now))
        rate = capacity / per
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / rate


@dataclass(slots=True)
class _Breaker:
    state: str = "closed"
    failures: int = 0
    until: float = 0.0


class LocalBreakers:
    """In-process circuit breakers."""

    def __init__(self) -> None:
        self._breakers: dict[str, _Breaker] = {}

    async def check(self, key: str, cooldown: float) -> float:
        breaker = self._breakers.get(key)
        if breaker is None or breaker.state == "closed":
            return 0.0
        now = time.monotonic()
        if now < breaker.until:
            return breaker.until - now
        breaker.state, breaker.until = "half_open", now + cooldown  # one probe; the others wait for its answer
        return 0.0

    async def record(self, key: str, ok: bool, threshold: int, cooldown: float) -> str:
        breaker = self._breakers.get(key)
        if ok:
            if breaker is not None:
                del self._breakers[key]
            return "closed"
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        if breaker.state == "half_open" or breaker.failures >= threshold:
            breaker.state, breaker.until = "open", time.monotonic() + cooldown
        return breaker.state

    def state(self, key: str) -> str:
        breaker = self._breakers.get(key)
        if breaker is not None and breaker.state == "open" and time.monotonic() >= breaker.until:
            return "half_open"
        return breaker.state if breaker else "closed"


class RedisLink:
    """One Redis connection pool with an outage switch: while Redis fails, `run` answers None at once
    (callers fall back to in-process state) and Redis is tried again every `retry_after` seconds."""

    def __init__(self, url: str, *, prefix: str, timeout: float = 0.25, retry_after: float = 5.0) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.prefix = prefix
        self.retry_after = retry_after
        self.client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._timeout = timeout
        self._down_until = 0.0
        self.last_error: str | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down."""
        return self.last_error is not None

    def script(self, source: str) -> Any:
        """A registered Lua script (EVALSHA, loaded on first use)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    async def run(self, action: Callable[[Any], Awaitable[T]]) -> T | None:
        """`await action(client)`, or None when Redis is down (then logged once, and retried later)."""
        if self._down_until and time.monotonic() < self._down_until:
            return None
        from redis.exceptions import RedisError

        try:
            with anyio.fail_after(self._timeout * 4):
                result = await action(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.last_error is None:
                logger.warning("Redis at %s unreachable (%s): using in-process state until it is back", self.url, exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._down_until = time.monotonic() + self.retry_after
            return None
        if self.last_error is not None:
            logger.warning("Redis at %s reachable again: shared state resumed", self.url)
            self.last_error = None
            self._down_until = 0.0
        return result

    def health(self) -> dict[str, Any]:
        """`{state: ok|degraded, url, message}` for /readyz and `aperture health`."""
        if self.last_error is None:
            return {"state": "ok", "url": self.url, "message": ""}
        return {
            "state": "degraded",
            "url": self.url,
            "message": f"Redis unreachable ({self.last_error}); rate limits, breakers and cache run in-process",
        }

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class RedisBuckets:
    """Token buckets in Redis (one Lua script per take, using Redis's clock), with an in-process fallback."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._local = LocalBuckets()
        self._script = link.script(_BUCKET)

    async def take(self, key: str, capacity: float, per: float) -> float:
        name = f"{self._link.prefix}bucket:{key}"
        answer = await self._link.run(lambda _: self._script(keys=[name], args=[capacity, per]))
        if answer is None:
            return self._local.take_now(key, capacity, per)
        return float(answer)


class RedisBreakers:
    """Breaker state in Redis, shared by replicas, with an in-process fallback."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._local = LocalBreakers()
        self._check = link.script(_BREAKER_CHECK)
        self._record = link.script(_BREAKER_RECORD)
        self._states: dict[str, str] = {}

    async def check(self, key: str, cooldown: float) -> float:
        name = f"{self._link.prefix}breaker:{key}"
        answer = await self._link.run(lambda _: self._check(keys=[name], args=[cooldown]))
        if answer is None:
            return await self._local.check(key, cooldown)
        wait = float(answer)
        self._states[key] = "open" if wait > 0 else self._states.get(key, "closed")
        return wait

    async def record(self, key: str, ok: bool, threshold: int, cooldown: float) -> str:
        name = f"{self._link.prefix}breaker:{key}"
        answer = await self._link.run(
            lambda _: self._record(keys=[name], args=["1" if ok else "0", threshold, cooldown])
        )
        if answer is None:
            return await self._local.record(key, ok, threshold, cooldown)
        state = answer.decode() if isinstance(answer, bytes) else str(answer)
        self._states[key] = state
        return state

    def state(self, key: str) -> str:
        if self._link.degraded:
            return self._local.state(key)
        return self._states.get(key, "closed")
