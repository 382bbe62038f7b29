"""The command line, run in process with typer's runner, against the test configuration."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from aperture.cli import app
from tests.conftest import TEST_CONFIG

runner = CliRunner()
CONFIG = ["--config", str(TEST_CONFIG)]


def test_help_teaches_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "tools", "search", "describe", "run"):
        assert command in result.output
    assert "search_tools" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("aperture ")


def test_search_prints_a_table_and_json() -> None:
    table = runner.invoke(app, ["search", "convert kilometres to miles", *CONFIG])
    assert table.exit_code == 0 and "toolbox:convert_units" in table.output
    as_json = runner.invoke(app, ["search", "sha256 hash", "--json", "--limit", "2", *CONFIG])
    data = json.loads(as_json.output)
    assert data["tools"][0]["id"] == "toolbox:hash_text" and len(data["tools"]) <= 2


def test_tools_lists_the_catalog() -> None:
    result = runner.invoke(app, ["tools", "--json", "--namespace", "toolbox", *CONFIG])
    ids = [t["id"] for t in json.loads(result.output)]
    assert "toolbox:calculate" in ids and all(i.startswith("toolbox:") for i in ids)


def test_describe_shows_parameters() -> None:
    result = runner.invoke(app, ["describe", "toolbox:calculate", *CONFIG])
    assert result.exit_code == 0
    assert "expression (string, required)" in result.output
    as_json = json.loads(
        runner.invoke(app, ["describe", "toolbox:calculate", "--json", "-d", "schema", *CONFIG]).output
    )
    assert as_json["input_schema"]["required"] == ["expression"]


def test_run_prints_the_result_and_fails_with_exit_code_1() -> None:
    ok = runner.invoke(app, ["run", "toolbox:calculate", "--args", '{"expression": "6*7"}', *CONFIG])
    assert ok.exit_code == 0 and ok.output.strip() == "42.0"
    bad = runner.invoke(app, ["run", "toolbox:calculate", "--args", '{"expresion": "6*7"}', "--json", *CONFIG])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["error"]["code"] == "validation_input"
    not_json = runner.invoke(app, ["run", "toolbox:calculate", "--args", "{oops", *CONFIG])
    assert not_json.exit_code == 2 and "not valid JSON" in not_json.output


def test_missing_configuration_points_at_the_fix(tmp_path: object) -> None:
    result = runner.invoke(app, ["tools", "--config", "/nonexistent/aperture.yaml"])
    assert result.exit_code == 2 and "configuration file not found" in result.output


def test_search_shows_confidence_and_takes_an_intent() -> None:
    table = runner.invoke(app, ["search", "hash", "--intent", "a sha256 digest of a string", *CONFIG])
    assert table.exit_code == 0 and "toolbox:hash_text" in table.output
    assert "confidence:" in table.output
    nothing = runner.invoke(app, ["search", "book a table at an italian restaurant tonight", "--json", *CONFIG])
    data = json.loads(nothing.output)
    assert data["confidence"] == "none" and "no available tool" in data["reason"]
    shown = runner.invoke(app, ["search", "book a table at an italian restaurant tonight", *CONFIG])
    assert "none" in shown.output and "Stop searching" in " ".join(shown.output.split())
    too_long = runner.invoke(app, ["search", "hash", "--intent", "x" * 1001, *CONFIG])
    assert too_long.exit_code == 1 and "at most 1000" in too_long.output
