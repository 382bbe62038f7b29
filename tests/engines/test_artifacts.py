"""Artifacts: git commit versions (unknown outside a repository) and RFC 3339 UTC timestamps."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from aperture.engines import (
    UNKNOWN_VERSION,
    Dependency,
    create_artifact,
    create_custom_artifact,
    create_versioned_artifact,
    git_version,
    rfc3339_now,
)

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _repo(path: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "f.txt").write_text("x")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "one"], check=True, env={**env, "PATH": "/usr/bin:/bin"})
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return head.stdout.strip()


def test_timestamps_are_rfc3339_utc_to_the_second() -> None:
    stamp = rfc3339_now()
    assert RFC3339_UTC.fullmatch(stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_git_version_is_the_commit_of_the_work_tree(tmp_path: Path) -> None:
    head = _repo(tmp_path)
    assert git_version(tmp_path) == head
    (tmp_path / "sub").mkdir()
    assert git_version(tmp_path / "sub") == head  # anywhere inside the work tree


def test_git_version_is_unknown_outside_a_repository_or_without_commits(tmp_path: Path) -> None:
    assert git_version(tmp_path) == UNKNOWN_VERSION == "unknown"
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    assert git_version(tmp_path / "empty") == "unknown"
    assert git_version(tmp_path / "does-not-exist") == "unknown"


def test_the_three_constructors(tmp_path: Path) -> None:
    head = _repo(tmp_path)
    plain = create_artifact("client", "generated", tmp_path / "gen")
    assert plain.version == "" and RFC3339_UTC.fullmatch(plain.timestamp) and plain.location == str(tmp_path / "gen")
    versioned = create_versioned_artifact("app", "binary", "/out/app", source=tmp_path)
    assert versioned.version == head
    custom = create_custom_artifact("img", "container", "localhost:5000/img:v1.2.3", "v1.2.3")
    assert custom.version == "v1.2.3"
    dep = Dependency(type="file", file_path="go.mod")
    assert create_artifact("x", "t", "/x", dependencies=[dep]).to_wire()["dependencies"] == [
        {"type": "file", "filePath": "go.mod"}
    ]
