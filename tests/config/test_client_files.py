"""Client files as the clients write them: Claude Desktop, Cursor, Windsurf, Claude Code's .mcp.json, VS Code's
mcp.json; their own keys ignored, their variables resolved, Aperture's YAML still checked key by key."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from aperture.config import McpBackendConfig, load_config, parse_config
from aperture.model import ConfigError


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def mcp_backends(path: Path, env: dict[str, str] | None = None) -> dict[str, McpBackendConfig]:
    config = load_config(path, env=env or {})
    assert all(isinstance(b, McpBackendConfig) for b in config.backends)
    return {b.name: b for b in config.backends if isinstance(b, McpBackendConfig)}


def test_a_claude_desktop_file_with_preferences_and_a_global_shortcut_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desktop = {
        "mcpServers": {
            "filesystem": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"],
            },
            "github": {
                "command": "docker",
                "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/github/github-mcp-server"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_written_in_the_file"},
            },
        },
        "preferences": {"quickEntryShortcut": "double-tap-option", "menuBarEnabled": False},
        "globalShortcut": "Alt+Space",
        "isUsingBuiltInNodeForMcp": True,
    }
    with caplog.at_level(logging.INFO, logger="aperture.config"):
        servers = mcp_backends(write(tmp_path / "claude_desktop_config.json", desktop))
    assert list(servers) == ["filesystem", "github"]
    assert servers["github"].argv()[:2] == ["docker", "run"]
    assert servers["github"].env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_written_in_the_file"}
    assert caplog.records == []  # the client's own keys are simply not Aperture's business


def test_a_cursor_project_file_resolves_the_editor_variables_and_skips_disabled_servers(tmp_path: Path) -> None:
    project = tmp_path / "project"
    cursor = {
        "mcpServers": {
            "local": {
                "command": "${userHome}/bin/server",
                "args": ["--root", "${workspaceFolder}", "--name", "${workspaceFolderBasename}"],
                "env": {"API_KEY": "${env:CURSOR_API_KEY}", "PORT": 3000, "DEBUG": True},
            },
            "remote": {
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${env:REMOTE_TOKEN}"},
            },
            "off": {"command": "never-started", "disabled": True, "env": {"X": "${env:UNSET_BUT_DISABLED}"}},
        }
    }
    env = {"HOME": "/home/me", "CURSOR_API_KEY": "cursor-key-123456", "REMOTE_TOKEN": "remote-token-7890"}
    config = load_config(write(project / ".cursor" / "mcp.json", cursor), env=env)
    local, remote = config.backends
    assert isinstance(local, McpBackendConfig) and isinstance(remote, McpBackendConfig)
    # In a project's .cursor (or .vscode) folder, the workspace is the project, as the editor has it.
    assert local.argv() == ["/home/me/bin/server", "--root", str(project.resolve()), "--name", "project"]
    assert local.env == {"API_KEY": "cursor-key-123456", "PORT": "3000", "DEBUG": "true"}
    assert remote.url == "https://mcp.example.com/mcp" and remote.transport == "http"
    assert remote.headers == {"Authorization": "Bearer remote-token-7890"}
    assert set(config.secret_values) == {"cursor-key-123456", "remote-token-7890"}


def test_a_windsurf_file_with_server_url_and_its_own_entry_keys_loads(tmp_path: Path) -> None:
    windsurf = {
        "mcpServers": {
            "docs": {
                "serverUrl": "https://docs.example.com/mcp",
                "headers": {"X-Api-Key": "${env:DOCS_KEY}"},
                "disabled": False,
                "disabledTools": ["delete_everything"],
                "alwaysAllow": ["search"],
            },
            "events": {"serverUrl": "https://events.example.com/sse", "type": "sse"},
            "git": {"command": "uvx", "args": ["mcp-server-git"], "autoApprove": [], "env": {}},
        }
    }
    servers = mcp_backends(write(tmp_path / "mcp_config.json", windsurf), env={"DOCS_KEY": "windsurf-docs-key"})
    assert servers["docs"].url == "https://docs.example.com/mcp" and servers["docs"].transport == "http"
    assert servers["docs"].headers == {"X-Api-Key": "windsurf-docs-key"}
    assert servers["events"].transport == "sse"
    assert servers["git"].argv() == ["uvx", "mcp-server-git"]


def test_a_claude_code_project_file_with_types_and_defaults_loads(tmp_path: Path) -> None:
    claude_code = {
        "mcpServers": {
            "tools": {"type": "stdio", "command": "${TOOLS_BIN:-/usr/local/bin/tools}", "args": [], "env": {}},
            "api": {"type": "http", "url": "${API_BASE}/mcp", "headers": {"Authorization": "Bearer ${API_TOKEN}"}},
            "legacy": {"type": "sse", "url": "http://127.0.0.1:9000/sse"},
        }
    }
    env = {"API_BASE": "https://api.example.com", "API_TOKEN": "claude-code-token"}
    servers = mcp_backends(write(tmp_path / ".mcp.json", claude_code), env=env)
    assert servers["tools"].argv() == ["/usr/local/bin/tools"]
    assert servers["api"].url == "https://api.example.com/mcp" and servers["api"].transport == "http"
    assert servers["legacy"].transport == "sse"


VSCODE_MCP_JSON = """{
\t// Workspace MCP servers (VS Code writes JSON with comments)
\t"inputs": [
\t\t{"type": "promptString", "id": "perplexity-key", "description": "Perplexity API Key", "password": true},
\t],
\t"servers": {
\t\t"perplexity": {
\t\t\t"type": "stdio",
\t\t\t"command": "npx",
\t\t\t"args": ["-y", "server-perplexity-ask", "${workspaceFolder}/notes"],
\t\t\t"env": {"PERPLEXITY_API_KEY": "${env:PPLX_KEY}", "MODE": "fast"},
\t\t\t"envFile": "${workspaceFolder}/.env",
\t\t\t"dev": {"watch": "src/**/*.ts"}, /* restarts on change in VS Code; nothing to Aperture */
\t\t\t"sandboxEnabled": true,
\t\t},
\t\t"github": {"type": "http", "url": "https://api.githubcopilot.com/mcp/", "oauth": {"clientId": "${input:oauth-id}"}},
\t\t"events": {"type": "sse", "url": "http://localhost:3001/sse"},
\t},
}
"""


def test_a_vscode_mcp_json_with_comments_inputs_and_env_file_loads(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / ".env", "# secrets\nexport DB_PASSWORD='s3cr3t-password'\nMODE=slow\nnot a variable line\n")
    config = load_config(write(project / ".vscode" / "mcp.json", VSCODE_MCP_JSON), env={"PPLX_KEY": "pplx-1234567"})
    perplexity, github, events = config.backends
    assert isinstance(perplexity, McpBackendConfig)
    assert perplexity.argv() == ["npx", "-y", "server-perplexity-ask", f"{project.resolve()}/notes"]
    # The envFile fills in; the server's own env wins where both name a variable.
    assert perplexity.env == {"DB_PASSWORD": "s3cr3t-password", "MODE": "fast", "PERPLEXITY_API_KEY": "pplx-1234567"}
    assert isinstance(github, McpBackendConfig) and github.transport == "http"  # its oauth is VS Code's, unread
    assert isinstance(events, McpBackendConfig) and events.transport == "sse"
    assert set(config.secret_values) == {"pplx-1234567", "s3cr3t-password"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"command": "npx", "env": {"PERPLEXITY_API_KEY": "${input:perplexity-key}"}},
            "servers.perplexity.env.PERPLEXITY_API_KEY uses ${input:perplexity-key}: Aperture cannot prompt for "
            "input; set the value in the environment and write ${env:PERPLEXITY_API_KEY}",
        ),
        (
            {"type": "http", "url": "https://x.example/mcp", "headers": {"Authorization": "Bearer ${input:api-token}"}},
            "servers.perplexity.headers.Authorization uses ${input:api-token}: Aperture cannot prompt for input; "
            "set the value in the environment and write ${env:API_TOKEN}",
        ),
        (
            {"command": "npx", "args": ["${config:editor.fontSize}"]},
            "servers.perplexity.args[0] uses ${config:editor.fontSize}, a VS Code setting, which only the editor "
            "can resolve; write the value, or ${env:NAME}",
        ),
        (
            {"command": "npx", "env": {"TOKEN": "${env:PPLX_UNSET}"}},
            "servers.perplexity.env.TOKEN: environment variable PPLX_UNSET is not set",
        ),
        (
            {"command": "npx", "envFile": "${workspaceFolder}/missing.env"},
            "servers.perplexity.envFile: cannot read {folder}/missing.env: No such file or directory",
        ),
    ],
    ids=["input-under-env", "input-in-a-header", "config-setting", "unset-env", "missing-env-file"],
)
def test_what_only_the_editor_can_answer_is_an_error_naming_server_and_variable(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "mcp.json", {"inputs": [], "servers": {"perplexity": entry}})
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PPLX_KEY": "set-but-not-asked-for"})
    assert caught.value.message == f"{path}: " + message.replace("{folder}", str(tmp_path.resolve()))


def test_keys_that_look_like_aperture_keys_are_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {
        "mcpServers": {"time": {"command": "mcp-server-time"}},
        "sever": {"port": 9000},
        "backend": [],
        "Search": {"strategy": "bm25"},
        "preferences": {},
    }
    with caplog.at_level(logging.WARNING, logger="aperture.config"):
        config = load_config(write(tmp_path / "claude_desktop_config.json", data))
    assert [b.name for b in config.backends] == ["time"] and config.server.port == 8080
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and message.startswith(f"{tmp_path / 'claude_desktop_config.json'}:")
    assert "'sever' (did you mean 'server'?), 'backend' (did you mean 'backends'?)" in message
    assert "'Search' (did you mean 'search'?)" in message and "preferences" not in message


def test_aperture_keys_beside_mcp_servers_keep_the_file_strict(tmp_path: Path) -> None:
    mixed = {"server": {"expose": "both"}, "mcpServers": {"up": {"command": "x"}}, "preferences": {}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "aperture.json", mixed))
    assert "preferences: unknown key (check the spelling; see docs/configuration.md)" in caught.value.message
    beside = {"backends": [], "servers": {"up": {"command": "x"}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(beside)
    assert caught.value.message == (
        "<config>: invalid configuration:\n  servers: unknown key: a VS Code mcp.json's 'servers' is read from a "
        "file without Aperture's own keys; beside them, list the servers under mcpServers (or did you mean "
        "'server'?)"
    )
    # The servers of a mixed file still get the clients' variables; Aperture's own sections keep their syntax.
    config = parse_config(
        {"server": {"name": "${env:NAME}"}, "mcpServers": {"up": {"command": "${env:NAME}"}}}, env={"NAME": "gw"}
    )
    assert config.server.name == "${env:NAME}" and config.backends[0].command == "gw"  # type: ignore[attr-defined]


def test_a_file_with_servers_but_not_mcp_servers_says_it_looks_like_vscode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"servers": {"port": 9000}}, source="mcp.json")
    assert caught.value.message == (
        "mcp.json: servers.port must be an object with 'command' or 'url' (this looks like a VS Code mcp.json "
        "(servers); Aperture's own server settings go under 'server')"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config({"servers": {"broken": {"type": "stdio", "args": ["x"]}}}, source="mcp.json")
    assert caught.value.message == (
        "mcp.json: invalid configuration (read as a VS Code mcp.json (servers)):\n"
        "  servers.broken: give exactly one of 'command' (start a process, stdio) or 'url' (streamable HTTP)"
    )


def test_errors_in_a_client_file_name_the_server_as_the_file_does() -> None:
    data = {"mcpServers": {"ok": {"command": "x"}, "bad": {"command": "y", "timeout": -1}}}
    with pytest.raises(ConfigError, match=r"  mcpServers\.bad\.timeout: Input should be greater than 0"):
        parse_config(data)
    with pytest.raises(ConfigError, match=r"mcpServers\.ws\.type: Aperture connects to stdio, http and sse servers"):
        parse_config({"mcpServers": {"ws": {"type": "websocket", "url": "ws://127.0.0.1:1"}}})


def test_a_json_file_is_read_as_json_and_its_errors_have_line_and_column(tmp_path: Path) -> None:
    tabs = write(tmp_path / "tabs.json", '{\n\t"mcpServers": {\n\t\t"t": {"command": "x", "args": ["-v"]}\n\t}\n}\n')
    assert mcp_backends(tabs)["t"].args == ["-v"]  # YAML refuses the tabs
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "broken.json", '{\n  "mcpServers": {\n    "t": {"command" "x"}\n  }\n}\n'))
    assert caught.value.message == f"{tmp_path / 'broken.json'}: line 3, column 21: Expecting ':' delimiter"


def test_a_servers_description_in_a_client_file_is_its_backends_description(tmp_path: Path) -> None:
    data = {
        "mcpServers": {
            "ledger": {"command": "ledger-mcp", "description": "Acme billing: invoices and refunds."},
            "odd": {"command": "odd-mcp", "description": {"not": "text"}},  # a client's own shape: ignored
        }
    }
    servers = mcp_backends(write(tmp_path / "mcp.json", data))
    assert servers["ledger"].description == "Acme billing: invoices and refunds."
    assert servers["odd"].description == ""
