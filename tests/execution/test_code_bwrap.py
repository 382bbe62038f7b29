"""The bwrap runtime contains what a hostile program tries: each test checks that the effect did not happen
(no connection reached the test's listener, the canary file and environment variable unchanged and unseen),
and that the caller gets one sentence saying what happened."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from aperture.execution.code import BwrapRuntime, Limits, Outcome
from aperture.execution.code.cgroups import CPU_SHARES, PIDS_PER_SANDBOX, sandbox_cgroups
from tests.execution.code_probes import Calls, accepted, canary_process, kill_program, sandboxes_left
from tests.ops.test_audit import free_port, redis_server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(BwrapRuntime().problem() is not None, reason="no bubblewrap here (make test installs it)"),
]

CANARY = "aperture-canary-7f3a9c"
SHORT = Limits(timeout=3.0, cpu_seconds=3)


async def run(code: str, limits: Limits = SHORT, calls: Calls | None = None) -> Outcome:
    return await BwrapRuntime().run(textwrap.dedent(code), limits, calls or Calls())


def no_sandbox_left() -> bool:
    """No sandbox this test started is left (its command line carries the prelude, hence `_BRIDGE`)."""
    return not sandboxes_left(b"_BRIDGE")


async def test_the_final_expression_is_the_value_and_stdout_is_kept() -> None:
    outcome = await run("print('hello')\nx = 20\nx * 2 + 2")
    assert (outcome.value, outcome.error, outcome.stdout) == (42, None, "hello\n")
    assert outcome.resources["cpuMs"] > 0
    assert no_sandbox_left()


async def test_result_ends_the_program_with_its_value() -> None:
    outcome = await run("result({'rows': [1, 2]})\nraise SystemExit('not reached')")
    assert outcome.value == {"rows": [1, 2]}


async def test_tools_calls_are_bridged_in_order_and_failures_raise_tool_error() -> None:
    calls = Calls()
    code = """
    hits = tools.search('convert units', limit=3)
    doc = tools.describe('a:b')
    out = tools.run('a:b', n=1)
    try:
        tools.run('bad:tool')
    except ToolError as e:
        failed = str(e)
    [hits['method'], doc['echo']['tool_id'], out['echo']['args'], failed]
    """
    outcome = await run(code, calls=calls)
    assert outcome.value == ["search", "a:b", {"n": 1}, "No tool 'bad:tool'."]
    assert [m for m, _ in calls.seen] == ["search", "describe", "run", "run"]
    assert [c.ok for c in outcome.calls] == [True, True, True, False]
    assert outcome.calls[2].to_dict()["id"] == "a:b"


async def test_a_failing_program_is_reported_with_its_line() -> None:
    outcome = await run("x = 1\nraise ValueError('boom')")
    assert outcome.error == "The program failed: ValueError: boom (line 2)"


async def test_the_tool_call_cap_stops_the_program() -> None:
    calls = Calls()
    outcome = await run("for i in range(10): tools.run('a:b', i=i)", Limits(timeout=3, max_tool_calls=3), calls)
    assert outcome.stopped == "tool_calls" and "limit of 3 tool calls" in (outcome.error or "")
    assert len(calls.seen) == 3


async def connections_received(redis: aioredis.Redis) -> int:
    info = await redis.info("stats")
    return int(info["total_connections_received"])


async def test_no_tcp_to_a_listener_on_127_0_0_1_nor_to_redis(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    redis_port = free_port()
    async with redis_server(redis_port):
        redis = aioredis.Redis(port=redis_port)
        try:
            before = await connections_received(redis)  # (this client's own connection, kept open)
            code = f"""
            import socket
            out = []
            for port in ({port}, {redis_port}, 6379):
                try:
                    socket.create_connection(('127.0.0.1', port), timeout=1).sendall(b'SET pwned 1\\r\\n')
                    out.append('connected')
                except OSError as e:
                    out.append(type(e).__name__)
            out
            """
            outcome = await run(code)
            assert outcome.value == ["PermissionError"] * 3
            assert not accepted(listener)
            assert await connections_received(redis) == before
            assert await redis.get("pwned") is None
        finally:
            await redis.aclose()


async def test_no_tcp_to_ipv6_loopback() -> None:
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.setblocking(False)
    with server:
        outcome = await run(f"import socket\nsocket.create_connection(('::1', {server.getsockname()[1]}), timeout=1)")
        assert outcome.error is not None and "PermissionError" in outcome.error
        assert not accepted(server)


async def test_no_name_resolution_nor_udp_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        code = f"""
        import socket
        out = []
        try:
            socket.getaddrinfo('example.com', 443)
            out.append('resolved')
        except OSError as e:
            out.append(type(e).__name__)
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {udp.getsockname()[1]}))
            out.append('sent')
        except OSError as e:
            out.append(type(e).__name__)
        out
        """
        outcome = await run(code)
        assert outcome.value == ["gaierror", "PermissionError"]
        with pytest.raises(BlockingIOError):
            udp.recv(16)


async def test_a_fork_bomb_cannot_fork() -> None:
    outcome = await run("import os\nwhile True: os.fork()")
    assert outcome.error == "The program failed: PermissionError: [Errno 1] Operation not permitted (line 2)"
    outcome = await run("import subprocess\nsubprocess.run(['/bin/true'])")
    assert outcome.error is not None and outcome.stopped is None
    code = """
    import os
    for _ in range(50):
        try:
            os.fork() or os._exit(0)
        except OSError:
            pass
    sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    """
    outcome = await run(code)
    assert outcome.value == [1, 2]  # bwrap's init and the program: no child ever ran
    assert no_sandbox_left()


async def test_a_sandbox_outlives_the_worker_thread_that_was_busy_when_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bwrap's --die-with-parent kills the sandbox when the thread that started it exits, and AnyIO retires worker
    threads idle for 10 s (here 0.1 s) whenever another call needs one: a busy gateway killed every execution
    longer than that ("killed by signal 9"). Sandboxes start from a thread that lives as long as the gateway."""
    from anyio._backends import _asyncio

    monkeypatch.setattr(_asyncio.WorkerThread, "MAX_IDLE_TIME", 0.1)
    outcome: Outcome | None = None

    async def execution() -> None:
        nonlocal outcome
        outcome = await run("import time\ntime.sleep(1.5)\n'still here'")

    async with anyio.create_task_group() as group:
        group.start_soon(execution)
        while outcome is None:  # the gateway's other calls, each on a worker thread
            await anyio.to_thread.run_sync(time.sleep, 0.05)
            await anyio.sleep(0.15)
    assert outcome is not None
    assert (outcome.value, outcome.error) == ("still here", None)


@pytest.mark.skipif(sandbox_cgroups() is None, reason="no writable cgroup v1 cpu or pids hierarchy here")
async def test_where_cgroups_can_be_made_every_sandbox_process_is_in_them_and_its_tasks_are_capped() -> None:
    """Seen from outside while the program runs: each of its processes (bwrap's and the interpreter) in the
    sandboxes' CPU group at a nice-19 weight and in a pids group of its own capped at PIDS_PER_SANDBOX; a program
    starting threads without end gets an error inside, not the machine's tasks."""
    groups = sandbox_cgroups()
    assert groups is not None
    seen: list[dict[str, str]] = []
    outcome: Outcome | None = None

    async def execution() -> None:
        nonlocal outcome
        outcome = await run("import time\ntime.sleep(1)\n1")

    async with anyio.create_task_group() as group:
        group.start_soon(execution)
        while not seen and outcome is None:
            await anyio.sleep(0.05)
            for pid in sandboxes_left(b"_BRIDGE"):
                lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                seen.append({line.split(":")[1]: line.split(":")[2] for line in lines})
    assert outcome is not None and outcome.value == 1
    assert len(seen) >= 2  # bwrap's outer process and the sandbox's
    for cgroup in seen:
        assert any(
            path.endswith(f"aperture-{os.getpid()}/sandboxes") for c, path in cgroup.items() if "cpu" in c.split(",")
        )
        (pids,) = [path for c, path in cgroup.items() if "pids" in c.split(",")]
        assert Path(pids).parent.name == f"aperture-sandboxes-{os.getpid()}"
    assert groups.cpu is not None and (groups.cpu / "cpu.shares").read_text().strip() == str(CPU_SHARES)
    code = """
    import threading, time
    threading.stack_size(64 * 1024)  # (so that the address-space limit is not what stops them)
    started = 0
    try:
        for _ in range(1000):
            threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
            started += 1
    except RuntimeError as e:
        failed = str(e)
    [started, failed]
    """
    outcome = await run(code)
    assert outcome.error is None, outcome.error
    started, failed = outcome.value
    assert PIDS_PER_SANDBOX - 10 < started < PIDS_PER_SANDBOX and "thread" in failed
    assert no_sandbox_left()


_UNMOVABLE_GATEWAY = """
from aperture.execution.code import cgroups
real_set = cgroups._set
cgroups._set = lambda group, name, value: False if name == "cgroup.procs" else real_set(group, name, value)
sandboxes = cgroups._cpu_groups()
parent = sandboxes.parent
print(parent.name, (parent / "cpu.shares").read_text().strip(), (sandboxes / "cpu.shares").read_text().strip(),
      (parent / "gateway").exists())
"""


@pytest.mark.skipif(getattr(sandbox_cgroups(), "cpu", None) is None, reason="no writable cgroup v1 cpu hierarchy")
def test_a_gateway_that_cannot_join_its_own_group_keeps_its_sandboxes_at_the_lowest_weight() -> None:
    """(In a process of its own: the fallback weighs its whole group down.) Without the gateway beside them, the
    sandboxes' group must not weigh as much as a session: the group they are in is set to `CPU_SHARES` itself."""
    done = subprocess.run([sys.executable, "-c", _UNMOVABLE_GATEWAY], capture_output=True, text=True, check=True)
    name, parent_shares, sandbox_shares, has_gateway = done.stdout.split()
    assert name.startswith("aperture-") and (parent_shares, sandbox_shares) == (str(CPU_SHARES), str(CPU_SHARES))
    assert has_gateway == "False"


@pytest.mark.skipif(getattr(sandbox_cgroups(), "cpu", None) is None, reason="no writable cgroup v1 cpu hierarchy")
def test_the_groups_a_killed_gateway_left_are_removed_whole_by_the_next_one() -> None:
    """A gateway killed before its exit handlers ran leaves its groups, with those of gateways it started nested in
    them; the next gateway to make its groups beside them removes the whole tree."""
    groups = sandbox_cgroups()
    assert groups is not None and groups.cpu is not None
    here = groups.cpu.parent / "gateway"  # this process's own group: a child process starts in it
    stale = here / "aperture-99999999"  # (no such pid)
    (stale / "gateway" / "aperture-99999998" / "sandboxes").mkdir(parents=True)
    (stale / "sandboxes").mkdir()
    make = (
        "import os; from aperture.execution.code import cgroups; cgroups._make_group('cpu', 'aperture-probe').rmdir()"
    )
    subprocess.run([sys.executable, "-c", make], check=True)
    assert not stale.exists()


@pytest.mark.skipif(getattr(sandbox_cgroups(), "cpu", None) is None, reason="no writable cgroup v1 cpu hierarchy")
async def test_on_a_machine_busy_with_other_work_an_execution_still_gets_the_gateways_share() -> None:
    """Sandboxes yield to the gateway, not to every process of the machine: with four CPU-bound processes of
    someone else's running (each in its own session, outside the gateway's groups), a program needing a few
    hundred ms of CPU still finishes well within its limit. (As siblings of every process at a nice-19 weight,
    such a program got about 1% of a core, and the interpreter did not even start within 30 s.)"""
    groups = sandbox_cgroups()
    assert groups is not None and groups.cpu is not None
    gateway_group = groups.cpu.parent / "gateway"
    assert str(os.getpid()) in (gateway_group / "cgroup.procs").read_text().split()
    elsewhere = groups.cpu.parent.parent / "cgroup.procs"  # the group the gateway came from
    burn = f'echo $$ > {elsewhere}; exec {sys.executable} -c "while True: pass"'
    burners = [subprocess.Popen(["sh", "-c", burn], start_new_session=True) for _ in range(4)]
    try:
        await anyio.sleep(0.5)
        limits = Limits(timeout=20.0, cpu_seconds=10)
        outcome = await run("sum(i * i for i in range(2_000_000))", limits)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert outcome.error is None, outcome.error
    assert outcome.value == sum(i * i for i in range(2_000_000))
    assert outcome.duration_ms < 15_000


def autogroup_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


async def test_the_sandbox_runs_at_the_lowest_cpu_weight_and_cannot_leave_it() -> None:
    """Nice 19 and, where the kernel groups sessions (autogroup), its session niced too: else a sandbox alone in
    its session weighs as much as the whole gateway. Neither a lower nice nor a new session is open to it (its
    session's nice it can set back to 0 every 100 ms: docs/code-mode.md says so)."""
    code = """
    import os
    tried = []
    for attempt in (lambda: os.nice(-1), os.setsid):
        try:
            attempt()
            tried.append('done')
        except OSError as e:
            tried.append(type(e).__name__)
    autogroup = open('/proc/self/autogroup').read().split() if os.path.exists('/proc/self/autogroup') else []
    [os.nice(0), autogroup[1:], tried]
    """
    outcome = await run(code)
    assert outcome.error is None, outcome.error
    niceness, autogroup, tried = outcome.value
    assert niceness == 19
    if autogroup_enabled():
        assert autogroup == ["nice", "19"]
    assert tried == ["PermissionError", "PermissionError"]


async def test_allocating_10_gb_fails_inside_the_sandbox() -> None:
    outcome = await run("x = bytearray(10 * 1024**3)")
    assert outcome.error == "The program failed: MemoryError:  (line 1)"
    assert outcome.resources["maxRssKb"] * 1024 < SHORT.memory_bytes  # the memory was never had


async def test_the_gateways_environment_is_unseen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APERTURE_CANARY", CANARY)
    code = """
    import os
    seen = [dict(os.environ)]
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode())
            except OSError as e:
                seen.append(type(e).__name__)
    seen
    """
    outcome = await run(code)
    assert outcome.error is None
    assert CANARY not in repr(outcome.value) and "APERTURE_CANARY" not in repr(outcome.value)
    assert os.getcwd() not in repr(outcome.value)  # (no PWD of the gateway's either, e.g. from a shell on the way)
    assert os.environ["APERTURE_CANARY"] == CANARY


@pytest.mark.parametrize("path", ["cwd", "config", "/etc/shadow", "/etc/passwd", "/home"])
async def test_gateway_files_are_not_there(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "aperture.yaml"
    canary.write_text(CANARY)
    monkeypatch.chdir(tmp_path)
    target = {"cwd": str(Path.cwd() / "aperture.yaml"), "config": str(canary)}.get(path, path)
    outcome = await run(f"import os\nopen({target!r}).read() if os.path.isfile({target!r}) else os.listdir({target!r})")
    assert outcome.error is not None and "FileNotFoundError" in outcome.error, outcome
    assert CANARY not in repr(outcome)


async def test_writes_outside_the_sandbox_tmp_fail_and_leave_the_canary(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    code = f"""
    out = []
    for path in ({str(canary)!r}, '/x', '/usr/lib/x', '/tmp/ok'):
        try:
            open(path, 'w').write('changed')
            out.append('written')
        except OSError as e:
            out.append(type(e).__name__)
    out
    """
    outcome = await run(code)
    assert outcome.value == ["FileNotFoundError", "OSError", "OSError", "written"]
    assert canary.read_text() == CANARY


async def test_the_gateway_and_other_processes_cannot_be_signalled() -> None:
    with canary_process() as canary:
        outcome = await run(kill_program(os.getpid(), canary))
        assert outcome.value == ["ProcessLookupError", "ProcessLookupError"]


async def test_a_spinning_program_is_killed_at_its_time_limit() -> None:
    outcome = await run("while True: pass", Limits(timeout=0.5))
    assert outcome.stopped == "timeout"
    assert outcome.error == (
        "The program was stopped at its time limit (500 ms); make it do less, or give a larger timeout_ms "
        "(at most 60000)."
    )
    assert outcome.duration_ms < 2000
    assert no_sandbox_left()


async def test_printing_a_gigabyte_is_cut_off() -> None:
    outcome = await run("import sys\nchunk = 'x' * 2**20\nfor _ in range(1024): sys.stdout.write(chunk)")
    assert outcome.stopped == "output"
    assert len(outcome.stdout) == SHORT.max_output_bytes
    assert outcome.error is not None and outcome.error.startswith("The program printed more than 1048576 bytes")


async def test_writing_a_10_gb_file_fails_at_the_file_limit() -> None:
    code = "chunk = b'x' * 2**20\nwith open('/tmp/big', 'wb') as f:\n    for _ in range(10 * 1024): f.write(chunk)"
    outcome = await run(code)
    assert outcome.error is not None and ("File too large" in outcome.error or "No space" in outcome.error)
    code = """
    import os
    try:
        with open('/tmp/big', 'wb') as f:
            for _ in range(10 * 1024): f.write(b'x' * 2**20)
    except OSError as e:
        pass
    os.path.getsize('/tmp/big')
    """
    outcome = await run(code)
    assert 0 < outcome.value <= SHORT.file_bytes  # what got written stopped at the limit


async def test_nothing_outlives_the_program() -> None:
    code = """
    import threading, time
    threading.Thread(target=lambda: time.sleep(60)).start()
    'returned'
    """
    outcome = await run(code)
    assert outcome.value == "returned"
    assert no_sandbox_left()


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        ("b'\\xff\\xff\\xff\\xff'", "bridge message of 4294967295 bytes"),
        ("b'\\x00\\x00\\x00\\x05hello'", "not JSON"),
        ("b'\\x00\\x00\\x00\\x02[]'", "not a JSON object"),
        ('b\'\\x00\\x00\\x00\\x1a{"op":"call","method":"x"}\'', "unknown bridge message"),
    ],
    ids=["oversized", "malformed", "not-an-object", "forged"],
)
async def test_forged_bridge_frames_end_the_execution(frame: str, said: str) -> None:
    calls = Calls()
    code = f"import os, sys, time\nos.write(int(sys.argv[-1]), {frame})\ntime.sleep(5)"
    outcome = await run(code, calls=calls)
    assert outcome.stopped == "bridge", outcome
    assert said in (outcome.error or "")
    assert calls.seen == []
