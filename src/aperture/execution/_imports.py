"""Importing a user's module named in the configuration, with errors that say which entry and why."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from aperture.model import ConfigError


def import_user_module(name: str, *, owner: str, path: str | Path | None = None) -> ModuleType:
    """Import `name`, first putting `path` (a directory) on `sys.path`.

    Raises:
        ConfigError: starting with `owner` (e.g. "backend 'math'"), for a module that is not found or
            whose own code fails while importing.
    """
    if path is not None and str(path) not in sys.path:
        sys.path.insert(0, str(path))
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        where = f" (looked also in {path})" if path else ""
        raise ConfigError(f"{owner}: cannot import module '{name}'{where}: {exc}") from exc
    except Exception as exc:  # the module's own code failed while importing
        raise ConfigError(f"{owner}: importing module '{name}' failed: {type(exc).__name__}: {exc}") from exc
