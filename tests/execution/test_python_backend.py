"""The python backend: schemas from type hints and docstrings, sync and async functions, misuse caught early."""

from __future__ import annotations

import datetime
import threading
from typing import Annotated, Literal

import anyio
import pytest
from pydantic import BaseModel, Field

from aperture import tool
from aperture.execution import CallContext, PythonBackend, ToolOutput
from aperture.model import ConfigError

pytestmark = pytest.mark.anyio


class Point(BaseModel):
    x: int
    y: int


def test_schema_comes_from_hints_and_docstring() -> None:
    backend = PythonBackend("geo")

    @backend.tool(tags=["geometry"], read_only=True)
    def shift(point: Point, dx: int = 0, unit: Literal["px", "pt"] = "px", note: str | None = None) -> Point:
        """Move a point.

        Longer explanation that stays in the description.

        Args:
            point: The point to move.
            dx: Horizontal offset,
                may be negative.
            unit: Unit of the offset.
        """
        return Point(x=point.x + dx, y=point.y)

    (listed,) = anyio.run(backend.list_tools)
    schema = listed.input_schema
    assert listed.key == "geo:shift" and listed.tags == ("geometry",) and listed.annotations.read_only
    assert listed.description.startswith("Move a point.\n\nLonger explanation")
    assert "Args" not in listed.description
    assert schema["required"] == ["point"] and schema["additionalProperties"] is False
    assert schema["properties"]["dx"] == {
        "default": 0,
        "description": "Horizontal offset, may be negative.",
        "type": "integer",
    }
    assert schema["properties"]["unit"]["enum"] == ["px", "pt"]
    assert "title" not in schema["properties"]["dx"] and "title" not in schema
    assert listed.output_schema is not None and listed.output_schema["required"] == ["x", "y"]
    assert shift(Point(x=1, y=2), dx=3) == Point(x=4, y=2)  # the decorator returns the function unchanged


async def test_primitive_results_are_wrapped_for_structured_content() -> None:
    backend = PythonBackend("m")

    @backend.tool
    def double(n: int) -> int:
        return n * 2

    (listed,) = await backend.list_tools()
    assert listed.output_schema == {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }
    output = await backend.call("double", {"n": 4}, CallContext())
    assert isinstance(output, ToolOutput) and output.structured == {"result": 8}


async def test_sync_tools_run_off_the_event_loop() -> None:
    backend = PythonBackend("t")
    loop_thread = threading.get_ident()

    @backend.tool
    def where() -> bool:
        return threading.get_ident() != loop_thread

    output = await backend.call("where", {}, CallContext())
    assert isinstance(output, ToolOutput) and output.structured == {"result": True}


async def test_async_tools_and_context_injection() -> None:
    backend = PythonBackend("t")
    seen: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)

    @backend.tool
    async def work(steps: int, ctx: CallContext) -> str:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps)
        return "done"

    (listed,) = await backend.list_tools()
    assert set(listed.input_schema["properties"]) == {"steps"}
    await backend.call("work", {"steps": 2}, CallContext(progress=progress))
    assert seen == [1, 2]


async def test_pydantic_types_are_built_from_json_arguments() -> None:
    backend = PythonBackend("t")

    @backend.tool
    def weekday(day: datetime.date, scale: Annotated[int, Field(ge=1)] = 1) -> str:
        return day.strftime("%A") * scale

    output = await backend.call("weekday", {"day": "2026-11-23"}, CallContext())
    assert isinstance(output, ToolOutput) and output.structured == {"result": "Monday"}
    (listed,) = await backend.list_tools()
    assert listed.input_schema["properties"]["scale"]["minimum"] == 1


def test_misuse_fails_at_registration_with_the_fix() -> None:
    backend = PythonBackend("t")
    with pytest.raises(TypeError, match="list the parameters by name"):

        @backend.tool
        def variadic(*args: int) -> int:
            return 0

    @backend.tool
    def twice() -> None:
        return None

    with pytest.raises(TypeError, match=r"already has a tool named 'twice'; pass @tool\(name=...\)"):
        backend.add_tool(twice)
    with pytest.raises(TypeError, match="must decorate a function, got int"):
        tool(name="x")(42)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="must be a function or method"):
        backend.add_tool(print)


def test_module_loading_finds_marked_functions() -> None:
    backend = PythonBackend.from_module("toolbox", "toolbox")
    tools = anyio.run(backend.list_tools)
    assert len(tools) >= 12
    assert [t.name for t in tools][:2] == ["calculate", "convert_units"]
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        PythonBackend.from_module("x", "no_such_module")
    with pytest.raises(ConfigError, match=r"defines no tools; decorate functions with @aperture\.tool"):
        PythonBackend.from_module("x", "json")
