"""What an A2A message asks of the gateway: one data part `{"op": ..., ...}` names a meta-tool operation (search,
describe, run, or any other meta-tool the gateway offers, by its name); plain text is a search. A message that
asks nothing the gateway can do is refused before any task exists, with what to send instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from a2a.helpers import get_data_parts
from a2a.types import Message
from a2a.utils.errors import InvalidParamsError

OPS = {"search": "search_tools", "describe": "describe_tool", "run": "run_tool"}
"""The short operation names of data parts, and the meta-tools they run."""

HOW = (
    'Send a text part (it is searched for matching tools) or one data part naming an operation: {"op": "search", '
    '"query": "..."}, {"op": "describe", "tool_id": "ns:name"} or {"op": "run", "tool_id": "ns:name", "args": {...}}.'
)
MAX_TEXT = 4000  # characters of a text request (a search query is far shorter; the gateway says how short)


@dataclass(frozen=True, slots=True)
class Operation:
    """One meta-tool call a message asks for."""

    meta_tool: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the task does, for people: `run toolbox:slugify`, `search_tools`."""
        target = self.arguments.get("tool_id")
        return f"{self.meta_tool} {target}" if isinstance(target, str) else self.meta_tool


def operation_of(message: Message, offered: Mapping[str, object]) -> Operation:
    """The operation `message` asks for; `offered` holds the names of the meta-tools the gateway offers now.

    Raises:
        InvalidParamsError: the message has no parts, parts of a kind the gateway does not take (files, URLs),
            several data parts, or a data part that names no operation the gateway offers.
    """
    parts = list(message.parts)
    if not parts:
        raise InvalidParamsError(message=f"The message has no parts. {HOW}")
    data = [part for part in parts if part.HasField("data")]
    others = [part for part in parts if not part.HasField("data") and not part.HasField("text")]
    if others:
        raise InvalidParamsError(message=f"This agent takes text and data parts only, not files or URLs. {HOW}")
    if len(data) > 1:
        raise InvalidParamsError(message=f"The message has {len(data)} data parts; send one operation each. {HOW}")
    if data:
        return _data_operation(_integral(get_data_parts(data)[0]), offered)
    text = "\n".join(part.text for part in parts).strip()
    if not text:
        raise InvalidParamsError(message=f"The message's text is empty. {HOW}")
    if len(text) > MAX_TEXT:
        raise InvalidParamsError(
            message=f"The text is {len(text)} characters; a search takes a few words (at most {MAX_TEXT}). {HOW}"
        )
    return Operation("search_tools", {"query": text})


def _data_operation(payload: Any, offered: Mapping[str, object]) -> Operation:
    if not isinstance(payload, dict):
        raise InvalidParamsError(message=f"The data part is a {type(payload).__name__}, not a JSON object. {HOW}")
    op = payload.get("op")
    if not isinstance(op, str) or not op:
        raise InvalidParamsError(message=f'The data part names no operation ("op"). {HOW}')
    name = OPS.get(op, op)
    if name not in offered:
        known = ", ".join([*OPS, *(n for n in offered if n not in OPS.values())])
        raise InvalidParamsError(message=f"No operation {op[:80]!r}; operations here: {known}. {HOW}")
    return Operation(name, {key: value for key, value in payload.items() if key != "op"})


def _integral(value: Any) -> Any:
    """`value` with whole floats turned back into integers: a data part's numbers travel as doubles
    (protobuf's `Value`), and a tool that takes an integer should get `2`, not `2.0`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value
