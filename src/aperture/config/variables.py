"""Variables in configuration strings: `${VAR}` and `${VAR:-default}` everywhere, and in the server entries of
client files also the editors' own (`${env:VAR}`, `${workspaceFolder}`, `${userHome}`); which of their values are
secrets."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aperture.model import ConfigError
from aperture.model.redact import MIN_SECRET_LENGTH

# ${VAR}, ${VAR:-default}; $${...} escapes a literal ${...}. Client files add the editors' ${scope:argument}
# (VS Code, Cursor, Windsurf) and their predefined names; ${env:-x} stays "variable env, default x".
_VARIABLE = re.compile(
    r"\$\$\{"
    r"|\$\{(?P<scope>env|input|config|command):(?!-)(?P<argument>[^}]+)\}"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*|/)(?::-(?P<default>[^}]*))?\}"
)
_PREDEFINED = frozenset({"workspaceFolder", "workspaceFolderBasename", "userHome", "pathSeparator", "/"})


def interpolate(
    value: Any,
    env: Mapping[str, str],
    where: str = "",
    found: list[tuple[str, str]] | None = None,
    *,
    workspace: Path | None = None,
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed document.

    Args:
        found: gets `(key path, value)` for every value taken from the environment (for `secret_values`).
        workspace: for the server entries of a client file: also replace `${env:VAR}`, `${workspaceFolder}` (this
            folder), `${workspaceFolderBasename}`, `${userHome}` and `${pathSeparator}` (or `${/}`), and refuse
            `${input:id}`, `${config:...}` and `${command:...}`, which only the editor can answer. Without it those
            are left as they are.

    Raises:
        ConfigError: naming the key whose value refers to an unset variable, or to one only an editor can answer.
    """
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: _replace(match, value, env, where, found, workspace), value)
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k), found, workspace=workspace)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]", found, workspace=workspace) for i, v in enumerate(value)]
    return value


def _replace(
    match: re.Match[str],
    value: str,
    env: Mapping[str, str],
    where: str,
    found: list[tuple[str, str]] | None,
    workspace: Path | None,
) -> str:
    text = match.group(0)
    if text == "$${":
        return "${"
    scope, argument, name, default = match.group("scope", "argument", "name", "default")
    if workspace is None and (scope is not None or name == "/"):
        return text  # not Aperture's syntax: an Aperture file keeps it as written
    if workspace is not None and name in _PREDEFINED and default is None:
        return _predefined(name, workspace, env)
    if scope is not None and scope != "env":
        raise ConfigError(_editor_only(where, text, scope, argument))
    name = argument if scope == "env" else name
    if name in env:
        if found is not None:
            # The user:password part of a URL (redis://:${PASSWORD}@host) is a credential wherever it is.
            _, sep, after = value[: match.start()].partition("://")
            userinfo = bool(sep) and not any(c in after for c in "@/") and "@" in value[match.end() :]
            found.append((f"{where}.(userinfo password)" if userinfo else where, env[name]))
        return env[name]
    if default is not None:
        return default
    hint = "" if scope == "env" else f" (write ${{{name}:-default}} for a default)"
    raise ConfigError(f"{where or 'value'}: environment variable {name} is not set{hint}")


def _predefined(name: str, workspace: Path, env: Mapping[str, str]) -> str:
    if name == "workspaceFolder":
        return str(workspace)
    if name == "workspaceFolderBasename":
        return workspace.name
    if name == "userHome":
        return env.get("HOME") or env.get("USERPROFILE") or str(Path.home())
    return os.sep


def _editor_only(where: str, text: str, scope: str, argument: str) -> str:
    if scope == "input":
        keys = where.split(".")
        # Under env the variable's own name is the natural one; elsewhere the input's id, as a variable name.
        suggested = keys[-1] if len(keys) > 1 and keys[-2] == "env" else re.sub(r"\W+", "_", argument).upper()
        return (
            f"{where} uses {text}: Aperture cannot prompt for input; set the value in the environment and write "
            f"${{env:{suggested}}}"
        )
    what = "a VS Code setting" if scope == "config" else "the result of a VS Code command"
    return f"{where} uses {text}, {what}, which only the editor can resolve; write the value, or ${{env:NAME}}"


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
