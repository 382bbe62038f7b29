"""Resident memory of `aperture serve --transport http` over the peers' upstreams (server-everything and
mcp-server-time, as in ../shared/bench-peers), per search strategy, side by side in one run.

Each row starts its own gateway from a fresh directory (the hybrid row makes the small embedding model in the
user cache directory if it is not there yet, in a child process whose memory is not the gateway's), waits until
the semantic index is built (it loads in the background: searches say so until then) and its RSS has settled,
then sends `--searches` task-length `search_tools` calls over one MCP session. Reports RSS (VmRSS) after the
start and after the searches, and the peak (VmHWM). Prints a table and writes bench/results/memory.json.

    .venv/bin/python -m bench.memory [--searches 30] [--strategies bm25,hybrid]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVERYTHING = ROOT / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
QUERY = "what time is it in Tokyo right now, and convert that to the time zone of New York for a meeting"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
console = Console()


def _status(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def _settled(pid: int, *, still: float = 4.0, within: float = 90.0) -> int:
    """RSS once it has not changed for `still` seconds (the semantic index loads and embeds in the background
    after the start), at most `within` seconds from now."""
    deadline = time.monotonic() + within
    last, since = _status(pid, "VmRSS"), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < still:
        time.sleep(0.25)
        now = _status(pid, "VmRSS")
        if now != last:
            last, since = now, time.monotonic()
    return last


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rpc(http: httpx2.Client, url: str, method: str, params: dict[str, Any], n: int) -> Any:
    response = http.post(url, json={"jsonrpc": "2.0", "id": n, "method": method, "params": params}, headers=HEADERS)
    response.raise_for_status()
    return response


def _result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON object a `search_tools` call answered (from a JSON or an event-stream response)."""
    body = response.text
    if "text/event-stream" in response.headers.get("content-type", ""):
        body = next(line[6:] for line in body.splitlines() if line.startswith("data: "))
    result: dict[str, Any] = json.loads(json.loads(body)["result"]["content"][0]["text"])
    return result


def measure(strategy: str, searches: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aperture-memory-") as work:
        config = Path(work) / "aperture.yaml"
        backends = [
            {"name": "time", "kind": "mcp", "command": [str(ROOT / ".venv/bin/python"), "-m", "mcp_server_time"]}
        ]
        if EVERYTHING.is_file():
            backends.append({"name": "everything", "kind": "mcp", "command": ["node", str(EVERYTHING), "stdio"]})
        config.write_text(yaml.safe_dump({"search": {"strategy": strategy}, "backends": backends}))
        port = _free_port()
        command = [str(ROOT / ".venv/bin/aperture"), "serve", "--transport", "http", "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            with httpx2.Client(timeout=60) as http:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                    except httpx2.HTTPError:
                        pass
                    time.sleep(0.2)
                init = {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "m", "version": "0"},
                }
                session = _rpc(http, url, "initialize", init, 1).headers.get("mcp-session-id")
                if session:
                    HEADERS["mcp-session-id"] = session
                http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=HEADERS)
                search = {"name": "search_tools", "arguments": {"query": QUERY}}
                # A search answered by the stand-in (BM25) while the semantic index is built says so ("strategy").
                while "strategy" in _result(_rpc(http, url, "tools/call", search, 2)) and time.monotonic() < deadline:
                    time.sleep(0.25)
                started = _settled(process.pid)
                for n in range(searches):
                    _rpc(http, url, "tools/call", search, 3 + n)
                return {
                    "strategy": strategy,
                    "rss_after_start_mb": started,
                    "rss_after_searches_mb": _status(process.pid, "VmRSS"),
                    "peak_mb": _status(process.pid, "VmHWM"),
                    "searches": searches,
                }
        finally:
            HEADERS.pop("mcp-session-id", None)
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=30, help="search_tools calls after the start")
    parser.add_argument("--strategies", default="bm25,hybrid", help="comma-separated search strategies")
    args = parser.parse_args()
    rows = []
    for strategy in args.strategies.split(","):
        with console.status(f"{strategy}: starting a gateway and searching"):
            rows.append(measure(strategy, args.searches))
    table = Table(title=f"aperture serve --transport http, RSS in MB ({args.searches} searches)")
    for column in ("strategy", "after start", "after searches", "peak"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in rows:
        table.add_row(
            row["strategy"], *(str(row[k]) for k in ("rss_after_start_mb", "rss_after_searches_mb", "peak_mb"))
        )
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": platform.machine(), "python": platform.python_version(), "rows": rows}
    (RESULTS / "memory.json").write_text(json.dumps(out, indent=2))
    console.print(f"wrote {RESULTS / 'memory.json'}")


if __name__ == "__main__":
    main()
