"""bench.compose keeps measuring what it says: the same discovery for every approach, one run round trip for
a chain, and the same answer whichever way the task is run (the bench checks that itself)."""

from __future__ import annotations

import anyio
import bench.compose


def test_the_five_step_task_costs_every_approach_the_same_discovery_and_a_chain_one_run_trip() -> None:
    rows = {row["approach"]: row for row in anyio.run(bench.compose.task_rows)}
    by_tool, chained = rows["run_tool x5"], rows["run_chain"]
    assert (by_tool["run_round_trips"], chained["run_round_trips"]) == (5, 1)
    assert by_tool["discovery_tokens"] == chained["discovery_tokens"] > 0
    assert chained["round_trips"] == by_tool["round_trips"] - 4
    assert chained["processed_tokens"] < by_tool["processed_tokens"]
    assert by_tool["final"] == chained["final"] == {"result": 22.0}
