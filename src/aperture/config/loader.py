"""Load the configuration file: YAML, or JSON as clients write it; `${VAR}` interpolation; validation with errors
that name file and key."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from aperture.config.client_files import SERVERS_BESIDE_OWN_KEYS, VSCODE, client_section, from_mcp_servers
from aperture.config.kinds import backend_kinds
from aperture.config.schema import Config
from aperture.config.variables import interpolate, secret_values
from aperture.model import ConfigError

ENV_CONFIG = "APERTURE_CONFIG"
DEFAULT_FILE = "aperture.yaml"


def _location(loc: tuple[int | str, ...], labels: Mapping[int, str]) -> str:
    parts = list(loc)
    if len(parts) > 1 and parts[0] == "backends" and isinstance(parts[1], int):
        if len(parts) > 2 and parts[2] in backend_kinds():
            del parts[2]  # the discriminator tag is noise here
        if parts[1] in labels:
            parts[:2] = [labels[parts[1]]]  # a server of mcpServers or servers is named as the file names it
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def _kind_problem(entry: Any) -> str:
    """What is wrong with a backend entry's `kind:` (missing, or no kind of that name), and the kinds there are."""
    kinds = ", ".join(f"'{kind}'" for kind in backend_kinds())
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind is None:
        return f"give 'kind': the kind of backend, one of {kinds}"
    return f"unknown backend kind {kind!r}; the kinds are {kinds} (see docs/configuration.md)"


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Validate an already-parsed document: Aperture's own, or a client file (see `client_section`).

    Raises:
        ConfigError: listing every problem as `source: key.path: what is wrong`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must hold a mapping (server:, backends:, ...), not a {type(data).__name__}"
        )
    environ = os.environ if env is None else env
    base = base_dir or Path.cwd()
    own, section = client_section(data, source)
    found: list[tuple[str, str]] = []
    try:
        own = interpolate(own, environ, found=found)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    labels: dict[int, str] = {}
    if section is not None:
        servers = from_mcp_servers(data[section], source, section=section, env=environ, base_dir=base, found=found)
        backends = own.get("backends", [])
        if isinstance(backends, list):  # else the schema says what is wrong with it
            labels = {len(backends) + i: f"{section}.{server['name']}" for i, server in enumerate(servers)}
            own["backends"] = [*backends, *servers]
    own["base_dir"] = base
    own["config_file"] = config_file
    own["secret_values"] = secret_values(found)
    try:
        return Config.model_validate(own)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] in ("union_tag_invalid", "union_tag_not_found") and error["loc"][:1] == ("backends",):
                message = _kind_problem(error["input"])
            elif error["type"] == "extra_forbidden":
                message = (
                    SERVERS_BESIDE_OWN_KEYS
                    if error["loc"] == ("servers",)
                    else "unknown key (check the spelling; see docs/configuration.md)"
                )
            problems.append(f"  {_location(error['loc'], labels)}: {message}")
        read_as = f" (read as {VSCODE})" if section == "servers" else ""
        raise ConfigError(f"{source}: invalid configuration{read_as}:\n" + "\n".join(problems)) from None


# JSONC, as VS Code writes mcp.json: comments and trailing commas, blanked so that positions stay (strings kept).
_STRING = r'"(?:\\.|[^"\\])*"'
_COMMENT = re.compile(rf"({_STRING})|//[^\n]*|/\*[\s\S]*?\*/")
_TRAILING_COMMA = re.compile(rf"({_STRING})|,(?=\s*[}}\]])")


def _json(text: str) -> Any:
    text = _COMMENT.sub(lambda m: m.group(1) or re.sub(r"[^\n]", " ", m.group(0)), text)
    return json.loads(_TRAILING_COMMA.sub(lambda m: m.group(1) or " ", text))


def _read(path: Path) -> Any:
    """The document in a file: JSON (with comments, as JSONC) for a .json file or one that opens with `{`, else
    YAML (of which JSON is nearly a part, but not with tabs or comments)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc}") from None
    is_json = path.suffix.lower() == ".json"
    if is_json or text.lstrip().startswith("{"):
        try:
            return _json(text)
        except json.JSONDecodeError as exc:
            if is_json:
                raise ConfigError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a configuration file.

    Without `path`, uses `$APERTURE_CONFIG`, then `./aperture.yaml`.

    Raises:
        ConfigError: for a missing file, bad YAML or JSON (with line and column) or invalid content.
    """
    environ = os.environ if env is None else env
    chosen = Path(path or environ.get(ENV_CONFIG) or DEFAULT_FILE)
    if not chosen.is_file():
        hint = "" if path else f" (pass --config FILE or set {ENV_CONFIG})"
        raise ConfigError(f"{chosen}: configuration file not found{hint}")
    data = _read(chosen)
    resolved = chosen.resolve()
    return parse_config(data, source=str(chosen), base_dir=resolved.parent, env=environ, config_file=resolved)
