"""The MCP server: the meta-tools on the official SDK's low-level `Server`, answering from a `Gateway`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

import mcp_types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions

import aperture
from aperture.execution import CallContext, RunResult
from aperture.gateway import Gateway
from aperture.model import ApertureError, InternalError, UnknownToolError
from aperture.surface.mcp.metatools import (
    META_TOOLS,
    DescribeToolArgs,
    ListNamespacesArgs,
    ListToolExamplesArgs,
    ListToolsArgs,
    RunToolArgs,
    SearchToolsArgs,
)
from aperture.surface.mcp.results import error_result, json_result, run_result

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "This server is a gateway to many tools. Find one with search_tools (a few words about the task), read "
    "its input schema with describe_tool, then call it with run_tool(tool_id, args). Errors say what to fix."
)

Handler = Callable[[ServerRequestContext[Any], dict[str, Any]], Awaitable[mcp_types.CallToolResult]]


class McpSurface:
    """Builds the low-level MCP `Server` for a gateway; the same server serves stdio and HTTP."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._validators = {tool.name: tool.validator() for tool in META_TOOLS}
        self._listing = mcp_types.ListToolsResult(tools=[tool.listing() for tool in META_TOOLS])
        self._handlers: dict[str, Handler] = {
            "search_tools": self._search_tools,
            "describe_tool": self._describe_tool,
            "run_tool": self._run_tool,
            "list_tool_examples": self._list_tool_examples,
            "list_tools": self._list_tools,
            "list_namespaces": self._list_namespaces,
        }

    @cached_property
    def server(self) -> Server[Any]:
        return Server(
            self.gateway.config.server.name,
            version=aperture.__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
        )

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return self._listing

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        """Dispatch one meta-tool call; every failure becomes an `isError` result the model can read."""
        name = params.name
        handler = self._handlers.get(name)
        try:
            if handler is None:
                raise UnknownToolError(name, [t.name for t in META_TOOLS])
            args = self._validators[name].validate(params.arguments or {})
            return await handler(ctx, args)
        except ApertureError as error:
            error.op = error.op or name
            return error_result(error)
        except Exception as exc:  # the surface boundary: log it, answer with an internal error, keep serving
            logger.exception("meta-tool %s failed", name)
            return error_result(
                InternalError(
                    f"Aperture hit an internal error in {name} ({type(exc).__name__}). This is a bug in the gateway, "
                    "not in your request; retrying may not help.",
                    op=name,
                )
            )

    # --- the meta-tools -------------------------------------------------------------------------

    async def _search_tools(self, ctx: ServerRequestContext[Any], raw: dict[str, Any]) -> mcp_types.CallToolResult:
        args = SearchToolsArgs.model_validate(raw)
        return json_result(
            self.gateway.search(
                args.query, limit=args.limit, cursor=args.cursor, namespace=args.namespace, tags=args.tags or ()
            )
        )

    async def _describe_tool(self, ctx: ServerRequestContext[Any], raw: dict[str, Any]) -> mcp_types.CallToolResult:
        args = DescribeToolArgs.model_validate(raw)
        return json_result(self.gateway.describe(args.tool_id, args.detail_level, args.examples_max))

    async def _list_tool_examples(
        self, ctx: ServerRequestContext[Any], raw: dict[str, Any]
    ) -> mcp_types.CallToolResult:
        args = ListToolExamplesArgs.model_validate(raw)
        return json_result(self.gateway.examples(args.tool_id, args.max))

    async def _list_tools(self, ctx: ServerRequestContext[Any], raw: dict[str, Any]) -> mcp_types.CallToolResult:
        args = ListToolsArgs.model_validate(raw)
        return json_result(
            self.gateway.list_tools(
                limit=args.limit, cursor=args.cursor, namespace=args.namespace, backend_kind=args.backend_kind
            )
        )

    async def _list_namespaces(self, ctx: ServerRequestContext[Any], raw: dict[str, Any]) -> mcp_types.CallToolResult:
        args = ListNamespacesArgs.model_validate(raw)
        return json_result(await self.gateway.list_namespaces(limit=args.limit, cursor=args.cursor))

    async def _run_tool(self, ctx: ServerRequestContext[Any], raw: dict[str, Any]) -> mcp_types.CallToolResult:
        args = RunToolArgs.model_validate(raw)
        call_ctx = CallContext(progress=ctx.session.report_progress, request_id=str(ctx.request_id))
        result: RunResult = await self.gateway.run(args.tool_id, args.args, call_ctx)
        return run_result(result)
