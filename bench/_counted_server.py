"""`aperture` with a SIGUSR1 handler that writes live object counts to a file, for `bench.churn`.

    python -m bench._counted_server COUNTS_FILE serve --config ... --transport http --port ...

On SIGUSR1 the process runs a full garbage collection, then writes `{"total": n, "by_type": {...}}`
(the objects the collector tracks, by type name) to COUNTS_FILE, replacing it.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType

from aperture.cli import main


def _write_counts(path: Path) -> None:
    gc.collect()
    objects = gc.get_objects()
    by_type = Counter(type(o).__qualname__ for o in objects)
    del objects
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"total": sum(by_type.values()), "by_type": dict(by_type)}))
    temporary.replace(path)  # the reader never sees half a file


def run() -> None:
    path = Path(sys.argv[1])

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _write_counts(path)

    signal.signal(signal.SIGUSR1, on_signal)
    sys.argv = ["aperture", *sys.argv[2:]]
    main()


if __name__ == "__main__":
    run()
