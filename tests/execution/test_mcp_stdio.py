"""Reading an upstream's stdout: lines cut in linear time, the line cap enforced as bytes arrive, and the
answer to a call that timed out dropped as it arrives. The upstreams are real processes."""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from mcp.client._transport import ReadStream
from mcp.shared.message import SessionMessage

from aperture.execution.backends._lines import LineSplitter, LineTooLongError
from aperture.execution.backends.mcp_raw import RawChannel
from aperture.execution.backends.mcp_stdio import ProcessWatch, _loads, stdio_upstream
from tests.conftest import FIXTURES

pytestmark = pytest.mark.anyio

RAW_UPSTREAM = str(FIXTURES / "raw_upstream.py")
MIB = 1024 * 1024


class Peak:
    """The most memory Python allocated while measuring (tracemalloc's peak, less what was there before)."""

    bytes = 0


@contextmanager
def peak_memory() -> Iterator[Peak]:
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    peak = Peak()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1] - before
        if started:
            tracemalloc.stop()


async def drain(reader: ReadStream[SessionMessage | Exception], into: list[object]) -> None:
    async with reader:
        async for message in reader:
            into.append(message)


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"a", b"b", b"c\n"], [b"abc"]),
        ([b"ab", b"\nc", b"d\n", b"\n"], [b"ab", b"cd", b""]),
        ([b"\n\n"], [b"", b""]),
        ([b"abc"], []),
    ],
    ids=["two-in-one-chunk", "one-over-three-chunks", "split-at-newline", "empty-lines", "unfinished"],
)
def test_lines_are_cut_wherever_the_chunks_end(chunks: list[bytes], lines: list[bytes]) -> None:
    splitter = LineSplitter(1024)
    assert [line for chunk in chunks for line in splitter.feed(chunk)] == lines


def test_a_line_of_exactly_the_cap_passes_and_one_byte_more_is_refused_before_it_is_held() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b"0123456789\n") == [b"0123456789"]
    splitter.feed(b"01234")
    splitter.feed(b"56789")
    assert splitter.held == 10
    with pytest.raises(LineTooLongError, match="longer than 10 bytes"):
        splitter.feed(b"a")
    assert splitter.held <= 10


def test_a_long_answer_nobody_waits_for_is_dropped_as_it_arrives() -> None:
    waiting = {"ap-1"}
    splitter = LineSplitter(100 * MIB, abandoned=lambda request_id: request_id not in waiting)
    splitter.feed(b'{"jsonrpc":"2.0","id":"ap-1","result":{"content":[{"type":"text","text":"' + b"x" * 8192)
    assert splitter.held > 8192  # still awaited: kept
    waiting.clear()  # the call timed out
    splitter.feed(b"x" * 65536)
    assert splitter.held == 0
    assert splitter.feed(b'x"}]}}\n{"jsonrpc":"2.0","method":"next"}\n') == [b'{"jsonrpc":"2.0","method":"next"}']
    assert splitter.dropped_lines == 1


async def test_an_endless_line_is_refused_once_past_the_cap_holding_no_more_than_the_cap() -> None:
    watch = ProcessWatch()
    received: list[object] = []
    with anyio.fail_after(30), peak_memory() as peak:
        async with (
            stdio_upstream(sys.executable, [RAW_UPSTREAM, "endless"], watch=watch, max_line_bytes=8 * MIB) as (
                reader,
                _,
            ),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(drain, reader, received)
            await watch.exited.wait()  # the reader stops the process once the line passes the cap
            tg.cancel_scope.cancel()
    assert watch.problem is not None and "sent a line longer than 8388608 bytes" in watch.problem
    assert "max_message_bytes" in watch.problem
    assert peak.bytes < 8 * MIB + 4 * MIB  # the cap, a chunk and some change: never a second copy of the line
    assert received == []


async def test_the_rest_of_an_answer_to_a_cancelled_call_is_dropped_and_the_next_call_is_answered() -> None:
    channel = RawChannel()
    received: list[object] = []
    progressed = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progressed.set()

    async def call_until_progress() -> None:
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_when, progressed, scope)
            await channel.request("tools/call", {"name": "big"}, on_progress=on_progress)

    command = [RAW_UPSTREAM, "late", "48"]
    with anyio.fail_after(30):
        async with (
            stdio_upstream(sys.executable, command, channel=channel) as (reader, _),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(drain, reader, received)
            with peak_memory() as peak:
                await call_until_progress()  # the upstream goes on to send 48 MiB more of its answer
                result = await channel.request("tools/call", {"name": "small"})
            tg.cancel_scope.cancel()
    assert result == {"content": [{"type": "text", "text": "ok"}]}
    assert peak.bytes < 8 * MIB  # 49 MiB went by; the old reader held all of it, twice over
    assert received == []  # the dropped answer reached nobody


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


PADDING = " " * 70_000  # past the size from which large lines take the fast parser


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "\\u00e9\\ud83d\\ude00", "b": [1, -2.5, 1e300, 12345678901234567890123], "c": null}',
        '{"a": {"b": {"c": [true, false, "x\\ny\\t\\"z\\""]}}, "a2": 1}',
        '{"dup": 1, "dup": 2}',
        '{"lone": "\\ud800"}',  # a lone surrogate: jiter refuses it, json.loads takes it
        '{"nan": NaN, "inf": Infinity}',
        "not json at all",
        '{"unclosed": [1, 2',
    ],
    ids=["unicode-and-numbers", "nesting-and-escapes", "duplicate-keys", "lone-surrogate", "nan", "garbage", "cut"],
)
def test_large_lines_parse_exactly_as_json_loads_does(text: str) -> None:
    line = (PADDING + text).encode("utf-8", "surrogatepass")
    try:
        expected = json.dumps(json.loads(line), sort_keys=True)  # as text: NaN equals NaN there
    except ValueError:
        expected = "null"  # not JSON: _loads says None
    for given in (line, bytearray(line)):
        assert json.dumps(_loads(given), sort_keys=True) == expected
