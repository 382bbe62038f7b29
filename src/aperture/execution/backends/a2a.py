"""A remote A2A agent as a backend (`kind: a2a`): its agent card's skills are the tools of one namespace.

A tool takes `{text?, data?}` (at least one): the message sent to the agent. Its answer is the task's final
artifacts (text parts as text, data parts as the structured result); the task's status updates are forwarded as
progress, a failed or rejected task is an execution error with the agent's own words, and cancelling the call
cancels the remote task. The card is re-read every `refresh_interval` seconds; a changed card changes the tools
(and, with `integrity.kinds` naming `a2a`, goes through review like an MCP server's tools). Every request, the
card's endpoint URLs and any redirect included, passes the network guard REST capabilities use.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import mcp_types
from a2a.client import A2AClientError, Client, ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers import get_data_parts, new_data_part, new_message
from a2a.types import (
    AgentCard,
    AgentSkill,
    CancelTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from anyio.abc import TaskGroup
from google.protobuf.json_format import ParseError

from aperture.execution.backend import CallContext, HealthStatus
from aperture.execution.capabilities.netguard import is_public
from aperture.execution.result import ToolOutput
from aperture.model import (
    BackendUnavailableError,
    ExecutionError,
    InvalidRequestError,
    Tool,
    ToolAnnotations,
    ToolExample,
    ToolId,
    namespace_text,
)

logger = logging.getLogger(__name__)

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "The request in words (a text part)."},
        "data": {"type": "object", "description": "Structured input (a data part), as the skill's examples show."},
    },
    "minProperties": 1,
    "additionalProperties": False,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DONE = {TaskState.TASK_STATE_COMPLETED}
_FAILED = {TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_CANCELED}
_WAITING = {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}


class A2aBackend:
    """Tools from a remote agent's card; see the module docstring.

    Args:
        card_url: the agent card's URL (`https://agent.example.com/.well-known/agent-card.json`).
        headers: sent with every request (credentials, from `${ENV}` in the configuration).
        refresh_interval: seconds between re-reads of the card (while started).
        request_timeout: seconds one HTTP exchange may take (a call's own limit is the runner's timeout).
        allow_private_networks: let the card and its endpoints be on private or loopback addresses.
    """

    kind = "a2a"

    def __init__(
        self,
        name: str,
        card_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        refresh_interval: float = 300.0,
        request_timeout: float = 30.0,
        allow_private_networks: bool = False,
    ) -> None:
        self.name = name
        self.card_url = card_url
        self.refresh_interval = refresh_interval
        self.allow_private_networks = allow_private_networks
        self._http = httpx.AsyncClient(
            headers=dict(headers or {}),
            timeout=request_timeout,
            follow_redirects=True,
            event_hooks={"request": [self._guard]},
        )
        self.card: AgentCard | None = None
        self._card_text = ""
        self._tools: dict[str, Tool] = {}
        self._skills: dict[str, AgentSkill] = {}
        self._client: Client | None = None
        self._last_error: str | None = None
        self._listener: Callable[[str], None] | None = None
        self._lock = anyio.Lock()
        self._loaded_at = 0.0

    # --- the card ---------------------------------------------------------------------------------

    async def _guard(self, request: httpx.Request) -> None:
        """Refuse a request (a redirect's too) to a private or loopback address, unless allowed."""
        if self.allow_private_networks:
            return
        host = request.url.host
        try:
            infos = await anyio.getaddrinfo(host, request.url.port or 443)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from None
        for info in infos:
            address = str(info[4][0])
            if not is_public(ipaddress.ip_address(address.split("%")[0])):
                raise httpx.ConnectError(
                    f"{host} resolves to {address}, a private or loopback address; set allow_private_networks: "
                    "true on this backend to reach it",
                    request=request,
                )

    async def load(self) -> bool:
        """Read the card now; True when its skills changed.

        Raises:
            BackendUnavailableError: the card cannot be fetched, is not an agent card, or names no endpoint this
                backend can speak (JSON-RPC or HTTP+JSON).
        """
        async with self._lock:
            try:
                response = await self._http.get(self.card_url)
                response.raise_for_status()
                raw = response.json()
                card = parse_agent_card(raw)
            except (httpx.HTTPError, ValueError, ParseError) as exc:
                self._last_error = f"the agent card at {self.card_url} could not be read: {_say(exc)}"
                raise BackendUnavailableError(self._last_error, backend_kind=self.kind) from None
            usable = [i for i in card.supported_interfaces if i.protocol_binding in ("JSONRPC", "HTTP+JSON")]
            if not usable or not all(urlsplit(i.url).scheme in ("http", "https") for i in usable):
                self._last_error = (
                    f"the agent card at {self.card_url} names no JSON-RPC or HTTP+JSON endpoint with an http(s) URL"
                )
                raise BackendUnavailableError(self._last_error, backend_kind=self.kind)
            text = json.dumps(raw, sort_keys=True)
            changed = text != self._card_text
            if changed:
                self.card, self._card_text = card, text
                self._skills = {}
                self._tools = {}
                for skill in card.skills:
                    name = _UNSAFE.sub("_", skill.id or skill.name)[:128] or "skill"
                    self._skills[name] = skill
                    self._tools[name] = self._tool(name, skill)
                config = ClientConfig(streaming=card.capabilities.streaming, httpx_client=self._http)
                self._client = ClientFactory(config).create(card)
            self._last_error = None
            self._loaded_at = time.monotonic()
            return changed

    async def _current(self) -> None:
        """Read the card when it has not been yet, or is older than `refresh_interval` (also without `start`);
        a re-read that fails keeps the tools last read."""
        if self.card is None:
            await self.load()
        elif time.monotonic() - self._loaded_at > self.refresh_interval:
            try:
                changed = await self.load()
            except BackendUnavailableError as error:
                logger.warning("a2a backend %s: %s (its tools stay as last read)", self.name, error.message)
                self._loaded_at = time.monotonic()  # (tried: not again on every call)
                return
            if changed and self._listener is not None:
                self._listener(self.name)

    def _tool(self, name: str, skill: AgentSkill) -> Tool:
        examples = tuple(ToolExample(description=e[:200], args={"text": e}) for e in list(skill.examples)[:5])
        modes = f" Input: {', '.join(skill.input_modes)}." if skill.input_modes else ""
        modes += f" Output: {', '.join(skill.output_modes)}." if skill.output_modes else ""
        return Tool(
            id=ToolId(self.name, name),
            title=skill.name or None,
            description=(skill.description or f"The skill {skill.name or skill.id} of a remote agent.") + modes,
            input_schema=INPUT_SCHEMA,
            tags=tuple(skill.tags),
            annotations=ToolAnnotations(title=skill.name or None, open_world=True),
            examples=examples,
            backend_kind=self.kind,
            # What the agent says about itself: its card's name and description (the registry bounds it).
            namespace_description=namespace_text(self.card.name, self.card.description, limit=None)
            if self.card is not None
            else "",
        )

    async def start(self, task_group: TaskGroup) -> None:
        """Read the card (a failure is logged and reported by `health`), then re-read it on the interval."""
        try:
            await self.load()
        except BackendUnavailableError as error:
            logger.warning("a2a backend %s: %s", self.name, error.message)
        task_group.start_soon(self._refresh)

    async def _refresh(self) -> None:
        while True:
            await anyio.sleep(self.refresh_interval)
            try:
                changed = await self.load()
            except BackendUnavailableError as error:
                logger.warning("a2a backend %s: %s (its tools stay as last read)", self.name, error.message)
                continue
            if changed and self._listener is not None:
                logger.info("a2a backend %s: the agent card changed", self.name)
                self._listener(self.name)

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    # --- the Backend protocol --------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        await self._current()
        return list(self._tools.values())

    async def get_tool(self, name: str) -> Tool | None:
        await self._current()
        return self._tools.get(name)

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        """Send the message; the task's final artifacts are the result (see the module docstring)."""
        await self._current()
        if name not in self._tools or self._client is None:
            raise InvalidRequestError(f"The agent has no skill '{name}' (any more); search again.")
        parts: list[Part] = []
        if isinstance(args.get("text"), str):
            parts.append(Part(text=args["text"]))
        if isinstance(args.get("data"), dict):
            parts.append(new_data_part(args["data"]))
        if not parts:
            raise InvalidRequestError("Give text (words) or data (an object), or both.")
        # A context of its own: a call cancelled before the agent's first answer finds its task by it.
        context_id = uuid.uuid4().hex
        message = new_message(parts, role=Role.ROLE_USER, context_id=context_id)
        message.metadata.update({"skill": self._skills[name].id})
        task_id = ""
        client = self._client
        try:
            final: Task | Message | None = None
            updates = 0
            async for event in client.send_message(SendMessageRequest(message=message)):
                task_id, final, updates = await self._follow(event, ctx, final, updates, task_id)
            return self._answer(name, final)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(5, shield=True):
                await self._cancel_remote(client, task_id, context_id)
            raise
        except (A2AClientError, A2AError, httpx.HTTPError) as exc:
            self._last_error = _say(exc)
            raise BackendUnavailableError(
                f"The agent behind '{self.name}' did not answer: {_say(exc)}", backend_kind=self.kind
            ) from None

    async def _cancel_remote(self, client: Client, task_id: str, context_id: str) -> None:
        """Cancel the remote task of a cancelled call (found by its context when its id had not arrived yet)."""
        try:
            if not task_id:
                listed = await client.list_tasks(ListTasksRequest(context_id=context_id))
                task_ids = [t.id for t in listed.tasks if t.status.state not in (_DONE | _FAILED)]
            else:
                task_ids = [task_id]
            for found in task_ids:
                await client.cancel_task(CancelTaskRequest(id=found))
        except (A2AClientError, A2AError, httpx.HTTPError) as exc:
            logger.info("a2a backend %s: cancelling the remote task failed: %s", self.name, _say(exc))

    async def _follow(
        self, event: StreamResponse, ctx: CallContext, final: Task | Message | None, updates: int, task_id: str
    ) -> tuple[str, Task | Message | None, int]:
        """Fold one streamed event into (task id, the task or message so far, progress count)."""
        if event.HasField("message"):
            return task_id, event.message, updates
        if event.HasField("task"):
            return event.task.id, event.task, updates
        if isinstance(final, Task) and event.HasField("artifact_update"):
            artifact = event.artifact_update.artifact
            existing = next((a for a in final.artifacts if a.artifact_id == artifact.artifact_id), None)
            if existing is not None and event.artifact_update.append:
                existing.parts.extend(artifact.parts)
            elif existing is not None:
                existing.CopyFrom(artifact)
            else:
                final.artifacts.append(artifact)
        if isinstance(final, Task) and event.HasField("status_update"):
            status = event.status_update.status
            final.status.CopyFrom(status)
            words = _text(status.message.parts) if status.HasField("message") else ""
            if status.state == TaskState.TASK_STATE_WORKING:
                updates += 1
                await ctx.report_progress(updates, None, words or None)
        return (final.id if isinstance(final, Task) else task_id), final, updates

    def _answer(self, name: str, final: Task | Message | None) -> ToolOutput | str:
        tool_id = f"{self.name}:{name}"
        if final is None:
            raise ExecutionError(f"The agent sent nothing back for {tool_id}.", tool_id=tool_id)
        if isinstance(final, Message):
            return _output(list(final.parts))
        state = final.status.state
        said = _text(final.status.message.parts) if final.status.HasField("message") else ""
        if state in _FAILED or state in _WAITING:
            what = TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", " ")
            raise ExecutionError(
                f"The agent's task ended {what}" + (f": {said}" if said else "."),
                tool_id=tool_id,
                details={"task_id": final.id, "state": what},
            )
        if state not in _DONE:
            raise ExecutionError(f"The agent's task stopped unfinished ({TaskState.Name(state)}).", tool_id=tool_id)
        return _output([part for artifact in final.artifacts for part in artifact.parts])

    async def health(self) -> HealthStatus:
        started = time.perf_counter()
        try:
            changed = await self.load()
        except BackendUnavailableError as error:
            return HealthStatus(healthy=False, message=error.message)
        if changed and self._listener is not None:
            self._listener(self.name)
        elapsed = (time.perf_counter() - started) * 1000
        return HealthStatus(healthy=True, message=f"{len(self._tools)} skills", latency_ms=elapsed)

    def down_reason(self) -> str | None:
        """Why calls cannot work now (the card could not be read), or None."""
        return self._last_error if self.card is None else None

    async def aclose(self) -> None:
        await self._http.aclose()


def _text(parts: Sequence[Part]) -> str:
    return "\n".join(part.text for part in parts if part.HasField("text"))


def _output(parts: list[Part]) -> ToolOutput | str:
    """Text parts as the text; one data part as the structured result (several: a list)."""
    text = _text(parts)
    found = get_data_parts(parts)
    if not found:
        return text
    structured = found[0] if len(found) == 1 and isinstance(found[0], dict) else {"data": found}
    shown = text or json.dumps(structured, ensure_ascii=False)
    return ToolOutput(content=(mcp_types.TextContent(text=shown),), structured=structured)


def _say(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
