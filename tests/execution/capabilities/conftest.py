"""A real REST API on 127.0.0.1 for the capability tests, and helpers to write capability files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rest_api import ApiServer

from aperture.execution import CapabilityBackend, CapabilitySettings, HttpSettings


@pytest.fixture(scope="session")
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_recorder(request: pytest.FixtureRequest) -> None:
    if "api" in request.fixturenames:
        request.getfixturevalue("api").recorder.clear()


def capability(name: str, url: str, *, schema: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """A capability document calling `url` (`base_url` + `path` when `path` is given)."""
    rest: dict[str, Any] = {"base_url": url} if "path" in config else {"endpoint": url}
    rest.update(config)
    doc: dict[str, Any] = {
        "name": name,
        "description": f"The {name.replace('_', ' ')} capability.",
        "providers": {"primary": {"service": "rest", "config": rest}},
    }
    if schema is not None:
        doc["schema"] = {"input": {"type": "object", "properties": schema}}
    return doc


def write(directory: Path, filename: str, doc: dict[str, Any] | str) -> Path:
    path = directory / filename
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def make_backend(directory: Path, *, private: bool = True, **http: Any) -> CapabilityBackend:
    settings = CapabilitySettings(watch=False, allow_private_networks=private, http=HttpSettings(**http))
    backend = CapabilityBackend("api", [directory], settings)
    backend.load_now()
    return backend
