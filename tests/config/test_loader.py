"""Configuration loading: interpolation, validation, errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.config import load_config, parse_config
from aperture.model import ConfigError
from tests.conftest import EXAMPLE_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aperture.yaml"
    path.write_text(text)
    return path


def test_the_example_configuration_loads() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert config.server.transport == "stdio"
    assert [b.name for b in config.backends] == ["toolbox"]
    assert config.resolve(".") == EXAMPLE_CONFIG.parent


def test_environment_variables_are_interpolated(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: ${PORT}\n  name: ${NAME:-gw}\n  host: $${literal}\n")
    config = load_config(path, env={"PORT": "9000"})
    assert config.server.port == 9000 and config.server.name == "gw" and config.server.host == "${literal}"
    with pytest.raises(ConfigError, match=r"server\.port: environment variable PORT is not set"):
        load_config(path, env={})


def test_values_from_the_environment_under_credential_keys_are_secret_values() -> None:
    env = {
        "JWT": "jwt-shared-secret-1", "UP_TOKEN": "upstream-token-22", "HDR": "header-value-333",
        "MCP_ENV": "mcp-servers-env-4444", "PW": "redis-password-55555", "SHORT": "abc", "NAME": "gateway-name-666",
        "PORT": "9000",
    }  # fmt: skip
    data = {
        "server": {"name": "${NAME}", "port": "${PORT}"},
        "backends": [
            {"name": "up", "kind": "mcp", "command": "x", "env": {"TOKEN": "${UP_TOKEN}", "MODE": "${SHORT}"}},
            {"name": "web", "kind": "mcp", "url": "http://127.0.0.1:1/mcp", "headers": {"X-Key": "pre-${HDR}"}},
        ],
        "mcpServers": {"desk": {"command": "y", "env": {"KEY": "${MCP_ENV}"}}},
        "ops": {"auth": {"jwt": {"secret": "${JWT}"}}, "redis": {"url": "redis://:${PW}@127.0.0.1:6379/0"}},
    }
    config = parse_config(data, env=env)
    assert set(config.secret_values) == {env[k] for k in ("JWT", "UP_TOKEN", "HDR", "MCP_ENV", "PW")}
    assert "secret_values" not in repr(config) and "secret_values" not in config.model_dump()


def test_errors_name_the_file_and_every_bad_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "server:\n  transport: carrier-pigeon\n  prot: 1\nbackends:\n  - name: a\n    kind: python\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.message
    assert str(path) in message
    assert "server.transport: Input should be 'stdio', 'http' or 'a2a'" in message
    assert "server.prot: unknown key" in message
    assert "backends[0].module: Field required" in message


def test_unknown_backend_kind_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backends\[0\]: .*'python'"):
        parse_config({"backends": [{"name": "a", "kind": "telepathy"}]})
    twice = {"backends": [{"name": "a", "kind": "python", "module": "m"}] * 2}
    with pytest.raises(ConfigError, match="two backends are named 'a'"):
        parse_config(twice)
    with pytest.raises(ConfigError, match="backend name contains characters"):
        parse_config({"backends": [{"name": "a b", "kind": "python", "module": "m"}]})


def test_bad_yaml_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 3, column 1"):
        load_config(write(tmp_path, "server:\n  name: [unclosed\n"))
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))
    assert load_config(write(tmp_path, "")).backends == []


def test_upstream_message_cap_and_new_tools_have_defaults_and_bad_values_name_the_key() -> None:
    mcp = {"name": "up", "kind": "mcp", "command": "server"}
    config = parse_config({"backends": [mcp]})
    assert config.backends[0].max_message_bytes == 64 * 1024 * 1024  # type: ignore[attr-defined]
    assert config.integrity.new_tools == "accept"
    with pytest.raises(ConfigError, match=r"backends\[0\]\.max_message_bytes: Input should be greater than or equal"):
        parse_config({"backends": [{**mcp, "max_message_bytes": 10}]})
    with pytest.raises(ConfigError, match=r"integrity\.new_tools: Input should be 'accept' or 'hold'"):
        parse_config({"integrity": {"new_tools": "maybe"}})
