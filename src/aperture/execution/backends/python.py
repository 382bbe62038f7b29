"""The `python` backend: plain sync or async functions become tools.

The input schema comes from the type hints (through pydantic), the description and the parameter
descriptions from the Google-style docstring. Sync functions run in a worker thread so they never block
the event loop.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints, overload

import anyio
import anyio.to_thread
import mcp_types
import pydantic
import pydantic.fields

from aperture.execution._docstrings import parse_docstring
from aperture.execution._imports import import_user_module
from aperture.execution.backend import CallContext, HealthStatus
from aperture.execution.result import CONTENT_TYPES, ToolOutput, dump_json, to_jsonable
from aperture.model import ConfigError, Tool, ToolAnnotations, ToolExample, ToolId, UnknownToolError
from aperture.model._schema import tidy_schema

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__aperture_tool__"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """What `@tool(...)` says about a function beyond its signature."""

    name: str | None = None
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    examples: tuple[ToolExample, ...] = ()
    annotations: ToolAnnotations = field(default_factory=ToolAnnotations)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    examples: Iterable[Mapping[str, Any] | ToolExample] = (),
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    examples: Iterable[Mapping[str, Any] | ToolExample] = (),
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
) -> F | Callable[[F], F]:
    """Mark a function as a tool; a `python` backend loading its module picks it up.

    The function is returned unchanged, so it stays callable in tests. Use it bare (`@tool`) or with
    options (`@tool(tags=["math"], read_only=True)`). Examples are `{"description", "args", "result"?}`.
    """
    if fn is not None and not callable(fn):
        raise TypeError(f"@tool got {fn!r}; use it as @tool or @tool(name=..., tags=[...]) above a function")
    spec = ToolSpec(
        name=name,
        title=title,
        description=description,
        tags=tuple(tags),
        examples=tuple(_example(e) for e in examples),
        annotations=ToolAnnotations(
            title=title, read_only=read_only, destructive=destructive, idempotent=idempotent, open_world=open_world
        ),
    )

    def mark(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@tool(...) must decorate a function, got {type(func).__name__}")
        setattr(func, _MARK, spec)
        return func

    return mark(fn) if fn is not None else mark


def _example(example: Mapping[str, Any] | ToolExample) -> ToolExample:
    if isinstance(example, ToolExample):
        return example
    try:
        return ToolExample(
            description=str(example["description"]), args=dict(example["args"]), result=example.get("result")
        )
    except (KeyError, TypeError) as exc:
        raise TypeError(
            f"a tool example must be a mapping with 'description' and 'args' (and optionally 'result'), got {example!r}"
        ) from exc


@dataclass(frozen=True, slots=True)
class _FunctionTool:
    """A registered function and everything needed to call it."""

    tool: Tool
    fn: Callable[..., Any]
    arguments: type[pydantic.BaseModel]
    is_async: bool
    context_param: str | None
    wrap_result: bool
    result_adapter: pydantic.TypeAdapter[Any] | None


class PythonBackend:
    """Tools that are plain Python functions, in this process.

    Example:
        ```python
        backend = PythonBackend("math")

        @backend.tool(tags=["arithmetic"])
        def add(a: float, b: float) -> float:
            \"\"\"Add two numbers.\"\"\"
            return a + b
        ```
    """

    kind = "python"

    def __init__(self, name: str, functions: Iterable[Callable[..., Any]] = ()) -> None:
        ToolId(name, "x")  # validates the namespace, with a clear message
        self._name = name
        self._tools: dict[str, _FunctionTool] = {}
        self._listener: Callable[[str], None] | None = None
        for fn in functions:
            self.add_tool(fn)

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def from_module(cls, name: str, module: str | ModuleType, *, path: str | Path | None = None) -> PythonBackend:
        """Load every function marked with `@tool` in `module`, in definition order.

        Args:
            name: the backend's name, which becomes the tools' namespace.
            module: a module or a dotted module name to import.
            path: a directory to put on `sys.path` first (for modules that are not installed).

        Raises:
            ConfigError: when the module cannot be imported or defines no tools.
        """
        if isinstance(module, str):
            module = import_user_module(module, owner=f"backend '{name}'", path=path)
        functions = [obj for obj in vars(module).values() if callable(obj) and hasattr(obj, _MARK)]
        if not functions:
            raise ConfigError(
                f"backend '{name}': module '{module.__name__}' defines no tools; "
                "decorate functions with @aperture.tool (from aperture import tool)"
            )
        return cls(name, functions)

    # --- registration ---------------------------------------------------------------------------

    @overload
    def tool(self, fn: F, /) -> F: ...
    @overload
    def tool(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...
    def tool(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Decorator: register `fn` as a tool of this backend and return it unchanged."""

        def register(func: F) -> F:
            self.add_tool(tool(**options)(func) if options else func)
            return func

        return register(fn) if fn is not None else register

    def add_tool(self, fn: Callable[..., Any]) -> Tool:
        """Register a function (with or without `@tool` options) and return its `Tool`.

        Raises:
            TypeError: for a function whose signature cannot become a tool, with the fix in the message.
        """
        spec: ToolSpec = getattr(fn, _MARK, None) or ToolSpec()
        entry = _build(self._name, fn, spec)
        if entry.tool.name in self._tools:
            raise TypeError(
                f"backend '{self._name}' already has a tool named '{entry.tool.name}'; pass @tool(name=...)"
            )
        self._tools[entry.tool.name] = entry
        if self._listener is not None:
            self._listener(self._name)
        return entry.tool

    def remove_tool(self, name: str) -> None:
        """Remove a tool; the registry is told the tool list changed."""
        del self._tools[name]
        if self._listener is not None:
            self._listener(self._name)

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    # --- the Backend protocol -------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        return [entry.tool for entry in self._tools.values()]

    async def get_tool(self, name: str) -> Tool | None:
        entry = self._tools.get(name)
        return entry.tool if entry else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        entry = self._tools.get(name)
        if entry is None:
            raise UnknownToolError(f"{self._name}:{name}", [f"{self._name}:{n}" for n in self._tools])
        kwargs = dict(entry.arguments.model_validate(args))
        if entry.context_param:
            kwargs[entry.context_param] = ctx
        if entry.is_async:
            value = await entry.fn(**kwargs)
        else:
            # Abandoned on cancel: a thread cannot be interrupted, but the caller is freed at once.
            value = await anyio.to_thread.run_sync(functools.partial(entry.fn, **kwargs), abandon_on_cancel=True)
        return _output(entry, value)

    async def health(self) -> HealthStatus:
        return HealthStatus(healthy=True, message=f"{len(self._tools)} in-process tools")

    async def aclose(self) -> None:
        self._listener = None


def _output(entry: _FunctionTool, value: Any) -> Any:
    """Shape a function's return value to its declared output schema."""
    if entry.result_adapter is None or isinstance(value, (ToolOutput, *CONTENT_TYPES)):
        return value
    data = to_jsonable(value, tool_id=entry.tool.key)
    structured = {"result": data} if entry.wrap_result else data
    text = data if isinstance(data, str) else dump_json(data)
    return ToolOutput(content=(mcp_types.TextContent(text=text),), structured=structured)


def _build(namespace: str, fn: Callable[..., Any], spec: ToolSpec) -> _FunctionTool:
    target = inspect.unwrap(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        raise TypeError(f"a tool must be a function or method, got {type(fn).__name__}: {fn!r}")
    name = spec.name or target.__name__
    doc = parse_docstring(inspect.getdoc(target) or "")
    try:
        hints = get_type_hints(target, include_extras=True)
    except NameError as exc:
        raise TypeError(f"tool '{name}': cannot resolve a type hint ({exc}); import the type at module level") from exc
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(target).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool '{name}': *args and **kwargs cannot become a schema; list the parameters by name")
        hint = hints.get(param.name, Any)
        if _is_context(hint):
            context_param = param.name
            continue
        if param.name.startswith("_"):
            raise TypeError(
                f"tool '{name}': parameter '{param.name}' starts with '_'; rename it (pydantic hides those)"
            )
        default = ... if param.default is param.empty else param.default
        description = doc.params.get(param.name)
        if description and not _has_field_description(hint):
            hint = Annotated[hint, pydantic.Field(description=description)]
        fields[param.name] = (hint, default)
    model_name = "".join(part.title() for part in name.split("_")) + "Arguments"
    arguments = pydantic.create_model(model_name, __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    input_schema = tidy_schema(arguments.model_json_schema())
    result_adapter, output_schema, wrap = _output_schema(name, hints.get("return", inspect.Signature.empty))
    tool_def = Tool(
        id=ToolId(namespace, name),
        title=spec.title,
        description=spec.description or doc.description or name.replace("_", " "),
        input_schema=input_schema,
        output_schema=output_schema,
        tags=spec.tags,
        annotations=spec.annotations,
        examples=spec.examples,
        backend_kind=PythonBackend.kind,
    )
    return _FunctionTool(
        tool=tool_def,
        fn=fn,
        arguments=arguments,
        is_async=inspect.iscoroutinefunction(target),
        context_param=context_param,
        wrap_result=wrap,
        result_adapter=result_adapter,
    )


def _output_schema(name: str, hint: Any) -> tuple[pydantic.TypeAdapter[Any] | None, dict[str, Any] | None, bool]:
    """The output schema for a return annotation; non-object results are wrapped as `{"result": ...}`."""
    if hint is inspect.Signature.empty or hint is Any or hint is None or hint is type(None):
        return None, None, False
    if _is_content(hint):
        return None, None, False  # MCP content blocks pass through as content, not structured data
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(hint)
        schema = tidy_schema(adapter.json_schema(mode="serialization"))
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        logger.warning("tool %s: return type %r has no JSON schema; results go unchecked (%s)", name, hint, exc)
        return None, None, False
    if schema.get("type") == "object":
        return adapter, schema, False
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    if defs:
        wrapped["$defs"] = defs
    return adapter, wrapped, True


def _is_content(hint: Any) -> bool:
    """`ImageContent`, `list[TextContent | ImageContent]` and the like."""
    if get_origin(hint) in (list, UnionType, Union):
        return all(_is_content(option) for option in get_args(hint))
    return isinstance(hint, type) and issubclass(hint, CONTENT_TYPES)


def _is_context(hint: Any) -> bool:
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return hint is CallContext


def _has_field_description(hint: Any) -> bool:
    if get_origin(hint) is not Annotated:
        return False
    return any(isinstance(m, pydantic.fields.FieldInfo) and m.description for m in get_args(hint)[1:])
