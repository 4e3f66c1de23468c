"""`sfu-bench`: load-test the SFU with synthetic participants, and size a server.

Starts `sfu-server` as a subprocess (`benchmarks.servers.ServerProcess`; or targets
`--url`), runs N participants per room in worker processes (one per core), each publishing
a pre-encoded, paced 640x480 30 fps VP8 stream (optionally Opus) and receiving everyone
else's without decoding (`--subscriber light`, the default: frames counted at the RTP
layer; `full`: depacketized and assembled frames, see `benchmarks.peer`), then reports
server CPU and memory, per-stream fps and loss, end-to-end latency, join latency, CPU per
forwarded packet, the clients' own CPU, and what a mesh would cost each browser instead.

    sfu-bench --participants 8 --duration 10 --warmup 3
    sfu-bench --sweep 2,4,8,12,16 --json out.json --plot out.png
    sfu-bench --compare passthrough,transcode --sweep 2,4,6

How latency is measured (one clock, no payload change): see `benchmarks.metrics`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/loadtest.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import recording, report
from benchmarks.analysis import analyse_run
from benchmarks.cluster_probe import ClusterProbe, cluster_stats, nodes_table, wait_nodes
from benchmarks.procstat import CpuSample, process_rss_bytes
from benchmarks.servers import ServerProcess
from benchmarks.worker import ParticipantSpec, WorkerSpec, run_worker

MODES = ("passthrough", "transcode")
SUBSCRIBERS = ("light", "full")
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 15.0
RESULT_TIMEOUT = 60.0


# ---------------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or any(v < 1 or v > 200 for v in values):
        raise argparse.ArgumentTypeError("sizes must be between 1 and 200")
    return values


def _mode_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in MODES for v in values):
        raise argparse.ArgumentTypeError(f"modes must be among {', '.join(MODES)}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sfu-bench",
        description="Load-test the SFU with synthetic VP8/Opus participants (no decoding).",
    )
    p.add_argument("--participants", type=int, default=4, help="participants per room")
    p.add_argument("--rooms", type=int, default=1, help="rooms (participants each)")
    p.add_argument("--duration", type=float, default=10.0, help="measurement window, s")
    p.add_argument("--warmup", type=float, default=3.0, help="s after the last join")
    p.add_argument("--bitrate", type=int, default=600_000, help="VP8 clip bitrate, bit/s")
    p.add_argument("--audio", action="store_true", help="also publish Opus (48 kHz, 20 ms)")
    p.add_argument("--forwarding", choices=MODES, default="passthrough")
    p.add_argument(
        "--subscriber",
        choices=SUBSCRIBERS,
        default="light",
        help="light (frames counted at the RTP layer: cheap clients, for sizing; the "
        "default) or full (depacketized and assembled frames, as before)",
    )
    p.add_argument(
        "--send-path",
        choices=("lean", "stock"),
        default=None,
        help="the server's --send-path (default: the server's own default)",
    )
    p.add_argument("--sweep", type=_int_list, default=None, help="room sizes, e.g. 2,4,8")
    p.add_argument(
        "--compare", type=_mode_list, default=None, help="modes, e.g. passthrough,transcode"
    )
    p.add_argument(
        "--transcode-sweep",
        type=_int_list,
        default=None,
        help="room sizes for transcode runs in --compare (default: --sweep)",
    )
    p.add_argument("--url", default=None, help="use a running server instead of starting one")
    p.add_argument("--server-pid", type=int, default=None, help="with --url: its PID for CPU")
    p.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="start `sfu-server --workers N` (a one-box cluster; per-node rows in the report)",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="client processes")
    p.add_argument("--join-interval", type=float, default=0.1, help="s between joins")
    p.add_argument("--cache-dir", default=None, help="clip cache (default ~/.cache/sfu-relay)")
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot (matplotlib)")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as markdown")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="record every room during the run (server --record-dir DIR; started after "
        "the joins, stopped after the window); the files are summarised",
    )
    p.add_argument("--admin-token", default=None, help="with --url --record: the admin token")
    p.add_argument(
        "--layers",
        type=int,
        choices=(1, 3),
        default=1,
        help="temporal layers of the bots' VP8 (3: L1T3, the layer ids in the descriptor)",
    )
    net = p.add_argument_group(
        "emulated network (benchmarks.netbench; root, iproute2 and nftables needed)"
    )
    net.add_argument(
        "--net", action="store_true", help="server and every bot in their own network hosts"
    )
    net.add_argument(
        "--net-rate",
        type=_positive,
        default=None,
        metavar="KBIT",
        help="link rate, kbit/s (default unlimited)",
    )
    net.add_argument(
        "--net-rate-dir",
        choices=("down", "up", "both"),
        default="down",
        help="which direction --net-rate shapes (down: server -> client)",
    )
    net.add_argument(
        "--net-buffer",
        type=_positive,
        default=250.0,
        metavar="MS",
        help="queue in front of the rate limit, ms at the rate (250)",
    )
    net.add_argument(
        "--net-loss",
        type=_percent,
        default=0.0,
        metavar="PCT",
        help="random loss, %%, both directions",
    )
    net.add_argument(
        "--net-loss-up",
        type=_percent,
        default=None,
        metavar="PCT",
        help="random loss client -> server, %% (overrides --net-loss)",
    )
    net.add_argument(
        "--net-loss-down",
        type=_percent,
        default=None,
        metavar="PCT",
        help="random loss server -> client, %% (overrides --net-loss)",
    )
    net.add_argument(
        "--net-target",
        choices=("all", "one"),
        default="all",
        help="impair every client's link, or only p0's (the constrained one)",
    )
    net.add_argument(
        "--net-matrix",
        action="store_true",
        help="the issue's table: loss 0/2/5/10 %% on all links, p0's downlink "
        "unlimited/1000/500/300 kbit/s",
    )
    net.add_argument(
        "--publisher-adapt",
        choices=("on", "off"),
        default="on",
        help="bots publish variants of their clip (640x480 at the bitrate, 320x240 at 1/3, "
        "160x120 at 1/8) and follow the server's REMB between them (on), or one clip and "
        "ignore REMB (off)",
    )
    net.add_argument(
        "--net-chromium",
        action="store_true",
        help="also one run per condition with Chromium as p0 (its getStats)",
    )
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage is within 0..100: {text!r}")
    return value


def network_mode(args: argparse.Namespace) -> bool:
    """True when any network flag asks for the emulated network."""
    return bool(
        args.net
        or args.net_matrix
        or args.net_chromium
        or args.net_rate
        or args.net_loss
        or args.net_loss_up
        or args.net_loss_down
        or args.net_target != "all"
    )


def plan_runs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(mode, participants per room) of every run, in order."""
    modes = args.compare or [args.forwarding]
    sizes = args.sweep or [args.participants]
    runs = []
    for mode in modes:
        mode_sizes = args.transcode_sweep if mode == "transcode" and args.transcode_sweep else sizes
        runs += [(mode, n) for n in mode_sizes]
    return runs


# ---------------------------------------------------------------------- server


def _get_json(url: str, timeout: float = 3.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def start_server_process(
    mode: str,
    max_participants: int,
    workers: int = 1,
    record_dir: Path | None = None,
    send_path: str | None = None,
) -> ServerProcess:
    """`sfu-server` for one run, `workers` node processes under one supervisor when more
    than 1, recording into `record_dir` when given, with `--send-path send_path` when given
    (not ready yet: call `wait_ready()`)."""
    extra = ["--record-dir", str(record_dir)] if record_dir is not None else []
    extra += ["--send-path", send_path] if send_path else []
    return ServerProcess(
        "--forwarding",
        mode,
        "--max-participants",
        str(max(2, max_participants)),
        "--log-level",
        "WARNING",
        *(["--workers", str(workers)] if workers > 1 else []),
        *extra,
        start_timeout=SERVER_START_TIMEOUT,
        stop_timeout=SERVER_STOP_TIMEOUT,
    )


# ---------------------------------------------------------------------- progress


class Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr is not None
        self._width = 0

    def show(self, label: str, phase: str, fraction: float, extra: str = "") -> None:
        if not self.enabled:
            return
        fraction = min(1.0, max(0.0, fraction))
        filled = int(fraction * 24)
        line = f"\r{label} {phase:<9} [{'#' * filled}{'.' * (24 - filled)}] {extra}"
        pad = max(0, self._width - len(line))
        self._width = len(line)
        sys.stderr.write(line + " " * pad)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0


# ---------------------------------------------------------------------- one run


def _server_counters(url: str) -> dict[str, float] | None:
    """Packets sent to subscribers (sum over senders) and the server's uptime stamp."""
    try:
        snap = _get_json(url + "/api/stats")
    except (OSError, ValueError):
        return None
    server = snap.get("server", {})
    packets = 0
    streams = 0
    for room in snap.get("rooms", []):
        for participant in room.get("participants", []):
            for sub in participant.get("subscriptions", []):
                packets += int(sub.get("packetsOut", 0) or 0)
                streams += 1
    return {
        "uptime": float(server.get("uptime", 0.0)),
        "packets": float(packets),
        "streams": float(streams),
        "cpuPercent": float(server.get("cpuPercent", 0.0)),
        "rssBytes": float(server.get("rssBytes", 0.0)),
    }


def _all_counters(urls: list[str]) -> dict[str, float] | None:
    """`_server_counters` summed over the nodes (CPU % summed: cores x 100)."""
    parts = [_server_counters(u) for u in urls]
    if any(p is None for p in parts):
        return None
    total = {k: 0.0 for k in ("packets", "streams", "cpuPercent", "rssBytes")}
    for part in parts:
        assert part is not None
        for key in total:
            total[key] += part[key]
    first = parts[0]
    assert first is not None
    return {**total, "uptime": first["uptime"]}


def run_once(
    args: argparse.Namespace, mode: str, n: int, label: str, progress: Progress
) -> dict[str, Any]:
    """One measured run of `args.rooms` rooms of `n` participants in `mode`."""
    server: ServerProcess | None = None
    if args.url:
        url, server_pid = args.url.rstrip("/"), args.server_pid
    else:
        server = start_server_process(mode, n, args.server_workers, args.record, args.send_path)
        url = server.url
        # with --server-workers the PID is the supervisor's: CPU comes per node instead
        server_pid = server.pid if args.server_workers == 1 else None
    ctx = mp.get_context("spawn")
    status: Any = ctx.Queue()
    results: Any = ctx.Queue()
    stop = ctx.Event()
    procs: list[Any] = []
    try:
        if server is not None:
            progress.show(label, "server", 0.0, "starting")
            server.wait_ready()
            if args.server_workers > 1:
                wait_nodes(url, args.server_workers)
        total = n * args.rooms
        workers = max(1, min(args.workers, total))
        run_id = f"{mode[:2]}{n}-{int(time.time()) % 100000}"
        start = time.monotonic() + 2.5  # leave the workers time to import and load clips
        specs: list[list[ParticipantSpec]] = [[] for _ in range(workers)]
        for i in range(total):
            room = f"bench-{run_id}-r{i % args.rooms}"
            specs[i % workers].append(
                ParticipantSpec(room, f"p{i}", i, i % 16, start + i * args.join_interval)
            )
        planned_end = start + total * args.join_interval + 60 + args.warmup + args.duration
        for plist in specs:
            spec = WorkerSpec(
                url,
                plist,
                args.audio,
                args.bitrate,
                args.cache_dir,
                planned_end,
                subscriber=args.subscriber,
                layers=args.layers,
            )
            proc = ctx.Process(target=run_worker, args=(spec, status, results, stop), daemon=True)
            proc.start()
            procs.append(proc)
        worker_pids = [int(p.pid) for p in procs]

        # joins
        joined: dict[str, tuple[bool, str | None]] = {}
        join_deadline = start + total * args.join_interval + 45.0
        while len(joined) < total and time.monotonic() < join_deadline:
            try:
                _, name, ok, error = status.get(timeout=0.25)
                joined[name] = (ok, error)
            except queue.Empty:
                pass
            if any(not p.is_alive() for p in procs):
                break
            progress.show(label, "joining", len(joined) / total, f"{len(joined)}/{total}")
        failures = {k: v[1] for k, v in joined.items() if not v[0]}
        failures.update({f"p{i}": "no join report" for i in range(total) if f"p{i}" not in joined})
        room_names = sorted({s.room for plist in specs for s in plist})
        if args.record is not None:
            progress.show(label, "recording", 0.0, "start")
            recording.start(url, room_names, args.admin_token)

        # warmup, then the measurement window
        warm_end = time.monotonic() + args.warmup
        while time.monotonic() < warm_end:
            left = warm_end - time.monotonic()
            progress.show(label, "warmup", 1 - left / max(args.warmup, 1e-9), f"{left:4.1f}s")
            time.sleep(min(0.25, max(0.0, left)))
        pids = ([server_pid] if server_pid else []) + worker_pids + [os.getpid()]
        snapshot = cluster_stats(url)
        node_urls = [str(n["url"]) for n in snapshot["nodes"]] if snapshot else [url]
        counters0 = _all_counters(node_urls)
        probe = ClusterProbe(url).start()
        cpu0 = CpuSample.take(pids)
        w0 = cpu0.wall
        w1 = w0 + args.duration
        rss_max = 0
        while time.monotonic() < w1:
            if server_pid:
                rss_max = max(rss_max, process_rss_bytes(server_pid) or 0)
            left = w1 - time.monotonic()
            progress.show(
                label, "measuring", 1 - left / max(args.duration, 1e-9), f"{left:4.1f}s left"
            )
            time.sleep(min(0.25, max(0.0, left)))
        cpu1 = CpuSample.take(pids)
        counters1 = _all_counters(node_urls)
        nodes = probe.stop()
        rss_end = process_rss_bytes(server_pid) if server_pid else None
        recorded = recording.stop(url, room_names, args.admin_token) if args.record else []
        stop.set()

        # collect
        progress.show(label, "collecting", 1.0, "")
        raw: list[dict[str, Any]] = []
        deadline = time.monotonic() + RESULT_TIMEOUT
        while len(raw) < len(procs) and time.monotonic() < deadline:
            try:
                raw.append(results.get(timeout=0.5))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
        progress.done()
        result = analyse_run(
            mode=mode,
            participants=n,
            rooms=args.rooms,
            audio=args.audio,
            bitrate=args.bitrate,
            duration=args.duration,
            warmup=args.warmup,
            window=(w0, cpu1.wall),
            worker_results=raw,
            join_failures=failures,
            cpu=(cpu0, cpu1),
            server_pid=server_pid,
            worker_pids=worker_pids,
            server_counters=(counters0, counters1),
            rss=(rss_max or None, rss_end),
            cache_dir=args.cache_dir,
        )
        if nodes:
            result["nodes"] = nodes
        if args.record is not None:
            result["recording"] = recording.summarise(recorded)
        result["subscriber"] = args.subscriber
        result["sendPath"] = args.send_path or "default"
        return result
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        if server is not None:
            server.stop()
        for q in (status, results):
            q.close()
            q.cancel_join_thread()


# ---------------------------------------------------------------------- main


def prepare_clips(args: argparse.Namespace, runs: Sequence[tuple[str, int]]) -> None:
    """Encode (once, cached on disk) every clip the workers will load."""
    from signaling.client import encode_clip

    largest = max(n for _, n in runs) * args.rooms
    for marker in range(min(16, largest)):
        encode_clip(
            marker=marker,
            bitrate=args.bitrate,
            cache_dir=args.cache_dir,
            temporal_layers=args.layers,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.server_workers <= 64 or (args.url and args.server_workers > 1):
        print("sfu-bench: error: --server-workers 1-64, and not with --url", file=sys.stderr)
        return 2
    if args.participants < 1 or args.rooms < 1 or args.duration <= 0 or args.warmup < 0:
        print("sfu-bench: error: bad --participants/--rooms/--duration/--warmup", file=sys.stderr)
        return 2
    if network_mode(args):
        if args.url or args.rooms != 1 or args.sweep or args.compare or args.server_workers > 1:
            print(
                "sfu-bench: error: the network option runs its own server, one room: "
                "not with --url, --rooms, --sweep, --compare or --server-workers",
                file=sys.stderr,
            )
            return 2
        if not 2 <= args.participants <= 16:
            print("sfu-bench: error: --participants 2-16 with the network option", file=sys.stderr)
            return 2
        from benchmarks import netbench

        return netbench.run_cli(args)
    runs = plan_runs(args)
    progress = Progress(not args.quiet)
    if not args.quiet:
        print(f"sfu-bench: preparing clips ({args.bitrate // 1000} kbps VP8)", file=sys.stderr)
    prepare_clips(args, runs)
    results: list[dict[str, Any]] = []
    started = time.time()
    for i, (mode, n) in enumerate(runs):
        label = f"[{i + 1}/{len(runs)}] {mode} N={n}x{args.rooms}"
        try:
            results.append(run_once(args, mode, n, label, progress))
        except Exception as exc:
            progress.done()
            print(f"sfu-bench: {label} failed: {exc}", file=sys.stderr)
            results.append(
                {"mode": mode, "participants": n, "rooms": args.rooms, "error": str(exc)}
            )
        if args.json:  # keep partial results of long sweeps
            report.write_json(args.json, args, results, started)
    print(report.table(results))
    for r in results:
        if "recording" in r:
            print(recording.describe(r["recording"]))
    print()
    print(report.mesh_table(results))
    per_node = nodes_table(results)
    if per_node:
        print()
        print(per_node)
    comparison = report.compare(results)
    if comparison:
        print()
        print(comparison)
    if args.json:
        report.write_json(args.json, args, results, started)
    if args.markdown:
        report.write_markdown(args.markdown, args, results)
    if args.plot:
        report.plot(args.plot, results)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
