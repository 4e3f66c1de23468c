"""`sfu-bench` quick mode end to end (server subprocess + worker processes over loopback),
and the frame-identity matching it relies on. No timing thresholds: only that every field
is present and sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.metrics import match_stream, percentile, watermark

ROOT = Path(__file__).resolve().parent.parent


def test_match_stream_finds_the_anchor() -> None:
    # publisher: frame n at pts 3000 n + watermark(n), sent at 10 + n / 30
    pub_pts = [3000 * n + watermark(n) for n in range(300)]
    pub_times = [10 + n / 30 for n in range(300)]
    origin = 0xFFFFF000  # the receiver's RTP clock wraps: differences are taken mod 2**32
    latency = 0.25  # longer than a frame interval: causality alone could not anchor it
    received = [n for n in range(40, 200) if n % 7]  # some frames lost
    rtp = [(origin + pub_pts[n] - pub_pts[40]) & 0xFFFFFFFF for n in received]
    arrivals = [pub_times[n] + latency for n in received]
    match = match_stream(rtp, arrivals, pub_pts, pub_times)
    assert match.matched
    assert match.pts == [pub_pts[n] for n in received]
    assert all(abs((lat or 0) - latency) < 1e-9 for lat in match.latency)
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_quick_mode_json(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "loadtest.py"),
            "--participants",
            "3",
            "--duration",
            "5",
            "--warmup",
            "1",
            "--quiet",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "mode" in proc.stdout and "passthrough" in proc.stdout  # the table
    doc = json.loads(out.read_text())
    assert doc["tool"] == "sfu-bench"
    assert set(doc["summary"]) >= {"cpuRatioTranscodeOverPassthrough", "passthrough"}
    [run] = doc["runs"]
    assert run["mode"] == "passthrough"
    # light subscribers by default: frames counted at the RTP layer, latency still measured
    assert run["subscriber"] == "light"
    assert run["participants"] == 3 and run["workerErrors"] == []
    # a join may fail on a loaded box; it is then reported, and the rest stays consistent
    joined = run["joined"]
    assert joined >= 2 and len(run["joinFailures"]) == 3 - joined

    server = run["server"]
    assert 0 < server["cpuCores"] < 64
    assert server["rssBytes"] > 10 * 2**20
    assert server["packetsPerSecond"] > 0 and server["usPerPacket"] > 0
    assert server["forwardedStreams"] >= joined * (joined - 1) and server["streamsPerCore"] > 0

    video = run["video"]
    assert video["streamsExpected"] == joined * (joined - 1)
    assert video["streamsReceived"] >= video["streamsMatched"] >= video["streamsExpected"]
    assert 0 < video["fpsMin"] <= video["fpsMean"] <= 35
    assert 0 <= video["lossPercent"] <= 100
    assert video["framesExpected"] > 0 and video["latencySamples"] > 0
    assert 0 <= video["latencyP50Ms"] <= video["latencyP95Ms"] <= video["latencyMaxMs"]

    join = run["join"]
    assert join["samples"] == joined - 1 and 0 < join["p50Ms"] <= join["p95Ms"]

    clients = run["clients"]
    assert clients["workers"] >= 1 and clients["cpuCores"] > 0
    assert clients["machineBusyCores"] > 0 and isinstance(clients["saturated"], bool)

    mesh = run["mesh"]
    assert mesh["meshUplinkStreams"] == 2 and mesh["sfuUplinkStreams"] == 1
    assert mesh["meshUplinkMbps"] == round(2 * mesh["sfuUplinkMbps"], 3) or (
        abs(mesh["meshUplinkMbps"] - 2 * mesh["sfuUplinkMbps"]) < 0.01
    )
