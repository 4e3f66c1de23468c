"""Micro-benchmark of the RTP send path: process CPU per packet sent, stock aiortc
`RTCRtpSender` vs the lean sender (`sfu.compat.lean_sender`, with and without UDP GSO),
under asyncio and uvloop.

One measuring process holds ONE sending `RTCPeerConnection` whose track yields the
pre-encoded 640x480 VP8 clip (about 600 kbps, `signaling/sources.py`) as `av.Packet`s, the
way an SFU subscriber's sender gets frames from `MediaRelay`. The receiving peer runs in a
child process, so its decoding is not counted. After a warm-up, the measuring process
counts its own CPU time (all threads: `time.process_time()`) over `--frames` frames and
divides by the RTP packets sent (`packetsSent`); "minus idle" first subtracts the CPU the
same connected process burns while its track idles (RTCP, ICE consent, timers; measured
for `--idle` seconds just before), which leaves the cost of the send path per packet. The
receiver taps encoded frames (`install_receiver_sink`, no decoding). Every configuration
runs in a fresh process, configurations round-robin `--repeat` times, the table shows
medians.

    python -m benchmarks.micro_send                        # paced 300 fps, 1500 frames, x3
    python -m benchmarks.micro_send --fps 30 --frames 300  # real time
    python -m benchmarks.micro_send --fps 0 --frames 900   # unpaced: frames back to back
    python -m benchmarks.micro_send --senders lean --loops uvloop --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

from signaling.sources import ClipPacket

SENDERS = ("stock", "lean-nogso", "lean")
LOOPS = ("asyncio", "uvloop")
VIDEO_CLOCK_RATE = 90_000


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _loopback() -> None:
    from sfu.ice_policy import IcePolicy

    IcePolicy(["127.0.0.1"]).install()


def _prefer_vp8(transceiver: Any) -> None:
    from aiortc import RTCRtpSender

    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])


# ---------------------------------------------------------------- receiving child


def _receiver_main(conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_receiver(conn))


async def _receiver(conn: multiprocessing.connection.Connection) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from sfu.compat.receiver import install_receiver_sink

    _loopback()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received = [0]

    def on_frame(_frame: Any) -> None:
        received[0] += 1

    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        install_receiver_sink(receiver, track.kind, on_frame)

    pc.on("track", on_track)
    offer = await asyncio.to_thread(conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send(pc.localDescription.sdp)
    await asyncio.to_thread(conn.recv)  # "stop"
    conn.send(received[0])
    await pc.close()


# ---------------------------------------------------------------- measuring worker


class ClipTrack(MediaStreamTrack):
    """Yields the clip's frames as `av.Packet` (pts at `fps`), paced at `fps` frames per
    second, or back to back (one event-loop turn between frames) when `fps` is 0; while
    `running` is clear, `recv()` waits (the sender idles)."""

    kind = "video"

    def __init__(self, packets: Sequence[ClipPacket], fps: int) -> None:
        super().__init__()
        self.frames = 0
        self._packets = packets
        self._fps = fps
        self._start: float | None = None
        self._n0 = 0
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.target = -1
        self.reached = asyncio.Event()
        self.running = asyncio.Event()
        self.running.set()

    async def recv(self) -> av.Packet[Any]:
        if not self.running.is_set():
            await self.running.wait()
            self._start = None
            self._n0 = self.frames
        if self._fps:
            now = time.monotonic()
            if self._start is None:
                self._start = now
                self._n0 = self.frames
            due = self._start + (self.frames - self._n0) / self._fps
            await asyncio.sleep(max(0.0, due - now))
        else:
            await asyncio.sleep(0)
        item = self._packets[self.frames % len(self._packets)]
        packet = av.Packet(item.data)
        packet.pts = self.frames * VIDEO_CLOCK_RATE // (self._fps or 30)
        packet.time_base = self._time_base
        packet.is_keyframe = item.keyframe
        self.frames += 1
        if self.frames == self.target:
            self.reached.set()
        return packet


async def _measure(
    sender_kind: str, fps: int, frames: int, warmup: int, idle: float
) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from sfu.compat.lean_sender import install_lean_sender
    from signaling.sources import encode_clip

    _loopback()
    clip = encode_clip()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    peer = ctx.Process(target=_receiver_main, args=(child,), daemon=True)
    peer.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track = ClipTrack(clip.packets, fps)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        _prefer_vp8(transceiver)
        sender = transceiver.sender
        lean = install_lean_sender(sender) if sender_kind.startswith("lean") else None
        if lean is not None and sender_kind == "lean-nogso":
            lean.gso = False
        await pc.setLocalDescription(await pc.createOffer())
        parent.send(pc.localDescription.sdp)
        answer = await asyncio.to_thread(parent.recv)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        async def sent() -> tuple[int, int]:
            stats = await sender.getStats()
            out = next(s for s in stats.values() if s.type == "outbound-rtp")
            return out.packetsSent, out.bytesSent

        track.target = warmup
        async with asyncio.timeout(30):
            await track.reached.wait()
        track.reached.clear()
        # idle baseline: connected, nothing to send (RTCP, ICE consent, timers)
        track.running.clear()
        await asyncio.sleep(0.1)
        idle_cpu0, idle_wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(idle)
        idle_rate = (time.process_time() - idle_cpu0) / (time.monotonic() - idle_wall0)
        start_frames = track.frames
        track.target = start_frames + frames
        packets0, bytes0 = await sent()
        track.running.set()
        cpu0, wall0 = time.process_time(), time.monotonic()
        async with asyncio.timeout(120):
            await track.reached.wait()
        cpu1, wall1 = time.process_time(), time.monotonic()
        packets1, bytes1 = await sent()
        packets = packets1 - packets0
        wall = wall1 - wall0
        return {
            "sender": sender_kind,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "fps": fps,
            "frames": track.frames - start_frames,
            "packets": packets,
            "kbps": round((bytes1 - bytes0) * 8 / wall / 1000),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu1 - cpu0, 4),
            "cpu_us_per_packet": round((cpu1 - cpu0) / packets * 1e6, 2) if packets else None,
            "idle_cpu_per_s": round(idle_rate, 5),
            "marginal_us_per_packet": (
                round((cpu1 - cpu0 - idle_rate * wall) / packets * 1e6, 2) if packets else None
            ),
            "lean_packets": lean.packets_lean if lean else 0,
            "stock_fallback_packets": lean.packets_stock if lean else 0,
            "gso_batches": lean.gso_batches if lean else 0,
        }
    finally:
        await pc.close()
        parent.send("stop")
        if parent.poll(10):
            received_frames = parent.recv()
            if received_frames < frames:
                print(f"receiver got only {received_frames} frames", file=sys.stderr)
        peer.join(10)
        if peer.is_alive():
            peer.kill()


def _worker(args: argparse.Namespace) -> None:
    loop = _new_loop(args.loops[0])
    try:
        result = loop.run_until_complete(
            _measure(args.senders[0], args.fps, args.frames, args.warmup, args.idle)
        )
    finally:
        loop.close()
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- driver


def _run_one(sender: str, loop: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.micro_send",
        "--worker",
        "--senders",
        sender,
        "--loops",
        loop,
        "--fps",
        str(args.fps),
        "--frames",
        str(args.frames),
        "--warmup",
        str(args.warmup),
        "--idle",
        str(args.idle),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{sender}/{loop} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="micro_send", description=__doc__.split("\n\n")[0])
    p.add_argument("--senders", type=lambda v: v.split(","), default=list(SENDERS))
    p.add_argument("--loops", type=lambda v: v.split(","), default=list(LOOPS))
    p.add_argument("--fps", type=int, default=300, help="pacing; 0 sends frames back to back")
    p.add_argument("--frames", type=int, default=1500, help="frames measured per run")
    p.add_argument("--warmup", type=int, default=30, help="frames sent before measuring")
    p.add_argument("--idle", type=float, default=3.0, help="seconds of idle baseline")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None, help="write every run's result here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    for name in args.senders:
        if name not in SENDERS:
            p.error(f"--senders: unknown sender {name!r}")
    loops = [lp for lp in args.loops if lp in LOOPS]
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        print("uvloop not installed: skipping it", file=sys.stderr)
        loops.remove("uvloop")
    from signaling.sources import encode_clip

    clip = encode_clip()  # encode (or load) once, before the workers start
    print(
        f"clip {clip.width}x{clip.height} {clip.fps} fps, "
        f"{sum(len(x.data) for x in clip.packets) * 8 / clip.duration / 1000:.0f} kbps; "
        f"fps={args.fps or 'unpaced'}, {args.frames} frames per run, x{args.repeat}",
        file=sys.stderr,
    )
    configs = [(s, lp) for lp in loops for s in args.senders]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
    key = "marginal_us_per_packet"
    for i in range(args.repeat):
        for sender, loop in configs:
            result = _run_one(sender, loop, args)
            runs[(sender, loop)].append(result)
            print(
                f"  run {i + 1}: {sender:10} {loop:7} {result['cpu_us_per_packet']} us/packet, "
                f"{result[key]} minus idle ({result['packets']} packets, {result['kbps']} kbps)",
                file=sys.stderr,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r for rs in runs.values() for r in rs], f, indent=1)
    base = statistics.median(r[key] for r in runs.get((args.senders[0], loops[0]), []))
    print(
        f"| sender | loop | CPU us/packet | minus idle: us/packet (median of {args.repeat}) "
        "| runs (minus idle) | vs first |"
    )
    print("|---|---|---|---|---|---|")
    for (sender, loop), rs in runs.items():
        values = [r[key] for r in rs]
        med = statistics.median(values)
        total = statistics.median(r["cpu_us_per_packet"] for r in rs)
        print(
            f"| {sender} | {loop} | {total:.1f} | {med:.1f} "
            f"| {', '.join(f'{v:.1f}' for v in values)} | {100 * (med / base - 1):+.0f} % |"
        )


if __name__ == "__main__":
    main()
