"""Instruction skills: a folder with a `SKILL.md` (YAML front matter `name` and `description`, then a markdown
body) and any files beside it, as agent products (Anthropic's Agent Skills) lay them out.

Search finds the skill by its description; `describe_tool` at `full` gives the body; the files are resources,
`skill://<name>/<path>`. Nothing outside the folder is ever served: a symlink that leads out of it is neither
listed nor read, and a path with `..` (or any other way out) is refused.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import yaml

from aperture.compose.skills.recipe import KIND
from aperture.execution import LoadProblem
from aperture.model import InvalidRequestError, InvalidToolIdError, Tool, ToolAnnotations, ToolId

SKILL_FILE = "SKILL.md"
SCHEME = "skill"
MAX_FILES = 1000
"""Files of one skill listed as resources; past it the rest are left out (with a warning)."""
MAX_DESCRIPTION = 1024
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstructionSkill:
    """A loaded instruction skill: what the model reads about it, and the files it may read beside it."""

    name: str
    description: str
    body: str
    folder: Path
    """The skill's folder, resolved (no symlink in it): everything served lies below it."""
    files: tuple[str, ...] = ()
    """The files beside `SKILL.md`, as relative POSIX paths."""
    tags: tuple[str, ...] = ()
    path: Path | None = None
    digest: str = ""
    kind: Literal["instructions"] = "instructions"

    def uri(self, relative: str) -> str:
        return f"{SCHEME}://{self.name}/{quote(relative)}"

    def tool(self, namespace: str) -> Tool:
        """The skill as a tool: it takes no arguments, and running it returns the instructions."""
        return Tool(
            id=ToolId(namespace, self.name),
            description=self.description,
            tags=self.tags,
            annotations=ToolAnnotations(read_only=True, idempotent=True, open_world=False),
            backend_kind=KIND,
            instructions=self.body,
            resources=tuple(self.uri(f) for f in self.files),
        )

    def called_skills(self, namespace: str) -> list[str]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "instructions": self.body,
            "resources": [self.uri(f) for f in self.files],
        }


def parse_instruction_skill(folder: Path) -> tuple[InstructionSkill | None, list[LoadProblem]]:
    """Load the skill in `folder` (which holds a `SKILL.md`); the skill (None on an error) and the problems."""
    path = folder / SKILL_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [LoadProblem(path, f"cannot read the file: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [LoadProblem(path, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")]
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, [
            LoadProblem(
                path,
                "SKILL.md opens with YAML front matter: a line '---', then name: and description:, "
                "then a line '---', then the instructions",
                1,
            )
        ]
    try:
        front = yaml.safe_load(match.group(1))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        return None, [
            LoadProblem(path, f"the front matter is not valid YAML: {exc.problem}", mark.line + 2 if mark else 1)
        ]
    except yaml.YAMLError as exc:
        return None, [LoadProblem(path, f"the front matter is not valid YAML: {exc}", 1)]
    if not isinstance(front, dict):
        return None, [LoadProblem(path, "the front matter is a mapping with name: and description:", 2)]
    problems: list[LoadProblem] = []
    name, description = front.get("name"), front.get("description")
    if not isinstance(name, str) or not name.strip():
        problems.append(LoadProblem(path, "name: is required (the skill's name, which becomes its tool id)", 2))
    else:
        try:
            ToolId("x", name.strip())
        except InvalidToolIdError as exc:
            problems.append(LoadProblem(path, f"name: {exc.details['reason']} (the name becomes the tool's id)", 2))
    if not isinstance(description, str) or not description.strip():
        problems.append(LoadProblem(path, "description: is required (what the skill is for and when to use it)", 2))
    elif len(description) > MAX_DESCRIPTION:
        problems.append(
            LoadProblem(
                path, f"description: is {len(description)} characters; keep it to {MAX_DESCRIPTION}", 2, "warning"
            )
        )
    if problems:
        return None, problems
    assert isinstance(name, str) and isinstance(description, str)
    tags = front.get("tags") or (front.get("metadata") or {}).get("tags") or []
    root = folder.resolve()
    files = list_files(root, problems)
    skill = InstructionSkill(
        name=name.strip(),
        description=" ".join(description.split()),
        body=text[match.end() :].strip(),
        folder=root,
        files=tuple(files),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        path=path,
        digest=hashlib.sha256(raw + "\0".join(files).encode()).hexdigest(),
    )
    return skill, problems


def list_files(root: Path, problems: list[LoadProblem]) -> list[str]:
    """The files below `root` (resolved) other than `SKILL.md`, hidden ones left out; a symlink that leads
    outside `root` is refused with a warning, a symlinked folder inside it is not entered (no cycles)."""
    found: list[str] = []
    for directory, folders, names in os.walk(root):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        here = Path(directory)
        for folder in list(folders):
            if (here / folder).is_symlink():
                folders.remove(folder)
                if not _inside(root, here / folder):
                    problems.append(_outside(here / folder, root))
        for name in sorted(names):
            if name.startswith(".") or (here == root and name == SKILL_FILE):
                continue
            full = here / name
            if full.is_symlink() and not _inside(root, full):
                problems.append(_outside(full, root))
                continue
            try:
                if not stat.S_ISREG(full.stat().st_mode):
                    continue
            except OSError:
                continue  # a dangling symlink
            if len(found) == MAX_FILES:
                problems.append(
                    LoadProblem(root, f"more than {MAX_FILES} files; the rest are not listed", None, "warning")
                )
                return found
            found.append(full.relative_to(root).as_posix())
    return found


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _outside(path: Path, root: Path) -> LoadProblem:
    return LoadProblem(
        path,
        f"refused: it is a symlink that leads outside the skill's folder {root}; copy the file in instead",
        None,
        "warning",
    )


def split_uri(uri: str) -> tuple[str, str] | None:
    """`(skill name, relative path)` of a `skill://<name>/<path>` URI, else None."""
    parts = urlsplit(uri)
    if parts.scheme != SCHEME or not parts.netloc or parts.query or parts.fragment:
        return None
    return parts.netloc, unquote(parts.path.lstrip("/"))


def read_file(skill: InstructionSkill, relative: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and MIME type of a file of `skill`.

    Raises:
        InvalidRequestError: the path is empty, absolute, has a `..` (or `.`) part, leads outside the skill's
            folder (through a symlink too), is not a file, or is larger than `max_bytes`.
    """
    shown = f"{SCHEME}://{skill.name}/{relative}"
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or "\\" in relative or any(p in ("..", ".", "") for p in relative.split("/")):
        raise InvalidRequestError(
            f"Refused {shown!r}: a skill's resource is a plain path below its folder, without '..', '.' or a "
            "leading '/'. resources/list shows the skill's files.",
        )
    candidate = skill.folder.joinpath(*pure.parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidRequestError(f"No file {shown!r}; resources/list shows the skill's files.") from None
    if not real.is_relative_to(skill.folder):
        raise InvalidRequestError(
            f"Refused {shown!r}: it is a symlink that leads outside the skill's folder, and nothing outside it is "
            "served. resources/list shows the skill's files."
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        raise InvalidRequestError(f"No file {shown!r}; resources/list shows the skill's files.") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise InvalidRequestError(f"{shown!r} is not a file; resources/list shows the skill's files.")
        if status.st_size > max_bytes:
            raise InvalidRequestError(
                f"{shown!r} is {status.st_size:,} bytes; skill files are served up to {max_bytes:,} "
                "(skills.max_resource_bytes)."
            )
        chunks: list[bytes] = []
        size = 0
        while size < status.st_size and (chunk := os.read(fd, status.st_size - size)):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    mime = mimetypes.guess_type(real.name)[0] or (
        "text/markdown" if real.suffix == ".md" else "application/octet-stream"
    )
    return data, mime
