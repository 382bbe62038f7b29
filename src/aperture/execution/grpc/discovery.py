"""Where a gRPC backend's methods come from: `.proto` files compiled with grpcio-tools, a descriptor set, or the
files server reflection sends; turned into one descriptor pool, the methods to serve and the proto comments."""

from __future__ import annotations

import fnmatch
import importlib.resources
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError

from aperture.model import ConfigError

# Field numbers in descriptor.proto, for the paths of SourceCodeInfo locations.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ENUM_VALUE, _METHOD = 2, 3, 4, 2, 2
COMPILE_TIMEOUT = 60.0
INFRASTRUCTURE = ("grpc.health.v1.*", "grpc.reflection.*", "grpc.channelz.*", "grpc.lb.*")
"""gRPC's own services, which servers list beside theirs: tools only when `include` names them."""


class DiscoveryError(ConfigError):
    """The backend's methods could not be found: bad protos, a broken descriptor set, no reflection."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """A consistent view of a server's API: the pool its types resolve in, the methods to serve, and the comments
    (by full name: `pkg.Service.Method`, `pkg.Message`, `pkg.Message.field`, `pkg.Enum.VALUE`)."""

    pool: descriptor_pool.DescriptorPool
    methods: tuple[MethodDescriptor, ...]
    comments: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    """Methods left out because they stream requests (client or bidirectional streaming)."""


def compile_protos(protos: Sequence[Path], import_paths: Sequence[Path]) -> list[descriptor_pb2.FileDescriptorProto]:
    """Compile `.proto` files with grpcio-tools' protoc (imports included, comments kept).

    Raises:
        DiscoveryError: with protoc's own message (unknown type, import cycle, syntax error, missing file).
    """
    missing = [str(p) for p in protos if not p.is_file()]
    if missing:
        raise DiscoveryError(f"proto file not found: {', '.join(missing)} (paths are relative to the config file)")
    paths = list(import_paths)
    paths += [p.parent for p in protos if not any(p.is_relative_to(path) for path in paths)]
    paths = list(dict.fromkeys(paths))
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="aperture-protoc-") as scratch:
        out = Path(scratch) / "set.pb"
        argv = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            *(f"-I{p}" for p in paths),
            f"-I{well_known}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *(str(_relative(p, paths)) for p in protos),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            what = f"{len(protos)} file(s)"
            raise DiscoveryError(f"protoc did not finish compiling {what} within {COMPILE_TIMEOUT:g} s") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise DiscoveryError(f"the proto files do not compile; protoc says:\n{message}")
        return read_descriptor_set(out)


def _relative(proto: Path, paths: Sequence[Path]) -> Path:
    """`proto` relative to the first import path holding it (protoc wants files named within an -I path)."""
    for path in paths:
        if proto.is_relative_to(path):
            return proto.relative_to(path)
    return proto


def read_descriptor_set(path: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    """The files of a serialized `FileDescriptorSet`.

    Raises:
        DiscoveryError: for a missing or unreadable file.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiscoveryError(f"cannot read descriptor set {path}: {exc.strerror or exc}") from None
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(data)
    except DecodeError:
        raise DiscoveryError(
            f"{path} is not a FileDescriptorSet; make one with "
            "`python -m grpc_tools.protoc --descriptor_set_out=FILE --include_imports --include_source_info ...`"
        ) from None
    return list(files.file)


def build(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
    *,
    services: Sequence[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    descriptions: dict[str, str] | None = None,
) -> Discovered:
    """A pool of `files` (added in dependency order) and the methods of `services` (None: of every service the files
    define) that `include` / `exclude` select.

    Raises:
        DiscoveryError: when a file imports one that is missing, the files import each other in a cycle, or a
            type cannot be resolved.
    """
    by_name = {f.name: f for f in files}
    pool = descriptor_pool.DescriptorPool()
    comments: dict[str, str] = {}
    for proto in _in_dependency_order(by_name):
        try:
            pool.AddSerializedFile(proto.SerializeToString())
        except (TypeError, ValueError) as exc:  # upb reports an unresolved type as TypeError
            raise DiscoveryError(f"{proto.name} cannot be loaded: {exc}") from None
        comments.update(_comments(proto))
    comments.update(descriptions or {})
    methods: list[MethodDescriptor] = []
    skipped: list[str] = []
    for proto in by_name.values():
        for service in proto.service:
            full = f"{proto.package}.{service.name}" if proto.package else service.name
            if services is not None and full not in services:
                continue
            for method in pool.FindServiceByName(full).methods:
                if not _selected(method.full_name, include, exclude):
                    continue
                if method.client_streaming:
                    skipped.append(method.full_name)
                    continue
                methods.append(method)
    return Discovered(pool, tuple(methods), comments, tuple(skipped))


def _selected(full_name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether `include` (empty: everything but gRPC's own services) and `exclude` let a method through."""
    service = full_name.rpartition(".")[0]

    def matches(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(full_name, p) or fnmatch.fnmatchcase(service, p) for p in patterns)

    if not include and matches(INFRASTRUCTURE):
        return False
    return (not include or matches(include)) and not matches(exclude)


def _in_dependency_order(
    by_name: dict[str, descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise DiscoveryError(f"the proto files import each other in a cycle: {' -> '.join((*chain, name))}")
        proto = by_name.get(name)
        if proto is None:
            who = chain[-1] if chain else "?"
            raise DiscoveryError(
                f"{who} imports {name}, which is not among the files found; add its directory to import_paths "
                "(or build the descriptor set with --include_imports)"
            )
        state[name] = 1
        for dependency in proto.dependency:
            visit(dependency, (*chain, name))
        state[name] = 2
        ordered.append(proto)

    for name in by_name:
        visit(name, ())
    return ordered


def _comments(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    """Leading (else trailing) comments of the file's services, methods, messages, fields, enums and values."""
    if not proto.HasField("source_code_info"):
        return {}
    by_path = {}
    for location in proto.source_code_info.location:
        text = (location.leading_comments or location.trailing_comments).strip()
        if text:
            by_path[tuple(location.path)] = " ".join(line.strip() for line in text.splitlines()).strip()
    prefix = f"{proto.package}." if proto.package else ""
    out: dict[str, str] = {}

    def note(path: tuple[int, ...], name: str) -> None:
        if path in by_path:
            out[name] = by_path[path]

    def enum(path: tuple[int, ...], full: str, values: Iterable[descriptor_pb2.EnumValueDescriptorProto]) -> None:
        note(path, full)
        for j, value in enumerate(values):
            note((*path, _ENUM_VALUE, j), f"{full}.{value.name}")

    def message(path: tuple[int, ...], full: str, msg: descriptor_pb2.DescriptorProto) -> None:
        note(path, full)
        for j, fld in enumerate(msg.field):
            note((*path, _FIELD, j), f"{full}.{fld.name}")
        for j, nested in enumerate(msg.nested_type):
            message((*path, _NESTED, j), f"{full}.{nested.name}", nested)
        for j, nested_enum in enumerate(msg.enum_type):
            enum((*path, _NESTED_ENUM, j), f"{full}.{nested_enum.name}", nested_enum.value)

    for i, msg in enumerate(proto.message_type):
        message((_MESSAGE, i), prefix + msg.name, msg)
    for i, top_enum in enumerate(proto.enum_type):
        enum((_ENUM, i), prefix + top_enum.name, top_enum.value)
    for i, service in enumerate(proto.service):
        note((_SERVICE, i), prefix + service.name)
        for j, method in enumerate(service.method):
            note((_SERVICE, i, _METHOD, j), f"{prefix}{service.name}.{method.name}")
    return out
