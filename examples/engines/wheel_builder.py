"""A builder engine: a wheel of a Python project, built by pip without network or build isolation.

    cd examples/engines
    python -m wheel_builder build '{"name": "sample", "engine": "wheel-builder"}'
    python -m wheel_builder --mcp          # an MCP server over stdio, with the tools build and buildBatch

Spec keys: `quiet` (bool, default false: pip's own output is kept short either way), `timeout`
(seconds, default 300). The project's build backend must be installed where the engine runs
(`--no-build-isolation`): the sample project needs hatchling, which the repository's dev extra has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aperture.engines import (
    Artifact,
    BuildInput,
    Engine,
    InputValidationError,
    create_versioned_artifact,
    get_bool,
    get_int,
)

SAMPLE_PROJECT = Path(__file__).resolve().parent / "sample_project"
OUTPUT_LINES = 15
"""How many of pip's last output lines a failure quotes."""

engine = Engine(
    "wheel-builder",
    version="0.1.0",
    description="Builds a wheel of a Python project (pyproject.toml or setup.py) with `pip wheel`, offline.",
)


@engine.builder
def build(request: BuildInput) -> Artifact:
    """Build `src` (default: the sample project) into a wheel in `dest` (default: `<tmpDir>/dist`)."""
    quiet = get_bool(request.spec, "quiet")
    timeout = get_int(request.spec, "timeout", 300) or 300
    src = Path(request.src) if request.src else SAMPLE_PROJECT  # the framework made `src` absolute and checked it
    if not src.is_dir() or not any((src / marker).is_file() for marker in ("pyproject.toml", "setup.py")):
        raise InputValidationError(
            f"src '{src}' is not a Python project: it has no pyproject.toml or setup.py. "
            "Give the directory that holds the project's pyproject.toml."
        )
    dest = Path(request.dest) if request.dest else _scratch(request) / "dist"
    dest.mkdir(parents=True, exist_ok=True)
    # Build into an empty staging directory so that the wheel is the one file found there afterwards.
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=dest) as staging:
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            *(["--quiet"] if quiet else []),
            "-w",
            staging,
            str(src),
        ]
        try:
            done = subprocess.run(
                command,
                cwd=src,
                env={**os.environ, **request.env, "PIP_NO_INPUT": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"pip wheel did not finish within {timeout} s (spec.timeout); {src} not built") from exc
        if done.returncode != 0:
            tail = "\n".join(done.stdout.strip().splitlines()[-OUTPUT_LINES:])
            raise RuntimeError(f"pip wheel exited with status {done.returncode} building {src}:\n{tail}")
        wheels = sorted(Path(staging).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip wheel succeeded but left {len(wheels)} wheels in {staging}, expected one")
        wheel = dest / wheels[0].name
        shutil.move(wheels[0], wheel)  # replaces a wheel of the same version built before
    return create_versioned_artifact(request.name, "wheel", wheel, source=src)


def _scratch(request: BuildInput) -> Path:
    """`tmpDir` (relative to `rootDir`), or a new temporary directory."""
    if request.tmp_dir:
        return request.resolve(request.tmp_dir, must_exist=False, what="tmpDir")
    return Path(tempfile.mkdtemp(prefix="wheel-builder-"))


if __name__ == "__main__":
    engine.main()
