"""bench.toolsets measures what it says: the same queries through the whole catalog and through toolsets."""

from __future__ import annotations

import anyio
from bench.toolsets import MODES, measure


def test_every_mode_is_measured_on_the_same_queries_and_a_toolset_matches_fewer_tools() -> None:
    rows = {row["mode"]: row for row in anyio.run(measure, 400, 30)["rows"]}
    assert list(rows) == list(MODES)
    assert all(row["queries"] == 30 and row["p99_ms"] >= row["p50_ms"] > 0 for row in rows.values())
    assert rows["none"]["mean_total"] == rows["none (again)"]["mean_total"]
    assert 0 < rows["toolset"]["mean_total"] < rows["none"]["mean_total"]
    assert rows["toolset + renames"]["mean_total"] == rows["toolset"]["mean_total"]
