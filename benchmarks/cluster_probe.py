"""Per-node view of a benchmark run against a cluster (`sfu-bench --url ENTRY` or
`--server-workers N`): samples `GET /api/stats?scope=cluster` once a second during the
measurement window and reports, per node, its rooms, participants, forwarded streams,
mean/max CPU and event-loop lag. A single node (no cluster: 404) is sampled from its own
`/api/stats` as one row named `single`."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any


def cluster_stats(url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The cluster snapshot, or None when `url` is not a cluster node."""
    try:
        with urllib.request.urlopen(url + "/api/stats?scope=cluster", timeout=timeout) as r:
            data: dict[str, Any] = json.loads(r.read())
            # a server older than cluster mode ignores `scope` and sends its own snapshot
            return data if "nodes" in data else None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def single_node(url: str) -> dict[str, Any]:
    """A one-node node list built from a single server's `/api/stats`."""
    with urllib.request.urlopen(url + "/api/stats", timeout=3.0) as r:
        server = json.loads(r.read()).get("server", {})
    return {
        "nodes": [
            {
                "id": "single",
                "url": url,
                "rooms": server.get("rooms"),
                "participants": server.get("participants"),
                "forwardedStreams": server.get("forwardedStreams"),
                "cpu": server.get("cpuPercent", 0.0),
                "eventLoopLag": server.get("eventLoopLag", 0.0),
            }
        ]
    }


def wait_nodes(url: str, count: int, timeout: float = 30.0) -> None:
    """Wait until the cluster lists `count` serving nodes (every worker is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = cluster_stats(url)
            serving = [n for n in (data or {}).get("nodes", []) if n.get("state") == "serving"]
            if len(serving) >= count:
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not show {count} nodes within {timeout} s")
        time.sleep(0.2)


class ClusterProbe:
    """Owns one sampling thread; `start()`, then `stop()` returns the per-node summary
    (idempotent; the thread is joined)."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self._url = url
        self._interval = interval
        self._samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-probe", daemon=True)

    def start(self) -> ClusterProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        clustered = True
        while not self._stop.is_set():
            try:
                data = cluster_stats(self._url) if clustered else None
                if data is None:
                    clustered = False
                    data = single_node(self._url)
                self._samples.append(data)
            except (OSError, ValueError):
                pass
            self._stop.wait(self._interval)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        return summarise(self._samples)


def summarise(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per node seen: last rooms/participants/streams, mean and max CPU and lag."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        for node in sample.get("nodes", []):
            by_node.setdefault(str(node.get("id")), []).append(node)
    rows = []
    for node_id, seen in sorted(by_node.items()):
        cpu = [float(n.get("cpu", 0.0)) for n in seen]
        lag = [float(n.get("eventLoopLag", 0.0)) for n in seen]
        last = seen[-1]
        rows.append(
            {
                "id": node_id,
                "url": last.get("url"),
                "rooms": last.get("rooms"),
                "participants": last.get("participants"),
                "forwardedStreams": last.get("forwardedStreams"),
                "cpuMean": round(sum(cpu) / len(cpu), 1),
                "cpuMax": round(max(cpu), 1),
                "loopLagMeanMs": round(1000 * sum(lag) / len(lag), 1),
                "loopLagMaxMs": round(1000 * max(lag), 1),
                "samples": len(seen),
            }
        )
    return rows


def nodes_table(results: list[dict[str, Any]]) -> str:
    """Text table of every run's per-node rows ('' when no run was against a cluster)."""
    lines = []
    for r in results:
        for n in r.get("nodes", []):
            if not lines:
                lines.append(
                    f"{'run':>14}  {'node':>18}  {'rooms':>5}  {'parts':>5}  {'streams':>7}  "
                    f"{'cpu% mean':>9}  {'cpu% max':>8}  {'lag ms mean':>11}  {'lag ms max':>10}"
                )
            run = f"{r.get('mode', '?')[:4]} {r.get('participants')}x{r.get('rooms')}"
            lines.append(
                f"{run:>14}  {n['id']:>18}  {n['rooms']!s:>5}  {n['participants']!s:>5}  "
                f"{n['forwardedStreams']!s:>7}  {n['cpuMean']:>9}  {n['cpuMax']:>8}  "
                f"{n['loopLagMeanMs']:>11}  {n['loopLagMaxMs']:>10}"
            )
    if lines:
        lines.append("per node, sampled from /api/stats?scope=cluster over the measurement window")
    return "\n".join(lines)
