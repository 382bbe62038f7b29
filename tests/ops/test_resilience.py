"""Resilience: breakers, retries, rate limits, bulkheads and timeouts, in process."""

from __future__ import annotations

import anyio
import pytest

from aperture.ops.settings import parse_rate
from aperture.ops.shared import LocalBreakers, LocalBuckets
from tests.ops.conftest import Calls, ops_gateway

pytestmark = pytest.mark.anyio


async def test_the_breaker_opens_after_repeated_failures_and_says_when_to_retry(calls: Calls) -> None:
    ops = {"resilience": {"enabled": True, "breaker": {"failures": 3, "cooldown": 30}}}
    async with ops_gateway(ops, calls) as gw:
        for _ in range(3):
            assert (await gw.run("t:boom", {})).error.code == "execution_failed"  # type: ignore[union-attr]
        refused = await gw.run("t:boom", {})
        assert refused.error is not None and refused.error.code == "backend_unavailable"
        assert "Backend 't' is unavailable" in refused.error.message and "retry in 30 s" in refused.error.message
        assert calls.counts["boom"] == 3  # the open breaker answered without calling the backend
        assert (await gw.run("admin:reset", {})).text == "reset"  # other backends are unaffected
        assert gw.ops.resilience.breaker_states(["t", "admin"]) == {"t": "open", "admin": "closed"}


async def test_a_half_open_breaker_lets_one_probe_through_and_closes_on_success() -> None:
    breakers = LocalBreakers()
    for _ in range(2):
        await breakers.record("b", False, 2, 0.05)
    assert await breakers.check("b", 0.05) > 0
    with anyio.fail_after(5):
        while await breakers.check("b", 0.05) > 0:
            await anyio.sleep(0.01)
    assert await breakers.check("b", 0.05) > 0  # the probe is out: everyone else waits for it
    assert await breakers.record("b", True, 2, 0.05) == "closed"
    assert await breakers.check("b", 0.05) == 0
    await breakers.record("b", False, 2, 0.05)
    assert breakers.state("b") == "closed"  # one failure is below the threshold


async def test_a_failed_probe_opens_the_breaker_again() -> None:
    breakers = LocalBreakers()
    await breakers.record("b", False, 1, 0.02)
    with anyio.fail_after(5):
        while await breakers.check("b", 0.02) > 0:
            await anyio.sleep(0.01)
    assert await breakers.record("b", False, 1, 0.02) == "open"


async def test_idempotent_tools_are_retried_with_backoff_and_others_are_not(calls: Calls) -> None:
    ops = {"resilience": {"enabled": True, "retry": {"attempts": 3, "backoff": 0.01}}}
    async with ops_gateway(ops, calls) as gw:
        assert (await gw.run("t:flaky", {"fail_times": 2})).text == "ok"
        assert calls.counts["flaky"] == 3
        await gw.run("t:boom", {})
        assert calls.counts["boom"] == 1  # not idempotent (and not a retryable failure): one try


async def test_a_rate_limit_refuses_with_the_limit_and_the_wait(calls: Calls) -> None:
    ops = {
        "resilience": {"enabled": True, "rate_limits": {"per_identity": "3/minute", "tools": {"t:append": "1/hour"}}}
    }
    async with ops_gateway(ops, calls) as gw:
        assert not (await gw.run("t:append", {"word": "a"})).is_error
        limited = await gw.run("t:append", {"word": "b"})
        assert limited.error is not None and limited.error.code == "rate_limited"
        assert limited.error.message == "Rate limit: 1 per hour for tool 't:append'; retry in 3600 s."
        await gw.run("t:lookup", {"word": "x"})
        limited = await gw.run("t:lookup", {"word": "y"})
        assert limited.error is not None
        assert limited.error.message.startswith("Rate limit: 3 per minute for caller 'local'; retry in ")
        assert limited.error.retryable and limited.error.details["retry_after"] >= 1


async def test_a_burst_of_ten_thousand_calls_against_a_limit_all_get_an_answer(calls: Calls) -> None:
    ops = {"resilience": {"enabled": True, "rate_limits": {"global": "100/hour"}}}
    async with ops_gateway(ops, calls) as gw:
        outcomes: list[str] = []

        async def one(i: int) -> None:
            result = await gw.run("t:lookup", {"word": str(i)})
            outcomes.append("ok" if not result.is_error else str(result.error.code if result.error else "?"))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(10_000):
                    tg.start_soon(one, i)
    assert len(outcomes) == 10_000
    assert outcomes.count("ok") == 100 and outcomes.count("rate_limited") == 9_900


async def test_the_bulkhead_queues_then_refuses(calls: Calls) -> None:
    ops = {"resilience": {"enabled": True, "bulkhead": {"max_concurrent": 2, "max_queue": 1}}}
    async with ops_gateway(ops, calls) as gw:
        results: list[str] = []

        async def one() -> None:
            result = await gw.run("t:slow", {"seconds": 0.2})
            results.append(result.error.message if result.error else "done")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(one)
    assert results.count("done") == 3
    refused = [r for r in results if r != "done"]
    assert len(refused) == 2 and all("Backend 't' is busy: 2 calls running and 1 waiting" in r for r in refused)


async def test_per_tool_timeouts_apply(calls: Calls) -> None:
    ops = {"resilience": {"enabled": True, "timeouts": {"t:slow": 0.1}, "retry": {"attempts": 1}}}
    async with ops_gateway(ops, calls) as gw:
        with anyio.fail_after(5):
            result = await gw.run("t:slow", {"seconds": 5})
        assert result.error is not None and result.error.code == "timeout" and "0.1 s" in result.error.message


async def test_a_flapping_backend_trips_and_recovers() -> None:
    ops = {"resilience": {"enabled": True, "breaker": {"failures": 2, "cooldown": 0.05}, "retry": {"attempts": 1}}}
    calls = Calls()
    async with ops_gateway(ops, calls) as gw:
        for _ in range(2):
            await gw.run("t:flaky", {"fail_times": 2})
        assert gw.ops.resilience.breaker_states(["t"]) == {"t": "open"}
        with anyio.fail_after(5):
            while (result := await gw.run("t:flaky", {"fail_times": 2})).is_error:
                await anyio.sleep(0.02)
        assert result.text == "ok" and gw.ops.resilience.breaker_states(["t"]) == {"t": "closed"}


async def test_unknown_tools_pass_through_to_the_runner_message() -> None:
    async with ops_gateway({"resilience": {"enabled": True}}) as gw:
        result = await gw.run("t:lookp", {})
        assert result.error is not None and result.error.code == "tool_not_found"


def test_token_buckets_refill_at_the_configured_rate() -> None:
    buckets = LocalBuckets()
    assert [buckets.take_now("k", 2, 60) for _ in range(2)] == [0.0, 0.0]
    assert 29 < buckets.take_now("k", 2, 60) <= 30


@pytest.mark.parametrize("text", ["10", "0/minute", "5/fortnight"], ids=["no-period", "zero", "bad-unit"])
def test_bad_rates_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="N/second"):
        parse_rate(text)
