"""Hardening 15: churn soak. 300 join/publish/leave cycles (4 at a time) in the room of
two long-lived publishers, who must keep receiving media; afterwards no peer connection,
task, thread or fd is left and RSS growth is bounded. `benchmarks/soak.py` runs 1000."""

from __future__ import annotations

import os

from benchmarks.soak import run_in_process

CYCLES = int(os.environ.get("SOAK_CYCLES", "300"))


async def test_churn_soak() -> None:
    result = await run_in_process(CYCLES, parallel=4)
    print(f"\nsoak: {result}")
    assert result["outcomes"] == {"ok": CYCLES}, result["outcomes"]
    assert result["bystanders_receiving"]
    before, after, warm, churned = (
        result["before"],
        result["after"],
        result["warm"],
        result["after_churn"],
    )
    # peer connections left over by earlier tests in this process are not ours to count
    assert after["peer_connections"] <= before["peer_connections"], (before, after)
    assert after["pc_objects"] <= before["pc_objects"], (before, after)
    assert after["tasks"] <= before["tasks"], (before, after)
    assert after["threads"] <= before["threads"], (before, after)
    assert after["fds"] <= before["fds"] + 6, (before, after)
    # during churn only the two bystanders' pcs (client and server side) stay alive
    assert churned["peer_connections"] <= warm["peer_connections"], (warm, churned)
    # RSS: codec and allocator warm-up in the first 100 cycles, then a plateau
    assert result["rss_growth_mib"] < 80, result["rss_growth_mib"]
    by_cycle = result["rss_mib_by_cycle"]
    if CYCLES >= 300:
        assert by_cycle[CYCLES] - by_cycle[100] < 25, by_cycle
    assert result["seconds"] < 150, result["seconds"]
