"""Secret values kept out of what leaves the gateway: tool results, error messages and log records.

A `Redactor` knows the configured secrets (values from `${VAR}` in the configuration's auth, headers, upstream env
and metadata, and from `{env.VAR}` in capability files) and replaces each, in its common encodings too, with
`[redacted]`. It is built once per gateway; capability files add theirs as they load.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from aperture.model.errors import ApertureError

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
"""Shorter values are not treated as secrets: redacting `eu` or `true` everywhere would garble every answer."""
LOGGER_TREES = ("aperture", "httpx2", "httpcore2", "mcp", "uvicorn")
"""Loggers whose records are redacted: the gateway's own, and the libraries that log its requests and their
failures (httpx2 logs every URL, query-string credentials included; uvicorn the tracebacks of the HTTP surface)."""


def secret_forms(value: str) -> set[str]:
    """`value` as it may appear in text: itself, URL-encoded, JSON-escaped and base64-encoded (standard and
    URL-safe, padded or not, and the part that stays the same when it is encoded inside a longer value such
    as `user:password` for basic auth)."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms}
    raw = value.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        if shift == 0:
            forms |= {encoded, encoded.rstrip("=")}
        # Inside a longer value the first group mixes in the bytes before, the last one those after.
        end = len(encoded) if (shift + len(raw)) % 3 == 0 else len(encoded) - 4
        core = encoded[4 if shift else 0 : end]
        if len(core) >= MIN_SECRET_LENGTH:
            forms.add(core)
    forms |= {form.translate(_URLSAFE) for form in forms}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


_URLSAFE = str.maketrans("+/", "-_")


class Redactor:
    """Replaces every known secret value, in its common encodings, with `[redacted]`.

    Example:
        ```python
        redactor = Redactor(["s3cr3t-token-value"])
        redactor.text("401: bad token s3cr3t-token-value")  # '401: bad token [redacted]'
        ```
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    @property
    def active(self) -> bool:
        """Whether there is anything to redact (when not, redacting costs nothing)."""
        return self._pattern is not None

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def add(self, secrets: Iterable[str]) -> bool:
        """Know these values too (those shorter than `MIN_SECRET_LENGTH` are left out); True when any was new."""
        new = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not new:
            return False
        with self._lock:
            known = self._secrets | new
            forms = set().union(*(secret_forms(s) for s in known))
            pattern = re.compile(_trie_pattern(forms))
            self._secrets, self._pattern = frozenset(known), pattern
        return True

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def data(self, value: Any) -> Any:
        """JSON-like data (strings, mappings, lists) with every secret replaced, in keys too; unchanged parts are
        the same objects."""
        pattern = self._pattern
        if pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping | list | tuple):
            try:  # one search of the whole document is much quicker than one per string, and mostly finds nothing
                if pattern.search(json.dumps(value, ensure_ascii=False, default=str)) is None:
                    return value
            except (TypeError, ValueError):
                pass  # keys JSON cannot have, or a cycle: look at each part
            return self._walk(value)
        return value

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            items = [(self._walk(k), self._walk(v)) for k, v in value.items()]
            if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
                return value
            return dict(items)
        if isinstance(value, list | tuple):
            cleaned = [self._walk(v) for v in value]
            if all(a is b for a, b in zip(cleaned, value, strict=True)):
                return value
            return type(value)(cleaned) if isinstance(value, tuple) else cleaned
        return value

    def error(self, error: ApertureError) -> ApertureError:
        """The same error with the secrets taken out of its message and details."""
        if self._pattern is not None:
            message = self.text(error.message)
            if message != error.message:
                error.message = message
                error.args = (message,)
            error.details = self.data(error.details)
        return error


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of `words`, longest first, written as a trie (`ab(?:c|d)`): a plain
    alternation makes `re` try every word at every position, about ten times slower with a few dozen words."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Greedy: a longer form wins over one it starts with; the shorter one still matches when it ends here.
        return f"(?:{body})?" if ends else body

    return pattern(trie)


class RedactingFilter(logging.Filter):
    """Takes the secrets out of a log record's message, arguments, traceback and stack before any handler sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        if not redactor.active:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: show them, redacted
            message = f"{record.msg} {record.args}"
        cleaned = redactor.text(message)
        if cleaned != message or not isinstance(record.msg, str):
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text = redactor.text(record.exc_text)
            if text != record.exc_text:
                # The traceback is kept as text only: a handler formatting exc_info again would bring it back.
                record.exc_text, record.exc_info = text, None
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return True


def install_log_redaction(redactor: Redactor, trees: Iterable[str] = LOGGER_TREES) -> Callable[[], None]:
    """Put a `RedactingFilter` on every logger of `trees` (the loggers themselves and all below them that exist).

    A filter on a logger sees only the records logged on that logger (not those propagated from below), so each
    one gets it; the gateway installs it after its modules are imported. Returns a function that removes it.
    """
    redacting = RedactingFilter(redactor)
    roots = tuple(trees)
    names = [
        n for n in list(logging.root.manager.loggerDict) if n in roots or n.startswith(tuple(r + "." for r in roots))
    ]
    loggers = [logging.getLogger(name) for name in dict.fromkeys([*roots, *names])]
    for found in loggers:
        found.addFilter(redacting)

    def remove() -> None:
        for found in loggers:
            found.removeFilter(redacting)

    return remove
