"""What a stdio upstream inherits from the gateway's environment: the default list (certificates, proxies,
locale, PATH, HOME, ...) and never an unlisted secret; `inherit_env` to add names or globs, per backend and
for all, `false` and `all`; the backend's own `env` wins; a start that dies names `env` in its error.
The upstreams are real processes that report the environment they got."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from aperture.config import parse_config
from aperture.execution.backends.mcp_env import DEFAULT_INHERITED_ENV, inherited_environment
from aperture.gateway import Gateway
from aperture.model import ConfigError
from tests.conftest import FIXTURES

pytestmark = pytest.mark.anyio

ENV_UPSTREAM = str(FIXTURES / "env_upstream.py")
GATEWAY_ENV = {
    "SSL_CERT_FILE": "/etc/corp/ca.pem",
    "LANG": "de_DE.UTF-8",
    "LC_TIME": "en_GB.UTF-8",
    "HTTPS_PROXY": "http://proxy.corp:3128",
    "no_proxy": "localhost,127.0.0.1",
    "XDG_CACHE_HOME": "/var/cache/gw",
    "MY_SECRET_TOKEN": "s3cr3t-gateway-token",
    "ACME_REGION": "eu-1",
    "ACME_KEY": "acme-key",
    "UV_INDEX_CORP_PASSWORD": "index-password",
}


@pytest.fixture(autouse=True)
def gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GATEWAY_ENV.items():
        monkeypatch.setenv(name, value)


def reporter(name: str = "envy", **settings: Any) -> dict[str, Any]:
    return {"name": name, "kind": "mcp", "command": [sys.executable, ENV_UPSTREAM], **settings}


async def environment_of(backends: list[dict[str, Any]], **sections: Any) -> dict[str, dict[str, str]]:
    """Each backend's environment as its upstream process reports it."""
    config = parse_config({"search": {"strategy": "bm25"}, "backends": backends, **sections})
    seen: dict[str, dict[str, str]] = {}
    with anyio.fail_after(30):
        async with Gateway(config) as gw:
            for backend in backends:
                result = await gw.run(f"{backend['name']}:environment", {})
                assert not result.is_error, result.text
                seen[backend["name"]] = result.structured
    return seen


async def test_an_upstream_gets_certificates_proxies_and_locale_but_no_unlisted_secret() -> None:
    env = (await environment_of([reporter()]))["envy"]
    for name in ("SSL_CERT_FILE", "LANG", "LC_TIME", "HTTPS_PROXY", "no_proxy", "XDG_CACHE_HOME"):
        assert env[name] == GATEWAY_ENV[name], name
    assert env["PATH"] and env["HOME"]
    for name in ("MY_SECRET_TOKEN", "ACME_REGION", "UV_INDEX_CORP_PASSWORD", "PYTHONPATH"):
        assert name not in env, name


async def test_inherit_env_adds_names_and_globs_per_backend_and_for_all() -> None:
    seen = await environment_of(
        [reporter("plain"), reporter("acme", inherit_env=["ACME_*", "MY_SECRET_TOKEN"])],
        execution={"inherit_env": ["ACME_REGION"]},
    )
    assert seen["plain"]["ACME_REGION"] == "eu-1" and "ACME_KEY" not in seen["plain"]
    assert "MY_SECRET_TOKEN" not in seen["plain"] and seen["plain"]["SSL_CERT_FILE"] == "/etc/corp/ca.pem"
    acme = seen["acme"]
    assert (acme["ACME_REGION"], acme["ACME_KEY"], acme["MY_SECRET_TOKEN"]) == (
        "eu-1",
        "acme-key",
        "s3cr3t-gateway-token",
    )
    assert acme["LANG"] == "de_DE.UTF-8"  # the default list still holds


async def test_inherit_env_false_passes_only_the_backends_env_and_all_passes_everything() -> None:
    seen = await environment_of(
        [reporter("bare", inherit_env=False, env={"ONLY": "this"}), reporter("every", inherit_env="all")]
    )
    # Python itself may set LC_CTYPE (PEP 538 locale coercion) in a process started without a locale.
    assert set(seen["bare"]) - {"LC_CTYPE"} == {"ONLY"}
    assert seen["every"]["MY_SECRET_TOKEN"] == "s3cr3t-gateway-token" and seen["every"]["ACME_KEY"] == "acme-key"


async def test_inherit_env_false_for_all_leaves_a_backend_its_own_list() -> None:
    seen = await environment_of(
        [reporter("none"), reporter("own", inherit_env=["LANG"])], execution={"inherit_env": False}
    )
    assert "SSL_CERT_FILE" not in seen["none"] and "PATH" not in seen["none"]
    assert seen["own"]["LANG"] == "de_DE.UTF-8" and "SSL_CERT_FILE" not in seen["own"]


async def test_the_backends_env_wins_over_an_inherited_value() -> None:
    env = (await environment_of([reporter(env={"LANG": "C.UTF-8", "SSL_CERT_FILE": "/mine.pem"})]))["envy"]
    assert (env["LANG"], env["SSL_CERT_FILE"]) == ("C.UTF-8", "/mine.pem")
    assert env["LC_TIME"] == "en_GB.UTF-8"


async def test_an_upstream_that_dies_at_start_names_env_in_its_error() -> None:
    broken = reporter("needy", args=["--require", "NEEDY_API_KEY"], init_timeout=10)
    config = parse_config({"search": {"strategy": "bm25"}, "backends": [broken]})
    with anyio.fail_after(30):
        async with Gateway(config) as gw:
            result = await gw.run("needy:environment", {})
    assert result.is_error and result.error is not None and result.error.code == "backend_unavailable"
    message = result.error.message
    assert "exited with code 1 during start" in message and "fatal: NEEDY_API_KEY is not set" in message
    assert "`env:`" in message and "`inherit_env:`" in message, message


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"inherit_env": ["GOOD", "not a name"]}, "inherit_env"),
        ({"inherit_env": "some"}, "inherit_env"),
    ],
    ids=["bad-name", "bad-word"],
)
def test_a_bad_inherit_env_fails_at_load_naming_the_key(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config({"backends": [reporter(**settings)]})


def test_inherit_env_on_a_url_upstream_is_refused_at_load() -> None:
    spec = {"name": "web", "kind": "mcp", "url": "http://127.0.0.1:1/mcp", "inherit_env": ["LANG"]}
    with pytest.raises(ConfigError, match="inherit_env"):
        parse_config({"backends": [spec]})


def test_the_default_list_matches_globs_and_skips_shell_functions() -> None:
    environ = {"LC_ALL": "C", "LCX": "no", "PATH": "/bin", "BASH_FUNC_f%%": "() { :; }", "TERM": "() { x; }"}
    assert inherited_environment(DEFAULT_INHERITED_ENV, environ) == {"LC_ALL": "C", "PATH": "/bin"}
