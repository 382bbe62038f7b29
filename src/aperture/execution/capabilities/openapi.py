"""OpenAPI 3 import: one capability file per operation, with parameters, request body, auth and tags mapped."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aperture.model import ConfigError, namespace_text

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = 8
_MAX_REFS = 3


@dataclass(slots=True)
class ImportResult:
    """What an import wrote, and the operations it left out (with the reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_spec(path: Path) -> dict[str, Any]:
    """Read an OpenAPI 3 document (JSON or YAML).

    Raises:
        ConfigError: for a file that cannot be read or is not OpenAPI 3.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not JSON or YAML: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("openapi", "")).startswith("3"):
        raise ConfigError(f"{path}: not an OpenAPI 3 document (no 'openapi: 3.x' at the top; Swagger 2 is not read)")
    return data


def snake(text: str) -> str:
    """`getPetById` -> `get_pet_by_id`; anything else that is not a name character becomes `_`."""
    return re.sub("_+", "_", _NAME_CHARS.sub("_", _CAMEL.sub("_", text))).strip("_").lower()[:128] or "operation"


class _Resolver:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec

    def ref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, Mapping) and "$ref" in node and seen < _MAX_DEPTH:
            node = self._lookup(str(node["$ref"]))
            seen += 1
        return node

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ConfigError(f"external reference {ref!r} is not supported; bundle the document first")
        node: Any = self.spec
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
        return node if node is not None else {}

    def schema(self, node: Any, refs: int = 0) -> Any:
        """A schema with every `$ref` inlined (a recursive one cut off after a few levels, as a plain object)."""
        if isinstance(node, Mapping):
            if "$ref" in node:
                return (
                    {"type": "object"} if refs >= _MAX_REFS else self.schema(self._lookup(str(node["$ref"])), refs + 1)
                )
            out = {k: self.schema(v, refs) for k, v in node.items() if k not in ("xml", "example", "examples")}
            if out.get("nullable") is True and isinstance(out.get("type"), str):  # OpenAPI 3.0 -> JSON Schema
                out["type"] = [out["type"], "null"]
            out.pop("nullable", None)
            return out
        if isinstance(node, list):
            return [self.schema(v, refs) for v in node]
        return node


def _server_url(spec: Mapping[str, Any], base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    servers = spec.get("servers") or []
    if not servers or not isinstance(servers[0], Mapping) or not servers[0].get("url"):
        raise ConfigError("the document names no server URL; pass --base-url https://api.example.com")
    server = servers[0]
    url = str(server["url"])
    for name, var in (server.get("variables") or {}).items():
        url = url.replace(f"{{{name}}}", str(var.get("default", "")))
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the server URL {url!r} is relative; pass --base-url with the full URL")
    return url.rstrip("/")


def _auth(spec: Mapping[str, Any], operation: Mapping[str, Any], env_prefix: str) -> dict[str, Any] | None:
    requirements = operation.get("security", spec.get("security")) or []
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    for requirement in requirements:
        for name in requirement or {}:
            scheme = schemes.get(name)
            if not isinstance(scheme, Mapping):
                continue
            kind, var = scheme.get("type"), f"{env_prefix}_{snake(name).upper()}"
            if kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
                return {"type": "basic", "key": f"env:{var}", "description": "user:password"}
            if kind in ("http", "oauth2", "openIdConnect"):
                return {"type": "bearer", "key": f"env:{var}"}
            if kind == "apiKey" and scheme.get("in") == "header":
                return {"type": "api_key", "key": f"env:{var}", "header": scheme.get("name"), "prefix": ""}
            if kind == "apiKey" and scheme.get("in") == "query":
                return {"type": "api_key", "key": f"env:{var}", "param": scheme.get("name")}
    return None


def _operation(
    resolver: _Resolver, path: str, method: str, operation: Mapping[str, Any], shared: list[Any], base: str, env: str
) -> tuple[str, dict[str, Any]]:
    name = snake(str(operation.get("operationId") or f"{method}_{path}"))
    properties: dict[str, Any] = {}
    required: list[str] = []
    config: dict[str, Any] = {"base_url": base, "path": path, "method": method.upper()}
    merged = {
        (p.get("name"), p.get("in")): p for p in (resolver.ref(p) for p in [*shared, *operation.get("parameters", [])])
    }
    for (param_name, location), param in merged.items():
        if location == "cookie" or not param_name:
            continue
        schema = dict(resolver.schema(param.get("schema") or {"type": "string"}))
        if param.get("description"):
            schema["description"] = " ".join(str(param["description"]).split())
        properties[param_name] = schema
        if param.get("required") or location == "path":
            required.append(param_name)
        if location == "query":
            config.setdefault("params", {})[param_name] = f"{{{param_name}}}"
        elif location == "header":
            config.setdefault("headers", {})[param_name] = f"{{{param_name}}}"
    body = resolver.ref(operation.get("requestBody") or {})
    content = body.get("content") or {}
    media = next((m for m in content if "json" in m), None)
    if media is not None:
        schema = resolver.schema(content[media].get("schema") or {})
        fields = schema.get("properties") if schema.get("type", "object") == "object" else None
        if isinstance(fields, Mapping) and fields:
            template = {}
            for field_name, field_schema in fields.items():
                arg = field_name if field_name not in properties else f"body_{field_name}"
                properties[arg] = field_schema
                template[field_name] = f"{{{arg}}}"
                if field_name in (schema.get("required") or []) and body.get("required", True):
                    required.append(arg)
            config["body"] = template
        else:
            properties["body"] = schema or {}
            config["body"] = "{body}"
            if body.get("required"):
                required.append("body")
    summary = " ".join(str(operation.get("summary") or "").split())
    details = " ".join(str(operation.get("description") or "").split())
    description = ". ".join(t.rstrip(".") for t in (summary, details) if t) or f"{method.upper()} {path}"
    doc: dict[str, Any] = {
        "name": name,
        "description": description + ("." if not description.endswith(".") else ""),
        "schema": {
            "input": {"type": "object", "properties": properties, **({"required": required} if required else {})}
        },
        "providers": {"primary": {"service": "rest", "config": config}},
        "metadata": {
            "tags": [str(t) for t in operation.get("tags") or []],
            "read_only": method in ("get", "head", "options"),
            "destructive": method == "delete",
            "idempotent": method in ("get", "head", "options", "put", "delete"),
        },
    }
    auth = _auth(resolver.spec, operation, env)
    if auth is not None:
        doc["auth"] = auth
    return name, doc


def import_openapi(
    spec_path: Path,
    out_dir: Path,
    *,
    base_url: str | None = None,
    env_prefix: str | None = None,
    output_schemas: bool = False,
) -> ImportResult:
    """Write one capability file per operation of an OpenAPI 3 document into `out_dir`.

    Args:
        base_url: the API's URL, when the document has no absolute server URL.
        env_prefix: prefix of the environment variables credentials are read from (default: from the title).
        output_schemas: also map each operation's JSON success response to `schema.output` (off by default:
            real APIs often answer outside their documented schema, and the gateway checks results against it).

    Raises:
        ConfigError: for a document that cannot be read, or has no usable server URL.
    """
    spec = load_spec(spec_path)
    resolver = _Resolver(spec)
    base = _server_url(spec, base_url)
    title = str((spec.get("info") or {}).get("title") or spec_path.stem)
    env = env_prefix or snake(title).upper() or "API"
    api = _api_info(spec.get("info"))
    result = ImportResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for path, item in (spec.get("paths") or {}).items():
        item = resolver.ref(item)
        if not isinstance(item, Mapping):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, Mapping):
                continue
            try:
                name, doc = _operation(
                    resolver, str(path), method, operation, list(item.get("parameters") or []), base, env
                )
            except ConfigError as exc:
                result.skipped.append(f"{method.upper()} {path}: {exc.message}")
                continue
            if output_schemas:
                output = _success_schema(resolver, operation)
                if output is not None:
                    doc["schema"]["output"] = output
            if api:
                doc["info"] = api
            if name in used:
                name = f"{name}_{method}"
                doc["name"] = name
            used.add(name)
            target = out_dir / f"{name}.yaml"
            header = f"# Imported from {spec_path.name}: {method.upper()} {path}\n"
            target.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
            result.written.append(target)
    if any("auth" in yaml.safe_load(p.read_text()) for p in result.written):
        result.notes.append(f"credentials are read from environment variables named {env}_*; set them before serving")
    return result


def _api_info(info: Any) -> dict[str, str]:
    """The document's `info` title and description, for each file's `info` (searched as the namespace text; the
    description cut to what search keeps of it)."""
    if not isinstance(info, Mapping):
        return {}
    out = {key: namespace_text(str(info.get(key) or "")) for key in ("title", "description")}
    return {key: value for key, value in out.items() if value}


def _success_schema(resolver: _Resolver, operation: Mapping[str, Any]) -> Any:
    responses = operation.get("responses") or {}
    for code in ("200", "201", "2XX", "default"):
        response = resolver.ref(responses.get(code))
        if isinstance(response, Mapping):
            for media, body in (response.get("content") or {}).items():
                if "json" in media and isinstance(body, Mapping) and body.get("schema"):
                    return json.loads(json.dumps(resolver.schema(body["schema"])))
    return None
