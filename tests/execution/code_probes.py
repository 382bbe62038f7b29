"""What the code-mode security tests of every runtime share (the `listener` fixture is in conftest.py)."""

from __future__ import annotations

import socket


def accepted(server: socket.socket) -> bool:
    """Whether anything connected to `server` (the connection, if any, is closed)."""
    try:
        server.accept()[0].close()
        return True
    except BlockingIOError:
        return False
