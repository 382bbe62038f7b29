"""The in-sandbox bootstrap every runtime starts: it reads the program from the bridge (fd 3), gives it a
synchronous `tools` object and `result()`, runs it, and sends back its value. Runs as a script in the
sandbox's interpreter (`python -I -S -c SOURCE`), so it imports only the standard library."""

from __future__ import annotations

import ast
import json
import os
import struct
import sys
import time
import traceback

try:
    import resource
except ImportError:  # (Pyodide has no resource module)
    resource = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing itself is not imported: it costs the sandbox's start a few milliseconds)
    from typing import Any, NoReturn

_BRIDGE = int(sys.argv[1]) if len(sys.argv) > 1 else 3  # the runtime says which fd it passed
_HEADER = struct.Struct(">I")
_MAX_FRAME = 16 * 1024 * 1024  # what the prelude accepts from the host; the host enforces its own caps


def _read_exact(count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = os.read(_BRIDGE, count - len(data))
        if not chunk:
            raise SystemExit("the gateway closed the bridge")
        data += chunk
    return data


def _receive_frame() -> bytes | str:
    (size,) = _HEADER.unpack(_read_exact(_HEADER.size))
    if size > _MAX_FRAME:
        raise SystemExit("the gateway sent an oversized frame")
    return _read_exact(size)


def _send_frame(text: str) -> None:
    body = text.encode()
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(_BRIDGE, view) :]


# A runtime whose interpreter has no file descriptors (wasm) replaces _receive_frame and _send_frame with its
# own synchronous functions of the same shape (a frame's JSON text in and out).


def _receive() -> Any:
    return json.loads(_receive_frame())


def _send(message: dict[str, Any]) -> None:
    _send_frame(json.dumps(message, default=repr, ensure_ascii=False))


class ToolError(Exception):
    """A bridged call that failed: the gateway's message says why and what to do."""


class _Tools:
    """The gateway's tools, as the caller of execute_code may use them."""

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        _send({"op": "call", "method": method, "params": params})
        reply = _receive()
        if not reply.get("ok"):
            raise ToolError(reply.get("error", "the call failed"))
        return reply.get("value")

    def search(self, query: str, limit: int = 10) -> Any:
        """Tools for a task, best first: a list of {id, description, ...}."""
        return self._call("search", {"query": query, "limit": limit})

    def describe(self, tool_id: str, detail_level: str = "schema") -> Any:
        """A tool's documentation, with its input schema."""
        return self._call("describe", {"tool_id": tool_id, "detail_level": detail_level})

    def run(self, tool_id: str, **args: Any) -> Any:
        """Run a tool: its structured result, else its text; raises ToolError when it fails."""
        return self._call("run", {"tool_id": tool_id, "args": args})


class _Result(BaseException):
    def __init__(self, value: Any) -> None:
        self.value = value


def result(value: Any) -> NoReturn:
    """End the program with `value` as its result."""
    raise _Result(value)


def _run(code: str) -> Any:
    tree = ast.parse(code, "<program>")
    tail = None
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
        tail = ast.Expression(last.value)
    scope: dict[str, Any] = {"__name__": "__main__", "tools": _Tools(), "result": result, "ToolError": ToolError}
    exec(compile(tree, "<program>", "exec"), scope)
    return eval(compile(tail, "<program>", "eval"), scope) if tail is not None else None


def _cpu_ms() -> float:
    if resource is None:
        return time.process_time() * 1000
    own = resource.getrusage(resource.RUSAGE_SELF)
    return (own.ru_utime + own.ru_stime) * 1000


_BEGUN = 0.0  # the CPU time spent before the program arrived (loading the interpreter): not the program's


def _usage() -> dict[str, Any]:
    spent = {"cpuMs": round(max(0.0, _cpu_ms() - _BEGUN), 1)}
    if resource is not None:
        spent["maxRssKb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return spent


def _main() -> None:
    global _BEGUN
    start = _receive()
    _BEGUN = _cpu_ms()
    try:
        value = _run(start["code"])
    except _Result as done:
        value = done.value
    except SyntaxError as error:
        _send({"op": "done", "ok": False, "error": f"SyntaxError: {error.msg} (line {error.lineno})", **_usage()})
        return
    except BaseException as error:  # the program's own failure, reported to its author
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<program>"]
        where = f" (line {frames[-1].lineno})" if frames else ""
        text = f"{type(error).__name__}: {error}{where}"
        _send({"op": "done", "ok": False, "error": text, **_usage()})
        return
    sys.stdout.flush()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    _send({"op": "done", "ok": True, "value": value, **_usage()})


if __name__ == "__main__":
    _main()
