"""A test-environment subengine: a real temporary git repository with a given history, removed on delete.

    cd examples/engines
    python -m git_testenv create '{"testID": "t1", "stage": "it", "tmpDir": "/tmp/envs",
                                   "spec": {"commits": [{"message": "first", "files": {"README.md": "hi"}}]}}'
    python -m git_testenv delete '{"testID": "t1", "tmpDir": "/tmp/envs"}'
    python -m git_testenv --mcp            # an MCP server over stdio, with the tools create and delete

Spec: `commits`, a list of `{message, files: {path: content}}` made in order (default: one commit
with a README). Author and committer are fixed, so the same spec gives the same history.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aperture.engines import CreateInput, DeleteInput, Engine, SpecError, TestEnvArtifact

PREFIX = "git-testenv."
DEFAULT_COMMITS: list[dict[str, Any]] = [{"message": "Initial commit", "files": {"README.md": "# test repository\n"}}]
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Aperture Test",
    "GIT_AUTHOR_EMAIL": "test@aperture.invalid",
    "GIT_COMMITTER_NAME": "Aperture Test",
    "GIT_COMMITTER_EMAIL": "test@aperture.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    # The user's and the system's git configuration (hooks, signing, templates) stay out of it.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")

engine = Engine(
    "git-testenv",
    version="0.1.0",
    description="Provisions a temporary git repository with a given commit history for a test run.",
)


@engine.create
def create(request: CreateInput) -> TestEnvArtifact:
    """Make `<tmpDir>/git-<testID>` a git repository holding the commits of `spec.commits`."""
    commits = _commits(request.spec)
    repo = Path(request.tmp_dir) / _dirname(request.test_id)  # the framework made tmpDir absolute and created it
    if repo.exists():
        raise FileExistsError(f"{repo} already exists: delete test environment '{request.test_id}' first")
    repo.mkdir()
    try:
        _git(repo, "init", "--quiet", "--initial-branch=main")
        for commit in commits:
            for name, content in commit["files"].items():
                path = repo / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
            _git(repo, "add", "--all")
            _git(repo, "commit", "--quiet", "--allow-empty", "-m", commit["message"])
        head = _git(repo, "rev-parse", "HEAD")
    except BaseException:
        shutil.rmtree(repo, ignore_errors=True)  # nothing half-made is left behind
        raise
    return TestEnvArtifact(
        files={f"{PREFIX}repo": repo.name},
        metadata={f"{PREFIX}path": str(repo), f"{PREFIX}head": head, f"{PREFIX}commits": str(len(commits))},
        managed_resources=[str(repo)],
        env={"GIT_TESTENV_REPO": str(repo)},
    )


@engine.delete
def delete(request: DeleteInput) -> str:
    """Remove the repository `create` made; one that is already gone counts as deleted."""
    given = request.metadata.get(f"{PREFIX}path")
    if given:
        repo = Path(given)
    elif request.tmp_dir:
        repo = request.resolve(request.tmp_dir, must_exist=False, what="tmpDir") / _dirname(request.test_id)
    else:
        raise SpecError(
            f"cannot tell where test environment '{request.test_id}' is: pass the metadata create returned "
            f"({PREFIX}path) or the tmpDir it was created in"
        )
    if not repo.exists():
        return f"Test environment '{request.test_id}' is already gone ({repo})."
    if not repo.name.startswith("git-") or not (repo / ".git").is_dir():
        # Metadata can be edited by whoever calls: delete only what looks like a repository this engine made.
        raise SpecError(f"{repo} is not a repository made by {engine.name} (no git-<testID> with .git); not deleted")
    shutil.rmtree(repo)
    return f"Deleted test environment '{request.test_id}': removed {repo}."


def _dirname(test_id: str) -> str:
    if not _SAFE_ID.fullmatch(test_id) or test_id in (".", ".."):
        raise SpecError(f"testID '{test_id}' must use only letters, digits, '_', '.' and '-': it names a directory")
    return f"git-{test_id}"


def _commits(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`spec.commits` checked item by item, with the place of each mistake in the message."""
    raw = spec.get("commits")
    if raw is None:
        return DEFAULT_COMMITS
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            f"spec.commits must be a non-empty list of {{message, files}} objects, got {type(raw).__name__} "
            f'{raw!r:.60}. Example: [{{"message": "first", "files": {{"README.md": "hi"}}}}]'
        )
    commits = []
    for index, item in enumerate(raw):
        where = f"spec.commits[{index}]"
        if not isinstance(item, Mapping):
            raise SpecError(f"{where} must be an object {{message, files}}, got {type(item).__name__}")
        unknown = sorted(set(item) - {"message", "files"})
        if unknown:
            raise SpecError(f"{where} has unknown keys {unknown}; it takes only 'message' and 'files'")
        message = item.get("message")
        if not isinstance(message, str) or not message.strip():
            raise SpecError(f"{where}.message must be a non-empty string, got {message!r:.60}")
        files = item.get("files", {})
        if not isinstance(files, Mapping) or not all(isinstance(v, str) for v in files.values()):
            raise SpecError(f"{where}.files must be an object of path: text content, got {files!r:.60}")
        for name in files:
            path = Path(name)
            if not name or path.is_absolute() or ".." in path.parts or path.parts[:1] == (".git",):
                raise SpecError(f"{where}.files: '{name}' must be a relative path inside the repository")
        commits.append({"message": message, "files": dict(files)})
    return commits


def _git(repo: Path, *args: str) -> str:
    """Run git in `repo` with the fixed identity; its stdout, stripped."""
    env = {**os.environ, **_IDENTITY}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


if __name__ == "__main__":
    engine.main()
