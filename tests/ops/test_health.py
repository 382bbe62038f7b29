"""Health: readiness per backend, and `aperture health` printing it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aperture.cli import app
from tests.conftest import TEST_CONFIG
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
