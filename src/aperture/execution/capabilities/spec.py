"""The capability file format (one REST endpoint described in YAML) and its compiled, ready-to-call form.

The format follows the Rust gateway of seed 001, so its files load unchanged: keys this gateway does not use
(`fulcrum`, `transform`, `webhooks`, `cost_per_call`, ...) are accepted and ignored.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aperture.model import Tool, ToolAnnotations, ToolId, namespace_text
from aperture.model.errors import shorten

KIND = "capabilities"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PLACEHOLDER = re.compile(r"\{([^{}\s]+)\}")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Keys of the Rust format that Aperture reads past without comment.
FOREIGN_KEYS = frozenset(
    {
        "fulcrum", "transform", "webhooks", "cost_per_call", "cost_category", "execution_time", "produces",
        "consumes", "chains_with", "required", "scopes", "strategy", "key_template", "examples", "version",
    }
)  # fmt: skip


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def unknown_keys(self, where: str) -> list[str]:
        """`where.key` for every key that neither Aperture nor the Rust format knows (usually a typo)."""
        return [f"{where}{key}" for key in (self.model_extra or {}) if key not in FOREIGN_KEYS]


class RestConfig(_Part):
    """How to build the HTTP request."""

    base_url: str = ""
    path: str = ""
    endpoint: str = ""
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    param_map: dict[str, str] = Field(default_factory=dict)
    static_params: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    response_path: str | None = None
    response_format: Literal["", "json", "text", "xml", "binary"] = ""

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method not in METHODS:
            raise ValueError(f"unknown HTTP method {value!r}; use one of {', '.join(METHODS)}")
        return method

    @field_validator("headers", "params", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict) else str(v).lower()
                    if isinstance(v, bool) else str(v) for k, v in value.items()}  # fmt: skip
        return value

    @model_validator(mode="after")
    def _has_url(self) -> RestConfig:
        if not self.endpoint and not self.base_url:
            raise ValueError("give 'endpoint' (a full URL) or 'base_url' (plus 'path')")
        return self


class ProviderConfig(_Part):
    """One way to reach the API: a REST endpoint and its timeout."""

    service: str = "rest"
    timeout: float = Field(30.0, gt=0)
    config: RestConfig

    @field_validator("service")
    @classmethod
    def _rest_only(cls, value: str) -> str:
        if value != "rest":
            raise ValueError(f"unknown service {value!r}: only 'rest' is supported")
        return value


class AuthConfig(_Part):
    """Credentials, by reference only: `key: env:VAR` (also `{env.VAR}` or a bare `VAR_NAME`)."""

    type: Literal["", "none", "bearer", "api_key", "basic"] = ""
    key: str = ""
    header: str | None = None
    prefix: str | None = None
    param: str | None = None
    required: bool | None = None
    description: str = ""

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if value in ("oauth", "oauth2"):
            raise ValueError("type 'oauth' is not supported here; put the access token in an environment variable "
                             "and write type: bearer, key: env:NAME")  # fmt: skip
        return value

    @field_validator("key")
    @classmethod
    def _reference_only(cls, value: str) -> str:
        if value and credential_env(value) is None:
            if value.split(":", 1)[0] in ("keychain", "oauth", "file"):
                raise ValueError(f"'{value.split(':', 1)[0]}:' credentials are not supported; use key: env:NAME")
            raise ValueError(
                "this looks like a literal credential, and literals are refused so secrets stay out of files: put "
                "the secret in an environment variable and write key: env:NAME"
            )
        return value

    @property
    def active(self) -> bool:
        return self.type not in ("", "none") and bool(self.key)


class CacheConfig(_Part):
    ttl: float = Field(0, ge=0)


class Metadata(_Part):
    category: str = ""
    tags: list[str] = Field(default_factory=list)
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None


class SchemaConfig(_Part):
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None


class ApiInfo(_Part):
    """The API a capability belongs to, as OpenAPI's `info` says it: searched as its namespace text."""

    title: str = ""
    description: str = ""


class CapabilityFile(_Part):
    """One capability file, as written."""

    name: str = ""
    description: str = ""
    info: ApiInfo = Field(default_factory=ApiInfo)
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    providers: dict[str, Any]
    auth: AuthConfig = Field(default_factory=AuthConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    metadata: Metadata = Field(default_factory=Metadata)
    sha256: str | None = None

    @field_validator("providers")
    @classmethod
    def _has_primary(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "primary" not in value:
            raise ValueError("'providers' needs a 'primary' provider (and optionally 'fallback': one or a list)")
        return value

    def provider_list(self) -> list[tuple[Loc, ProviderConfig]]:
        """Providers in the order they are tried: primary, other named ones, then the fallbacks.

        Raises:
            SpecError: for the first provider that is not valid, with its location.
        """
        named: list[tuple[Loc, Any]] = [(("providers", k), v) for k, v in self.providers.items() if k != "fallback"]
        named.sort(key=lambda item: item[0][1] != "primary")
        fallback = self.providers.get("fallback") or []
        if isinstance(fallback, list):
            named += [(("providers", "fallback", i), v) for i, v in enumerate(fallback)]
        else:
            named.append((("providers", "fallback"), fallback))
        found = []
        for loc, raw in named:
            try:
                found.append((loc, ProviderConfig.model_validate(raw)))
            except pydantic.ValidationError as exc:
                error = exc.errors()[0]
                raise SpecError((*loc, *error["loc"]), error["msg"].removeprefix("Value error, ")) from None
        return found


Loc = tuple[str | int, ...]


class SpecError(ValueError):
    """A problem in a capability file at a key path (`loc`), which the loader turns into a line number."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(f"{dotted(loc)}: {message}")
        self.loc = loc
        self.reason = message


def dotted(loc: Loc) -> str:
    """`providers.fallback[0].config.path` from a key path."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def credential_env(key: str) -> str | None:
    """The environment variable a credential reference names, or None when `key` is not a reference."""
    if key.startswith("env:") and _ENV_NAME.fullmatch(key[4:].upper()):
        return key[4:]
    if key.startswith("{env.") and key.endswith("}"):
        return key[5:-1]
    return key if _ENV_NAME.fullmatch(key) else None


# --- templates ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ref:
    name: str
    env: bool


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `{arg}` and `{env.VAR}` placeholders, split once at load."""

    parts: tuple[str | _Ref, ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        parts: list[str | _Ref] = []
        last = 0
        for match in _PLACEHOLDER.finditer(text):
            if match.start() > last:
                parts.append(text[last : match.start()])
            name = match.group(1)
            parts.append(_Ref(name[4:], True) if name.startswith("env.") else _Ref(name, False))
            last = match.end()
        if last < len(text):
            parts.append(text[last:])
        return cls(tuple(parts))

    @property
    def args(self) -> list[str]:
        """The argument names it refers to."""
        return [p.name for p in self.parts if isinstance(p, _Ref) and not p.env]

    @property
    def env_names(self) -> list[str]:
        """The environment variables it refers to (`{env.VAR}`)."""
        return [p.name for p in self.parts if isinstance(p, _Ref) and p.env]

    @property
    def query_env_names(self) -> list[str]:
        """The environment variables it refers to in a URL's query (`?key={env.API_KEY}`): credentials, like
        those of `auth` and `headers`."""
        names: list[str] = []
        in_query = False
        for part in self.parts:
            if isinstance(part, str):
                in_query = in_query or "?" in part
            elif part.env and in_query:
                names.append(part.name)
        return names

    @property
    def single(self) -> str | None:
        """The argument name when the whole template is one `{arg}`."""
        if len(self.parts) == 1 and isinstance(self.parts[0], _Ref) and not self.parts[0].env:
            return self.parts[0].name
        return None

    def render_url(self, values: Mapping[str, Any], *, trusted: Collection[str] = ()) -> str | None:
        """Fill in a URL template, every value percent-encoded; None when an argument it names is not given.

        A value in the path stays inside its own segment: one holding a slash or a backslash (also percent-encoded,
        however often, or as a fullwidth form), or leaving its segment empty, `.` or `..`, is refused, since it
        would change the path that the capability's credentials are sent to.

        Args:
            trusted: names whose values come from the capability file itself (`static_params` the caller did not
                override): encoded, but not checked.

        Raises:
            PathParameterError: naming the argument and what a path value may hold.
        """
        pieces = self._pieces(values)
        if pieces is None:
            return None
        skeleton: list[str] = []
        filled: list[tuple[str, str]] = []  # (argument name, its text), in order; marked in the skeleton by index
        for piece in pieces:
            if isinstance(piece, str):
                skeleton.append(piece)
            else:
                skeleton.append(f"\0{len(filled)}\0")
                filled.append(piece)
        url = "".join(skeleton)
        if filled:
            _check_path(url, filled, trusted)
        return _MARK.sub(lambda m: quote(filled[int(m.group(1))][1], safe=""), url)

    def render(self, values: Mapping[str, Any]) -> str | None:
        """Fill in the placeholders as they are (headers, query, body); None when an argument it names is not given.

        URLs go through `render_url`, which encodes and checks the values.
        """
        pieces = self._pieces(values)
        if pieces is None:
            return None
        return "".join(piece if isinstance(piece, str) else piece[1] for piece in pieces)

    def _pieces(self, values: Mapping[str, Any]) -> list[str | tuple[str, str]] | None:
        """The template's parts filled in: literal text and `{env.…}` values as strings, each argument as
        `(name, its text)`; None when an argument it names is not given."""
        pieces: list[str | tuple[str, str]] = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
            elif part.env:
                pieces.append(os.environ.get(part.name, ""))
            elif part.name not in values:
                return None
            else:
                pieces.append((part.name, as_text(values[part.name])))
        return pieces


class PathParameterError(ValueError):
    """An argument whose value would change the structure of the URL path it is placed in."""

    def __init__(self, name: str, value: str, problem: str) -> None:
        super().__init__(
            f"the value of '{name}' ({shorten(repr(value), 40)}) {problem}, so it cannot go into the URL path: a path "
            "value must be one path segment, any text without '/' or '\\' (plain, percent-encoded or fullwidth), "
            "and not empty, '.' or '..'; it is percent-encoded for you. Pass the identifier itself"
        )
        self.name = name
        self.problem = problem


_MARK = re.compile("\0(\\d+)\0")
_SEPARATORS = ("/", "\\")


def _check_path(url: str, filled: list[tuple[str, str]], trusted: Collection[str]) -> None:
    """Refuse a value that would add, remove or climb a segment of the path of `url` (values marked in it)."""
    scheme = url.find("://")
    start = url.find("/", scheme + 3) if scheme >= 0 else 0
    if start < 0:
        return  # no path: values are in the host, where encoding keeps them from adding one
    ends = [i for i in (url.find("?", start), url.find("#", start)) if i >= 0]
    path = url[start : min(ends)] if ends else url[start:]
    for segment in path.split("/"):
        marks = [int(m.group(1)) for m in _MARK.finditer(segment) if filled[int(m.group(1))][0] not in trusted]
        if not marks:
            continue
        for index in marks:
            name, value = filled[index]
            if any(sep in form for form in _forms(value) for sep in _SEPARATORS):
                raise PathParameterError(name, value, "holds a slash or backslash")
        text = _MARK.sub(lambda m: filled[int(m.group(1))][1], segment)
        if any(form in ("", ".", "..") for form in _forms(text)):
            name, value = filled[marks[0]]
            moves = f"makes the path segment {text!r}, which moves the request to another path"
            problem = "is empty" if not value.strip() else moves
            raise PathParameterError(name, value, problem)


def _forms(text: str) -> list[str]:
    """`text` as a server might read it: percent-decoded once, twice, ..., and with fullwidth forms folded (NFKC)."""
    forms = [text]
    current = text
    for _ in range(4):
        decoded = unquote(current)
        if decoded == current:
            break
        forms.append(current := decoded)
    forms += [folded for form in forms if (folded := unicodedata.normalize("NFKC", form)) != form]
    return [form.strip() for form in forms] + forms


def as_text(value: Any) -> str:
    """An argument as it appears in a URL, header or query string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _compile_body(value: Any) -> Any:
    if isinstance(value, str):
        return Template.compile(value)
    if isinstance(value, dict):
        return {k: _compile_body(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_body(v) for v in value]
    return value


_MISSING = object()


def render_body(template: Any, values: Mapping[str, Any]) -> Any:
    """A body template filled in: a lone `{arg}` keeps the argument's JSON type; keys of missing ones drop out."""
    if isinstance(template, Template):
        single = template.single
        if single is not None:
            return values.get(single, _MISSING)
        text = template.render(values)
        if text is None:
            return _MISSING
        if (text.startswith("{") and text.endswith("}")) or (text.startswith("[") and text.endswith("]")):
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text
    if isinstance(template, dict):
        rendered = {k: render_body(v, values) for k, v in template.items()}
        return {k: v for k, v in rendered.items() if v is not _MISSING}
    if isinstance(template, list):
        return [v for v in (render_body(item, values) for item in template) if v is not _MISSING]
    return template


# --- the compiled capability ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """One provider, compiled: everything a call needs, with no parsing left to do."""

    where: str
    method: str
    url: Template
    timeout: float
    headers: tuple[tuple[str, Template], ...]
    params: tuple[tuple[str, Template], ...]
    param_map: tuple[tuple[str, str], ...]
    static_params: Mapping[str, Any]
    static_query: tuple[str, ...]
    """Static parameters sent in the query of a GET (with the caller's value when given)."""
    body: Any
    has_body: bool
    response_path: tuple[str, ...]
    response_format: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """How the credential is sent: `kind` bearer, api_key or basic; from environment variable `env`."""

    kind: str
    env: str
    required: bool
    header: str
    prefix: str
    param: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Capability:
    """A capability ready to call: its tool (built once per load), providers in order, auth, source file."""

    tool: Tool
    providers: tuple[Provider, ...]
    auth: Auth | None
    path: Path
    digest: str
    wrap_result: bool = False
    warnings: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.tool.name


def compile_capability(spec: CapabilityFile, *, namespace: str, path: Path, digest: str) -> Capability:
    """Check a parsed file's cross-references and compile it.

    Raises:
        SpecError: with the key path and the reason (the loader adds file and line).
        InvalidToolIdError: for a name that cannot be a tool name.
    """
    name = spec.name or path.stem
    tool_id = ToolId(namespace, name)  # raises InvalidToolIdError for a bad name
    input_schema = dict(spec.schema_.input or {"type": "object", "properties": {}})
    input_schema.setdefault("type", "object")
    properties = input_schema.get("properties") or {}
    listed = spec.provider_list()
    providers = [_compile_provider(loc, provider, properties) for loc, provider in listed]
    output_schema = spec.schema_.output
    wrap = False
    if output_schema is not None and output_schema.get("type") != "object":
        output_schema, wrap = {"type": "object", "properties": {"result": output_schema}, "required": ["result"]}, True
    meta = spec.metadata
    tags = list(dict.fromkeys([*meta.tags, *([meta.category] if meta.category else [])]))
    tool = Tool(
        id=tool_id,
        description=spec.description.strip() or name.replace("_", " "),
        input_schema=input_schema,
        output_schema=output_schema,
        tags=tuple(tags),
        annotations=ToolAnnotations(
            read_only=meta.read_only,
            destructive=meta.destructive,
            idempotent=meta.idempotent,
            open_world=True,
        ),
        backend_kind=KIND,
        cache_ttl=float(spec.cache.ttl) if spec.cache.ttl else None,
        namespace_description=namespace_text(spec.info.title, spec.info.description, limit=None),
    )
    return Capability(
        tool=tool,
        providers=tuple(providers),
        auth=_compile_auth(spec.auth),
        path=path,
        digest=digest,
        wrap_result=wrap,
        warnings=tuple(f"unknown key '{key}' ignored (a typo?)" for key in _unknown_keys(spec, listed)),
    )


def _compile_provider(loc: Loc, provider: ProviderConfig, properties: Mapping[str, Any]) -> Provider:
    config = provider.config
    url_text = config.endpoint or f"{config.base_url.rstrip('/') if config.path else config.base_url}{config.path}"
    url = Template.compile(url_text)
    known = set(properties) | set(config.static_params)
    unknown = [arg for arg in url.args if arg not in known]
    if unknown:
        key = "endpoint" if config.endpoint else "path"
        raise SpecError(
            (*loc, "config", key),
            f"the URL names {', '.join(repr(u) for u in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not in schema.input.properties (nor static_params); "
            f"add {'it' if len(unknown) == 1 else 'them'} to the input schema or fix the template",
        )
    covered = set(config.params) | set(config.param_map.values()) | set(config.param_map)
    static_query = tuple(k for k in config.static_params if k not in covered and k not in url.args)
    return Provider(
        where=dotted(loc),
        method=config.method,
        url=url,
        timeout=provider.timeout,
        headers=tuple((k, Template.compile(v)) for k, v in config.headers.items()),
        params=tuple((k, Template.compile(v)) for k, v in config.params.items()),
        param_map=tuple(config.param_map.items()),
        static_params=dict(config.static_params),
        static_query=static_query if config.method == "GET" else (),
        body=_compile_body(config.body) if config.body is not None else None,
        has_body=config.body is not None,
        response_path=tuple(p for p in (config.response_path or "").split(".") if p),
        response_format=config.response_format,
    )


def _compile_auth(auth: AuthConfig) -> Auth | None:
    if not auth.active:
        return None
    env = credential_env(auth.key)
    assert env is not None  # checked by the validator
    default_prefix = {"bearer": "Bearer", "basic": "Basic"}.get(auth.type, "")
    return Auth(
        kind=auth.type,
        env=env,
        required=auth.required is not False,
        header=auth.header or "Authorization",
        prefix=default_prefix if auth.prefix is None else auth.prefix,
        param=auth.param,
    )


def _unknown_keys(spec: CapabilityFile, listed: list[tuple[Loc, ProviderConfig]]) -> list[str]:
    """Every key no one knows, as `path.to.key` (reported as warnings: usually a typo)."""
    found = spec.unknown_keys("")
    parts: list[tuple[_Part, str]] = [(spec.auth, "auth."), (spec.cache, "cache."), (spec.metadata, "metadata.")]
    for part, where in [*parts, (spec.info, "info.")]:
        found += part.unknown_keys(where)
    for loc, provider in listed:
        where = dotted(loc)
        found += provider.unknown_keys(f"{where}.") + provider.config.unknown_keys(f"{where}.config.")
    return found
