"""Configured credentials never reach the client or the logs: a real REST API on 127.0.0.1 that echoes the
request's credentials (in a 200 body, a 401 and a 500), and a real upstream MCP server that echoes the secret in
its environment, through the official MCP client; the captured log records are checked too."""

from __future__ import annotations

import base64
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from rest_api import ApiServer

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio

BEARER = "cap-bearer-secret-0123"
HEADER_KEY = "cap-header-secret-4567"
QUERY_KEY = "cap-query-secret-8901"
UPSTREAM = "upstream-secret-2345"
URL_KEY = "cap-url-secret-6789"
SECRETS = (BEARER, HEADER_KEY, QUERY_KEY, URL_KEY, UPSTREAM)


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def capability(name: str, url: str, path: str, *, by_query: bool | None = False) -> dict[str, Any]:
    config: dict[str, Any] = {"base_url": url, "path": path}
    auth: dict[str, Any] = {"type": "bearer", "key": "env:CAP_BEARER"}
    if by_query is None:  # the credential is in the URL template itself
        return {"name": name, "description": name, "providers": {"primary": {"config": config}}}
    if by_query:
        auth = {"type": "api_key", "key": "{env.CAP_QUERY}", "param": "apiKey"}
    else:
        config["headers"] = {"X-Api-Key": "{env.CAP_HEADER}"}
    return {"name": name, "description": name, "providers": {"primary": {"config": config}}, "auth": auth}


@pytest.fixture
async def gateway(tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("CAP_BEARER", BEARER)
    monkeypatch.setenv("CAP_HEADER", HEADER_KEY)
    monkeypatch.setenv("CAP_QUERY", QUERY_KEY)
    monkeypatch.setenv("CAP_URL", URL_KEY)
    for name, path, by_query in [
        ("echo", "/echo/ok", False),
        ("refused", "/refuse/401", False),
        ("broken", "/refuse/500", False),
        ("by_query", "/echo/q", True),
        ("refused_by_query", "/refuse/403", True),
        ("refused_by_url", "/refuse/400?apiKey={env.CAP_URL}", None),
    ]:
        doc = capability(name, api.url, path, by_query=by_query)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    environment = {**os.environ, "UPSTREAM_TOKEN": UPSTREAM}
    config = parse_config(
        {
            "backends": [
                {
                    "name": "api",
                    "kind": "capabilities",
                    "directory": str(tmp_path),
                    "watch": False,
                    "allow_private_networks": True,
                    "retries": 0,
                },
                {
                    "name": "up",
                    "kind": "mcp",
                    "command": [sys.executable, str(FIXTURES / "secret_upstream.py")],
                    "env": {"UPSTREAM_TOKEN": "${UPSTREAM_TOKEN}"},
                },
            ],
            "execution": {"timeout": 10},
            "search": {"strategy": "bm25"},
        },
        env=environment,
    )
    async with Gateway(config) as gw:
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    async with Client(McpSurface(gateway).server) as c:
        yield c


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode().rstrip("=") not in text


async def test_the_configuration_names_its_credentials(gateway: Gateway) -> None:
    assert set(gateway.config.secret_values) == {UPSTREAM}
    assert {BEARER, HEADER_KEY, QUERY_KEY, URL_KEY} <= gateway.redactor.secrets  # from the capability files


@pytest.mark.parametrize(
    ("tool", "shown"),
    [
        ("api:echo", ["Bearer [redacted]", '"x-api-key": "[redacted]"']),
        ("api:refused", ["401", "Authorization=Bearer [redacted] X-Api-Key=[redacted]"]),
        ("api:broken", ["500", "Authorization=Bearer [redacted] X-Api-Key=[redacted]"]),
        ("api:by_query", ['"apiKey",\n      "[redacted]"']),
        ("api:refused_by_query", ["403", "apiKey=[redacted]"]),
        ("api:refused_by_url", ["400", "apiKey=[redacted]"]),
        ("up:whoami", ['"token": "[redacted]"', "started with [redacted]", '"[redacted]": "as a key"']),
        ("up:encoded", ["b64=[redacted]", "url=[redacted]", "basic=Basic c3Zj"]),
        ("up:refuse", ["token [redacted] was refused"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_the_client_and_the_logs_see_redacted_in_place_of_each_secret(
    client: Client, caplog: pytest.LogCaptureFixture, tool: str, shown: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aperture")
    result = await run(client, tool)
    text = text_of(result)
    assert_clean(text)
    assert_clean(repr(result.structured_content))
    for part in shown:
        assert part in text
    assert base64.b64encode(f"svc:{UPSTREAM}".encode()).decode() not in text
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records)
    assert_clean(logged)
    assert_clean(caplog.text)


async def test_log_records_carry_no_secret_even_when_a_module_logs_one(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aperture")
    logging.getLogger("aperture.execution.runner").info("token %s", UPSTREAM)
    logging.getLogger("aperture").warning(f"header {QUERY_KEY}")  # a careless caller
    try:
        raise RuntimeError(f"failed with {BEARER}")
    except RuntimeError:
        logging.getLogger("aperture.gateway").exception("call failed")
    assert "token [redacted]" in caplog.text and "header [redacted]" in caplog.text
    assert "failed with [redacted]" in caplog.text
    assert_clean(caplog.text)
