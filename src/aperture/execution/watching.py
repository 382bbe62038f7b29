"""Watch folders and reload what they hold when a file in them changes: the loop capability and skill
backends share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import watchfiles

logger = logging.getLogger(__name__)

WatchFilter = Callable[[watchfiles.Change, str], bool]


class FileWatch:
    """Calls `reload` whenever a file below `paths()` changes, until closed.

    `paths()` gives the folders (or files) that exist now; when a reload may have made one appear or vanish,
    `check_paths()` makes the watch start over on the new list. A failing reload is logged and the watch
    goes on: a bad edit must never stop the next good one from being picked up.
    """

    def __init__(
        self,
        label: str,
        paths: Callable[[], list[Path]],
        reload: Callable[[], Awaitable[object]],
        *,
        debounce: float = 0.05,
        watch_filter: WatchFilter | None = None,
    ) -> None:
        self._label = label
        self._paths = paths
        self._reload = reload
        self._debounce_ms = max(1, int(debounce * 1000))
        self._filter = watch_filter
        self._stop: anyio.Event | None = None
        self._rewatch = anyio.Event()
        self._watching: list[Path] = []

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._stop = anyio.Event()
        task_group.start_soon(self._run)

    def check_paths(self) -> None:
        """Watch the new list of paths if one appeared or vanished since the watch began."""
        if self._stop is not None and self._paths() != self._watching:
            self._rewatch.set()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _run(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            self._rewatch = anyio.Event()
            paths = self._watching = self._paths()
            if not paths:
                await self._rewatch.wait()
                continue
            async for _changes in watchfiles.awatch(
                *paths,
                watch_filter=self._filter,
                debounce=self._debounce_ms,
                step=max(1, min(20, self._debounce_ms)),
                stop_event=_EitherEvent(self._stop, self._rewatch),
            ):
                try:
                    await self._reload()
                except Exception:  # a reload must never end the watch
                    logger.exception("%s: reload failed", self._label)


class _EitherEvent:
    """What `watchfiles.awatch` wants as a stop event (`is_set()`), set when either event is."""

    def __init__(self, first: anyio.Event, second: anyio.Event) -> None:
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)
