"""The command line, run in process with typer's runner, against the test configuration."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from typer.testing import CliRunner

from aperture.cli import app
from tests.conftest import FIXTURES, TEST_CONFIG
from tests.ops.conftest import CLOSED_PORT_URL, REDIS_URL, Calls, ops_gateway

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


def test_tools_lists_the_servers_of_a_claude_desktop_file_as_it_is(tmp_path: Path) -> None:
    desktop = {
        "mcpServers": {"fixture": {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}},
        "preferences": {"menuBarEnabled": False},
        "globalShortcut": "Alt+Space",
    }
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps(desktop, indent=2))
    result = runner.invoke(app, ["tools", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    ids = {t["id"] for t in json.loads(result.output)}
    assert {"fixture:echo", "fixture:add"} <= ids and all(i.startswith("fixture:") for i in ids)


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


def _cached(ops: dict[str, Any], calls: Calls, *runs: tuple[str, dict[str, Any]]) -> None:
    """Run tools through a gateway whose cache is `ops`, so they leave entries behind (or hit them)."""

    async def main() -> None:
        async with ops_gateway(ops, calls) as gw:
            for tool_id, args in runs:
                assert not (await gw.run(tool_id, args)).is_error

    anyio.run(main)


def _config(tmp_path: Path, ops: dict[str, Any]) -> list[str]:
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump({"ops": ops}))
    return ["--config", str(path)]


def _clear(config: list[str], *how: str) -> tuple[int, str]:
    result = runner.invoke(app, ["cache", "clear", *how, *config])
    return result.exit_code, " ".join(result.output.split())


RUNS = (("t:lookup", {"word": "a"}), ("t:lookup", {"word": "b"}), ("t:slow", {"seconds": 0}))


@pytest.mark.parametrize("store", ["file", "redis"])
def test_cache_clear_removes_entries_by_tool_namespace_and_all(tmp_path: Path, store: str) -> None:
    cache: dict[str, Any] = {"enabled": True, "store": store, "directory": str(tmp_path / "cache")}
    ops: dict[str, Any] = {"cache": cache}
    if store == "redis":
        ops["redis"] = {"url": REDIS_URL, "prefix": f"aperture-test:{uuid.uuid4().hex[:12]}:"}
    config, calls = _config(tmp_path, ops), Calls()
    _cached(ops, calls, *RUNS)
    assert calls.counts == {"lookup": 2, "slow": 1}
    code, output = _clear(config, "--tool", "t:lookup")
    assert code == 0 and output.startswith("Removed 2 cached result(s) of tool t:lookup from"), output
    assert ("the file cache at" if store == "file" else f"Redis at {REDIS_URL}") in output
    _cached(ops, calls, *RUNS)  # lookup runs again, slow still answers from the cache
    assert calls.counts == {"lookup": 4, "slow": 1}
    code, output = _clear(config, "--namespace", "t")
    assert code == 0 and output.startswith("Removed 3 cached result(s) of namespace t"), output
    assert _clear(config, "--namespace", "t")[1].startswith("Removed 0 cached result(s)")
    _cached(ops, calls, *RUNS)
    assert calls.counts == {"lookup": 6, "slow": 2}
    code, output = _clear(config, "--all")
    assert code == 0 and output.startswith("Removed 3 cached result(s) of every tool"), output


def test_cache_clear_explains_what_it_cannot_do(tmp_path: Path) -> None:
    memory = _config(tmp_path, {"cache": {"enabled": True}})
    code, output = _clear(memory, "--all")
    assert code == 2 and "'memory'" in output and "no other process can reach it" in output
    assert "Restart the gateway" in output
    for how in ((), ("--tool", "t:lookup", "--all"), ("--namespace", "t", "--tool", "t:x")):
        code, output = _clear(memory, *how)
        assert code == 2 and "exactly one of --tool ID, --namespace NS or --all" in output
    files = _config(tmp_path, {"cache": {"store": "file", "directory": str(tmp_path / "none")}})
    assert _clear(files, "--tool", "lookup")[0] == 2  # not namespace:name
    assert _clear(files, "--namespace", "t:lookup")[0] == 2
    code, output = _clear(files, "--all")  # a directory never written to: nothing, and it is not created
    assert code == 0 and output.startswith("Removed 0 cached result(s) of every tool from the file cache at")
    assert not (tmp_path / "none").exists()
    down = _config(tmp_path, {"cache": {"store": "redis"}, "redis": {"url": CLOSED_PORT_URL}})
    code, output = _clear(down, "--all")
    assert code == 1 and "could not be reached" in output and "nothing was removed" in output
    help_text = " ".join(runner.invoke(app, ["cache", "clear", "--help"]).output.split())
    for needed in ("--tool", "--namespace", "--all", "memory", "restart the gateway", "Example:"):
        assert needed in help_text


def test_commands_that_read_the_catalog_fail_naming_a_backend_that_could_not_start(tmp_path: Path) -> None:
    examples = Path(TEST_CONFIG).parent.parent.parent / "examples"
    backends = [
        {"name": "gone", "kind": "mcp", "command": ["aperture-no-such-command"]},
        {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(examples)},
    ]
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump({"search": {"strategy": "bm25"}, "backends": backends}))
    config = ["--config", str(path)]
    why = "error: backend 'gone' could not start: command not found: 'aperture-no-such-command'"
    for command in (
        ["tools"],
        ["tools", "--json"],
        ["tools", "pending"],
        ["search", "convert kilometres to miles"],
        ["describe", "toolbox:calculate"],
        ["describe", "gone:anything"],  # its own error first, then why the tool may be missing
    ):
        result = runner.invoke(app, [*command, *config])
        output = " ".join(result.output.split())
        assert result.exit_code == 1, (command, output)
        assert output.count(why) == 1, (command, output)
    listed = runner.invoke(app, ["tools", *config])  # what the others serve is still shown
    assert "toolbox:calculate" in listed.output


def test_serve_maps_large_blocks_of_memory_unless_the_operator_chose_a_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes

    from aperture import cli

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, parameter: int, value: int) -> int:
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    cli._map_large_blocks()
    assert calls == [(-3, 128 * 1024)]  # (M_MMAP_THRESHOLD: fixed, so glibc no longer raises it)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    cli._map_large_blocks()
    assert calls == [(-3, 128 * 1024)]
