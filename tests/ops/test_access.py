"""The one seam for "what may this caller see and reach": each kind of thing checked by the same rules."""

from __future__ import annotations

import pytest

from aperture.execution import CallContext
from aperture.ops import OPEN, Access
from aperture.ops.auth import Authorizer
from aperture.ops.identity import IDENTITY_KEY, Identity, current_identity
from aperture.ops.settings import RuleSettings
from tests.ops.conftest import ops_gateway

pytestmark = pytest.mark.anyio

RULES = [
    RuleSettings(tools="secret:*", roles=["admin"]),
    RuleSettings(tools="docs:file:///private/*", roles=["admin"]),
    RuleSettings(tools="docs:brief", scopes=["prompts:brief"]),
]
DEV = Identity(name="dev", method="api_key", roles=frozenset({"dev"}))
ADMIN = Identity(name="root", method="jwt", roles=frozenset({"admin"}), scopes=frozenset({"prompts:brief"}))


def access(who: Identity) -> Access:
    return Access(identity=who, allows=Authorizer(RULES).allows)


def test_a_namespace_rule_hides_every_kind_of_thing_in_it() -> None:
    dev = access(DEV)
    assert not dev.may_see_tool("secret:rotate")
    assert not dev.may_see_namespace("secret")
    assert not dev.may_use_prompt("secret", "summarize")
    assert not dev.may_read_resource("secret", "vault://keys/1")
    assert not dev.may_see_template("secret", "vault://keys/{id}")
    assert dev.may_see_namespace("docs") and dev.may_see_tool("docs:search")


def test_resources_prompts_and_templates_are_checked_under_backend_colon_name() -> None:
    dev, admin = access(DEV), access(ADMIN)
    assert not dev.may_read_resource("docs", "file:///private/plan.md")
    assert dev.may_read_resource("docs", "file:///public/plan.md")
    assert dev.may_see_template("docs", "file:///{path}")  # the template as written is not under private/
    assert not dev.may_use_prompt("docs", "brief") and dev.may_use_prompt("docs", "summarize")
    # The owner counts: the same URI owned by another backend is another thing.
    assert dev.may_read_resource("other", "file:///private/plan.md")
    assert admin.may_read_resource("docs", "file:///private/plan.md") and admin.may_use_prompt("docs", "brief")


def test_without_rules_everything_is_open() -> None:
    assert OPEN.unrestricted and not access(DEV).unrestricted
    assert OPEN.may_see_tool("secret:x") and OPEN.may_read_resource("secret", "vault://x")
    assert OPEN.may_use_prompt("secret", "p") and OPEN.may_see_template("secret", "t") and OPEN.may_see_namespace("s")


async def test_the_gateway_answers_for_the_caller_of_a_call_else_of_the_request() -> None:
    ops = {"auth": {"enabled": True, "rules": [{"tools": "admin:*", "roles": ["admin"]}], "local_roles": []}}
    async with ops_gateway(ops) as gateway:
        assert gateway.access().identity.name == "local" and not gateway.access().may_see_namespace("admin")
        assert gateway.access(CallContext(meta={IDENTITY_KEY: ADMIN})).may_see_tool("admin:reset")
        token = current_identity.set(ADMIN)  # what the HTTP layer sets for the request being served
        try:
            assert gateway.access().identity is ADMIN and gateway.access().may_see_namespace("admin")
        finally:
            current_identity.reset(token)
    async with ops_gateway({}) as gateway:
        assert gateway.access() is OPEN
