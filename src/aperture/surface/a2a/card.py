"""The gateway's agent card: its skills are the operations (search, describe, run) plus the toolsets and skills a
caller may use; its security schemes are the configured ways to authenticate. The public card (no credentials)
lists only the operations when auth is on; the authenticated extended card lists what its caller may use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

import aperture
from aperture.gateway import META_TOOLS_BY_NAME

if TYPE_CHECKING:
    from aperture.gateway import Gateway

MODES = ["text/plain", "application/json"]


def _example(**data: object) -> str:
    return json.dumps(data, separators=(", ", ": "))


def operation_skills() -> list[AgentSkill]:
    """The three operations every caller has, described as the meta-tools are, with data-part examples."""
    return [
        AgentSkill(
            id="search",
            name="Search tools",
            description=META_TOOLS_BY_NAME["search_tools"].description
            + " Send the task in plain text, or a data part {op: search, query, limit?, namespace?, tags?}.",
            tags=["discovery"],
            examples=["convert kilometres to miles", _example(op="search", query="hash a string", limit=5)],
            input_modes=MODES,
            output_modes=["application/json"],
        ),
        AgentSkill(
            id="describe",
            name="Describe a tool",
            description=META_TOOLS_BY_NAME["describe_tool"].description
            + " Data part {op: describe, tool_id, detail_level?: summary|schema|full}.",
            tags=["discovery"],
            examples=[_example(op="describe", tool_id="namespace:name", detail_level="schema")],
            input_modes=["application/json"],
            output_modes=["application/json"],
        ),
        AgentSkill(
            id="run",
            name="Run a tool",
            description=META_TOOLS_BY_NAME["run_tool"].description
            + " Data part {op: run, tool_id, args}; progress streams as status updates, the result is an artifact.",
            tags=["execution"],
            examples=[_example(op="run", tool_id="namespace:name", args={"text": "Hello"})],
            input_modes=["application/json"],
            output_modes=MODES,
        ),
    ]


def caller_skills(gateway: Gateway) -> list[AgentSkill]:
    """The toolsets and skills the current caller may use, each as an A2A skill (run a skill with
    `{op: run, tool_id: <skill id>, args: {inputs}}`; a toolset is a view its holder's calls go through)."""
    skills = []
    for row in gateway.list_toolsets()["toolsets"] if gateway.toolsets else ():
        skills.append(
            AgentSkill(
                id=row["id"],
                name=row["name"],
                description=(row["description"] or f"The toolset {row['name']}.") + f" ({row['toolCount']} tools)",
                tags=["toolset"],
                examples=[_example(op="describe_toolset", toolset_id=row["id"])],
            )
        )
    for row in gateway.visible_skills():
        skills.append(
            AgentSkill(
                id=row["id"],
                name=row["name"],
                description=row["description"] or f"The skill {row['name']}.",
                tags=["skill", row["kind"]],
                examples=[_example(op="run", tool_id=row["id"], args={})],
            )
        )
    return skills


def security(gateway: Gateway) -> tuple[dict[str, SecurityScheme], list[SecurityRequirement]]:
    """The security schemes matching the configured auth (API keys in X-API-Key, bearer JWTs), any one of which
    a caller may use."""
    schemes: dict[str, SecurityScheme] = {}
    methods = gateway.auth_methods
    if "api_key" in methods:
        schemes["apiKey"] = SecurityScheme(
            api_key_security_scheme=APIKeySecurityScheme(
                location="header", name="X-API-Key", description="An API key from the gateway's operator."
            )
        )
    if "jwt" in methods:
        schemes["bearer"] = SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer", bearer_format="JWT", description="A JWT from the configured issuer."
            )
        )
    requirements = [SecurityRequirement(schemes={name: StringList()}) for name in schemes]
    return schemes, requirements


def agent_card(gateway: Gateway, base_url: str, path: str, *, extended: bool = False) -> AgentCard:
    """The card for callers reaching the gateway at `base_url` (bindings at `path`); `extended` for the
    authenticated caller of the request being served (what it may use), else the public card."""
    url = base_url.rstrip("/") + path
    tools = len(gateway.index)
    schemes, requirements = security(gateway)
    skills = operation_skills()
    if extended or not gateway.requires_auth:
        skills += caller_skills(gateway)
    return AgentCard(
        name=gateway.config.server.name,
        description=f"A gateway to {tools} tools: search them in a few words, describe one, run it. The same tools, "
        "rights and limits as its MCP endpoint.",
        version=aperture.__version__,
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT
            ),
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.HTTP_JSON.value, protocol_version=PROTOCOL_VERSION_CURRENT
            ),
        ],
        capabilities=AgentCapabilities(
            streaming=True, push_notifications=False, extended_agent_card=gateway.requires_auth
        ),
        security_schemes=schemes,
        security_requirements=requirements,
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=skills,
    )
