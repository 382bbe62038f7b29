"""The environment a stdio upstream starts with: the variables it inherits from the gateway's (a list of
names and globs, never the whole environment by default), then its own `env`, which wins."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping

DEFAULT_INHERITED_ENV: tuple[str, ...] = (
    # Finding programs and per-user files (what the MCP SDK passes on: uvx and npx need PATH and HOME).
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TMPDIR",
    # Locale and time zone: text encoding (a Python or Node server reading UTF-8 files) and local times.
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    # Certificates: without them a server behind a TLS-inspecting proxy, or on a system whose CA bundle
    # is elsewhere, fails every HTTPS request (uvx could not even download its package).
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    # Proxies, in both spellings (curl and Python read the lower case, many tools the upper).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    # Where per-user configuration, caches and runtime files go (XDG_CONFIG_HOME, XDG_CACHE_HOME, ...).
    "XDG_*",
    # Package-runner caches and TLS choice, by name: UV_* and NPM_CONFIG_* as a whole also hold index
    # passwords and registry tokens (UV_INDEX_<name>_PASSWORD, NPM_CONFIG__AUTH).
    "UV_CACHE_DIR",
    "UV_TOOL_DIR",
    "UV_PYTHON_INSTALL_DIR",
    "UV_NATIVE_TLS",
    "NPM_CONFIG_CACHE",
    "npm_config_cache",
    # Windows: what its programs need to start at all (the SDK's list there).
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
    "PROGRAMFILES",
)
"""What every stdio upstream inherits unless configured otherwise (`execution.inherit_env`, a backend's
`inherit_env`): what programs need to find files, speak TLS and reach the network. Never credentials: the
gateway's own secrets stay with it, and an upstream gets one only when its `env` (or `inherit_env`) names it."""

INHERIT_ALL = ("*",)
"""The patterns of `inherit_env: all`: the whole environment."""


def inherited_environment(patterns: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of `environ` (default: this process's) whose names match one of `patterns`.

    Patterns are names or shell globs (`LC_*`), matched case-sensitively. Values that start with `()`
    (exported shell functions) are left out, as the MCP SDK does.
    """
    environ = os.environ if environ is None else environ
    names = [p for p in patterns if not _is_glob(p)]
    globs = [p for p in patterns if _is_glob(p)]
    chosen = {name: environ[name] for name in names if name in environ}
    if globs:
        chosen |= {k: v for k, v in environ.items() if any(fnmatch.fnmatchcase(k, g) for g in globs)}
    return {k: v for k, v in chosen.items() if not v.startswith("()")}


def upstream_environment(
    patterns: Iterable[str], env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a stdio upstream: what it inherits by `patterns`, then its own `env` (which wins)."""
    return inherited_environment(patterns, environ) | dict(env)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
