"""Output of `sfu-bench`: text and markdown tables, the JSON file, the PNG plot."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

COLUMNS: list[tuple[str, str]] = [
    ("mode", "mode"),
    ("N", "participants"),
    ("subs", "subscriber"),
    ("streams", "server.forwardedStreams"),
    ("srv cores", "server.cpuCores"),
    ("srv MB", "server.rssMB"),
    ("us/pkt", "server.usPerPacket"),
    ("str/core", "server.streamsPerCore"),
    ("fps mean", "video.fpsMean"),
    ("fps min", "video.fpsMin"),
    ("loss %", "video.lossPercent"),
    ("lat p50", "video.latencyP50Ms"),
    ("lat p95", "video.latencyP95Ms"),
    ("join p50", "join.p50Ms"),
    ("join p95", "join.p95Ms"),
    ("client cores", "clients.cpuCores"),
    ("box busy", "clients.machineBusyCores"),
]


def _get(row: dict[str, Any], path: str) -> Any:
    if path == "server.rssMB":
        rss = row.get("server", {}).get("rssBytes")
        return None if rss is None else round(rss / 2**20)
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def _rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if "error" in r:
            lines = [ln for ln in str(r["error"]).splitlines() if ln.strip()]
            reason = (lines[0] + (" ... " + lines[-1].strip() if len(lines) > 1 else ""))[:160]
            rows.append([r["mode"], str(r["participants"]), f"FAILED: {reason}"])
            continue
        rows.append([_fmt(_get(r, path)) for _, path in COLUMNS])
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """Fixed-width text table, one row per run."""
    head = [h for h, _ in COLUMNS]
    rows = _rows(results)
    widths = [len(h) for h in head]
    for row in rows:
        if len(row) < len(head):
            continue
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    for row in rows:
        if len(row) < len(head):
            lines.append("  ".join(row))
        else:
            lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    notes = (
        "streams: forwarded by the server (video+audio); srv cores: server process CPU over "
        "the window; us/pkt: server CPU per RTP packet sent; lat: publisher send -> "
        "subscriber frame complete, ms; join: offer -> first remote frame, ms; box busy: "
        "all CPUs of the machine, cores."
    )
    return "\n".join(lines) + "\n" + notes


def mesh_table(results: list[dict[str, Any]]) -> str:
    """What each browser uploads with this SFU vs a full mesh, per room size (at the clip's
    measured bitrate)."""
    seen: dict[int, dict[str, Any]] = {}
    for r in results:
        if "mesh" in r:
            seen.setdefault(int(r["participants"]), r["mesh"])
    lines = ["per browser   N   SFU uplink             mesh uplink            downlink (both)"]
    for n, m in sorted(seen.items()):
        lines.append(
            f"             {n:2d}   {m['sfuUplinkStreams']:2d} stream  "
            f"{m['sfuUplinkMbps']:5.2f} Mbps   {m['meshUplinkStreams']:2d} streams "
            f"{m['meshUplinkMbps']:5.2f} Mbps   {m['downlinkStreams']:2d} streams "
            f"{m['downlinkMbps']:5.2f} Mbps"
        )
    return "\n".join(lines)


def compare(results: list[dict[str, Any]]) -> str:
    """transcode / passthrough server CPU ratio at each N both modes ran."""
    cpu: dict[tuple[str, int], float] = {}
    for r in results:
        cores = _get(r, "server.cpuCores")
        if "error" not in r and cores:
            cpu[(r["mode"], int(r["participants"]))] = float(cores)
    lines = []
    for n in sorted({n for _, n in cpu}):
        p, t = cpu.get(("passthrough", n)), cpu.get(("transcode", n))
        if p and t:
            lines.append(
                f"N={n}: transcode {t:.3f} cores / passthrough {p:.3f} cores = {t / p:.1f}x"
            )
    return ("CPU ratio (transcode/passthrough):\n" + "\n".join(lines)) if lines else ""


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers (passthrough unless stated)."""
    ok = [r for r in results if "error" not in r]
    out: dict[str, Any] = {}
    ratios = {}
    for n in sorted({int(r["participants"]) for r in ok}):
        p = [
            _get(r, "server.cpuCores")
            for r in ok
            if r["mode"] == "passthrough" and r["participants"] == n
        ]
        t = [
            _get(r, "server.cpuCores")
            for r in ok
            if r["mode"] == "transcode" and r["participants"] == n
        ]
        if p and t and p[0] and t[0]:
            ratios[str(n)] = round(t[0] / p[0], 2)
    out["cpuRatioTranscodeOverPassthrough"] = ratios
    for mode in ("passthrough", "transcode"):
        rows = sorted((r for r in ok if r["mode"] == mode), key=lambda r: r["participants"])
        clean = [r for r in rows if _get(r, "video.lossPercent") == 0]
        good = [
            r
            for r in clean
            if (_get(r, "video.fpsMin") or 0) >= 29.0
            and (_get(r, "video.latencyP95Ms") or 1e9) < 100
        ]
        out[mode] = {
            "largestZeroLossN": clean[-1]["participants"] if clean else None,
            "streamsPerCoreAtLargestZeroLoss": _get(clean[-1], "server.streamsPerCore")
            if clean
            else None,
            "largestRoom30fpsZeroLossP95Under100ms": good[-1]["participants"] if good else None,
            "joinP50MsByN": {str(r["participants"]): _get(r, "join.p50Ms") for r in rows},
        }
    return out


def write_json(
    path: Path, args: argparse.Namespace, results: list[dict[str, Any]], started: float
) -> None:
    doc = {
        "tool": "sfu-bench",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpuCount": _cpu_count(),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "summary": summary(results),
        "runs": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def markdown(results: list[dict[str, Any]]) -> str:
    head = [h for h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in _rows(results):
        row = row + [""] * (len(head) - len(row))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = " ".join(a for a in _argv())
    path.write_text(f"Command: `{argv}`\n\n{markdown(results)}\n")


def _argv() -> list[str]:
    import sys

    return ["sfu-bench", *sys.argv[1:]]


def plot(path: Path, results: list[dict[str, Any]]) -> None:
    """Four panels against room size: server CPU, fps, latency, loss; per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    modes = sorted({r["mode"] for r in ok})
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (
            axes[0][0],
            "server CPU (cores)",
            [("server.cpuCores", "server"), ("clients.cpuCores", "clients")],
        ),
        (
            axes[0][1],
            "received video fps per stream",
            [("video.fpsMean", "mean"), ("video.fpsMin", "min")],
        ),
        (
            axes[1][0],
            "end-to-end latency (ms)",
            [("video.latencyP50Ms", "p50"), ("video.latencyP95Ms", "p95")],
        ),
        (axes[1][1], "video frame loss (%)", [("video.lossPercent", "all streams")]),
    ]
    styles = {"passthrough": "tab:blue", "transcode": "tab:red"}
    for ax, title, series in panels:
        for mode in modes:
            rows = sorted((r for r in ok if r["mode"] == mode), key=lambda r: r["participants"])
            xs = [r["participants"] for r in rows]
            for i, (field, name) in enumerate(series):
                ys = [_get(r, field) for r in rows]
                pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
                if not pts:
                    continue
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker="o",
                    linestyle="-" if i == 0 else "--",
                    color=styles.get(mode),
                    label=f"{mode} {name}",
                )
        ax.set_title(title)
        ax.set_xlabel("participants per room (N)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[1][0].axhline(100, color="grey", linewidth=0.8, linestyle=":")
    fig.suptitle("sfu-bench: 640x480 30 fps VP8, everyone receives everyone")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
