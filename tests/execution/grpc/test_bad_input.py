"""What goes wrong with a gRPC backend, and what the caller (or the operator) is told: status codes from the server,
arguments the request message cannot hold, servers that are away or silent, protos that do not compile."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc_shop import Shop, ShopServer

import aperture.execution.grpc
from aperture.config import parse_config
from aperture.gateway.core import build_backend
from aperture.model import ConfigError
from tests.execution.grpc.conftest import gateway_client, shop_config
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

ECHO = "shop:shop.v1.Inventory.Echo"


@pytest.mark.parametrize(
    ("code", "expected", "retryable"),
    [
        ("UNAVAILABLE", "backend_unavailable", True),
        ("DEADLINE_EXCEEDED", "timeout", True),
        ("INVALID_ARGUMENT", "validation_input", False),
        ("OUT_OF_RANGE", "validation_input", False),
        ("PERMISSION_DENIED", "config", False),
        ("UNAUTHENTICATED", "config", False),
        ("NOT_FOUND", "execution_failed", False),
        ("ABORTED", "execution_failed", True),
        ("RESOURCE_EXHAUSTED", "rate_limited", True),
        ("INTERNAL", "execution_failed", False),
    ],
    ids=lambda v: v.lower() if isinstance(v, str) and v.isupper() else None,
)
async def test_status_codes_become_aperture_errors_with_the_status_in_details(
    shop: ShopServer, code: str, expected: str, retryable: bool
) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, "shop:shop.v1.Inventory.Fail", {"code": code, "message": "sku 'x' bad"}))
    assert (error["code"], error["retryable"]) == (expected, retryable)
    assert "sku 'x' bad" in error["message"]  # the server's own message reaches the caller
    assert error["details"]["grpc_status"] == code
    assert error["details"]["grpc_message"] == "sku 'x' bad"
    assert error["details"]["metadata"] == {"retry-hint": "later"}
    if expected == "config":
        assert "operator" in error["message"] and error["details"]["fix_by"] == "operator"


async def test_rich_status_details_are_decoded_where_the_backend_knows_the_type(shop: ShopServer) -> None:
    args = {"code": "FAILED_PRECONDITION", "message": "out of stock", "rich": True}
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, "shop:shop.v1.Inventory.Fail", args))
    assert error["code"] == "execution_failed" and "out of stock" in error["message"]
    assert error["details"]["status_details"] == [
        {"@type": "type.googleapis.com/shop.v1.Money", "currency": "EUR", "cents": "5"},
        {"@type": "type.googleapis.com/x.Secret", "value": "AQI="},
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"small": 2**31}, "argument 'small': 2147483648 is greater than the maximum of 2147483647"),
        ({"unsigned": -1}, "argument 'unsigned': -1 is less than the minimum of 0"),
        ({"data": "not base64!"}, "argument 'data'"),
        ({"color": "COLOR_BLUE"}, 'argument \'color\' must be one of "COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"'),
        ({"byName": "a", "byNumber": 1}, "argument '(arguments)'"),
        ({"when": "yesterday"}, "Invalid arguments for gRPC method shop.v1.Inventory.Echo"),
        ({"howLong": "5 minutes"}, "argument 'howLong'"),
        ({"price": {"currency": "EUR", "cent": 5}}, "argument 'price' has unknown keys: 'cent'"),
        ({"smal": 1}, "unknown argument 'smal'. Did you mean 'small'?"),
    ],
    ids=[
        "int32-range",
        "uint32-negative",
        "bytes-not-base64",
        "unknown-enum",
        "oneof-twice",
        "bad-timestamp",
        "bad-duration",
        "unknown-nested-field",
        "unknown-field",
    ],
)
async def test_arguments_the_message_cannot_hold_are_refused_before_the_call(
    shop: ShopServer, args: dict[str, Any], says: str
) -> None:
    calls = shop.shop.calls
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, ECHO, args))
    assert error["code"] == "validation_input"
    assert says in error["message"]
    assert shop.shop.calls == calls  # never reached the server


async def test_a_20_mb_answer_is_refused_with_what_to_do(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, "shop:shop.v1.Inventory.Blob", {"size": 20_000_000}))
        assert error["code"] == "execution_failed"
        assert "larger than the backend's max_message_bytes" in error["message"]
        ok = await run(client, "shop:shop.v1.Inventory.Blob", {"size": 3})  # the channel still works
        assert ok.structured_content["result"] == {"data": "eHh4"}


async def test_a_stream_that_never_ends_is_stopped_by_the_deadline_and_the_caller_told(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target, timeout=0.5)) as (_, client):
        error = error_of(await run(client, "shop:shop.v1.Inventory.Ticks", {"everyMs": 5}))
    assert error["code"] == "timeout" and error["retryable"] is True
    assert "shop.v1.Inventory.Ticks" in error["message"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_target_that_refuses_connections_leaves_the_gateway_up_and_says_why() -> None:
    target = f"127.0.0.1:{_free_port()}"
    async with gateway_client(shop_config(target, connect_timeout=2)) as (gateway, client):
        failure = gateway.backend_failures()["shop"]
        assert f"reflection at {target} failed: UNAVAILABLE" in failure
        error = error_of(await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-1"}))
        assert error["code"] == "backend_unavailable" and error["retryable"] is True
        assert target in error["message"]


@pytest.fixture
def silent() -> Iterator[str]:
    """A listening socket that never answers (nor even accepts): TLS's hello goes unanswered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def test_a_target_that_never_answers_tls_is_reported_after_connect_timeout(silent: str) -> None:
    async with gateway_client(shop_config(silent, tls=True, connect_timeout=0.5)) as (gateway, _):
        failure = gateway.backend_failures()["shop"]
        assert f"reflection at {silent} failed" in failure
        assert "no answer within 0.5 s" in failure and "speaks TLS as configured" in failure


async def test_reflection_off_and_no_protos_says_what_to_configure(dark_shop: ShopServer) -> None:
    async with gateway_client(shop_config(dark_shop.target)) as (gateway, _):
        failure = gateway.backend_failures()["shop"]
        assert "does not offer server reflection" in failure and "'protos'" in failure


def test_without_the_grpc_extra_the_kind_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: one more module the extra would bring, which no one installed.
    monkeypatch.setattr(aperture.execution.grpc, "REQUIRED_MODULES", ("grpc", "grpc_not_installed_here"))
    config = parse_config(shop_config("127.0.0.1:1"))
    with pytest.raises(ConfigError) as caught:
        build_backend(config.backends[0], config)
    assert caught.value.message == (
        "backend 'shop' is of kind grpc, which needs the grpc extra (grpc_not_installed_here cannot be imported); "
        "install it with: pip install 'aperture-gateway[grpc]'"
    )


def test_reflection_turned_off_without_protos_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="reflection is off and neither 'protos' nor 'descriptor_set' is given"):
        parse_config(shop_config("127.0.0.1:1", reflection=False))


@pytest.mark.parametrize(
    ("target", "says"),
    [("localhost", "is not host:port"), ("127.0.0.1:99999", "is not host:port"), ("http://x:1", "is not host:port")],
)
def test_a_malformed_target_is_a_configuration_error(target: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_config(shop_config(target))


def _protos(directory: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (directory / name).write_text('syntax = "proto3";\npackage t;\n' + text)
    return sorted(files)


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (
            {"a.proto": 'import "b.proto";\nmessage A { B b = 1; }', "b.proto": 'import "a.proto";\nmessage B {}'},
            "File recursively imports itself",
        ),
        ({"a.proto": "message A { Missing m = 1; }\nservice S { rpc M(A) returns (A); }"}, '"Missing" is not defined'),
        ({"a.proto": 'import "gone.proto";\nmessage A {}'}, "gone.proto: File not found"),
        ({"a.proto": "message A { int32 x = 1 }"}, 'Expected ";"'),
    ],
    ids=["import-cycle", "unknown-type", "missing-import", "syntax-error"],
)
async def test_protos_that_do_not_compile_are_reported_with_protocs_message(
    shop: ShopServer, tmp_path: Path, files: dict[str, str], says: str
) -> None:
    names = _protos(tmp_path, files)
    config = shop_config(shop.target, reflection=False, protos=[str(tmp_path / n) for n in names])
    async with gateway_client(config) as (gateway, client):
        failure = gateway.backend_failures()["shop"]
        assert "the proto files do not compile; protoc says:" in failure and says in failure
        error = error_of(await run(client, "shop:t.S.M", {}))
        assert error["code"] == "backend_unavailable" and says in error["message"]


async def test_a_method_whose_name_is_too_long_for_a_tool_id_is_left_out(shop: ShopServer, tmp_path: Path) -> None:
    long_package = ".".join(["averyverylongpackagename"] * 5)  # 124 characters: with ".S.Method", past 128
    (tmp_path / "long.proto").write_text(
        f'syntax = "proto3";\npackage {long_package};\nmessage M {{}}\nservice S {{ rpc Method(M) returns (M); }}'
    )
    config = shop_config(shop.target, reflection=False, protos=[str(tmp_path / "long.proto"), "shop/v1/shop.proto"])
    async with gateway_client(config) as (gateway, _):
        tools = gateway.registry.snapshot.tools
        assert "shop:shop.v1.Inventory.GetItem" in tools
        assert not any(key.endswith(".S.Method") for key in tools)


async def test_a_file_that_is_not_a_descriptor_set_is_reported(shop: ShopServer, tmp_path: Path) -> None:
    bogus = tmp_path / "set.pb"
    bogus.write_bytes(b"\xff\xff not protobuf")
    async with gateway_client(shop_config(shop.target, descriptor_set=str(bogus))) as (gateway, _):
        assert "is not a FileDescriptorSet" in gateway.backend_failures()["shop"]


async def test_metadata_from_the_environment_is_sent_but_never_shown(tmp_path: Path) -> None:
    token = "s3cr3t-t0ken-value"
    server = ShopServer(shop=Shop(require_token=token)).start()
    try:
        config = shop_config(server.target, metadata={"authorization": "Bearer ${SHOP_TOKEN}"})
        async with gateway_client(config, env={"SHOP_TOKEN": token}) as (gateway, client):
            ok = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-1"})
            assert not ok.is_error, text_of(ok)
            assert server.shop.seen.metadata["authorization"] == f"Bearer {token}"
            # The server echoes the token in its error: the caller never sees it.
            failed = await run(client, "shop:shop.v1.Inventory.Fail", {"code": "INTERNAL", "message": token})
            assert token not in text_of(failed) and token not in str(failed.structured_content)
            described = await client.call_tool(
                "describe_tool", {"tool_id": "shop:shop.v1.Inventory.GetItem", "detail_level": "full"}
            )
            assert token not in text_of(described)
            assert token not in repr(gateway.config.backends[0])  # not in the config's repr either
        async with gateway_client(config, env={"SHOP_TOKEN": "wrong"}) as (_, client):
            error = error_of(await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-1"}))
            assert error["code"] == "config" and "operator" in error["message"]
    finally:
        server.stop()
