"""sfu-bench's per-node summary (benchmarks/cluster_probe.py), from canned snapshots."""

from __future__ import annotations

from benchmarks.cluster_probe import nodes_table, summarise


def test_summarise_per_node() -> None:
    def node(node_id: str, cpu: float, lag: float, rooms: int) -> dict[str, object]:
        return {
            "id": node_id,
            "url": f"http://{node_id}",
            "rooms": rooms,
            "participants": 4 * rooms,
            "forwardedStreams": 12 * rooms,
            "cpu": cpu,
            "eventLoopLag": lag,
        }

    samples = [
        {"nodes": [node("a", 10.0, 0.001, 2), node("b", 20.0, 0.002, 2)]},
        {"nodes": [node("a", 30.0, 0.003, 2)]},
    ]
    rows = summarise(samples)
    assert [r["id"] for r in rows] == ["a", "b"]
    a = rows[0]
    assert a["cpuMean"] == 20.0 and a["cpuMax"] == 30.0 and a["samples"] == 2
    assert a["loopLagMeanMs"] == 2.0 and a["loopLagMaxMs"] == 3.0 and a["rooms"] == 2
    text = nodes_table([{"mode": "passthrough", "participants": 4, "rooms": 4, "nodes": rows}])
    assert "a" in text and "pass 4x4" in text
    assert nodes_table([{"mode": "passthrough"}]) == ""
