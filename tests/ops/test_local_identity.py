"""Callers without HTTP (stdio, in-process) authenticate with an API key from the server's environment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from mcp import Client, StdioServerParameters

from aperture.gateway import Gateway
from aperture.model import ConfigError
from tests.conftest import FIXTURES, ROOT
from tests.integration.conftest import APERTURE
from tests.mcp_helpers import error_of, run
from tests.ops.conftest import Calls, ops_config, ops_gateway

pytestmark = pytest.mark.anyio

KEY = "dev-key-" + "x" * 24
AUTH = {
    "enabled": True,
    "api_keys": [{"name": "laptop", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}],
    "rules": [{"tools": "admin:*", "roles": ["admin"]}],
}


async def test_the_key_in_the_environment_decides_what_a_local_caller_may_do(
    monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    monkeypatch.setenv("APERTURE_API_KEY", KEY)
    async with ops_gateway({"auth": {**AUTH, "audit": "off"}}, calls) as gw:
        assert not (await gw.run("t:lookup", {"word": "a"})).is_error
        refused = await gw.run("admin:reset", {})
        assert refused.error is not None and refused.error.code == "forbidden"
        assert "admin" not in [row["namespace"] for row in (await gw.list_namespaces())["namespaces"]]


async def test_without_the_variable_local_roles_apply(monkeypatch: pytest.MonkeyPatch, calls: Calls) -> None:
    monkeypatch.delenv("APERTURE_API_KEY", raising=False)
    async with ops_gateway({"auth": AUTH}, calls) as gw:
        assert not (await gw.run("admin:reset", {})).is_error  # local_roles default to '*'
    async with ops_gateway({"auth": {**AUTH, "local_roles": ["dev"]}}, calls) as gw:
        assert (await gw.run("admin:reset", {})).is_error


def test_a_key_that_matches_no_configured_key_stops_the_gateway_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APERTURE_API_KEY", "typo")
    with pytest.raises(ConfigError, match=r"APERTURE_API_KEY holds an API key that matches none of ops\.auth"):
        Gateway(ops_config({"auth": AUTH}))
    monkeypatch.setenv("MY_KEY", KEY)  # the variable's name is configurable
    monkeypatch.delenv("APERTURE_API_KEY")
    gateway = Gateway(ops_config({"auth": {**AUTH, "local_key_env": "MY_KEY"}}))
    assert gateway.ops.local.name == "laptop" and gateway.ops.local.roles == frozenset({"dev"})


async def test_over_stdio_the_desktop_client_passes_the_key_in_the_servers_env(tmp_path: Path) -> None:
    config = {
        "backends": [
            {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")},
            {"name": "admin", "kind": "python", "module": "ops_tools", "path": str(FIXTURES)},
        ],
        "search": {"strategy": "bm25"},
        "ops": {"auth": AUTH},
    }
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "APERTURE_API_KEY": KEY}
    async with Client(
        StdioServerParameters(command=APERTURE, args=["serve", "--config", str(path)], env=env)
    ) as client:
        namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
        assert [row["namespace"] for row in namespaces] == ["toolbox"]
        assert error_of(await run(client, "admin:whoami", {"word": "x"}))["code"] == "forbidden"
        assert not (await run(client, "toolbox:calculate", {"expression": "2+2"})).is_error
