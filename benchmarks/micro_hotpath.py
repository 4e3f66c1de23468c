"""Micro-benchmark of the server's per-packet Python: process CPU per packet, in ONE process,
no peer connection, no other process on the path.

- `send`: K lean senders (`sfu.compat.lean_sender`, as an SFU's send slots) fed the same
  pre-encoded VP8 clip frames through one asyncio queue each (the fan-out of a relay),
  sending SRTP-protected datagrams to a loopback UDP socket nobody reads (the kernel drops
  them once its buffer is full). The senders are real `RTCRtpSender`s whose DTLS transport
  is a stand-in: connected, a real `pylibsrtp` session, a real aioice `CandidatePair` over a
  real datagram transport. Reported: CPU us per packet sent.
- `receive`: one video receiver of each path (`--paths`, `stock` = aiortc's
  `_handle_rtp_packet` with the SFU's frame assembler and per-interval REMB, as
  `install_receiver_sink` leaves it; `lean` = `sfu.compat.lean_receiver`) fed the clip's
  RTP packets (parsed `RtpPacket`s with abs-send-time, 1 % of them withheld and then sent
  as RTX later, so NACKs and RTX unwrapping run). Reported: CPU us per packet handled.

Each configuration runs in a fresh process; configurations round-robin `--repeat` times and
the table shows medians. To compare two checkouts, run this file by path with `PYTHONPATH`
on each (`--python-path A,B`, labels `--labels a,b`).

    python -m benchmarks.micro_hotpath send --senders 11 --frames 3000 --repeat 5
    python -m benchmarks.micro_hotpath receive --paths stock,lean --repeat 5
    python benchmarks/micro_hotpath.py send --python-path /old/checkout,. --labels old,new
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

VIDEO_CLOCK_RATE = 90_000


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# ---------------------------------------------------------------- send


async def _send(senders: int, frames: int, warmup: int, feed_mode: str) -> dict[str, Any]:
    import av
    import pylibsrtp
    from aioice.candidate import Candidate
    from aioice.ice import CandidatePair, StunProtocol
    from aiortc.mediastreams import MediaStreamTrack
    from aiortc.rtcdtlstransport import State
    from aiortc.rtcrtpparameters import (
        RTCRtpCodecParameters,
        RTCRtpHeaderExtensionParameters,
        RTCRtpParameters,
    )
    from aiortc.rtcrtpsender import RTCRtpSender

    from sfu.compat.lean_sender import install_lean_sender
    from signaling.sources import encode_clip

    clip = encode_clip()
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]

    class QueueTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.queue: asyncio.Queue[Any] = asyncio.Queue()

        async def recv(self) -> Any:
            return await self.queue.get()

    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    params = RTCRtpParameters(
        codecs=[codec],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            ),
        ],
    )
    published: Any = None
    if feed_mode == "relay":
        from sfu.published_track import PublishedTrack

        published = PublishedTrack("video")
        published.drain_always()
    tracks: list[Any] = []
    leans: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(senders):
        policy = pylibsrtp.Policy(
            key=os.urandom(30),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
        policy.allow_repeat_tx = True
        _transport, protocol = await loop.create_datagram_endpoint(
            lambda: StunProtocol(None),  # type: ignore[arg-type]
            local_addr=("127.0.0.1", 0),
        )
        remote = Candidate("1", 1, "udp", 1, "127.0.0.1", sink_port, "host")
        pair = CandidatePair(protocol, remote)
        dtls = SimpleNamespace(
            state="connected",
            _state=State.CONNECTED,
            _tx_srtp=pylibsrtp.Session(policy=policy),
            transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
            _RTCDtlsTransport__tx_bytes=0,
            _RTCDtlsTransport__tx_packets=0,
        )
        track: Any
        if published is not None:
            from sfu.send_slot import SubscribedTrack

            track = SubscribedTrack("video")
            track.attach(published)
        else:
            track = QueueTrack()
        sender = RTCRtpSender(track, dtls)
        s: Any = sender
        s._RTCRtpSender__mid = str(i)
        s._RTCRtpSender__rtp_header_extensions_map.configure(params)
        lean = install_lean_sender(sender)
        tracks.append(track)
        leans.append(lean)
        tasks.append(asyncio.ensure_future(lean._loop(s, codec)))

    time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
    n = 0

    async def feed(count: int) -> None:
        nonlocal n
        for _ in range(count):
            item = clip.packets[n % len(clip.packets)]
            if published is not None:
                from sfu.frame_assembler import EncodedFrame

                target = sum(lean.frames for lean in leans) + len(leans)
                published.push(EncodedFrame(item.data, n * 3000, item.keyframe, 1234))
                n += 1
                for _ in range(100):
                    await asyncio.sleep(0)
                    if sum(lean.frames for lean in leans) >= target:
                        break
                continue
            packet = av.Packet(item.data)
            packet.pts = n * 3000
            packet.dts = n * 3000
            packet.time_base = time_base
            packet.is_keyframe = item.keyframe
            n += 1
            for track in tracks:
                track.queue.put_nowait(packet)
            for _ in range(100):
                await asyncio.sleep(0)
                if not any(t.queue.qsize() for t in tracks):
                    break

    await feed(warmup)
    packets0 = sum(lean.packets_lean for lean in leans)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await feed(frames)
    cpu1, wall1 = time.process_time(), time.monotonic()
    packets = sum(lean.packets_lean for lean in leans) - packets0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if published is not None:
        published.close()
        await asyncio.sleep(0)
    sink.close()
    return {
        "senders": senders,
        "feed": feed_mode,
        "frames": frames,
        "packets": packets,
        "gso_batches": sum(lean.gso_batches for lean in leans),
        "cpu_s": round(cpu1 - cpu0, 4),
        "wall_s": round(wall1 - wall0, 3),
        "us_per_packet": round((cpu1 - cpu0) / packets * 1e6, 3) if packets else None,
    }


# ---------------------------------------------------------------- receive


def _rtp_stream(count: int) -> list[bytes]:
    """`count` RTP packets of the clip (VP8, abs-send-time, pt 96, one SSRC), serialized."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    from sfu.compat.lean_sender import vp8_payloads
    from signaling.sources import encode_clip

    clip = encode_clip()
    ext = HeaderExtensionsMap()
    ext.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                )
            ]
        )
    )
    out: list[bytes] = []
    seq = 1000
    frame = 0
    while len(out) < count:
        item = clip.packets[frame % len(clip.packets)]
        payloads = vp8_payloads(item.data, frame & 0x7FFF)
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=96,
                sequence_number=seq & 0xFFFF,
                timestamp=(frame * 3000) & 0xFFFFFFFF,
                ssrc=1234,
                marker=int(i == len(payloads) - 1),
                payload=payload,
            )
            packet.extensions.abs_send_time = (frame * 8738) & 0xFFFFFF  # 33 ms in 6.18
            out.append(packet.serialize(ext))
            seq += 1
        frame += 1
    return out[:count]


async def _receive(path: str, packets: int) -> dict[str, Any]:
    from aiortc.rtcrtpparameters import (
        RTCRtpCodecParameters,
        RTCRtpHeaderExtensionParameters,
        RTCRtpParameters,
        RTCRtpReceiveParameters,
        RTCRtpRtxParameters,
    )
    from aiortc.rtcrtpparameters import RTCRtpDecodingParameters as Enc
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket, wrap_rtx

    from sfu.compat.receiver import install_receiver_sink

    raw = _rtp_stream(packets)
    ext = HeaderExtensionsMap()
    ext.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                )
            ]
        )
    )
    sent_rtcp: list[Any] = []

    class FakeDtls:
        state = "connected"

        def _register_rtp_receiver(self, *args: Any) -> None:
            pass

        async def _send_rtp(self, data: bytes) -> None:
            sent_rtcp.append(data)

    receiver = RTCRtpReceiver("video", FakeDtls())  # type: ignore[arg-type]
    frames = [0]

    def on_frame(_frame: Any) -> None:
        frames[0] += 1

    hook: Any
    if path == "lean":
        hook = install_receiver_sink(receiver, "video", on_frame, receive_path="lean")
    else:
        try:
            hook = install_receiver_sink(receiver, "video", on_frame, receive_path="stock")
        except TypeError:  # a checkout before the lean receive path
            hook = install_receiver_sink(receiver, "video", on_frame)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    rtx = RTCRtpCodecParameters(
        mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
    )
    await receiver.receive(
        RTCRtpReceiveParameters(
            codecs=[vp8, rtx],
            encodings=[Enc(ssrc=1234, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=5678))],
        )
    )
    receiver._RTCRtpReceiver__rtcp_ssrc = 42  # type: ignore[attr-defined]
    # every 100th packet is withheld and sent as RTX 3 packets later
    schedule: list[tuple[bytes, int]] = []
    rtx_seq = 0
    for i, data in enumerate(raw):
        if i % 100 == 50:
            continue
        schedule.append((data, 0))
        if i % 100 == 53:
            original = RtpPacket.parse(raw[i - 3], ext)
            wrapped = wrap_rtx(original, payload_type=97, sequence_number=rtx_seq, ssrc=5678)
            rtx_seq += 1
            schedule.append((wrapped.serialize(ext), 0))
    parsed = [RtpPacket.parse(d, ext) for d, _ in schedule]
    handle = receiver._handle_rtp_packet
    start_ms = int(time.time() * 1000)
    cpu0 = time.process_time()
    for i, packet in enumerate(parsed):
        await handle(packet, start_ms + i // 3)
    cpu1 = time.process_time()
    task = getattr(receiver, "_RTCRtpReceiver__rtcp_task", None)
    if task is not None:
        task.cancel()
    return {
        "path": path,
        "packets": len(parsed),
        "frames": frames[0],
        "rtcp_sent": len(sent_rtcp),
        "cpu_s": round(cpu1 - cpu0, 4),
        "us_per_packet": round((cpu1 - cpu0) / len(parsed) * 1e6, 3),
        "stats": repr(hook.stats()),
        "lean": repr(hook.lean.stats()) if getattr(hook, "lean", None) is not None else None,
    }


# ---------------------------------------------------------------- driver


def _worker(args: argparse.Namespace) -> None:
    loop = _new_loop()
    try:
        if args.what == "send":
            result = loop.run_until_complete(
                _send(args.senders, args.frames, args.warmup, args.feed)
            )
        else:
            result = loop.run_until_complete(_receive(args.paths[0], args.packets))
    finally:
        loop.close()
    print(json.dumps(result), flush=True)


def _run_one(args: argparse.Namespace, python_path: str, path: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), args.what, "--worker"]
    cmd += ["--senders", str(args.senders), "--frames", str(args.frames)]
    cmd += ["--warmup", str(args.warmup), "--packets", str(args.packets), "--paths", path]
    cmd += ["--feed", args.feed]
    env = dict(os.environ, PYTHONPATH=python_path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{python_path} {path} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="micro_hotpath", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("send", "receive"))
    p.add_argument("--senders", type=int, default=11)
    p.add_argument("--frames", type=int, default=3000, help="frames measured (send)")
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument(
        "--feed",
        choices=("relay", "queue"),
        default="relay",
        help="send: frames through a PublishedTrack's relay and SubscribedTracks, as the "
        "server does (relay), or one plain asyncio queue per sender (queue)",
    )
    p.add_argument("--packets", type=int, default=20000, help="packets handled (receive)")
    p.add_argument("--paths", type=lambda v: v.split(","), default=["stock", "lean"])
    p.add_argument("--python-path", type=lambda v: v.split(","), default=None)
    p.add_argument("--labels", type=lambda v: v.split(","), default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    roots = [os.path.abspath(r) for r in (args.python_path or [os.getcwd()])]
    labels = args.labels or roots
    paths = args.paths if args.what == "receive" else ["lean"]
    configs = [
        (label, root, path) for label, root in zip(labels, roots, strict=True) for path in paths
    ]
    runs: dict[tuple[str, str], list[float]] = {(c[0], c[2]): [] for c in configs}
    for i in range(args.repeat):
        for label, root, path in configs:
            result = _run_one(args, root, path)
            runs[(label, path)].append(result["us_per_packet"])
            print(f"  run {i + 1}: {label} {path}: {json.dumps(result)}", file=sys.stderr)
    print(f"| checkout | path | CPU us/packet (median of {args.repeat}) | min | runs |")
    print("|---|---|---|---|---|")
    for (label, path), values in runs.items():
        print(
            f"| {label} | {path} | {statistics.median(values):.2f} | {min(values):.2f} "
            f"| {', '.join(f'{v:.2f}' for v in values)} |"
        )


if __name__ == "__main__":
    main()
