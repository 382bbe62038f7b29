"""Calling capabilities against a real HTTP server on 127.0.0.1: every parameter location, every auth style,
fallback, retries, timeouts, error answers, size caps, redirects and the private-network guard."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from rest_api import ApiServer

from aperture.execution import CallContext, CapabilityBackend, ToolOutput
from aperture.execution.capabilities.netguard import is_public
from aperture.model import ApertureError, ExecutionError, InputValidationError
from tests.execution.capabilities.conftest import capability, make_backend, write

pytestmark = pytest.mark.anyio


async def call(backend: CapabilityBackend, name: str, args: dict[str, Any] | None = None) -> ToolOutput:
    try:
        return await backend.call(name, args or {}, CallContext())
    finally:
        await backend.aclose()


async def fails(backend: CapabilityBackend, name: str, args: dict[str, Any] | None = None) -> ApertureError:
    with pytest.raises(ApertureError) as caught:
        await call(backend, name, args)
    return caught.value


def text_of(output: ToolOutput) -> str:
    return "\n".join(b.text for b in output.content if isinstance(b, mcp_types.TextContent))


def echoed(output: ToolOutput) -> dict[str, Any]:
    assert isinstance(output.structured, dict)
    return output.structured


async def test_path_values_are_url_encoded_and_query_comes_from_params_param_map_and_static(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGION", "eu")
    schema = {"id": {"type": "string"}, "q": {"type": "string"}, "n": {"type": "integer"}, "flag": {"type": "boolean"}}
    doc = capability(
        "find",
        api.url,
        path="/echo/items/{id}",
        params={"q": "{q}", "region": "{env.REGION}", "unused": "{missing}"},
        param_map={"n": "limit"},
        static_params={"format": "full", "flag": False},
        headers={"X-Item": "item-{id}", "X-Optional": "{q}"},
        schema=schema,
    )
    write(tmp_path, "find.yaml", doc)
    output = await call(make_backend(tmp_path), "find", {"id": "a b c?&#", "q": "x y", "n": 3, "flag": True})
    seen = echoed(output)
    assert seen["raw_path"] == "/echo/items/a%20b%20c%3F%26%23"
    assert seen["query"] == [["q", "x y"], ["region", "eu"], ["limit", "3"], ["format", "full"], ["flag", "true"]]
    assert seen["headers"]["x-item"] == "item-a b c?&#"
    assert seen["headers"]["x-optional"] == "x y"
    assert json.loads(text_of(output)) == seen  # pretty JSON text beside the structured content
    assert "\n  " in text_of(output)


TRAVERSALS = {
    "dot-dot": "..",
    "dot": ".",
    "encoded-dot-dot": "%2e%2e",
    "mixed-dot-dot": "%2E.",
    "dot-dot-encoded-slash": "..%2f",
    "slash": "/",
    "climbing-slash": "../../admin",
    "encoded-slash": "%2f",
    "double-encoded-slash": "%252f",
    "backslash": "\\",
    "encoded-backslash": "%5c",
    "fullwidth-dots": "\uff0e\uff0e",
    "fullwidth-slash": "a\uff0fb",
    "fullwidth-backslash": "\uff3c",
    "empty": "",
    "blank": " ",
}


@pytest.mark.parametrize("value", list(TRAVERSALS.values()), ids=list(TRAVERSALS))
async def test_a_path_value_cannot_change_the_paths_structure(tmp_path: Path, api: ApiServer, value: str) -> None:
    schema = {"owner": {"type": "string"}, "repo": {"type": "string"}}
    doc = capability("issues", api.url, path="/echo/api/repos/{owner}/{repo}/issues", schema=schema)
    write(tmp_path, "i.yaml", doc)
    for args in ({"owner": value, "repo": "r"}, {"owner": "o", "repo": value}):
        error = await fails(make_backend(tmp_path), "issues", args)
        assert isinstance(error, InputValidationError)
        name = next(k for k, v in args.items() if v == value)
        assert f"the value of '{name}'" in error.message and error.details["parameter"] == name
        assert "one path segment, any text without '/' or '\\'" in error.message
    assert api.recorder.requests == []


async def test_the_path_value_error_says_what_to_pass(tmp_path: Path, api: ApiServer) -> None:
    doc = capability("issues", api.url, path="/echo/repos/{owner}/issues", schema={"owner": {"type": "string"}})
    write(tmp_path, "i.yaml", doc)
    error = await fails(make_backend(tmp_path), "issues", {"owner": ".."})
    assert error.message == (
        "Tool 'api:issues': the value of 'owner' ('..') makes the path segment '..', which moves the request to "
        "another path, so it cannot go into the URL path: a path value must be one path segment, any text without "
        "'/' or '\\' (plain, percent-encoded or fullwidth), and not empty, '.' or '..'; it is percent-encoded for "
        "you. Pass the identifier itself."
    )


async def test_a_value_beside_template_text_cannot_make_a_dot_segment(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "f.yaml", capability("f", api.url, path="/echo/files/.{ext}", schema={"ext": {"type": "string"}}))
    error = await fails(make_backend(tmp_path), "f", {"ext": "."})
    assert "makes the path segment '..'" in error.message
    assert api.recorder.requests == []


async def test_static_params_from_the_file_are_trusted_but_a_callers_value_for_them_is_checked(
    tmp_path: Path, api: ApiServer
) -> None:
    doc = capability(
        "v",
        api.url,
        path="/echo/{version}/items",
        static_params={"version": "v1/beta"},
        schema={"x": {"type": "string"}},
    )
    write(tmp_path, "v.yaml", doc)
    assert echoed(await call(make_backend(tmp_path), "v"))["raw_path"] == "/echo/v1%2Fbeta/items"
    error = await fails(make_backend(tmp_path), "v", {"version": ".."})
    assert "the value of 'version'" in error.message


@pytest.mark.parametrize(
    ("value", "raw"),
    [("a?b=1", "a%3Fb%3D1"), ("a#b", "a%23b"), ("...", "..."), ("v1.2", "v1.2"), ("%41", "%2541")],
    ids=["question-mark", "hash", "three-dots", "dotted", "percent"],
)
async def test_other_path_values_are_fully_encoded_into_one_segment(
    tmp_path: Path, api: ApiServer, value: str, raw: str
) -> None:
    doc = capability("one", api.url, path="/echo/items/{id}/x", schema={"id": {"type": "string"}})
    write(tmp_path, "o.yaml", doc)
    seen = echoed(await call(make_backend(tmp_path), "one", {"id": value}))
    assert seen["raw_path"] == f"/echo/items/{raw}/x" and seen["query"] == []


async def test_a_header_whose_argument_is_not_given_is_left_out(tmp_path: Path, api: ApiServer) -> None:
    doc = capability("h", api.url, path="/echo/h", headers={"X-Optional": "{q}"}, schema={"q": {"type": "string"}})
    write(tmp_path, "h.yaml", doc)
    assert "x-optional" not in echoed(await call(make_backend(tmp_path), "h"))["headers"]


async def test_a_body_template_keeps_argument_types_and_drops_missing_keys(tmp_path: Path, api: ApiServer) -> None:
    schema = {"title": {"type": "string"}, "count": {"type": "integer"}, "tags": {"type": "array"}}
    body = {"item": {"title": "{title}", "count": "{count}", "label": "n={count}", "tags": "{tags}", "note": "{x}"}}
    write(
        tmp_path, "b.yaml", capability("create", api.url, path="/echo/create", method="POST", body=body, schema=schema)
    )
    seen = echoed(await call(make_backend(tmp_path), "create", {"title": "T", "count": 2, "tags": ["a"]}))
    assert seen["method"] == "POST"
    assert seen["body"] == {"item": {"title": "T", "count": 2, "label": "n=2", "tags": ["a"]}}


async def test_without_a_body_template_the_arguments_are_the_json_body(tmp_path: Path, api: ApiServer) -> None:
    schema = {"id": {"type": "string"}, "value": {"type": "number"}}
    doc = capability(
        "put", api.url, path="/echo/put/{id}", method="PUT", static_params={"source": "aperture"}, schema=schema
    )
    write(tmp_path, "p.yaml", doc)
    seen = echoed(await call(make_backend(tmp_path), "put", {"id": "7", "value": 1.5}))
    assert (seen["method"], seen["path"]) == ("PUT", "/echo/put/7")
    assert seen["body"] == {"source": "aperture", "id": "7", "value": 1.5}


async def test_a_missing_path_argument_is_an_input_error_before_any_request(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "g.yaml", capability("get", api.url, path="/echo/{id}", schema={"id": {"type": "string"}}))
    error = await fails(make_backend(tmp_path), "get")
    assert isinstance(error, InputValidationError) and "needs 'id' to build its URL" in error.message
    assert api.recorder.requests == []


@pytest.mark.parametrize(
    ("auth", "secret", "header", "value"),
    [
        ({"type": "bearer", "key": "env:CAP_SECRET"}, "tok", "authorization", "Bearer tok"),
        ({"type": "api_key", "key": "env:CAP_SECRET", "header": "X-Api-Key"}, "k1", "x-api-key", "k1"),
        (
            {"type": "api_key", "key": "{env.CAP_SECRET}", "header": "X-Key", "prefix": "Token"},
            "k2",
            "x-key",
            "Token k2",
        ),
        (
            {"type": "basic", "key": "CAP_SECRET"},
            "user:pw",
            "authorization",
            "Basic " + base64.b64encode(b"user:pw").decode(),
        ),
        ({"type": "basic", "key": "env:CAP_SECRET"}, "dXNlcjpwdw==", "authorization", "Basic dXNlcjpwdw=="),
    ],
    ids=["bearer", "api-key-header", "api-key-template-prefix", "basic-user-password", "basic-encoded"],
)
async def test_auth_styles_put_the_credential_from_the_environment_in_the_right_header(
    tmp_path: Path,
    api: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, str],
    secret: str,
    header: str,
    value: str,
) -> None:
    monkeypatch.setenv("CAP_SECRET", secret)
    doc = capability("secured", api.url, path="/echo/secured")
    doc["auth"] = auth
    write(tmp_path, "s.yaml", doc)
    assert echoed(await call(make_backend(tmp_path), "secured"))["headers"][header] == value


async def test_api_key_as_a_query_parameter_and_auth_none(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAP_SECRET", "qk")
    doc = capability("by_param", api.url, path="/echo/p")
    doc["auth"] = {"type": "api_key", "key": "env:CAP_SECRET", "param": "apiKey"}
    none = capability("open", api.url, path="/echo/o")
    none["auth"] = {"type": "none"}
    write(tmp_path, "p.yaml", doc)
    write(tmp_path, "o.yaml", none)
    seen = echoed(await call(make_backend(tmp_path), "by_param"))
    assert seen["query"] == [["apiKey", "qk"]] and "authorization" not in seen["headers"]
    assert "authorization" not in echoed(await call(make_backend(tmp_path), "open"))["headers"]


async def test_a_required_credential_that_is_not_set_says_so_without_a_request(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAP_UNSET", raising=False)
    doc = capability("needs_key", api.url, path="/echo/k")
    doc["auth"] = {"type": "bearer", "key": "env:CAP_UNSET"}
    write(tmp_path, "k.yaml", doc)
    error = await fails(make_backend(tmp_path), "needs_key")
    assert "environment variable CAP_UNSET" in error.message and "tell the operator" in error.message
    assert api.recorder.requests == []


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/status/404", "404 Not Found", "the API says 404"),
        ("/status/422", "422 Unprocessable", "the API says 422"),
        ("/text-status/400", "400 Bad Request", "plain words of failure"),
    ],
    ids=["404-json", "422-json", "400-text"],
)
async def test_client_errors_come_back_with_the_status_and_the_apis_own_message(
    tmp_path: Path, api: ApiServer, path: str, status: str, message: str
) -> None:
    write(tmp_path, "e.yaml", capability("err", api.url, path=path))
    error = await fails(make_backend(tmp_path), "err")
    assert isinstance(error, ExecutionError)
    assert f"the API answered {status}" in error.message and message in error.message
    assert api.recorder.count(path) == 1  # a client error is not retried


async def test_server_errors_fall_back_to_the_next_provider(tmp_path: Path, api: ApiServer) -> None:
    doc = capability("fb", api.url, path="/status/503")
    doc["providers"]["fallback"] = {"config": {"endpoint": f"{api.url}/echo/fallback"}}
    write(tmp_path, "f.yaml", doc)
    assert echoed(await call(make_backend(tmp_path), "fb"))["path"] == "/echo/fallback"
    assert api.recorder.paths() == ["/status/503", "/echo/fallback"]


async def test_when_every_provider_fails_each_failure_is_reported(tmp_path: Path, api: ApiServer) -> None:
    doc = capability("down", api.url, path="/status/500")
    doc["providers"]["fallback"] = [{"config": {"endpoint": f"{api.url}/status/502"}}]
    write(tmp_path, "d.yaml", doc)
    error = await fails(make_backend(tmp_path), "down")
    assert error.retryable
    assert (
        "providers.primary: GET" in error.message
        and "answered 500 Internal Server Error: the API says 500" in error.message
    )
    assert "providers.fallback[0]: GET" in error.message and "502" in error.message


async def test_connection_errors_are_retried_with_backoff_then_the_fallback_answers(
    tmp_path: Path, api: ApiServer
) -> None:
    from rest_api import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    doc = capability("retry", dead, path="/nothing")
    doc["providers"]["fallback"] = {"config": {"endpoint": f"{api.url}/echo/alive"}}
    write(tmp_path, "r.yaml", doc)
    backend = make_backend(tmp_path, retries=2, backoff=0.01)
    assert echoed(await call(backend, "retry"))["path"] == "/echo/alive"

    write(tmp_path, "r.yaml", capability("retry", dead, path="/nothing"))
    error = await fails(make_backend(tmp_path, retries=1, backoff=0.01), "retry")
    assert "ConnectError" in error.message and "after 2 attempts" in error.message


async def test_timeouts_are_retried_for_get_but_not_for_post(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "g.yaml", capability("slow_get", api.url, path="/slow", params={"seconds": "2"}))
    write(tmp_path, "p.yaml", capability("slow_post", api.url, path="/slow", method="POST", params={"seconds": "2"}))
    backend = make_backend(tmp_path, retries=1, backoff=0.01, request_timeout=0.2)
    error = await fails(backend, "slow_get")
    assert "no answer in time" in error.message and "after 2 attempts" in error.message
    assert api.recorder.count("/slow") == 2
    api.recorder.clear()
    await fails(make_backend(tmp_path, retries=1, backoff=0.01, request_timeout=0.2), "slow_post")
    assert api.recorder.count("/slow") == 1


@pytest.mark.parametrize("setting", ["provider", "backend"])
async def test_the_timeout_bounds_the_whole_request_not_each_read(tmp_path: Path, api: ApiServer, setting: str) -> None:
    # A byte every 0.05 s for 5 s: each read is quick, the whole answer is not.
    doc = capability("drip", api.url, path="/trickle", params={"count": "100", "interval": "0.05"}, method="POST")
    http: dict[str, Any] = {"retries": 0}
    if setting == "provider":
        doc["providers"]["primary"]["timeout"] = 0.4
    else:
        http["request_timeout"] = 0.4
    write(tmp_path, "d.yaml", doc)
    with anyio.fail_after(3):
        error = await fails(make_backend(tmp_path, **http), "drip")
    assert "no answer in time (the whole request, connecting, sending and reading all of it, may take 0.4 s)" in (
        error.message
    )
    assert error.retryable


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_response_over_the_cap_is_refused(tmp_path: Path, api: ApiServer, chunked: bool) -> None:
    params = {"bytes": "300000", **({"chunked": "1"} if chunked else {})}
    write(tmp_path, "l.yaml", capability("large", api.url, path="/large", params=params))
    error = await fails(make_backend(tmp_path, max_response_bytes=100_000), "large")
    assert "larger than 97 KiB" in error.message and "Ask for less" in error.message


async def test_redirects_are_followed_up_to_the_limit(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "r.yaml", capability("hops", api.url, path="/redirect/3"))
    assert echoed(await call(make_backend(tmp_path), "hops"))["path"] == "/echo/landed"
    error = await fails(make_backend(tmp_path, max_redirects=2), "hops")
    assert "redirected more than 2 times" in error.message


async def test_a_redirect_elsewhere_drops_the_credential_and_303_turns_post_into_get(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAP_SECRET", "tok")
    other = api.url.replace("127.0.0.1", "localhost")
    doc = capability(
        "away", api.url, path="/redirect/1", params={"to": f"{other}/echo/away", "code": "303"}, method="POST"
    )
    doc["auth"] = {"type": "bearer", "key": "env:CAP_SECRET"}
    write(tmp_path, "a.yaml", doc)
    seen = echoed(await call(make_backend(tmp_path), "away"))
    assert (seen["method"], seen["path"]) == ("GET", "/echo/away")
    assert "authorization" not in seen["headers"]
    assert api.recorder.requests[0]["headers"]["authorization"] == "Bearer tok"


@pytest.mark.parametrize("code", ["302", "307"])
async def test_no_credential_crosses_an_origin_change_on_redirect(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    monkeypatch.setenv("CAP_HEADER_KEY", "header-key-1234")
    monkeypatch.setenv("CAP_QUERY_KEY", "query-key-5678")
    monkeypatch.setenv("CAP_TOKEN", "bearer-token-9012")
    with ApiServer() as other:  # another port: another origin
        # The redirect targets echo secrets in their query, as an API that copies the query into Location would.
        target = f"{other.url}/echo/landed?page=2&sig=bearer-token-9012&h=x-header-key-1234"
        params = {"to": target, "code": code, "cookie": "set-by-the-api"}
        headers = {"X-Api-Key": "{env.CAP_HEADER_KEY}", "Cookie": "pref=1", "X-Trace": "plain"}
        doc = capability("away", api.url, path="/redirect/1", params=params, headers=headers)
        doc["auth"] = {"type": "bearer", "key": "env:CAP_TOKEN"}
        write(tmp_path, "a.yaml", doc)
        by_query = capability(
            "by_query",
            api.url,
            path="/redirect/1",
            params={
                "to": f"{other.url}/echo/landed?page=2&apiKey=query-key-5678&echo=x-query-key-5678-x",
                "code": code,
            },
        )
        by_query["auth"] = {"type": "api_key", "key": "env:CAP_QUERY_KEY", "param": "apiKey"}
        write(tmp_path, "q.yaml", by_query)
        backend = make_backend(tmp_path)
        try:
            first = await backend.call("away", {}, CallContext())
            second = await backend.call("by_query", {}, CallContext())
            again = await backend.call("away", {}, CallContext())
        finally:
            await backend.aclose()
        sent = api.recorder.requests[0]["headers"]
        assert sent["x-api-key"] == "header-key-1234" and sent["authorization"] == "Bearer bearer-token-9012"
        # No cookie jar either: the cookie the first redirect set does not go with the next call.
        assert all("set-by-the-api" not in r["headers"].get("cookie", "") for r in api.recorder.requests)
        for seen in (echoed(first), echoed(second), echoed(again)):
            assert seen["path"] == "/echo/landed"
            landed = json.dumps(seen)
            for secret in ("header-key-1234", "query-key-5678", "bearer-token-9012", "set-by-the-api", "pref=1"):
                assert secret not in landed
            assert ["page", "2"] in seen["query"] and "x-trace" not in seen["headers"]
        assert len(other.recorder.requests) == 3


async def test_a_redirect_within_the_origin_keeps_the_credentials(
    tmp_path: Path, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAP_HEADER_KEY", "header-key-1234")
    doc = capability("hop", api.url, path="/redirect/2", headers={"X-Api-Key": "{env.CAP_HEADER_KEY}"})
    doc["auth"] = {"type": "bearer", "key": "env:CAP_HEADER_KEY"}
    write(tmp_path, "h.yaml", doc)
    seen = echoed(await call(make_backend(tmp_path), "hop"))
    assert seen["path"] == "/echo/landed" and seen["headers"]["x-api-key"] == "header-key-1234"
    assert seen["headers"]["authorization"] == "Bearer header-key-1234"


async def test_private_addresses_are_refused_unless_allowed(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "p.yaml", capability("local", api.url, path="/echo/x"))
    error = await fails(make_backend(tmp_path, private=False), "local")
    assert "refused to connect to 127.0.0.1" in error.message and "allow_private_networks" in error.message
    assert not error.retryable
    assert api.recorder.requests == []


async def test_a_host_name_is_resolved_and_every_address_checked(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "p.yaml", capability("named", api.url.replace("127.0.0.1", "localhost"), path="/echo/x"))
    error = await fails(make_backend(tmp_path, private=False), "named")
    assert "refused to connect to localhost" in error.message
    assert api.recorder.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
    ids=lambda v: str(v),
)
def test_only_global_unicast_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_response_formats_and_response_path(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "x.yaml", capability("xml", api.url, path="/xml", response_path="forecast.day.1.temp"))
    write(tmp_path, "t.yaml", capability("text", api.url, path="/text", response_format="text"))
    write(tmp_path, "b.yaml", capability("binary", api.url, path="/binary", response_format="binary"))
    write(tmp_path, "e.yaml", capability("empty", api.url, path="/empty", method="DELETE"))
    write(tmp_path, "j.yaml", capability("items", api.url, path="/echo/j", response_path="query"))
    xml = await call(make_backend(tmp_path), "xml")
    assert text_of(xml) == '"5"'
    text = await call(make_backend(tmp_path), "text")
    assert text_of(text) == "just some words" and text.structured is None
    binary = await call(make_backend(tmp_path), "binary")
    block = binary.content[0]
    assert isinstance(block, mcp_types.EmbeddedResource) and isinstance(block.resource, mcp_types.BlobResourceContents)
    assert block.resource.mime_type == "image/png" and base64.b64decode(block.resource.blob) == bytes(range(16))
    empty = await call(make_backend(tmp_path), "empty")
    assert text_of(empty) == "204 No Content (no content)"
    items = await call(make_backend(tmp_path), "items")
    assert items.structured is None and json.loads(text_of(items)) == []


async def test_whole_xml_documents_become_json(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "x.yaml", capability("xml", api.url, path="/xml"))
    output = await call(make_backend(tmp_path), "xml")
    assert output.structured == {"forecast": {"@city": "Oslo", "day": [{"temp": "3"}, {"temp": "5"}], "note": "cold"}}


async def test_an_unknown_capability_names_the_known_ones(tmp_path: Path, api: ApiServer) -> None:
    write(tmp_path, "x.yaml", capability("known", api.url, path="/echo"))
    error = await fails(make_backend(tmp_path), "unknown")
    assert "api:known" in error.message
