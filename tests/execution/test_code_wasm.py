"""The wasm runtime (Pyodide in Node, inside the bwrap profile) contains what a hostile program tries, from Python
and through Pyodide's `js` module (Node's process, require, fetch, globalThis, `.constructor.constructor`): each
test checks that the effect did not happen (no connection reached the test's listener, the canary file and
environment variable unchanged and unseen), and that the caller gets one sentence saying what happened."""

from __future__ import annotations

import os
import shutil
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from aperture.execution.code import CodeExecutor, CodeSettings, Limits, Outcome
from aperture.execution.code.wasm import WasmRuntime
from tests.execution.code_probes import Calls, accepted, canary_process, kill_program, sandboxes_left

_PROBLEM = WasmRuntime().problem()
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(_PROBLEM is not None, reason=f"the wasm runtime cannot run here: {_PROBLEM}"),
]

CANARY = "aperture-canary-wasm-5d1e"
SHORT = Limits(timeout=5.0, cpu_seconds=5)


@pytest.fixture
async def runtime() -> AsyncIterator[WasmRuntime]:
    runtime = WasmRuntime(pool_size=0)
    yield runtime
    await runtime.aclose()


async def run(runtime: WasmRuntime, code: str, limits: Limits = SHORT, calls: Calls | None = None) -> Outcome:
    return await runtime.run(textwrap.dedent(code), limits, calls or Calls())


def no_sandbox_left() -> bool:
    """No interpreter this test started is left (bubblewrap's --die-with-parent takes a moment)."""
    return not sandboxes_left(b"wasm_host.mjs", wait=2.0)


async def test_value_stdout_tools_and_tool_errors_as_in_the_bwrap_runtime(runtime: WasmRuntime) -> None:
    calls = Calls()
    code = """
    print('hello')
    hits = tools.search('convert units', limit=3)
    out = tools.run('a:b', n=1)
    try:
        tools.run('bad:tool')
    except ToolError as e:
        failed = str(e)
    [hits['method'], out['echo']['args'], failed]
    """
    outcome = await run(runtime, code, calls=calls)
    assert outcome.value == ["search", {"n": 1}, "No tool 'bad:tool'."], outcome
    assert outcome.stdout == "hello\n"
    assert [c.ok for c in outcome.calls] == [True, True, False]
    assert [m for m, _ in calls.seen] == ["search", "run", "run"]
    outcome = await run(runtime, "result({'rows': [1, 2]})\nraise SystemExit('not reached')")
    assert outcome.value == {"rows": [1, 2]}
    outcome = await run(runtime, "x = 1\nraise ValueError('boom')")
    assert outcome.error == "The program failed: ValueError: boom (line 2)"
    assert no_sandbox_left()


async def test_a_warm_interpreter_answers_fast_and_runs_only_once() -> None:
    runtime = WasmRuntime(pool_size=1)
    try:
        await runtime.warm(SHORT)
        (first,) = next(iter(runtime._pool.values()))
        assert await first.wait_ready(30)  # (loaded: the run below does not wait for it)
        started = time.perf_counter()
        outcome = await runtime.run("1 + 1", SHORT, Calls())
        elapsed = (time.perf_counter() - started) * 1000
        assert outcome.value == 2, outcome
        assert elapsed < 1000, elapsed  # a cold start takes about 2.5 s here
        pool = next(iter(runtime._pool.values()))
        assert len(pool) == 1 and pool[0] is not first  # refilled with a new interpreter
        assert first.process.returncode is not None  # the one that ran is gone
    finally:
        await runtime.aclose()
    assert no_sandbox_left()


async def test_node_globals_are_fenced_off_from_js_and_pyodide(runtime: WasmRuntime, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = f"""
    import js, pyodide_js
    from pyodide.code import run_js
    out = {{}}
    def probe(name, f):
        try:
            out[name] = repr(f())
        except BaseException as e:
            out[name] = type(e).__name__
    probe('process', lambda: js.process.env)
    probe('require', lambda: js.require('child_process'))
    probe('fetch', lambda: js.fetch('http://127.0.0.1:{port}/'))
    probe('globalThis', lambda: js.globalThis.process)
    probe('Function', lambda: js.Function('return [typeof process, typeof require, typeof fetch].join()')())
    probe('ctorctor', lambda: js.Object.constructor.constructor('return typeof process')())
    probe('run_js', lambda: run_js('typeof process + typeof globalThis.process'))
    probe('bridge', lambda: tools._call.__globals__['_send_frame'].constructor)
    probe('module', lambda: pyodide_js._module.process)
    probe('import', lambda: run_js("import('node:net').then(n => n.connect({port}, '127.0.0.1'))"))
    probe('bind', lambda: run_js("Function.prototype.constructor('return this')()").process)
    out
    """
    outcome = await run(runtime, code)
    assert outcome.error is None, outcome
    out = outcome.value
    assert out["process"] == out["require"] == out["fetch"] == out["globalThis"] == "AttributeError", out
    assert out["Function"] == "'undefined,undefined,undefined'"
    assert out["ctorctor"] == out["run_js"] == "'undefinedundefined'" or out["ctorctor"] == "'undefined'", out
    assert out["bridge"] == "AttributeError"
    assert out["bind"] == "AttributeError"
    assert not accepted(listener)  # (the dynamic import's callback never ran: the interpreter exits first)
    assert no_sandbox_left()


async def test_no_tcp_to_127_0_0_1_or_ipv6_loopback_nor_dns(runtime: WasmRuntime, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    servers = [listener]
    try:
        v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        v6.setblocking(False)
        servers.append(v6)
    except OSError:
        v6 = None
    targets = [("127.0.0.1", port), ("127.0.0.1", 6379)] + ([("::1", v6.getsockname()[1])] if v6 else [])
    code = f"""
    import socket
    out = []
    for host, port in {targets!r}:
        try:
            socket.create_connection((host, port), timeout=1)
            out.append('connected')
        except BaseException as e:
            out.append(type(e).__name__)
    try:
        out.append(socket.getaddrinfo('example.com', 443))
    except BaseException as e:
        out.append(type(e).__name__)
    out
    """
    try:
        outcome = await run(runtime, code)
        assert outcome.error is None, outcome
        *connections, resolved = outcome.value
        assert "connected" not in connections and all(isinstance(v, str) for v in connections), outcome
        # Emscripten answers getaddrinfo with a made-up address of its own (172.29.x.x) without asking anyone
        assert isinstance(resolved, str) or resolved[0][4][0].startswith("172.29."), resolved
        assert not any(accepted(server) for server in servers)
    finally:
        if v6 is not None:
            v6.close()


async def test_the_gateways_environment_and_files_are_unseen(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APERTURE_CANARY", CANARY)
    canary = tmp_path / "aperture.yaml"
    canary.write_text(CANARY)
    monkeypatch.chdir(tmp_path)
    code = f"""
    import os, pyodide_js
    out = [dict(os.environ)]
    for path in ({str(canary)!r}, 'aperture.yaml', '/proc/1/environ', '/proc/self/environ', '/etc/shadow'):
        try:
            out.append(open(path).read())
        except BaseException as e:
            out.append(type(e).__name__)
    try:  # Pyodide can mount a host folder: the permission model and the sandbox leave nothing there to read
        pyodide_js.mountNodeFS('/host', {str(tmp_path)!r})
        out.append(os.listdir('/host'))
    except BaseException as e:
        out.append(type(e).__name__)
    out
    """
    outcome = await run(runtime, code)
    assert CANARY not in repr(outcome) and "APERTURE_CANARY" not in repr(outcome), outcome
    assert os.environ["APERTURE_CANARY"] == CANARY and canary.read_text() == CANARY


async def test_writes_outside_tmp_leave_the_canary(runtime: WasmRuntime, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    code = f"""
    import pyodide_js
    out = []
    try:
        pyodide_js.mountNodeFS('/host', {str(tmp_path)!r})
        open('/host/canary.txt', 'w').write('changed')
        out.append('written')
    except BaseException as e:
        out.append(type(e).__name__)
    open('/tmp/ok', 'w').write('fine')  # (the in-memory file system)
    out
    """
    outcome = await run(runtime, code)
    assert outcome.error is None and "written" not in outcome.value, outcome
    assert canary.read_text() == CANARY


async def test_a_spinning_program_is_killed_at_its_time_limit(runtime: WasmRuntime) -> None:
    outcome = await run(runtime, "while True: pass", Limits(timeout=0.5))
    assert outcome.stopped == "timeout"
    assert outcome.error is not None and outcome.error.startswith("The program was stopped at its time limit (500 ms)")
    assert no_sandbox_left()


async def test_printing_a_gigabyte_is_cut_off(runtime: WasmRuntime) -> None:
    outcome = await run(runtime, "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024): sys.stdout.write(chunk)")
    assert outcome.stopped == "output", outcome.error
    assert len(outcome.stdout) == SHORT.max_output_bytes
    assert outcome.error is not None and outcome.error.startswith("The program printed more than 1048576 bytes")


async def test_allocating_a_lot_is_limited(runtime: WasmRuntime) -> None:
    outcome = await run(runtime, "x = bytearray(10 * 1024**3)")  # (more than 32-bit wasm can address)
    assert outcome.error is not None and "OverflowError" in outcome.error, outcome
    outcome = await run(runtime, "x = bytearray(1536 * 2**20)")
    assert outcome.error is not None and "MemoryError" in outcome.error, outcome
    outcome = await run(runtime, "chunks = [bytearray(64 * 2**20) for _ in range(64)]\nlen(chunks)")
    assert outcome.value is None and outcome.error is not None, outcome  # 4 GB: past the 512 MB data limit
    assert no_sandbox_left()


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        ("'x' * (5 * 2**20)", "bridge message of"),
        ("'hello'", "not JSON"),
        ("'[]'", "not a JSON object"),
        ('\'{"op":"call","method":"x"}\'', "unknown bridge message"),
    ],
    ids=["oversized", "malformed", "not-an-object", "forged"],
)
async def test_forged_bridge_frames_end_the_execution(runtime: WasmRuntime, frame: str, said: str) -> None:
    calls = Calls()
    code = f"tools._call.__globals__['_send_frame']({frame})\nimport time\ntime.sleep(5)"
    outcome = await run(runtime, code, calls=calls)
    assert outcome.stopped == "bridge", outcome
    assert said in (outcome.error or "")
    assert calls.seen == []


async def test_an_unavailable_runtime_says_what_is_missing() -> None:
    outcome = await WasmRuntime(pyodide="/nonexistent").run("1", SHORT, Calls())
    assert outcome.error == (
        "Code execution is unavailable: the wasm runtime cannot run here (npm's pyodide package not found "
        "(node_modules/pyodide): install it in the Aperture checkout with: npm install (package.json lists "
        "pyodide))."
    )
    assert WasmRuntime(node="/nonexistent/node").problem() == (
        "/nonexistent/node not found: install Node.js 20 or newer (Debian/Ubuntu: apt-get install nodejs)"
    )


async def test_the_gateway_loads_its_pool_at_start_and_kills_it_on_exit(tmp_path: Path) -> None:
    from aperture.config import parse_config
    from aperture.execution import CallContext
    from aperture.gateway import META_TOOLS_BY_NAME, Gateway

    config = parse_config({"execution": {"code": {"enabled": True, "runtime": "wasm", "pool_size": 1}}})
    async with Gateway(config) as gw:
        assert gw.code is not None and isinstance(gw.code.runtime, WasmRuntime)
        runtime = gw.code.runtime
        deadline = time.monotonic() + 30
        while not runtime.waiting and time.monotonic() < deadline:  # loading started with the gateway
            await anyio.sleep(0.05)
        (warm,) = runtime.waiting
        answer = await META_TOOLS_BY_NAME["execute_code"].call(gw, CallContext(), {"code": "6 * 7"})
        assert isinstance(answer, Outcome) and answer.value == 42, answer
        assert warm not in runtime.waiting  # each interpreter runs one program, then is gone
        while not runtime.waiting and time.monotonic() < deadline:  # and another one loads
            await anyio.sleep(0.05)
        waiting = runtime.waiting
    assert waiting and not runtime.waiting
    for pid in waiting:  # killed with the gateway, not left to --die-with-parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_checkout_under_tmp_is_not_hidden_by_the_sandboxes_own_tmp(tmp_path: Path) -> None:
    # A clone in /tmp (as CI's was) put Pyodide, the host script and the prelude under the path the sandbox
    # mounts its own /tmp on: Node found no host script. They are seen at fixed places inside now.
    installed = WasmRuntime().pyodide
    assert installed is not None
    copy = tmp_path / "node_modules" / "pyodide"
    shutil.copytree(installed, copy)
    runtime = WasmRuntime(pyodide=str(copy), pool_size=0)
    assert str(runtime.pyodide).startswith("/tmp/")
    outcome = await run(runtime, "6 * 7")
    assert outcome.value == 42, outcome


async def test_the_gateway_and_other_processes_cannot_be_signalled(runtime: WasmRuntime) -> None:
    with canary_process() as canary:
        outcome = await run(runtime, kill_program(os.getpid(), canary))
        assert outcome.error is None and "killed" not in outcome.value, outcome


async def test_the_cpu_reported_is_the_programs_not_the_interpreters_load(runtime: WasmRuntime) -> None:
    idle = await run(runtime, "1 + 1")
    busy = await run(runtime, "sum(i * i for i in range(3_000_000))")
    assert idle.value == 2 and busy.value is not None, (idle, busy)
    # Loading Pyodide takes well over a second of CPU in each cold interpreter; 1 + 1 takes next to none.
    assert idle.resources["cpuMs"] < 300 < busy.resources["cpuMs"], (idle.resources, busy.resources)


async def test_several_executions_at_once_wait_their_turn_and_each_gets_its_own_answer() -> None:
    executor = CodeExecutor(CodeSettings(enabled=True, runtime="wasm", concurrency=2, pool_size=2))
    await executor.start()
    outcomes: dict[int, Outcome] = {}

    async def one(n: int) -> None:
        outcomes[n] = await executor.run(f"x = {n}\nprint(x)\nx * 10", SHORT, Calls())

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for n in range(6):
                    group.start_soon(one, n)
    finally:
        await executor.aclose()
    assert {n: (o.value, o.stdout) for n, o in outcomes.items()} == {n: (n * 10, f"{n}\n") for n in range(6)}
    assert no_sandbox_left()
