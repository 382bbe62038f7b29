"""`kind: a2a`: a remote A2A agent, whose agent card's skills become the tools of one namespace (docs/a2a.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext
from aperture.model import ConfigError

if TYPE_CHECKING:
    from aperture.execution.backends.a2a import A2aBackend


class A2aBackendConfig(BackendSettings):
    """A remote A2A agent (needs the 'a2a' extra): each skill of its card is a tool taking `{text?, data?}`."""

    kind: Literal["a2a"]
    card_url: str = Field(
        pattern=r"^https?://",
        description="The agent card's URL, e.g. https://agent.example.com/.well-known/agent-card.json.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for every request (credentials: use ${ENV_VAR})."
    )
    refresh_interval: float = Field(300.0, gt=0, description="Seconds after which the card is read again.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds one HTTP exchange with the agent may take.")
    allow_private_networks: bool = Field(
        False,
        description="Allow the card and the agent's endpoints on private, loopback and link-local addresses "
        "(off: public addresses only, as for REST capabilities).",
    )
    timeout: float | None = Field(
        None, gt=0, description="Seconds a call (the remote task) may take (default: execution.timeout)."
    )


def build_a2a(spec: A2aBackendConfig, context: BuildContext) -> A2aBackend:
    """The backend of the agent's skills (its card is read when it starts, or on first use).

    Raises:
        ConfigError: the 'a2a' extra (the official SDK) is not installed.
    """
    try:
        from aperture.execution.backends.a2a import A2aBackend
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"backend '{spec.name}' (kind: a2a) needs the 'a2a' extra ({exc}); install it in the Aperture checkout "
            "with: .venv/bin/pip install -e '.[a2a]'"
        ) from None
    return A2aBackend(
        spec.name,
        spec.card_url,
        headers=spec.headers,
        refresh_interval=spec.refresh_interval,
        request_timeout=spec.request_timeout,
        allow_private_networks=spec.allow_private_networks,
    )


A2A = BackendKind("a2a", A2aBackendConfig, build_a2a)
