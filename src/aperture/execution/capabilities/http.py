"""Calling a capability over HTTP: the request from templates, credentials from the environment, retries with
backoff, fallback providers, checked redirects, a capped response, and errors that quote the API's own message."""

from __future__ import annotations

import base64
import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpx2
import mcp_types

from aperture.execution.capabilities.netguard import PrivateNetworkError
from aperture.execution.capabilities.spec import (
    BODY_METHODS,
    SAFE_METHODS,
    Capability,
    PathParameterError,
    Provider,
    Template,
    as_text,
    render_body,
)
from aperture.execution.result import ToolOutput, dump_json
from aperture.model import ExecutionError, InputValidationError
from aperture.model.errors import shorten

logger = logging.getLogger(__name__)

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MESSAGE_KEYS = ("message", "error_description", "detail", "error", "title", "msg", "description")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """Knobs of a capabilities backend's HTTP calls."""

    retries: int = 2
    """Extra attempts after a connection error (and after a timeout, for GET, HEAD and OPTIONS)."""
    backoff: float = 0.2
    """Seconds before the first retry; doubles with each further one."""
    max_redirects: int = 5
    max_response_bytes: int = 10 * 1024 * 1024
    request_timeout: float | None = None
    """Seconds per request for every provider, instead of each provider's own `timeout`: a deadline for the whole
    request (connecting, sending, redirects, reading all of the answer), not for each read."""


class _ProviderFailed(Exception):
    """This provider cannot answer now (connection, timeout, 5xx, 429): try the next one."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.refused = refused


@dataclass(frozen=True, slots=True)
class _Credentials:
    """What in a request carries the capability's credentials, so none of it follows a redirect to another origin."""

    headers: frozenset[str]
    """Lower-case names of the headers from the capability's `headers` and `auth`."""
    params: frozenset[str]
    """Query parameters that carry a credential: the auth `param`, and `params` filled from the environment."""
    values: tuple[str, ...]
    """The secret values themselves (a redirect's query may echo them under another name)."""


_ALWAYS_STRIPPED = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    content_type: str
    body: bytes
    encoding: str | None


class CapabilityExecutor:
    """Runs capabilities through one pooled client."""

    def __init__(self, client: httpx2.AsyncClient, settings: HttpSettings | None = None) -> None:
        self.client = client
        # No cookie jar: a cookie one API set would go with later calls of every caller (and calls are stateless).
        client.cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self.settings = settings or HttpSettings()

    async def execute(self, capability: Capability, args: Mapping[str, Any]) -> ToolOutput:
        """Call the providers in order until one answers.

        Raises:
            ExecutionError: for a 4xx answer (with the API's message), or when every provider failed.
        """
        failures = []
        refused = True
        for provider in capability.providers:
            try:
                return await self._call(capability, provider, args)
            except _ProviderFailed as failure:
                logger.info("capability %s: %s failed: %s", capability.tool.key, provider.where, failure.message)
                failures.append(f"{provider.where}: {failure.message}")
                refused = refused and failure.refused
        if refused:
            raise ExecutionError(
                f"Tool '{capability.tool.key}' cannot be used: " + "; ".join(failures) + ".",
                details={"failures": failures},
            )
        raise ExecutionError(
            f"Tool '{capability.tool.key}' could not get an answer from its API. "
            + "; ".join(failures)
            + ". Retry later; if it keeps failing, the API may be down.",
            retryable=True,
            details={"failures": failures},
        )

    async def _call(self, capability: Capability, provider: Provider, args: Mapping[str, Any]) -> ToolOutput:
        request, credentials = self._request(capability, provider, args)
        shown = f"{request.method} {request.url.copy_with(query=None)}"
        timeout = self.settings.request_timeout or provider.timeout
        attempt = 0
        while True:
            try:
                answer = await self._send_within(timeout, request, capability, credentials)
                break
            except PrivateNetworkError as exc:
                raise _ProviderFailed(str(exc), refused=True) from None
            except httpx2.TransportError as exc:
                again = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout) or (
                    request.method in SAFE_METHODS
                    and isinstance(exc, httpx2.TimeoutException | httpx2.RemoteProtocolError | httpx2.ReadError)
                )
                if not again or attempt >= self.settings.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise _ProviderFailed(f"{shown}: {_transport_text(exc)}{tries}") from None
                await anyio.sleep(self.settings.backoff * 2**attempt)
                attempt += 1
        if 200 <= answer.status < 300:
            return _output(capability, provider, answer)
        message = _api_message(answer)
        status = f"{answer.status} {answer.reason}".strip()
        if answer.status >= 500 or answer.status == 429:
            raise _ProviderFailed(f"{shown} answered {status}: {message}")
        hint = {
            401: "The API refused the gateway's credentials: this is a setup problem for the operator, not your "
            "arguments.",
            403: "The API does not allow this with the gateway's credentials.",
            404: "Check the identifiers in your arguments.",
        }.get(answer.status, "Check the arguments against describe_tool and try again.")
        raise ExecutionError(
            f"Tool '{capability.tool.key}': the API answered {status}: {message}. {hint}",
            details={"status": answer.status, "api_message": message},
        )

    def _request(
        self, capability: Capability, provider: Provider, args: Mapping[str, Any]
    ) -> tuple[httpx2.Request, _Credentials]:
        values = {**provider.static_params, **args} if provider.static_params else args
        try:
            url = provider.url.render_url(values, trusted=provider.static_params.keys() - args.keys())
        except PathParameterError as exc:
            raise InputValidationError(
                f"Tool '{capability.tool.key}': {exc}.",
                details={"parameter": exc.name, "problem": exc.problem},
            ) from None
        if url is None:
            missing = [name for name in provider.url.args if name not in values]
            raise InputValidationError(
                f"Tool '{capability.tool.key}' needs {', '.join(repr(m) for m in missing)} to build its URL; "
                "pass a value for each.",
                details={"missing": missing},
            )
        headers = {}
        secrets = [value for name in provider.url.query_env_names if (value := os.environ.get(name))]
        for name, template in provider.headers:
            text = template.render(values)
            if text is not None:
                headers[name] = text
                secrets += _env_values(template)
        query: list[tuple[str, str]] = []
        secret_params = set()
        for name, template in provider.params:
            text = template.render(values)
            if text is not None and text not in ("", "null"):
                query.append((name, text))
                if found := _env_values(template):
                    secrets += found
                    secret_params.add(name)
        for arg, api_name in provider.param_map:
            value = values.get(arg)
            if value is not None and (text := as_text(value)):
                query.append((api_name, text))
        query += [(name, as_text(values[name])) for name in provider.static_query]
        auth = capability.auth
        if auth is not None:
            secrets += _authorize(capability, headers, query)
            if auth.param:
                secret_params.add(auth.param)
        body: Any = None
        if provider.method in BODY_METHODS:
            body = render_body(provider.body, values) if provider.has_body else (dict(values) or None)
        timeout = self.settings.request_timeout or provider.timeout
        request = self.client.build_request(
            provider.method,
            url,
            params=tuple(query) or None,
            headers=headers,
            json=body,
            timeout=timeout,
        )
        credentials = _Credentials(
            frozenset(name.lower() for name in headers),
            frozenset(secret_params),
            tuple(dict.fromkeys(value for value in secrets if value)),
        )
        return request, credentials

    async def _send_within(
        self, timeout: float, request: httpx2.Request, capability: Capability, credentials: _Credentials
    ) -> _Answer:
        """`_send` under one deadline for connecting, sending, redirects and every read: httpx2's own timeouts
        bound each operation alone, so a server that trickles a byte now and then would hold a call forever."""
        with anyio.move_on_after(timeout):
            return await self._send(request, capability, credentials)
        raise _DeadlineExceeded(timeout, request)

    async def _send(self, request: httpx2.Request, capability: Capability, credentials: _Credentials) -> _Answer:
        for _ in range(self.settings.max_redirects + 1):
            response = await self.client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    request = _redirected(request, response.status_code, location, capability, credentials)
                    continue
                body = await self._read(response, capability)
                return _Answer(
                    response.status_code,
                    response.reason_phrase,
                    response.headers.get("content-type", ""),
                    body,
                    response.charset_encoding,
                )
            finally:
                await response.aclose()
        raise ExecutionError(
            f"Tool '{capability.tool.key}': the API redirected more than {self.settings.max_redirects} times; "
            "giving up. This is a problem of the API or of the capability's URL, not of your arguments."
        )

    async def _read(self, response: httpx2.Response, capability: Capability) -> bytes:
        limit = self.settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(capability, limit)
        parts = []
        size = 0
        async for part in response.aiter_bytes():
            size += len(part)
            if size > limit:
                raise _too_large(capability, limit)
            parts.append(part)
        return b"".join(parts)


class _DeadlineExceeded(httpx2.TimeoutException):
    """The whole request took longer than its timeout (each read alone may have been quick)."""

    def __init__(self, timeout: float, request: httpx2.Request) -> None:
        super().__init__(f"no complete answer within {timeout:g} s", request=request)
        self.timeout = timeout


def _too_large(capability: Capability, limit: int) -> ExecutionError:
    return ExecutionError(
        f"Tool '{capability.tool.key}': the API's answer is larger than {limit // 1024} KiB and was cut off. "
        "Ask for less (a filter, a smaller page or limit), if the tool has such arguments."
    )


def _env_values(template: Template) -> list[str]:
    return [value for name in template.env_names if (value := os.environ.get(name))]


def _authorize(capability: Capability, headers: dict[str, str], query: list[tuple[str, str]]) -> list[str]:
    """Put the credential where the capability's auth says; the secret values sent."""
    auth = capability.auth
    assert auth is not None
    secret = os.environ.get(auth.env)
    if not secret:
        if auth.required:
            raise ExecutionError(
                f"Tool '{capability.tool.key}' needs a credential from the environment variable {auth.env}, which "
                "is not set where the gateway runs. This is a setup problem, not your arguments: tell the operator."
            )
        return []
    sent = [secret]
    if auth.kind == "basic" and ":" in secret:
        secret = base64.b64encode(secret.encode()).decode("ascii")
        sent.append(secret)
    if auth.param:
        query.append((auth.param, secret))
    else:
        headers[auth.header] = f"{auth.prefix} {secret}" if auth.prefix else secret
    return sent


def _redirected(
    request: httpx2.Request, status: int, location: str, capability: Capability, credentials: _Credentials
) -> httpx2.Request:
    url = request.url.join(location)
    if url.scheme not in ("http", "https"):
        raise ExecutionError(f"Tool '{capability.tool.key}': the API redirected to a {url.scheme}: URL; refused.")
    method = request.method
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    headers = httpx2.Headers(request.headers)
    headers.pop("host", None)
    content: bytes | None = None
    if method == request.method:
        content = request.content
    else:
        for name in ("content-length", "content-type", "transfer-encoding"):
            headers.pop(name, None)
    if (url.scheme, url.host, url.port) != (request.url.scheme, request.url.host, request.url.port):
        # Credentials are for the API's own origin, never for wherever it points: every header the capability
        # set (auth and `headers`), cookies, and query parameters that carry a credential, by name or by value.
        for name in credentials.headers | _ALWAYS_STRIPPED:
            headers.pop(name, None)
        kept = [
            (name, value)
            for name, value in url.params.multi_items()
            if name not in credentials.params and not any(secret in value for secret in credentials.values)
        ]
        if len(kept) != len(url.params.multi_items()):
            url = url.copy_with(params=kept or None)
    return httpx2.Request(method, url, headers=headers, content=content, extensions=request.extensions)


def _transport_text(exc: httpx2.TransportError) -> str:
    if isinstance(exc, _DeadlineExceeded):
        whole = "the whole request, connecting, sending and reading all of it"
        return f"no answer in time ({whole}, may take {exc.timeout:g} s)"
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(answer: _Answer) -> str:
    return answer.body.decode(answer.encoding or "utf-8", errors="replace")


def _api_message(answer: _Answer) -> str:
    """The API's own explanation of an error, short."""
    try:
        data = json.loads(answer.body)
    except ValueError:
        text = " ".join(_text(answer).split())
        return shorten(text, 500) if text else "(no message)"
    found = _message_in(data)
    return shorten(found if found is not None else json.dumps(data, ensure_ascii=False), 500)


def _message_in(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in _MESSAGE_KEYS:
            if key in data:
                found = _message_in(data[key])
                if found:
                    return found
        if isinstance(data.get("errors"), list) and data["errors"]:
            return _message_in(data["errors"][0])
    if isinstance(data, list) and data:
        return _message_in(data[0])
    return None


def _output(capability: Capability, provider: Provider, answer: _Answer) -> ToolOutput:
    fmt = provider.response_format or ("xml" if "xml" in answer.content_type else "json")
    if fmt == "binary":
        mime = answer.content_type.split(";")[0].strip() or "application/octet-stream"
        blob = mcp_types.BlobResourceContents(
            uri=f"aperture://result/{capability.tool.key}", mime_type=mime, blob=base64.b64encode(answer.body).decode()
        )
        return ToolOutput(content=(mcp_types.EmbeddedResource(resource=blob),))
    if not answer.body.strip():
        return ToolOutput(content=(mcp_types.TextContent(text=f"{answer.status} {answer.reason} (no content)"),))
    data: Any
    if fmt == "text":
        return ToolOutput(content=(mcp_types.TextContent(text=_text(answer)),))
    if fmt == "xml":
        try:
            root = ET.fromstring(answer.body)
        except ET.ParseError as exc:
            raise ExecutionError(
                f"Tool '{capability.tool.key}': the API's XML answer does not parse ({exc})."
            ) from None
        data = {_tag(root): xml_data(root)}
    else:
        try:
            data = json.loads(answer.body)
        except ValueError:
            return ToolOutput(content=(mcp_types.TextContent(text=_text(answer)),))
    for part in provider.response_path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            data = None
    structured = {"result": data} if capability.wrap_result else data if isinstance(data, dict) else None
    return ToolOutput(content=(mcp_types.TextContent(text=dump_json(data)),), structured=structured)


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def xml_data(element: ET.Element) -> Any:
    """An XML element as JSON data: attributes as `@name`, children by tag (repeated ones as lists), text."""
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    data: dict[str, Any] = {f"@{_tag_name(k)}": v for k, v in element.attrib.items()}
    for child in children:
        key, value = _tag(child), xml_data(child)
        if key in data:
            existing = data[key]
            data[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            data[key] = value
    if text:
        data["#text"] = text
    return data


def _tag_name(name: str) -> str:
    return name.rsplit("}", 1)[-1]
