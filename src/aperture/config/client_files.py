"""Client files, read as they are: the `mcpServers` JSON of Claude Desktop, Cursor, Windsurf and Claude Code's
`.mcp.json`, and VS Code's `mcp.json` (`servers`). Their servers become `mcp` backends; the rest is the clients'."""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aperture.config.schema import Config
from aperture.config.variables import interpolate
from aperture.model import ConfigError

logger = logging.getLogger(__name__)

# Aperture's own top-level keys; a document with none of them beside its servers is a client file.
OWN_KEYS = frozenset(name for name, field in Config.model_fields.items() if not field.exclude)
VSCODE = "a VS Code mcp.json (servers)"
SERVERS_BESIDE_OWN_KEYS = (
    "unknown key: a VS Code mcp.json's 'servers' is read from a file without Aperture's own keys; beside them, "
    "list the servers under mcpServers (or did you mean 'server'?)"
)
# Keys of a server entry that Aperture reads, and the backend field each fills (Windsurf names its URL serverUrl).
_ENTRY_KEYS = {
    "command": "command",
    "args": "args",
    "env": "env",
    "cwd": "cwd",
    "url": "url",
    "serverUrl": "url",
    "headers": "headers",
    "timeout": "timeout",
}
# Values of `type` (or `transport`) that clients write, and Aperture's transport for a URL.
_TRANSPORTS = {
    "": None,
    "stdio": None,
    "http": None,
    "streamable-http": None,
    "streamable_http": None,
    "streamablehttp": None,
    "sse": "sse",
}
# Folders an editor keeps a workspace's mcp.json in: ${workspaceFolder} is the folder above them.
_EDITOR_FOLDERS = frozenset({".vscode", ".cursor"})


def client_section(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], str | None]:
    """Split a document into what is validated as Aperture's own and the key of its servers, if it has any.

    `mcpServers` is read in any file; VS Code's `servers` in one without `mcpServers` and without Aperture's own
    keys. A client file (servers, and none of Aperture's keys) keeps only its servers: its other keys belong to
    the client and are ignored, with one warning naming those that look like misspellings of Aperture's.

    Returns:
        The document without the servers (and, in a client file, without the client's keys), and `mcpServers`,
        `servers` or None.
    """
    own = any(key in OWN_KEYS for key in data)
    section = "mcpServers" if "mcpServers" in data else "servers" if "servers" in data and not own else None
    rest = {key: value for key, value in data.items() if key != section}
    if section is None or own:
        return rest, section
    misspelt = [
        f"{key!r} (did you mean {close[0]!r}?)"
        for key in rest
        if (close := difflib.get_close_matches(str(key).lower(), sorted(OWN_KEYS), n=1, cutoff=0.75))
    ]
    if misspelt:
        logger.warning(
            "%s: ignored %s: this is read as a client file (%s), whose other keys are the client's. Aperture's own "
            "keys (%s) may sit beside mcpServers; with one of them the file is read as Aperture's, key by key",
            source,
            ", ".join(misspelt),
            VSCODE if section == "servers" else section,
            ", ".join(sorted(OWN_KEYS)),
        )
    if section == "servers":
        logger.info("%s: read as %s", source, VSCODE)
    return {}, section


def from_mcp_servers(
    servers: Any,
    source: str,
    *,
    section: str = "mcpServers",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    found: list[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Backends from the `mcpServers` object that Claude Desktop, Cursor, Windsurf and Claude Code use, or the
    `servers` object of VS Code's mcp.json (`section`).

    Each entry's `command`, `args`, `env`, `envFile`, `cwd`, `url` (Windsurf: `serverUrl`), `headers`, `timeout`
    and `type` are read, with variables replaced (see `interpolate`; `${workspaceFolder}` is `base_dir`, or the
    folder above it for `.vscode` and `.cursor`); other keys are the client's and ignored. Entries with
    `disabled: true` are skipped.

    Args:
        found: gets `(key path, value)` for every value taken from the environment or an envFile.

    Raises:
        ConfigError: for an entry that is not an object, a transport Aperture does not speak, an unreadable
            envFile, or a variable that is unset or that only an editor can answer.
    """
    hint = (
        f" (this looks like {VSCODE}; Aperture's own server settings go under 'server')"
        if section != "mcpServers"
        else ""
    )
    if not isinstance(servers, dict):
        raise ConfigError(f"{source}: '{section}' must be an object of server name -> settings{hint}")
    env = os.environ if env is None else env
    base = base_dir or Path.cwd()
    workspace = base.parent if base.name in _EDITOR_FOLDERS else base
    backends = []
    for name, spec in servers.items():
        where = f"{section}.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: {where} must be an object with 'command' or 'url'{hint}")
        if spec.get("disabled"):
            continue
        try:
            backends.append(_backend(name, spec, where, env, base, workspace, found))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc.message}") from None
    return backends


def _backend(
    name: str,
    spec: dict[str, Any],
    where: str,
    env: Mapping[str, str],
    base: Path,
    workspace: Path,
    found: list[tuple[str, str]] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "kind": "mcp"}
    for key, field in _ENTRY_KEYS.items():
        if key in spec and field not in entry:
            entry[field] = interpolate(spec[key], env, f"{where}.{key}", found, workspace=workspace)
    if isinstance(spec.get("description"), str):  # some clients describe their servers: search uses it
        entry["description"] = spec["description"]
    kind = str(spec.get("type") or spec.get("transport") or "").lower()
    if kind not in _TRANSPORTS:
        key = "type" if spec.get("type") else "transport"
        raise ConfigError(f"{where}.{key}: Aperture connects to stdio, http and sse servers, not {kind!r}")
    if _TRANSPORTS[kind]:
        entry["transport"] = _TRANSPORTS[kind]
    if isinstance(entry.get("env"), dict):
        entry["env"] = {key: _text(value) for key, value in entry["env"].items()}
    if "envFile" in spec and isinstance(entry.get("env", {}), dict):  # else the schema says what is wrong with env
        path = interpolate(spec["envFile"], env, f"{where}.envFile", None, workspace=workspace)
        if not isinstance(path, str):
            raise ConfigError(f"{where}.envFile: give the path of a file of NAME=value lines")
        values = _read_env_file(base / Path(path).expanduser(), f"{where}.envFile")
        explicit = entry.get("env", {})
        for key, value in values.items():
            if key not in explicit and found is not None:
                found.append((f"{where}.env.{key}", value))
        entry["env"] = {**values, **explicit}
    return entry


def _text(value: Any) -> Any:
    """An environment value the way a client passes it: JSON numbers and booleans as their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$")


def _read_env_file(path: Path, where: str) -> dict[str, str]:
    """`NAME=value` lines (`export`, quotes and `#` comments allowed); other lines are skipped, as editors do."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    values = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].replace("\\n", "\n") if value[0] == '"' else value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
