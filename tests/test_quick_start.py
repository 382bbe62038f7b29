"""The README's quick start on a machine with only Python and make: the Makefile's setup steps and the demo
say in one line what is missing, and the demo runs without Node.js."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
VENV_BIN = str(Path(sys.executable).parent)

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def path_without_node(bin_dir: Path) -> str:
    """A PATH of one folder holding every program on this PATH but node, npm and npx."""
    bin_dir.mkdir(exist_ok=True)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for program in Path(folder).glob("*") if Path(folder).is_dir() else ():
            link = bin_dir / program.name
            if program.name not in HIDDEN and not link.exists() and not link.is_symlink():
                link.symlink_to(program)
    return str(bin_dir)


HIDDEN = {"node", "npm", "npx", "nodejs"}


def make(where: Path, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    """The repository's Makefile run in `where` on this machine as if it had no Node.js."""
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(where), target, *variables],
        env={"PATH": path_without_node(where / "bin")},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "package.json", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_demo_setup_goes_on_without_npm_and_says_so_in_one_line(checkout: Path) -> None:
    done = make(checkout, "node_modules/.demo-installed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("npm not found: the demo runs without its Node.js MCP server")
    assert "apt-get install nodejs npm" in lines[0]


def test_the_demo_setup_keeps_the_tests_node_modules(checkout: Path) -> None:
    """After `make test`, `npm install --omit=dev` would delete the tests' servers: the demo leaves them."""
    stamp = checkout / "node_modules" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    done = make(checkout, "node_modules/.demo-installed")  # no npm on PATH: it must not be needed
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    assert (checkout / "node_modules" / ".demo-installed").exists()


def test_the_tests_setup_without_npm_fails_with_what_to_install(checkout: Path) -> None:
    done = make(checkout, "node_modules/.installed")
    assert done.returncode != 0
    assert "npm not found: the tests need Node.js and npm" in done.stderr


def test_an_old_python_is_named_with_how_to_choose_another(checkout: Path) -> None:
    old_python = checkout / "python3.9"
    # Stands in for a Python 3.9 interpreter: fails the version check, prints its version.
    old_python.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.9.2" && exit 0\nexit 1\n')
    old_python.chmod(0o755)
    done = make(checkout, "demo", f"PYTHON={old_python}")
    assert done.returncode != 0
    assert f"Aperture needs Python 3.11 or newer; '{old_python}' is Python 3.9.2" in done.stderr
    assert "make demo PYTHON=python3.11" in done.stderr
    assert not (checkout / ".venv").exists()


@pytest.mark.parametrize("with_node", [False, True], ids=["without-node", "with-node"])
def test_the_demo_federates_with_or_without_node(with_node: bool, tmp_path: Path) -> None:
    path = VENV_BIN + os.pathsep + path_without_node(tmp_path / "bin")
    if with_node:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        path += os.pathsep + str(Path(node).parent)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "federation"],
        env={**os.environ, "PATH": path, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"timezone": "Asia/Tokyo"' in done.stdout  # the PyPI server answered either way
    missing = "Node.js or its npm server is missing: federating without server-everything"
    assert (missing in done.stdout) is not with_node
    assert ("everything:get-sum" in done.stdout) is with_node
