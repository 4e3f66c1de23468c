"""`sfu-bench` in emulated networks: a room of bots (and optionally Chromium), each in its
own `benchmarks.netem` host, the server in another, links shaped per condition.

One run (`run_network`): a `NetworkLab` with a host ``srv`` (unlimited links) running
`sfu-server` on its address, and one host ``c<i>`` per participant ``p<i>``, linked to the
hub with the condition's rate (kbit/s, a tbf with a queue of ``buffer_ms`` at that rate),
and random loss per direction. ``target="all"`` impairs every client's link;
``target="one"`` only ``c0``'s: ``p0`` is *the constrained subscriber*. Each bot is a
`benchmarks.net_worker` process in its host (a light subscriber, see `benchmarks.peer`;
`layers=3` makes it publish L1T3); with ``chromium=True`` ``p0`` is headless Chromium
instead (`benchmarks.net_chromium`, its own `getStats()` at both ends of the window).

Per received video stream (`analyse_network`), over the measurement window: frames per
second (received: the last packet arrived; complete: no packet lost for good), freezes
(gaps between complete frames longer than `FREEZE_GAP` = 0.5 s, the window's ends
included; a stream never received is one freeze as long as the window), their total and
longest length, and unrecovered packet loss (RTP sequence holes no retransmission filled,
`sfu.rtp_loss.SequenceLoss` in the light receiver). Streams are grouped as
``constrained`` (received by the constrained subscriber), ``others`` (received by
everyone else, the constrained one's camera included) and ``fromConstrained`` (the part
of ``others`` that is the constrained one's camera); with ``target="all"`` all streams are
``all``. The link counters of every host (packets, shaper queue drops, random-loss drops)
and the server's `/api/stats` at the end of the window are kept in the result.

Delay cannot be emulated on this kernel (no netem): every path has ~0 ms RTT, so NACK
recovery here is faster than on a real network.

`matrix_conditions()` is the issue's table: unimpaired, 2 / 5 / 10 % loss on every link
(both directions), and ``p0``'s downlink at 1 Mbit/s / 500 / 300 kbit/s with a 250 ms
queue. Needs root, iproute2 and nftables (`benchmarks.netem.NetemUnavailable` otherwise).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import logging
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.netem import Host, HostCounters, Link, NetworkLab
from benchmarks.servers import server_command
from benchmarks.worker import ParticipantSpec, WorkerSpec

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SERVER_PORT = 8080
#: A gap between two frames longer than this is a freeze (seconds).
FREEZE_GAP = 0.5
SERVER_START_TIMEOUT = 30.0
JOIN_TIMEOUT = 60.0
RESULT_TIMEOUT = 45.0
TARGETS = ("all", "one")
DIRECTIONS = ("down", "up", "both")
GROUPS = ("all", "constrained", "others", "fromConstrained")
#: Environment variables of this process the children keep (the others SFU_* are dropped:
#: the server gets everything from its flags).
_KEEP_SFU = ("SFU_CACHE_DIR", "SFU_CHROMIUM")


@dataclass(frozen=True)
class NetCondition:
    """The links of one run: `rate_kbit` (None = unlimited) in `rate_direction` ("down":
    server -> client, "up", or "both") with a queue of `buffer_ms` at that rate, random
    loss in % per direction, on every client (`target="all"`) or on ``p0`` only
    (`target="one"`). Bad values raise ValueError."""

    name: str = "unimpaired"
    rate_kbit: float | None = None
    rate_direction: str = "down"
    buffer_ms: float = 250.0
    loss_up: float = 0.0
    loss_down: float = 0.0
    target: str = "all"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}: {self.target!r}")
        if self.rate_direction not in DIRECTIONS:
            raise ValueError(f"rate direction must be one of {', '.join(DIRECTIONS)}")
        self.links()  # Link validates rate, buffer and loss

    def links(self) -> tuple[Link, Link]:
        """(uplink, downlink) of an impaired client."""
        up = self.rate_kbit if self.rate_direction in ("up", "both") else None
        down = self.rate_kbit if self.rate_direction in ("down", "both") else None
        return (
            Link(rate_kbit=up, buffer_ms=self.buffer_ms, loss=self.loss_up),
            Link(rate_kbit=down, buffer_ms=self.buffer_ms, loss=self.loss_down),
        )

    @property
    def constrained(self) -> str | None:
        """The constrained participant's name, when only one is impaired."""
        return "p0" if self.target == "one" else None


def matrix_conditions(buffer_ms: float = 250.0) -> list[NetCondition]:
    """The issue's table: unimpaired; 2, 5, 10 % loss on every link, both directions;
    one subscriber's downlink at 1000, 500, 300 kbit/s (a `buffer_ms` queue)."""
    out = [NetCondition("unimpaired")]
    out += [NetCondition(f"loss {p} %", loss_up=p, loss_down=p) for p in (2, 5, 10)]
    out += [
        NetCondition(f"p0 down {r} kbit/s", rate_kbit=r, buffer_ms=buffer_ms, target="one")
        for r in (1000, 500, 300)
    ]
    return out


# ---------------------------------------------------------------------- processes


@dataclass
class _Member:
    """One participant's process in its host, and what it printed."""

    name: str
    kind: str  # "bot" or "chromium"
    host: Host
    proc: subprocess.Popen[str]
    joined: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    stderr: IO[str] | None = None
    other: list[str] = field(default_factory=list)

    def send(self, line: str) -> None:
        if self.proc.stdin is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_") or k in _KEEP_SFU}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pump(members: Sequence[_Member], until: float, done: Callable[[], bool]) -> None:
    """Read JSON lines from the members' stdout until `done()` or `until` (monotonic)."""
    while not done() and time.monotonic() < until:
        streams = {m.proc.stdout: m for m in members if m.proc.stdout and not m.result}
        if not streams:
            return
        ready, _, _ = select.select(list(streams), [], [], 0.25)
        for stream in ready:
            member = streams[stream]
            line = stream.readline()
            if not line:
                member.result = member.result or {"ok": False, "error": "exited", "eof": True}
                continue
            try:
                event = json.loads(line)
            except ValueError:
                member.other.append(line.rstrip()[:300])
                continue
            if event.get("event") == "joined":
                member.joined = event
            elif event.get("event") == "result":
                member.result = event


def _in_host(lab: NetworkLab, host: Host, url: str, timeout: float = 5.0) -> Any:
    """GET `url` (JSON) from inside `host`; None when it fails."""
    code = (
        "import sys, urllib.request\n"
        f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())"
    )
    done = lab.run(host, [sys.executable, "-c", code], timeout=timeout + 10, check=False)
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        return done.stdout


def _wait_server(lab: NetworkLab, srv: Host, url: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sfu-server exited with {proc.returncode}")
        if _in_host(lab, srv, url + "/healthz", timeout=2.0) is not None:
            return
        time.sleep(0.3)
    raise RuntimeError(f"sfu-server did not answer /healthz within {SERVER_START_TIMEOUT} s")


def _counters(lab: NetworkLab, hosts: Sequence[Host]) -> dict[str, HostCounters]:
    return {host.name: lab.counters(host) for host in hosts}


def _counter_delta(
    before: dict[str, HostCounters], after: dict[str, HostCounters]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, end in after.items():
        start = before[name]
        out[name] = {
            direction: {
                key: getattr(getattr(end, direction), key) - getattr(getattr(start, direction), key)
                for key in ("packets", "bytes", "queue_drops", "loss_drops")
            }
            for direction in ("uplink", "downlink")
        }
        out[name]["receive_buffer_drops"] = end.receive_buffer_drops - start.receive_buffer_drops
    return out


# ---------------------------------------------------------------------- one run


@dataclass(frozen=True)
class NetRunOptions:
    """Everything of a network run but the condition."""

    participants: int = 3
    duration: float = 20.0
    warmup: float = 5.0
    layers: int = 1
    bitrate: int = 600_000
    audio: bool = False
    forwarding: str = "passthrough"
    send_path: str | None = None
    chromium: bool = False
    cache_dir: str | None = None
    join_interval: float = 0.3
    log_dir: Path | None = None
    #: bots publish bitrate variants and follow the server's REMB between them
    publisher_adapt: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.participants <= 16:
            raise ValueError("a network run takes 2 to 16 participants")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be positive and warmup not negative")
        if self.layers not in (1, 3):
            raise ValueError("layers must be 1 or 3")


def run_network(
    condition: NetCondition,
    options: NetRunOptions,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One run of `condition` (see the module doc); returns `analyse_network`'s dict plus
    the raw link counters and server stats. Raises NetemUnavailable without root/tools."""
    from signaling.client.sources import encode_clip, encode_clip_variants, resolve_cache_dir

    say = progress or (lambda text: None)
    cache = str(resolve_cache_dir(options.cache_dir).resolve())
    bots = [i for i in range(options.participants) if not (options.chromium and i == 0)]
    encode = encode_clip_variants if options.publisher_adapt else encode_clip
    for i in bots:  # encoded once, cached: the bots only load them
        encode(
            marker=i % 16, bitrate=options.bitrate, cache_dir=cache, temporal_layers=options.layers
        )
    env = _child_env()
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="sfu-netbench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    members: list[_Member] = []
    with NetworkLab() as lab:
        srv = lab.add_host("srv")
        hosts: list[Host] = []
        for i in range(options.participants):
            impaired = condition.target == "all" or i == 0
            up, down = condition.links() if impaired else (Link(), Link())
            hosts.append(lab.add_host(f"c{i}", uplink=up, downlink=down))
        url = f"http://{srv.address}:{SERVER_PORT}"
        server_log = (log_dir / "server.log").open("a")
        send_path = ["--send-path", options.send_path] if options.send_path else []
        server = lab.popen(
            srv,
            [
                *server_command(),
                *("--host", srv.address, "--port", str(SERVER_PORT)),
                *("--ice-address", srv.address, "--forwarding", options.forwarding),
                *("--max-participants", str(options.participants + 2)),
                *("--log-level", "WARNING", *send_path),
            ],
            stdout=server_log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        say("server")
        _wait_server(lab, srv, url, server)
        room = f"net-{int(time.time() * 1000) % 10_000_000}"
        start = time.monotonic() + 1.0
        planned_end = (
            start
            + options.participants * options.join_interval
            + JOIN_TIMEOUT
            + options.warmup
            + options.duration
        )
        for i, host in enumerate(hosts):
            name = f"p{i}"
            if i in bots:
                spec = WorkerSpec(
                    url,
                    [ParticipantSpec(room, name, i, i % 16, start + i * options.join_interval)],
                    options.audio,
                    options.bitrate,
                    cache,
                    planned_end,
                    subscriber="light",
                    layers=options.layers,
                    publisher_adapt=options.publisher_adapt,
                )
                argv = [sys.executable, "-m", "benchmarks.net_worker"]
                argv += ["--address", host.address, "--spec", json.dumps(asdict(spec))]
                kind = "bot"
            else:
                argv = [sys.executable, "-m", "benchmarks.net_chromium", "--url", url]
                argv += ["--room", room, "--name", name]
                argv += ["--timeout", str(round(planned_end - time.monotonic() + 60))]
                kind = "chromium"
            stderr = (log_dir / f"{name}.log").open("a")
            proc = lab.popen(
                host,
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
                env=env,
            )
            members.append(_Member(name, kind, host, proc, stderr=stderr))
        try:
            say("joining")
            _pump(
                members,
                start + options.participants * options.join_interval + JOIN_TIMEOUT,
                lambda: all(m.joined or m.result for m in members),
            )
            say("warmup")
            time.sleep(options.warmup)
            before = _counters(lab, hosts)
            w0 = time.monotonic()
            for m in members:
                if m.kind == "chromium":
                    m.send("snapshot")
            say("measuring")
            _pump(members, w0 + options.duration, lambda: False)
            w1 = time.monotonic()
            for m in members:
                if m.kind == "chromium":
                    m.send("snapshot")
            after = _counters(lab, hosts)
            server_stats = _in_host(lab, srv, url + "/api/stats")
            say("collecting")
            for m in members:
                m.send("stop")
            _pump(
                members, time.monotonic() + RESULT_TIMEOUT, lambda: all(m.result for m in members)
            )
        finally:
            for m in members:
                if m.stderr is not None:
                    m.stderr.close()
            server_log.close()
    result = analyse_network(condition, members, (w0, w1))
    result["links"] = _counter_delta(before, after)
    result["server"] = _server_summary(server_stats)
    result["options"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()
    }
    result["logs"] = str(log_dir)
    return result


def _server_summary(snapshot: Any) -> Any:
    """The rooms part of the server's `/api/stats` (None when it did not answer)."""
    if not isinstance(snapshot, dict):
        return None
    return {"server": snapshot.get("server"), "rooms": snapshot.get("rooms")}


# ---------------------------------------------------------------------- analysis


def complete_arrivals(
    arrivals: Sequence[float], seqs: Sequence[int], holes: Sequence[int]
) -> list[float]:
    """Arrival times of the frames none of whose packets is in `holes` (a frame spans the
    sequence numbers after the previous frame's last packet up to its own last one; the
    first frame counts as complete). Needs one `seqs` entry per arrival."""
    out: list[float] = []
    previous: int | None = None
    for arrival, seq in zip(arrivals, seqs, strict=True):
        low = previous if previous is not None and previous < seq else seq - 1
        # any hole h with low < h <= seq?
        index = bisect.bisect_right(holes, low)
        if previous is None or index >= len(holes) or holes[index] > seq:
            out.append(arrival)
        previous = seq if previous is None else max(previous, seq)
    return out


def _freezes(arrivals: Sequence[float], window: tuple[float, float]) -> list[float]:
    w0, w1 = window
    edges = [w0, *(a for a in arrivals if w0 <= a <= w1), w1]
    return [b - a for a, b in itertools.pairwise(edges) if b - a > FREEZE_GAP]


def stream_figures(
    arrivals: Sequence[float],
    lost: Sequence[int],
    window: tuple[float, float],
    seqs: Sequence[int] = (),
    holes: Sequence[int] = (),
) -> dict[str, Any]:
    """fps, freezes and unrecovered loss of one received stream over `window`.

    `fps` counts every frame whose last packet arrived; with `seqs` (light subscribers)
    `completeFps` counts only frames none of whose packets was lost for good, and the
    freezes are the gaps between complete frames (else between received frames)."""
    w0, w1 = window
    span = max(w1 - w0, 1e-9)
    inside = [a for a in arrivals if w0 <= a <= w1]
    known = bool(seqs) and len(seqs) == len(arrivals)
    complete = complete_arrivals(arrivals, seqs, holes) if known else None
    complete_inside = [a for a in complete if w0 <= a <= w1] if complete is not None else None
    gaps = _freezes(complete if complete is not None else arrivals, window)
    lost_in = None
    if lost and len(lost) == len(arrivals):
        before = [n for a, n in zip(arrivals, lost, strict=True) if a < w0]
        upto = [n for a, n in zip(arrivals, lost, strict=True) if a <= w1]
        if upto:
            lost_in = upto[-1] - (before[-1] if before else 0)
    return {
        "frames": len(inside),
        "fps": round(len(inside) / span, 2),
        "completeFps": (
            round(len(complete_inside) / span, 2) if complete_inside is not None else None
        ),
        "freezesOf": "complete" if complete is not None else "received",
        "freezes": len(gaps),
        "freezeSeconds": round(sum(gaps), 3),
        "maxFreeze": round(max(gaps), 3) if gaps else 0.0,
        "lostPackets": lost_in,
    }


def _group_of(subscriber: str, publisher: str | None, constrained: str | None) -> list[str]:
    if constrained is None:
        return ["all"]
    if subscriber == constrained:
        return ["constrained"]
    return ["others", "fromConstrained"] if publisher == constrained else ["others"]


def _summary(rows: list[dict[str, Any]], span: float) -> dict[str, Any]:
    fps = [r["fps"] for r in rows]
    complete = [r["completeFps"] for r in rows if r.get("completeFps") is not None]
    freezes = sum(r["freezes"] for r in rows)
    lost = [r["lostPackets"] for r in rows if r["lostPackets"] is not None]
    ratio = [r["fps"] / r["publisherFps"] for r in rows if r.get("publisherFps")]
    return {
        "streams": len(rows),
        "fpsMean": round(statistics.fmean(fps), 2) if fps else None,
        "fpsMin": round(min(fps), 2) if fps else None,
        "completeFpsMean": round(statistics.fmean(complete), 2) if complete else None,
        "completeFpsMin": round(min(complete), 2) if complete else None,
        "fpsOfSent": round(statistics.fmean(ratio), 3) if ratio else None,
        "freezes": freezes,
        "freezesPerMinute": round(freezes / (len(rows) * span / 60), 2) if rows else None,
        "freezeSeconds": round(sum(r["freezeSeconds"] for r in rows), 3),
        "maxFreeze": round(max((r["maxFreeze"] for r in rows), default=0.0), 3),
        "lostPackets": sum(lost) if lost else None,
    }


def _rendered_figures(
    first: dict[str, Any], last: dict[str, Any], participant: str | None
) -> dict[str, Any]:
    """What one remote camera tile rendered between two snapshots (`net_chromium`'s
    `RENDER_WATCH_JS`): frames per second and freezes as the bots count them (gaps over
    `FREEZE_GAP`, clipped to the window, its end included; a tile that rendered nothing
    is one freeze as long as the window). Empty when the page did not record it."""
    w0, w1 = first.get("now"), last.get("now")
    rendered = (last.get("rendered") or {}).get(participant or "")
    if not isinstance(w0, int | float) or not isinstance(w1, int | float) or w1 <= w0:
        return {}
    if rendered is None:
        window = (w1 - w0) / 1000
        return {
            "renderedFps": 0.0,
            "freezes": 1,
            "freezeSeconds": round(window, 3),
            "maxFreeze": round(window, 3),
        }
    before = (first.get("rendered") or {}).get(participant or "") or {}
    frames = int(rendered.get("frames", 0)) - int(before.get("frames", 0))
    gaps: list[tuple[float, float]] = []  # (start, end), ms
    for end, length in rendered.get("long", []):
        if w0 < end <= w1:
            gaps.append((max(end - length, w0), end))
    last_frame = rendered.get("last")
    # a freeze still going at the window's end
    gaps.append((max(last_frame if isinstance(last_frame, int | float) else w0, w0), w1))
    freezes = [(a, b) for a, b in gaps if (b - a) / 1000 > FREEZE_GAP]
    lengths = [(b - a) / 1000 for a, b in freezes]
    return {
        "renderedFps": round(frames / ((w1 - w0) / 1000), 2),
        "freezes": len(freezes),
        "freezeSeconds": round(sum(lengths), 3),
        "maxFreeze": round(max(lengths, default=0.0), 3),
        # when each began, s into the window, and how long it lasted
        "freezeList": [[round((a - w0) / 1000, 3), round((b - a) / 1000, 3)] for a, b in freezes],
    }


def _chromium_figures(result: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Deltas of Chromium's getStats between its two snapshots."""
    snaps = [s for s in result.get("snapshots", []) if isinstance(s, dict) and "inbound" in s]
    out: dict[str, Any] = {"ok": bool(result.get("ok")), "error": result.get("error")}
    if len(snaps) < 2:
        out["error"] = out["error"] or f"{len(snaps)} getStats snapshots"
        out["console"] = result.get("console", [])[-10:]
        return out
    first, last = snaps[0], snaps[-1]
    span = max(last["t"] - first["t"], 1e-9)

    def delta(a: dict[str, Any] | None, b: dict[str, Any], key: str) -> float | None:
        if b.get(key) is None:
            return None
        return float(b[key]) - float((a or {}).get(key) or 0)

    inbound = []
    start_by = {s.get("ssrc"): s for s in first["inbound"]}
    for s in last["inbound"]:
        a = start_by.get(s.get("ssrc"))
        decoded = delta(a, s, "framesDecoded")
        inbound.append(
            {
                "publisher": names.get(s.get("participantId") or "", s.get("participantId")),
                "fps": round(decoded / span, 2) if decoded is not None else None,
                **_rendered_figures(first, last, s.get("participantId")),
                "framesPerSecond": s.get("framesPerSecond"),
                **{
                    key: delta(a, s, key)
                    for key in (
                        "freezeCount",
                        "totalFreezesDuration",
                        "nackCount",
                        "pliCount",
                        "packetsLost",
                        "packetsReceived",
                    )
                },
            }
        )
    outbound = []
    out_start = {s.get("ssrc"): s for s in first.get("outbound", [])}
    for s in last.get("outbound", []):
        a = out_start.get(s.get("ssrc"))
        outbound.append(
            {
                "framesPerSecond": s.get("framesPerSecond"),
                "qualityLimitationReason": s.get("qualityLimitationReason"),
                "scalabilityMode": s.get("scalabilityMode"),
                **{k: delta(a, s, k) for k in ("framesEncoded", "nackCount", "pliCount")},
            }
        )
    out.update({"seconds": round(span, 2), "inbound": inbound, "outbound": outbound})
    if isinstance(first.get("wall"), int | float):
        out["windowStart"] = first["wall"] / 1000  # the page's wall clock, epoch s
    return out


def analyse_network(
    condition: NetCondition, members: Sequence[_Member], window: tuple[float, float]
) -> dict[str, Any]:
    """Per-stream figures and per-group summaries (see the module doc)."""
    w0, w1 = window
    span = max(w1 - w0, 1e-9)
    constrained = condition.constrained
    people: list[dict[str, Any]] = []
    errors: dict[str, Any] = {}
    names: dict[str, str] = {}
    for m in members:
        result = m.result or {}
        if m.kind == "chromium":
            if result.get("id") or (m.joined or {}).get("id"):
                names[str(result.get("id") or (m.joined or {})["id"])] = m.name
            if not result.get("ok"):
                errors[m.name] = result.get("error") or "no result"
            continue
        if result.get("error"):
            errors[m.name] = result["error"]
        for p in result.get("participants", []):
            people.append(p)
            if p.get("id"):
                names[str(p["id"])] = p["name"]
            if not p.get("ok"):
                errors[p["name"]] = p.get("error")
    publisher_fps = {
        p["name"]: sum(1 for t in p.get("videoTimes", []) if w0 <= t <= w1) / span for p in people
    }
    publishers = {
        p["name"]: {
            key: p.get(key)
            for key in ("variantSwitches", "videoBitrate", "targetBitrate", "variantBitrates")
        }
        for p in people
    }
    chromium = [
        {"name": m.name, **_chromium_figures(m.result or {}, names)}
        for m in members
        if m.kind == "chromium"
    ]
    for c in chromium:  # what Chromium encoded over the window is what it sent
        encoded = [o.get("framesEncoded") for o in c.get("outbound", [])]
        if encoded and encoded[0] is not None and c.get("seconds"):
            publisher_fps[c["name"]] = encoded[0] / c["seconds"]
    rows: list[dict[str, Any]] = []
    everyone = [m.name for m in members]
    for p in people:
        seen: set[str] = set()
        for s in p.get("streams", []):
            if s.get("kind") != "video":
                continue
            publisher = names.get(str(s.get("publisher")), str(s.get("publisher")))
            seen.add(publisher)
            figures = stream_figures(
                s["arrivals"], s.get("lost", []), window, s.get("seqs", []), s.get("holes", [])
            )
            rows.append(
                {
                    "subscriber": p["name"],
                    "publisher": publisher,
                    "groups": _group_of(p["name"], publisher, constrained),
                    "publisherFps": round(publisher_fps.get(publisher, 0.0), 2) or None,
                    **figures,
                }
            )
        for publisher in everyone:
            if publisher != p["name"] and publisher not in seen:  # never received at all
                rows.append(
                    {
                        "subscriber": p["name"],
                        "publisher": publisher,
                        "groups": _group_of(p["name"], publisher, constrained),
                        "publisherFps": round(publisher_fps.get(publisher, 0.0), 2) or None,
                        "missing": True,
                        **stream_figures([], [], window),
                    }
                )
    groups = {
        g: _summary([r for r in rows if g in r["groups"]], span)
        for g in GROUPS
        if any(g in r["groups"] for r in rows)
    }
    return {
        "condition": asdict(condition),
        "window": round(span, 2),
        "constrained": constrained,
        "publisherFps": {k: round(v, 2) for k, v in publisher_fps.items()},
        "publishers": publishers,
        "groups": groups,
        "streams": rows,
        "chromium": chromium,
        "errors": errors,
    }


# ---------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The bots' table: one row per condition and stream group; ``x base`` is the mean,
    over the group's streams, of each stream's fps of complete frames (else of received
    frames) over the same (subscriber, publisher) stream's in the unimpaired run (when the
    results include one); freezes are gaps between complete frames."""
    base = next(
        (
            r
            for r in results
            if r.get("condition", {}).get("name") == "unimpaired" and "groups" in r
        ),
        None,
    )
    base_fps = {
        (s["subscriber"], s["publisher"]): _stream_fps(s) for s in (base or {}).get("streams", [])
    }
    lines = [
        "| condition | streams of | n | fps mean | fps min | complete fps mean | complete fps "
        "min | x base | freezes | per min | freeze s | max freeze s | lost pkts |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = r.get("condition", {}).get("name", "?")
        if "groups" not in r:
            lines.append(f"| {name} | error: {str(r.get('error'))[:80]} |||||||||||")
            continue
        for group, g in r["groups"].items():
            ratios = [
                _stream_fps(s) / base
                for s in r["streams"]
                if group in s["groups"]
                and (base := base_fps.get((s["subscriber"], s["publisher"])))
            ]
            ratio = statistics.fmean(ratios) if ratios else None
            lines.append(
                f"| {name} | {group} | {g['streams']} | {_fmt(g['fpsMean'])} "
                f"| {_fmt(g['fpsMin'])} | {_fmt(g['completeFpsMean'])} "
                f"| {_fmt(g['completeFpsMin'])} | {_fmt(ratio)} | {g['freezes']} "
                f"| {_fmt(g['freezesPerMinute'])} | {_fmt(g['freezeSeconds'])} "
                f"| {_fmt(g['maxFreeze'])} | {_fmt(g['lostPackets'])} |"
            )
    return "\n".join(lines)


def _stream_fps(stream: dict[str, Any]) -> float:
    complete = stream.get("completeFps")
    return float(complete if complete is not None else stream["fps"])


def publishers_table(results: Sequence[dict[str, Any]]) -> str:
    """Per condition and bot publisher: its bitrate variants (measured kbit/s), how often
    it switched between them, the last REMB it heard and the variant it ended on."""
    lines = [
        "| condition | publisher | variants kbit/s | switches | last REMB kbit/s | final kbit/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        name = r.get("condition", {}).get("name", "?")
        for who, p in sorted((r.get("publishers") or {}).items()):

            def kbit(v: Any) -> str:
                return "-" if v is None else f"{v / 1000:.0f}"

            variants = "/".join(kbit(v) for v in p.get("variantBitrates") or [])
            lines.append(
                f"| {name} | {who} | {variants or '-'} | {_fmt(p.get('variantSwitches'))} "
                f"| {kbit(p.get('targetBitrate'))} | {kbit(p.get('videoBitrate'))} |"
            )
    return "\n".join(lines)


def chromium_table(results: Sequence[dict[str, Any]]) -> str:
    """Chromium's own getStats per condition and inbound video stream (empty: none)."""
    lines = [
        "| condition | from | fps (decoded) | fps (rendered) | freezes > 0.5 s | max freeze s "
        "| framesPerSecond | freezeCount "
        "| totalFreezesDuration s | nackCount | pliCount | packetsLost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = 0
    for r in results:
        name = r.get("condition", {}).get("name", "?")
        for c in r.get("chromium", []):
            if not c.get("inbound"):
                lines.append(f"| {name} | error: {str(c.get('error'))[:80]} |||||||||||")
                rows += 1
                continue
            for s in c["inbound"]:
                rows += 1
                lines.append(
                    f"| {name} | {s['publisher']} | {_fmt(s['fps'])} "
                    f"| {_fmt(s.get('renderedFps'))} | {_fmt(s.get('freezes'), 0)} "
                    f"| {_fmt(s.get('maxFreeze'))} "
                    f"| {_fmt(s['framesPerSecond'])} | {_fmt(s['freezeCount'], 0)} "
                    f"| {_fmt(s['totalFreezesDuration'])} | {_fmt(s['nackCount'], 0)} "
                    f"| {_fmt(s['pliCount'], 0)} | {_fmt(s['packetsLost'], 0)} |"
                )
    return "\n".join(lines) if rows else ""


def describe(condition: NetCondition) -> str:
    """A one-line description of a condition's links."""
    up, down = condition.links()
    who = "every client" if condition.target == "all" else "p0 only"

    def link(x: Link) -> str:
        rate = f"{x.rate_kbit:g} kbit/s ({x.buffer_ms:g} ms queue)" if x.rate_kbit else "unlimited"
        return f"{rate}, loss {x.loss:g} %"

    return f"{condition.name}: {who}: up {link(up)}; down {link(down)}"


# ---------------------------------------------------------------------- command line


def conditions_from_args(args: Any) -> list[NetCondition]:
    """`sfu-bench`'s network flags as conditions: the matrix, or the one condition."""
    if args.net_matrix:
        return matrix_conditions(args.net_buffer)
    loss_up = args.net_loss_up if args.net_loss_up is not None else args.net_loss
    loss_down = args.net_loss_down if args.net_loss_down is not None else args.net_loss
    parts = []
    if args.net_rate:
        parts.append(f"{args.net_rate_dir} {args.net_rate:g} kbit/s")
    if loss_up or loss_down:
        parts.append(f"loss up {loss_up:g} % down {loss_down:g} %")
    who = "p0" if args.net_target == "one" else "all"
    name = f"{who} {', '.join(parts)}" if parts else "unimpaired"
    return [
        NetCondition(
            name,
            rate_kbit=args.net_rate,
            rate_direction=args.net_rate_dir,
            buffer_ms=args.net_buffer,
            loss_up=loss_up,
            loss_down=loss_down,
            target=args.net_target,
        )
    ]


def run_options_from_args(args: Any) -> NetRunOptions:
    """`sfu-bench`'s flags as the options of a network run."""
    return NetRunOptions(
        participants=args.participants,
        duration=args.duration,
        warmup=args.warmup,
        layers=args.layers,
        bitrate=args.bitrate,
        audio=args.audio,
        forwarding=args.forwarding,
        send_path=args.send_path,
        cache_dir=args.cache_dir,
        publisher_adapt=args.publisher_adapt == "on",
    )


def run_cli(args: Any) -> int:
    """`sfu-bench --net...`: every condition (bots, then Chromium when asked), the tables
    on stdout, JSON after every run and markdown at the end when asked. Exit status 1
    when a run failed, 2 when the emulator is not available."""
    from benchmarks.netem import NetemUnavailable, missing_tools, remove_stale_namespaces

    missing = missing_tools()
    if missing:
        print("sfu-bench: the network option needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    remove_stale_namespaces()
    conditions = conditions_from_args(args)
    options = run_options_from_args(args)
    plans = [(c, False) for c in conditions]
    if args.net_chromium:
        plans += [(c, True) for c in conditions]
    results: list[dict[str, Any]] = []
    started = time.time()
    for index, (condition, chromium) in enumerate(plans):
        label = f"[{index + 1}/{len(plans)}] {condition.name}{' +chromium' if chromium else ''}"
        run_options = NetRunOptions(**{**asdict(options), "chromium": chromium})

        def say(phase: str, label: str = label) -> None:
            if not args.quiet:
                print(f"{label}: {phase}", file=sys.stderr, flush=True)

        try:
            result = run_network(condition, run_options, say)
        except NetemUnavailable as exc:
            print(f"sfu-bench: network emulator unavailable: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            logger.exception("network run failed")
            result = {"condition": asdict(condition), "chromiumRun": chromium, "error": str(exc)}
        result["chromiumRun"] = chromium
        results.append(result)
        if args.json:
            _write_json(args.json, args, results, started)
    bots = [r for r in results if not r.get("chromiumRun")]
    print(markdown_table(bots))
    print()
    print(publishers_table(bots))
    chromium_rows = chromium_table([r for r in results if r.get("chromiumRun")])
    if chromium_rows:
        print()
        print(chromium_rows)
    if args.markdown:
        _write_markdown(args.markdown, args, conditions, results)
    failed = [r for r in results if "error" in r or r.get("errors")]
    for r in failed:
        print(
            f"sfu-bench: {r['condition']['name']}: {r.get('error') or r.get('errors')}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _write_json(path: Path, args: Any, results: list[dict[str, Any]], started: float) -> None:
    doc = {
        "started": started,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "freezeGap": FREEZE_GAP,
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))


def _write_markdown(
    path: Path, args: Any, conditions: Sequence[NetCondition], results: list[dict[str, Any]]
) -> None:
    text = [
        f"Room of {args.participants}, {args.duration:g} s window after {args.warmup:g} s "
        f"warmup, VP8 {args.bitrate // 1000} kbps, temporal layers: {args.layers}. "
        f"Freeze = a gap > {FREEZE_GAP * 1000:.0f} ms between frames. No delay emulated.",
        "",
        *[f"- {describe(c)}" for c in conditions],
        "",
        markdown_table([r for r in results if not r.get("chromiumRun")]),
        "",
        publishers_table([r for r in results if not r.get("chromiumRun")]),
    ]
    with_chromium = [r for r in results if r.get("chromiumRun")]
    chromium_rows = chromium_table(with_chromium)
    if chromium_rows:
        text += ["", "Chromium (p0), its own getStats over the window:", "", chromium_rows]
        text += [
            "",
            "The bots of the Chromium runs (p0 = Chromium, 20 fps camera):",
            "",
            markdown_table(with_chromium),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text) + "\n")
