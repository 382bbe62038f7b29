"""Auth: API keys, JWTs (HS256, RS256, ES256 from a real JWKS server on 127.0.0.1), rules on search, describe
and run, the audit log, and the HTTP layer (401 with WWW-Authenticate, protected-resource metadata)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aperture.execution import BackendRegistry, CallContext, PythonBackend
from aperture.gateway import Gateway
from aperture.model import UnauthorizedError
from aperture.ops.auth import JwtVerifier
from aperture.ops.http import OpsHttpApp
from aperture.ops.identity import IDENTITY_KEY, Identity, current_identity
from aperture.ops.settings import JwtSettings
from tests.ops.conftest import ops_config, ops_gateway

pytestmark = pytest.mark.anyio
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


class Jwks:
    """A real JWKS endpoint on 127.0.0.1 that can be switched off."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": "r1", "alg": "RS256"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key())), "kid": "e1", "alg": "ES256"},
        ]
        self.up = True
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                if not owner.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.close()


def token(key: Any = RSA_KEY, alg: str = "RS256", kid: str = "r1", **claims: Any) -> str:
    body = {"sub": "alice", "iss": "https://issuer.test", "aud": "aperture", "exp": time.time() + 300, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def settings(jwks: Jwks, **extra: Any) -> JwtSettings:
    return JwtSettings(
        algorithms=["RS256", "ES256", "HS256"],
        jwks_url=jwks.url,
        secret="s3cret-s3cret-s3cret-s3cret-s3cret",
        issuer="https://issuer.test",
        audience="aperture",
        **extra,
    )


async def test_rs256_es256_and_hs256_tokens_verify_with_roles_and_scopes(jwks: Jwks) -> None:
    verifier = JwtVerifier(settings(jwks))
    alice = await verifier.verify(token(roles=["admin"], scope="read write"))
    assert alice == Identity(
        name="alice", method="jwt", roles=frozenset({"admin"}), scopes=frozenset({"read", "write"})
    )
    assert (await verifier.verify(token(EC_KEY, "ES256", "e1"))).name == "alice"
    assert (await verifier.verify(token("s3cret-s3cret-s3cret-s3cret-s3cret", "HS256", "h"))).name == "alice"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(exp=time.time() - 3600), "expired"),
        (lambda: token()[:-6] + "AAAAAA", "signature does not verify"),
        (lambda: token(aud="someone-else"), "not meant for this server"),
        (lambda: token(iss="https://evil.test"), "issuer is not accepted"),
        (lambda: jwt.encode({"sub": "x", "exp": time.time() + 60}, "", algorithm="none"), "'none' are not accepted"),
        (lambda: "not.a.jwt", "not a well-formed JWT"),
        (lambda: token(kid="unknown"), "signing key 'unknown' is not one this server knows"),
    ],
    ids=["expired", "tampered", "wrong-audience", "wrong-issuer", "alg-none", "garbage", "unknown-kid"],
)
async def test_bad_tokens_are_refused_with_the_reason(jwks: Jwks, make: Any, message: str) -> None:
    with pytest.raises(UnauthorizedError, match=message):
        await JwtVerifier(settings(jwks)).verify(make())


async def test_cached_keys_keep_working_while_the_jwks_endpoint_is_down(jwks: Jwks) -> None:
    verifier = JwtVerifier(settings(jwks, jwks_cache_seconds=0.01))
    assert (await verifier.verify(token())).name == "alice"
    jwks.up = False
    try:
        time.sleep(0.02)
        assert (await verifier.verify(token(EC_KEY, "ES256", "e1", sub="bob"))).name == "bob"
        with pytest.raises(UnauthorizedError, match=r"could not be fetched \(HTTPStatusError"):
            await verifier.verify(token(kid="r2"))
    finally:
        jwks.up = True


KEY = "k-" + "x" * 30
OPS: dict[str, Any] = {
    "auth": {
        "enabled": True,
        "api_keys": [{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}],
        "rules": [{"tools": "admin:*", "roles": ["admin"]}, {"tools": "t:append", "scopes": ["write"]}],
        "local_roles": [],
    }
}


async def test_rules_hide_tools_from_search_and_describe_and_refuse_runs(tmp_path: Path) -> None:
    ops = {"auth": {**OPS["auth"], "audit": "file", "audit_file": str(tmp_path / "audit.jsonl")}}
    async with ops_gateway(ops) as gw:
        dev = Identity(name="ci", method="api_key", roles=frozenset({"dev"}))
        admin = Identity(name="root", method="jwt", roles=frozenset({"admin"}))
        as_dev = CallContext(meta={IDENTITY_KEY: dev})
        refused = await gw.run("admin:reset", {}, as_dev)
        assert refused.error is not None and refused.error.code == "forbidden"
        assert refused.error.message.startswith("Caller 'ci' may not use tool 'admin:reset': it requires role 'admin'")
        assert (await gw.run("admin:reset", {}, CallContext(meta={IDENTITY_KEY: admin}))).text == "reset"
        assert (await gw.run("t:append", {"word": "a"}, as_dev)).error is not None
        from aperture.ops.identity import current_identity

        reset = current_identity.set(dev)
        ids = [t["id"] for t in gw.list_tools()["tools"]]
        assert "admin:reset" not in ids and "t:append" not in ids and "t:lookup" in ids
        assert all(t["id"] != "admin:reset" for t in gw.search("reset everything")["tools"])
        with pytest.raises(Exception, match="No tool 'admin:reset'"):
            gw.describe("admin:reset")
        current_identity.set(admin)
        assert gw.describe("admin:reset")["id"] == "admin:reset"
        current_identity.reset(reset)
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    runs = [r for r in lines if r["event"] == "run"]  # searches and descriptions are recorded too
    assert [(r["identity"], r["tool_id"], r["outcome"]) for r in runs] == [
        ("ci", "admin:reset", "forbidden"),
        ("root", "admin:reset", "ok"),
        ("ci", "t:append", "forbidden"),
    ]
    assert all("args" not in r for r in lines)


async def test_hidden_tools_are_left_out_before_paging(tmp_path: Path) -> None:
    # Many forbidden tools and few allowed ones: pages are still full and totals count only what is visible.
    registry = BackendRegistry()
    secret, public = PythonBackend("admin"), PythonBackend("pub")
    for backend, count in ((secret, 30), (public, 6)):
        for index in range(count):

            def report() -> str:
                return "x"

            backend.tool(name=f"report_{index}", description=f"The {backend.name} report number {index}.")(report)
    await registry.register(secret)
    await registry.register(public)
    async with Gateway(ops_config(OPS), registry=registry) as gw:
        reset = current_identity.set(Identity(name="ci", method="api_key", roles=frozenset({"dev"})))
        try:
            listed = gw.list_tools(limit=4)
            assert [t["id"] for t in listed["tools"]] == [f"pub:report_{i}" for i in range(4)]
            assert listed["total"] == 6
            found = gw.search("report", limit=4)
            assert len(found["tools"]) == 4 and found["total"] == 6
            assert all(t["id"].startswith("pub:") for t in found["tools"])
            rest = gw.search("report", limit=4, cursor=found["nextCursor"])
            assert len(rest["tools"]) == 2 and "nextCursor" not in rest
        finally:
            current_identity.reset(reset)
        assert gw.search("report", limit=4)["total"] == 36 - 30  # local callers have no roles here either


async def test_http_requests_need_credentials_and_get_a_challenge(jwks: Jwks) -> None:
    ops = {
        "auth": {**OPS["auth"], "jwt": {"jwks_url": jwks.url, "audience": "aperture", "issuer": "https://issuer.test"}}
    }
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(IDENTITY_KEY))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mcp"})

    async with ops_gateway(ops) as gw:
        app = OpsHttpApp(inner, gw.ops, path="/mcp")
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            missing = await client.post("/mcp")
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == (
                'Bearer resource_metadata="http://gw.test/.well-known/oauth-protected-resource/mcp"'
            )
            expired = await client.post("/mcp", headers={"authorization": f"Bearer {token(exp=1)}"})
            assert expired.status_code == 401 and "expired" in expired.json()["message"]
            assert 'error="invalid_token"' in expired.headers["www-authenticate"]
            assert (await client.post("/mcp", headers={"x-api-key": KEY})).text == "mcp"
            assert (await client.post("/mcp", headers={"authorization": f"Bearer {token()}"})).status_code == 200
            meta = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
            assert meta == {
                "resource": "http://gw.test/mcp",
                "authorization_servers": ["https://issuer.test"],
                "bearer_methods_supported": ["header"],
            }
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")  # with auth on, the status only (see tests/ops/test_health.py)
            assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert [i.name for i in seen] == ["ci", "alice"]


async def test_a_bare_tool_name_suggests_only_the_ids_of_that_name_the_caller_may_see() -> None:
    async with ops_gateway(OPS) as gw:
        dev = Identity(name="ci", method="api_key", roles=frozenset({"dev"}))
        admin = Identity(name="root", method="jwt", roles=frozenset({"admin"}))
        as_dev, as_admin = (CallContext(meta={IDENTITY_KEY: who}) for who in (dev, admin))
        lookup = await gw.run("lookup", {}, as_dev)
        assert lookup.error is not None and lookup.error.code == "tool_not_found"
        assert lookup.error.message == "No tool 'lookup'. Tool ids are 'namespace:name'. Did you mean: t:lookup?"
        for hidden in ("reset", "append"):  # admin:reset and t:append are hidden from the dev
            refused = await gw.run(hidden, {}, as_dev)
            assert refused.error is not None and refused.error.code == "tool_not_found"
            assert f"admin:{hidden}" not in refused.error.message and f"t:{hidden}" not in refused.error.message
        shown = await gw.run("reset", {}, as_admin)
        assert shown.error is not None and "Did you mean: admin:reset?" in shown.error.message
        from aperture.ops.identity import current_identity

        reset = current_identity.set(dev)
        try:
            with pytest.raises(Exception, match=r"Did you mean: t:lookup\?"):
                gw.describe("lookup")
            with pytest.raises(Exception) as refused_describe:
                gw.describe("reset")
            assert "admin:reset" not in str(refused_describe.value)
        finally:
            current_identity.reset(reset)
