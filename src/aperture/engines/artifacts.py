"""Artifacts with a version and a time: the git commit of the sources, or a version of the engine's choosing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from aperture.engines.contracts import Artifact, Dependency

UNKNOWN_VERSION = "unknown"


def rfc3339_now() -> str:
    """The current time in RFC 3339, UTC, to the second: `2026-11-23T15:04:05Z`."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def git_version(directory: str | Path | None = None) -> str:
    """The commit checked out in the git work tree holding `directory` (default: the cwd), or `unknown`.

    `unknown` covers every reason there is no answer: not a repository, no commit yet, git missing.
    """
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_VERSION
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else UNKNOWN_VERSION


def create_artifact(name: str, type: str, location: str | Path, *, dependencies: Iterable[Dependency] = ()) -> Artifact:
    """An unversioned artifact (generated code, say), stamped with the current time."""
    return Artifact(
        name=name, type=type, location=str(location), timestamp=rfc3339_now(), dependencies=list(dependencies)
    )


def create_versioned_artifact(
    name: str,
    type: str,
    location: str | Path,
    *,
    source: str | Path | None = None,
    dependencies: Iterable[Dependency] = (),
) -> Artifact:
    """An artifact versioned by the git commit of `source` (default: the cwd); `unknown` outside a repository."""
    return Artifact(
        name=name,
        type=type,
        location=str(location),
        version=git_version(source),
        timestamp=rfc3339_now(),
        dependencies=list(dependencies),
    )


def create_custom_artifact(
    name: str, type: str, location: str | Path, version: str, *, dependencies: Iterable[Dependency] = ()
) -> Artifact:
    """An artifact with a version the engine chose (an image tag, a package version, ...)."""
    return Artifact(
        name=name,
        type=type,
        location=str(location),
        version=version,
        timestamp=rfc3339_now(),
        dependencies=list(dependencies),
    )
