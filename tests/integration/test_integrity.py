"""Tool integrity: a tool whose definition changes after approval is held back until an operator approves it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp import Client
from typer.testing import CliRunner

import aperture
from aperture.cli import app
from aperture.config import load_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio


def write_config(
    tmp_path: Path,
    *,
    poisoned: bool,
    policy: str = "hold",
    new_tools: str | None = None,
    extra: int = 0,
    long_echo: int = 0,
    twin: bool = False,
) -> Path:
    args = [str(FIXTURES / "upstream_server.py"), *(["--poisoned"] if poisoned else [])]
    args += ["--tools", str(extra)] if extra else []
    args += ["--long-echo", str(long_echo)] if long_echo else []
    integrity = {"policy": policy} | ({"new_tools": new_tools} if new_tools else {})
    servers = {"fixture": {"command": sys.executable, "args": args}}
    if twin:  # a second backend: the catalog is published once per backend as the gateway starts
        servers["twin"] = {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}
    config = {"integrity": integrity, "mcpServers": servers}
    path = tmp_path / "aperture.json"
    path.write_text(json.dumps(config))
    return path


async def search_ids(client: Client, query: str) -> list[str]:
    found = await client.call_tool("search_tools", {"query": query})
    return [t["id"] for t in found.structured_content["tools"]]


async def test_a_changed_definition_is_held_until_approved(tmp_path: Path) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False))) as gw, Client(McpSurface(gw).server) as c:
        assert text_of(await run(c, "fixture:echo", {"text": "trusted"})) == "trusted"
    assert (tmp_path / ".aperture" / "fingerprints.json").is_file()  # recorded on first use

    poisoned = write_config(tmp_path, poisoned=True)
    async with Gateway(load_config(poisoned)) as gw, Client(McpSurface(gw).server) as c:
        error = error_of(await run(c, "fixture:echo", {"text": "x"}))
        assert error["code"] == "tool_held"
        assert "aperture tools approve fixture:echo" in error["message"] and error["details"]["changed"] == [
            "description"
        ]
        assert "fixture:echo" not in await search_ids(c, "echo the text back")
        assert text_of(await run(c, "fixture:add", {"a": 1, "b": 2})) == "3"  # the rest still serves

    runner = CliRunner()  # the command line runs its own event loop: give it a thread
    pending = await anyio.to_thread.run_sync(runner.invoke, app, ["tools", "pending", "--config", str(poisoned)])
    assert pending.exit_code == 0 and "fixture:echo" in pending.output and "id_rsa" in pending.output
    command = ["tools", "approve", "fixture:echo", "--config", str(poisoned)]
    approved = await anyio.to_thread.run_sync(runner.invoke, app, command)
    assert approved.exit_code == 0 and "Approved 1 tool(s): fixture:echo" in approved.output

    async with Gateway(load_config(poisoned)) as gw, Client(McpSurface(gw).server) as c:
        assert text_of(await run(c, "fixture:echo", {"text": "approved"})) == "approved"


@pytest.mark.parametrize("policy", ["warn", "accept"])
async def test_warn_and_accept_keep_serving_a_changed_tool(tmp_path: Path, policy: str) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False, policy=policy))):
        pass
    async with Gateway(load_config(write_config(tmp_path, poisoned=True, policy=policy))) as gw:
        assert gw.registry.snapshot.held == {}
        assert "id_rsa" in gw.index.get("fixture:echo").description  # type: ignore[union-attr]
    store = json.loads((tmp_path / ".aperture" / "fingerprints.json").read_text())
    accepted = "id_rsa" in store["fixture:echo"]["definition"]["description"]
    assert accepted == (policy == "accept")


def test_approving_a_tool_that_is_not_held_is_explained(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["tools", "approve", "fixture:nope", "--config", str(write_config(tmp_path, poisoned=False))]
    )
    assert result.exit_code == 1 and "Not held for review: fixture:nope" in result.output


async def test_a_lazy_upstream_starts_on_its_first_call(tmp_path: Path) -> None:
    args = [str(FIXTURES / "upstream_server.py")]
    config = {"mcpServers": {"fixture": {"command": sys.executable, "args": args}}}
    path = tmp_path / "lazy.json"
    path.write_text(json.dumps({**config, "backends": []}))
    async with Gateway(load_config(path)):
        pass  # the first run starts it, to learn and record its tools
    lazy = {"backends": [{"name": "fixture", "kind": "mcp", "command": [sys.executable, *args], "lazy": True}]}
    path.write_text(json.dumps(lazy))
    async with Gateway(load_config(path)) as gw, Client(McpSurface(gw).server) as c:
        backend = gw.registry.get("fixture")
        assert backend is not None and backend.state == "idle"  # type: ignore[attr-defined]
        assert "fixture:echo" in await search_ids(c, "echo the text back")
        assert text_of(await run(c, "fixture:echo", {"text": "woken"})) == "woken"
        assert backend.state == "ready"  # type: ignore[attr-defined]


async def test_with_new_tools_hold_a_tool_added_after_the_first_listing_is_pending_until_approved(
    tmp_path: Path,
) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False, new_tools="hold"))) as gw:
        assert gw.registry.snapshot.held == {}  # the first listing is trusted, and recorded

    grown = write_config(tmp_path, poisoned=False, new_tools="hold", extra=1)  # the upstream now has extra_0000
    async with Gateway(load_config(grown)) as gw, Client(McpSurface(gw).server) as c:
        assert "fixture:extra_0000" not in await search_ids(c, "extra tool number 0")
        described = await c.call_tool("describe_tool", {"tool_id": "fixture:extra_0000"})
        for error in (error_of(described), error_of(await run(c, "fixture:extra_0000", {}))):
            assert error["code"] == "tool_held" and error["details"]["new"] is True
            assert "pending approval" in error["message"]
            assert "aperture tools approve fixture:extra_0000" in error["message"]
        assert text_of(await run(c, "fixture:echo", {"text": "known"})) == "known"  # approved tools still serve

        # Added while running (tools/list_changed): held as well.
        late = anyio.Event()
        gw.registry.add_listener(lambda snapshot: late.set() if "fixture:extra_late" in snapshot.held else None)
        assert text_of(await run(c, "fixture:add_tool", {"name": "late"})) == "added"
        with anyio.fail_after(10):
            await late.wait()
        assert error_of(await run(c, "fixture:extra_late", {}))["details"]["new"] is True

    runner = CliRunner()
    pending = await anyio.to_thread.run_sync(runner.invoke, app, ["tools", "pending", "--config", str(grown)])
    assert pending.exit_code == 0, pending.output
    assert "fixture:extra_0000 is new since its backend's first listing" in pending.output
    approve = ["tools", "approve", "fixture:extra_0000", "--config", str(grown)]
    approved = await anyio.to_thread.run_sync(runner.invoke, app, approve)
    assert approved.exit_code == 0 and "Approved 1 tool(s): fixture:extra_0000" in approved.output

    async with Gateway(load_config(grown)) as gw, Client(McpSurface(gw).server) as c:
        assert gw.registry.snapshot.held == {}
        assert "fixture:extra_0000" in await search_ids(c, "extra tool number 0")
        assert text_of(await run(c, "fixture:extra_0000", {})) == "extra_0000"


async def test_by_default_a_tool_added_after_the_first_listing_is_served(tmp_path: Path) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False))):
        pass
    async with Gateway(load_config(write_config(tmp_path, poisoned=False, extra=1))) as gw:
        assert gw.registry.snapshot.held == {}
        assert gw.index.get("fixture:extra_0000") is not None
    store = json.loads((tmp_path / ".aperture" / "fingerprints.json").read_text())
    assert "fixture:extra_0000" in store  # recorded as first seen: a later change to it is held


async def piped_cli(*args: str) -> tuple[int, str, str]:
    """The command line as a person runs it with its output piped (`| cat`): no terminal, no colours, and this
    checkout's sources."""
    src = str(Path(aperture.__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    done = await anyio.run_process([sys.executable, "-m", "aperture.cli", *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_pending_shows_the_whole_change_word_by_word_when_piped(tmp_path: Path) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False, long_echo=1))):
        pass  # the long definition, approved
    changed = write_config(tmp_path, poisoned=False, long_echo=2)
    code, shown, _ = await piped_cli("tools", "pending", "--config", str(changed))
    assert code == 0, shown
    assert max(len(line) for line in shown.splitlines()) <= 80  # wrapped to the width, not cut at it
    words = " ".join(shown.split())
    assert "fixture:echo changed: description, input_schema" in words
    # A few words changed deep inside a long description: marked, with the rest of it whole around them.
    assert (
        "description Echo the text back, exactly as it was given, so that a client can check the round trip "
        "through the gateway. It keeps whitespace and line breaks and never changes the case of a letter. It "
        "answers with one text block. It [-never-]{+also+} reads [-or-]{+and+} sends local files. Use it to test "
        "connections, not to store or transform data, and expect it to answer within a second. input_schema"
    ) in words
    # Inside the schema: a changed word in a property's description, and a property added.
    assert '"description": "The text to echo back, up to [-1000-]{+5000+} characters long.",' in words
    assert '{+"path": {+} {+"type": "string"+} {+},+}' in words


async def test_a_held_tool_is_warned_about_once_per_command(tmp_path: Path) -> None:
    async with Gateway(load_config(write_config(tmp_path, poisoned=False, twin=True))):
        pass
    poisoned = str(write_config(tmp_path, poisoned=True, twin=True))
    for command in (["tools"], ["tools", "pending"]):
        code, _, logged = await piped_cli(*command, "--config", poisoned)
        assert code == 0 and logged.count("tool fixture:echo changed") == 1, logged
