"""Load the configuration file: YAML, `${VAR}` interpolation, validation with errors that name file and key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from aperture.config.schema import BACKEND_KINDS, Config
from aperture.model import ConfigError
from aperture.model.redact import MIN_SECRET_LENGTH

# ${VAR}, ${VAR:-default}; $${...} escapes a literal ${...}.
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
ENV_CONFIG = "APERTURE_CONFIG"
DEFAULT_FILE = "aperture.yaml"


def interpolate(value: Any, env: Mapping[str, str], where: str = "", found: list[tuple[str, str]] | None = None) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed document.

    Args:
        found: gets `(key path, value)` for every value taken from the environment (for `secret_values`).

    Raises:
        ConfigError: naming the key whose value refers to an unset variable.
    """
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in env:
                if found is not None:
                    # The user:password part of a URL (redis://:${PASSWORD}@host) is a credential wherever it is.
                    _, sep, after = value[: match.start()].partition("://")
                    userinfo = bool(sep) and not any(c in after for c in "@/") and "@" in value[match.end() :]
                    found.append((f"{where}.(userinfo password)" if userinfo else where, env[name]))
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where or 'value'}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            )

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]", found) for i, v in enumerate(value)]
    return value


# Keys under which a value from the environment is a credential: sections, and names that say so.
_SECRET_SECTIONS = frozenset({"auth", "headers", "env", "metadata"})
_SECRET_NAME = re.compile(r"secret|token|passw|credential|api[_-]?key|authorization|cookie", re.IGNORECASE)


def secret_values(found: list[tuple[str, str]]) -> tuple[str, ...]:
    """The values among `found` (from `interpolate`) that are credentials: those under an `auth`, `headers`, `env`
    or `metadata` key, under a key whose name says secret, token, password, credential, API key, authorization
    or cookie, or in the user:password part of a URL; at least `MIN_SECRET_LENGTH` characters long."""
    secrets = []
    for where, value in found:
        keys = re.split(r"[.\[\]]+", where)
        if len(value) >= MIN_SECRET_LENGTH and any(key in _SECRET_SECTIONS or _SECRET_NAME.search(key) for key in keys):
            secrets.append(value)
    return tuple(dict.fromkeys(secrets))


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(previous, int) and part in BACKEND_KINDS):  # the discriminator tag is noise here
            out += f".{part}" if out else str(part)
        previous = part
    return out or "(top level)"


def from_mcp_servers(servers: Any, source: str) -> list[dict[str, Any]]:
    """Backends from the `mcpServers` object that Claude Desktop, Cursor and others use.

    Raises:
        ConfigError: for an entry that is neither a command nor a URL.
    """
    if not isinstance(servers, dict):
        raise ConfigError(f"{source}: 'mcpServers' must be an object of server name -> settings")
    backends = []
    for name, spec in servers.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: mcpServers.{name} must be an object with 'command' or 'url'")
        if spec.get("disabled"):
            continue
        entry: dict[str, Any] = {"name": name, "kind": "mcp"}
        for key in ("command", "args", "env", "cwd", "url", "headers", "timeout"):
            if key in spec:
                entry[key] = spec[key]
        kind = str(spec.get("type") or spec.get("transport") or "").lower()
        if kind == "sse":
            entry["transport"] = "sse"
        backends.append(entry)
    return backends


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Validate an already-parsed document.

    Raises:
        ConfigError: listing every problem as `source: key.path: what is wrong`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must hold a mapping (server:, backends:, ...), not a {type(data).__name__}"
        )
    found: list[tuple[str, str]] = []
    try:
        data = interpolate(data, os.environ if env is None else env, found=found)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    if "mcpServers" in data:
        data = dict(data)
        servers = from_mcp_servers(data.pop("mcpServers"), source)
        data["backends"] = [*data.get("backends", []), *servers]
    data["base_dir"] = base_dir or Path.cwd()
    data["config_file"] = config_file
    data["secret_values"] = secret_values(found)
    try:
        return Config.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; see docs/configuration.md)"
            problems.append(f"  {_location(error['loc'])}: {message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems)) from None


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a configuration file.

    Without `path`, uses `$APERTURE_CONFIG`, then `./aperture.yaml`.

    Raises:
        ConfigError: for a missing file, bad YAML (with line and column) or invalid content.
    """
    environ = os.environ if env is None else env
    chosen = Path(path or environ.get(ENV_CONFIG) or DEFAULT_FILE)
    if not chosen.is_file():
        hint = "" if path else f" (pass --config FILE or set {ENV_CONFIG})"
        raise ConfigError(f"{chosen}: configuration file not found{hint}")
    try:
        # JSON is YAML, so `mcpServers` files from desktop clients load unchanged.
        data = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{chosen}: {where}{exc.problem or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{chosen}: cannot read YAML: {exc}") from None
    resolved = chosen.resolve()
    return parse_config(data, source=str(chosen), base_dir=resolved.parent, env=environ, config_file=resolved)
