"""The match of an upstream's messages to calls in flight: by stream over HTTP, by "the only call, all along"
on stdio, never by recency (the real transports are covered in tests/integration/test_upstream_routing.py)."""

from __future__ import annotations

import pytest

from aperture.execution import CallContext
from aperture.execution.backends.mcp_routing import CallRoutes


def routes(related: bool) -> CallRoutes:
    return CallRoutes("up", related=related)


def test_on_stdio_a_call_alone_all_along_owns_what_arrives() -> None:
    calls = routes(related=False)
    first = calls.begin(CallContext(request_id="1"))
    assert calls.owner_of_notice(None) is first and calls.owner_of_ask(7) is first
    calls.end(first)
    assert calls.owner_of_notice(None) is None  # answered: nothing that comes later is its


def test_on_stdio_calls_that_overlapped_own_nothing_even_when_one_is_left() -> None:
    calls = routes(related=False)
    first = calls.begin(CallContext(request_id="1"))
    second = calls.begin(CallContext(request_id="2"))
    assert calls.owner_of_notice(None) is None and calls.owner_of_ask(7) is None
    calls.end(second)
    assert calls.owner_of_notice(None) is None  # the first one was not alone the whole time
    calls.end(first)
    third = calls.begin(CallContext(request_id="3"))
    assert calls.owner_of_notice(None) is third  # a later call alone all along does own its messages


def test_over_http_only_the_stream_that_carried_a_message_names_its_call() -> None:
    calls = routes(related=True)
    first = calls.begin(CallContext(request_id="1"))
    assert calls.owner_of_notice(None) is None  # alone, but the message rode no call's stream
    assert calls.owner_of_notice(first) is first
    calls.note_ask(5, first)
    second = calls.begin(CallContext(request_id="2"))
    assert calls.owner_of_ask(5) is first  # noted on the first call's stream, whoever called since
    assert calls.owner_of_ask(5) is None  # taken once
    calls.note_ask("5", second)
    calls.end(second)
    assert calls.owner_of_ask("5") is None and calls.owner_of_notice(second) is None  # its call is over


@pytest.mark.parametrize("related", [True, False], ids=["http", "stdio"])
def test_unmatched_messages_are_counted_by_kind(related: bool) -> None:
    calls = routes(related)
    calls.drop("log", "x")
    calls.drop("log", "y")
    calls.drop("sampling", "z")
    assert calls.unrouted == {"log": 2, "sampling": 1}


def test_a_refusal_says_why_and_what_to_do() -> None:
    http, stdio = routes(related=True), routes(related=False)
    assert http.refusal("sampling") == (
        "Aperture refused this sampling request: it did not arrive on the response stream of a call to 'up' that "
        "is still running, so no client can be told to answer it. Send it related to the tools/call request that "
        "needs it."
    )
    assert stdio.refusal("elicitation") == (
        "Aperture refused this elicitation request: no call to 'up' is running to answer it."
    )
    stdio.begin(CallContext())
    stdio.begin(CallContext())
    assert stdio.refusal("sampling") == (
        "Aperture refused this sampling request: calls to 'up' overlapped, and this transport (stdio or SSE) does "
        "not say which call a request belongs to, so no client can be told to answer it. Set `isolation: "
        "per_client` on backend 'up' to give each client its own upstream session, or make the call when no other "
        "call to it runs."
    )


def test_on_a_one_client_session_overlapping_calls_still_name_their_client() -> None:
    calls = CallRoutes("up", related=False, one_client=True)
    first = calls.begin(CallContext(request_id="1"))
    calls.begin(CallContext(request_id="2"))
    assert calls.owner_of_ask(7) is first and calls.owner_of_notice(None) is first
