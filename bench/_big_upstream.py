"""A stdio MCP upstream for bench/upstream_output.py, written as plain JSON-RPC lines (no SDK) so that the
size and pace of its answers are exactly what the benchmark asks for.

Tools: `echo(text)`, and `big(megabytes)`: one text block of that many MiB, written 64 KiB at a time.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [
    {
        "name": "echo",
        "description": "Echo the text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {
        "name": "big",
        "description": "Answer with a text of `megabytes` MiB.",
        "inputSchema": {"type": "object", "properties": {"megabytes": {"type": "integer"}}},
    },
]
CHUNK = b"x" * 65536


def write(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


def big(request_id: Any, megabytes: int) -> None:
    out = sys.stdout.buffer
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": ""}]}})
    opening, closing = head.split('""')
    out.write(opening.encode() + b'"')
    for _ in range(megabytes * 16):
        out.write(CHUNK)
    out.write(b'"' + closing.encode() + b"\n")
    out.flush()


def main() -> None:
    for line in sys.stdin.buffer:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification
        if method == "initialize":
            result = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "big-upstream", "version": "1.0"},
            }
            write({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "tools/list":
            write({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "tools/call" and message["params"]["name"] == "big":
            big(request_id, int(message["params"]["arguments"]["megabytes"]))
        elif method == "tools/call":
            text = str(message["params"].get("arguments", {}).get("text", ""))
            write({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}})
        else:
            write({"jsonrpc": "2.0", "id": request_id, "result": {}})


if __name__ == "__main__":
    main()
