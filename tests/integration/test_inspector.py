"""Interop: the official MCP Inspector's command line lists and calls tools through the gateway."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.integration.conftest import APERTURE

INSPECTOR = ROOT / "node_modules" / ".bin" / "mcp-inspector"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def inspect(*args: str, target: list[str] | None = None) -> Any:
    if not INSPECTOR.exists():
        pytest.fail(f"{INSPECTOR} is missing: run `make test` (it runs npm install) or `npm install`")
    # The gateway reads its configuration from the environment: the Inspector claims --config for itself.
    command = [
        str(INSPECTOR),
        "--cli",
        "-e",
        f"APERTURE_CONFIG={EXAMPLE_CONFIG}",
        *(target or [APERTURE, "serve"]),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_inspector_lists_the_meta_tools_over_stdio() -> None:
    listed = inspect("--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} >= {"search_tools", "describe_tool", "run_tool"}


def test_inspector_searches_and_runs_a_tool_over_stdio() -> None:
    found = inspect("--method", "tools/call", "--tool-name", "search_tools", "--tool-arg", "query=sha256 checksum")
    assert found["structuredContent"]["tools"][0]["id"] == "toolbox:hash_text"
    ran = inspect(
        "--method", "tools/call", "--tool-name", "run_tool",
        "--tool-arg", "tool_id=toolbox:calculate", 'args={"expression": "6*7"}',
    )  # fmt: skip
    assert ran["content"][0]["text"] == "42.0" and ran["isError"] is False


def test_inspector_over_streamable_http(http_gateway: str) -> None:
    listed = inspect("--method", "tools/list", target=[http_gateway])
    assert "run_tool" in {t["name"] for t in listed["tools"]}
