"""A test-runner engine: pytest on a project, with the counts and duration read from its JUnit XML report.

    cd examples/engines
    python -m pytest_runner run '{"id": "r1", "stage": "unit", "name": "sample", "rootDir": "sample_project"}'
    python -m pytest_runner --mcp          # an MCP server over stdio, with the tool run

Spec keys: `path` (what to test, relative to rootDir; default rootDir itself), `markers` (string list,
all must match: `-m`), `keyword` (`-k`), `args` (more pytest arguments), `coverage` (bool: pytest-cov
on the project, its total in the report), `timeout` (seconds, default 600).

Failing tests are a report with status `failed`; pytest that cannot run (a usage error, an error while
collecting, an internal error) is an error without a report. No tests collected is a passed report
that says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio

from aperture.engines import (
    Coverage,
    Engine,
    RunInput,
    TestReport,
    TestStats,
    get_bool,
    get_int,
    get_str,
    get_str_list,
)

OUTPUT_LINES = 20
"""How many of pytest's last output lines an execution error quotes."""
NO_TESTS_COLLECTED = 5
# Variables of a coverage measurement around the engine (the repository's own test suite measures its
# subprocesses): inherited, they would make the project's pytest measure itself into the wrong files.
_STRIPPED_PREFIXES = ("COVERAGE_", "COV_CORE_")

engine = Engine(
    "pytest-runner",
    version="0.1.0",
    description="Runs pytest on a Python project and reports passed, failed and skipped tests from JUnit XML.",
)


@engine.test_runner
async def run(request: RunInput) -> TestReport:
    """Run pytest on `spec.path` (default: `rootDir`) with cwd `rootDir`; the report's counts come from JUnit XML."""
    root = Path(request.root_dir or ".").resolve()
    target = request.resolve(get_str(request.spec, "path") or root, what="spec.path")
    markers = get_str_list(request.spec, "markers")
    keyword = get_str(request.spec, "keyword")
    extra = get_str_list(request.spec, "args")
    coverage = get_bool(request.spec, "coverage")
    timeout = get_int(request.spec, "timeout", 600) or 600

    if request.tmp_dir:
        scratch = request.resolve(request.tmp_dir, must_exist=False, what="tmpDir")  # relative to rootDir
    else:
        scratch = Path(tempfile.mkdtemp(prefix="pytest-runner-"))
    scratch.mkdir(parents=True, exist_ok=True)
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", request.id)
    junit = scratch / f"junit-{label}.xml"
    junit.unlink(missing_ok=True)  # a report left by an earlier run with this id must not be read as this one's
    command = [sys.executable, "-m", "pytest", str(target), f"--junitxml={junit}", "-q", "-p", "no:cacheprovider"]
    if markers:
        command += ["-m", " and ".join(f"({m})" for m in markers)]
    if keyword:
        command += ["-k", keyword]
    cov_json = scratch / f"coverage-{label}.json"
    if coverage:
        command += ["--cov", "--cov-report", f"json:{cov_json}"]
    command += extra

    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_PREFIXES)}
    env.pop("PYTEST_CURRENT_TEST", None)
    if coverage:
        env["COVERAGE_FILE"] = str(scratch / f".coverage-{label}")  # the data file, out of the project
    try:
        with anyio.fail_after(timeout):
            # Cancelling the call (a gateway timeout, a client that gives up) kills pytest with it.
            done = await anyio.run_process(
                command, cwd=root, env={**env, **request.env}, stderr=subprocess.STDOUT, check=False
            )
    except TimeoutError:
        raise RuntimeError(f"pytest did not finish within {timeout} s (spec.timeout)") from None
    output = done.stdout.decode(errors="replace")
    tail = "\n".join(output.strip().splitlines()[-OUTPUT_LINES:])
    if done.returncode not in (0, 1, NO_TESTS_COLLECTED):
        # 2 interrupted (often an error while collecting), 3 internal error, 4 usage error: the tests did not run.
        raise RuntimeError(f"pytest could not run the tests (exit status {done.returncode}):\n{tail}")
    if not junit.is_file():
        raise RuntimeError(f"pytest exited with status {done.returncode} but wrote no JUnit report {junit}:\n{tail}")
    stats, duration = _read_junit(junit)

    message = ""
    if done.returncode == NO_TESTS_COLLECTED:
        message = f"No tests were collected from {target}; check spec.path, spec.markers and spec.keyword."
    elif done.returncode == 1 and not stats.failed:
        message = f"pytest exited with status 1 without a failed test:\n{tail}"
    return TestReport(
        status="failed" if done.returncode == 1 else "passed",
        duration=duration,
        test_stats=stats,
        coverage=_coverage(cov_json) if coverage else Coverage(),
        output_path=str(junit),
        error_message=message,
    )


def _read_junit(path: Path) -> tuple[TestStats, float]:
    """Counts and seconds summed over the report's test suites."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RuntimeError(f"the JUnit report {path} is not valid XML: {exc}") from exc
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = skipped = 0
    duration = 0.0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        duration += float(suite.get("time", 0.0))
    passed = max(total - failed - skipped, 0)
    return TestStats(total=total, passed=passed, failed=failed, skipped=skipped), round(duration, 3)


def _coverage(path: Path) -> Coverage:
    """The total from pytest-cov's JSON report."""
    try:
        totals = json.loads(path.read_text(encoding="utf-8"))["totals"]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"coverage was asked for but its report {path} is unreadable: {exc}") from exc
    return Coverage(enabled=True, percentage=round(float(totals["percent_covered"]), 2), file_path=str(path))


if __name__ == "__main__":
    engine.main()
