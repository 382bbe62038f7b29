"""Fixtures of the execution tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.execution import code_probes


@pytest.fixture(autouse=True)
def _test_start() -> None:
    """Sandbox censuses count only what started during the test (code_probes.sandboxes_left)."""
    code_probes.mark_test_start()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 that a sandboxed program tries to reach (non-blocking: `accepted` polls it)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()
