"""Health: readiness per backend, `aperture health` printing it, and what /readyz and /metrics show to whom."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

import anyio
import httpx2
import pytest
from typer.testing import CliRunner

from aperture.cli import app
from aperture.config import Config, parse_config
from aperture.execution import CallContext, McpBackend
from aperture.execution.code import BwrapRuntime, Limits, OnCall, Outcome, register_runtime
from aperture.gateway import META_TOOLS_BY_NAME, Gateway
from aperture.ops.http import OpsHttpApp
from tests.conftest import FIXTURES, TEST_CONFIG
from tests.ops.conftest import ops_gateway

pytestmark = pytest.mark.anyio


async def test_readiness_fails_when_a_required_backend_is_missing() -> None:
    async with ops_gateway({"health": {"required": ["t", "github"]}}) as gw:
        ready = await gw.ops.health.readiness()
        assert ready["status"] == "not_ready" and ready["missing"] == ["github"]
        assert [(b["name"], b["state"], b["required"]) for b in ready["backends"]] == [
            ("t", "up", True),
            ("admin", "up", False),
        ]
        assert gw.ops.health.liveness() == {"status": "ok"}


def test_aperture_health_prints_json_and_a_table() -> None:
    result = CliRunner().invoke(app, ["health", "--config", str(TEST_CONFIG), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["status"] == "ready" and {b["name"] for b in body["backends"]} == {"toolbox", "faulty"}
    table = CliRunner().invoke(app, ["health", "--config", str(TEST_CONFIG)])
    assert "health: ready" in table.output and "toolbox" in table.output


UPSTREAM = str(FIXTURES / "upstream_server.py")
UP = [sys.executable, UPSTREAM, "--tools", "1"]
TOKEN = "tok-" + "s" * 20  # in an upstream's environment: never shown
DEV_KEY, ADMIN_KEY = "k-dev-" + "d" * 24, "k-admin-" + "a" * 24


def detail_config(**health: Any) -> Config:
    keys = [("ci", DEV_KEY, ["dev"]), ("root", ADMIN_KEY, ["admin"])]
    return parse_config(
        {
            "search": {"strategy": "bm25"},
            "backends": [
                {"name": "up", "kind": "mcp", "command": UP, "env": {"K": TOKEN}},
                {"name": "broken", "kind": "mcp", "command": [sys.executable, UPSTREAM, "--fail-init"]},
            ],
            "ops": {
                "auth": {
                    "enabled": True,
                    "api_keys": [
                        {"name": n, "sha256": hashlib.sha256(k.encode()).hexdigest(), "roles": r} for n, k, r in keys
                    ],
                },
                "observe": {"enabled": True, "tracing": False},
                "health": health,
            },
        }
    )


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_with_auth_on_readyz_and_metrics_show_details_only_to_an_admin_credential() -> None:
    async with Gateway(detail_config()) as gw:
        assert not (await gw.run("up:echo", {"text": "hi"})).is_error
        transport = httpx2.ASGITransport(app=OpsHttpApp(not_found, gw.ops))
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            for headers in ({}, {"x-api-key": DEV_KEY}, {"x-api-key": "not-a-key"}, {"authorization": "Bearer x"}):
                ready = await client.get("/readyz", headers=headers)
                assert (ready.status_code, ready.json()) == (503, {"status": "not_ready"}), headers
                metrics = (await client.get("/metrics", headers=headers)).text
                assert "tool_exec_total 1.0" in metrics and "up:echo" not in metrics, headers
                assert "tool_namespace" not in metrics and "tool_name" not in metrics, headers
            full = await client.get("/readyz", headers={"x-api-key": ADMIN_KEY})
            assert full.status_code == 503 and [b["name"] for b in full.json()["backends"]] == ["up", "broken"]
            metrics = (await client.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})).text
            assert 'tool_exec_total{tool_id="up:echo",tool_name="echo",tool_namespace="up"} 1.0' in metrics
    # Even the full view names no command line, argument or environment value of an upstream.
    text = json.dumps(full.json())
    assert sys.executable not in text and UPSTREAM not in text and "--tools" not in text and TOKEN not in text
    assert re.fullmatch(r"\d+ tools from \[redacted\]", full.json()["backends"][0]["message"])  # was: <command line>


async def test_detail_full_shows_everyone_everything() -> None:
    async with Gateway(detail_config(detail="full")) as gw:
        transport = httpx2.ASGITransport(app=OpsHttpApp(not_found, gw.ops))
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            assert [b["name"] for b in (await client.get("/readyz")).json()["backends"]] == ["up", "broken"]


async def test_list_namespaces_names_no_upstream_command_line() -> None:
    async with Gateway(detail_config()) as gw:
        rows = (await gw.list_namespaces())["namespaces"]
    assert re.fullmatch(r"\d+ tools from \[redacted\]", rows[0]["message"]) and UPSTREAM not in json.dumps(rows)


async def test_list_namespaces_says_when_the_next_start_attempt_really_is() -> None:
    missing = {"name": "gone", "kind": "mcp", "command": ["aperture-no-such-command"]}
    async with Gateway(parse_config({"search": {"strategy": "bm25"}, "backends": [missing]})) as gw:
        backend = gw.registry.get("gone")
        assert isinstance(backend, McpBackend)
        with anyio.fail_after(5):
            while backend.restarts < 3:  # attempts 0.5 s, then 1 s apart; the next one 2 s after the third
                await anyio.sleep(0.01)
        row = (await gw.list_namespaces())["namespaces"][0]
        ready = (await gw.ops.health.readiness())["backends"][0]
    for message in (row["message"], ready["message"]):  # not the 0.5 s of the first failure, long past
        found = re.search(r"Next start attempt in ([\d.]+) s", message)
        assert found is not None and 1.0 < float(found.group(1)) <= 2.0, message


class UnavailableRuntime:
    """A code-mode runtime that cannot run here, as bwrap where bubblewrap is not installed."""

    name = "test-unavailable"

    def __init__(self, **_options: object) -> None:
        pass

    def problem(self) -> str | None:
        return "nothing to run programs with here: install it"

    async def warm(self, limits: Limits) -> None:
        raise AssertionError("never warmed: problem() is not None")

    async def aclose(self) -> None:
        pass

    async def run(self, code: str, limits: Limits, on_call: OnCall) -> Outcome:
        raise AssertionError("never started: problem() is not None")


register_runtime(UnavailableRuntime.name, UnavailableRuntime)


@pytest.mark.parametrize("runtime", ["test-unavailable", "bwrap"])
async def test_readyz_is_not_ready_while_enabled_code_mode_cannot_run(runtime: str) -> None:
    if runtime == "bwrap" and BwrapRuntime().problem() is not None:
        pytest.skip("no bubblewrap here (make test installs it)")
    config = parse_config({"execution": {"code": {"enabled": True, "runtime": runtime}}})
    async with Gateway(config) as gw:
        transport = httpx2.ASGITransport(app=OpsHttpApp(not_found, gw.ops))
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            ready = await client.get("/readyz")
        answer = await META_TOOLS_BY_NAME["execute_code"].call(gw, CallContext(), {"code": "1 + 1"})
    assert isinstance(answer, Outcome)
    if runtime == "bwrap":
        assert ready.status_code == 200 and ready.json()["code"]["available"] is True
        assert answer.value == 2
        return
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert ready.json()["code"] == {
        "runtime": "test-unavailable",
        "available": False,
        "running": 0,
        "waiting": 0,
        "message": "nothing to run programs with here: install it",
    }
    assert answer.error == (
        "Code execution is unavailable here: the configured test-unavailable runtime cannot run (nothing to run "
        "programs with here: install it). Use run_tool or run_chain instead, and tell the operator."
    )
