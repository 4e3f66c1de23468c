"""One synthetic participant: publishes paced pre-encoded tracks, receives everyone else's
tracks WITHOUT decoding, and records what it sent and received (for `metrics`).

Signaling and media: `signaling.client.SfuClient`, never decoding. A "full" subscriber
(`receive="frames"`) has `sfu.compat.receiver.install_receiver_sink` on every receiver:
packets are depayloaded and complete encoded frames assembled (`EncodedFrame`). A "light"
subscriber (`receive="light"`, `sfu.compat.light_receiver`) counts frames and bytes at the
RTP layer after SRTP (`LightFrame`: RTP timestamp at the marker bit), still answering with
RTCP receiver reports, NACKs and REMB: it costs the load generator far less, so that a room
of 16-20 on a small box measures the server rather than its clients. Both record the RTP
timestamp and arrival of every frame, so latency is measured the same way in both modes. Frames out:
`signaling.client.PacedVideoTrack` / `PacedAudioTrack`, wrapped in `StampedVideoTrack`,
which adds the pts watermark of `benchmarks.metrics` and logs each frame's send time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from benchmarks.metrics import watermark
from sfu.compat.light_receiver import LightFrame, light_receiver_hook
from sfu.frame_assembler import EncodedFrame
from signaling.client import PacedAudioTrack, PacedVideoTrack, RemoteTrack, SfuClient

logger = logging.getLogger(__name__)

ACK_TIMEOUT = 20.0

#: sfu-bench's subscriber modes and the `SfuClient(receive=...)` each uses.
SUBSCRIBER_MODES = {"light": "light", "full": "frames"}


class StampedVideoTrack(MediaStreamTrack):
    """Wraps a `PacedVideoTrack`: pts of frame n += `watermark(n)`, and logs
    (pts, monotonic send time) of every frame handed to the sender."""

    kind = "video"

    def __init__(self, inner: PacedVideoTrack) -> None:
        super().__init__()
        self.inner = inner
        #: the clip's temporal layers (3: the client sends the VP8 layer descriptor)
        self.temporal_layers = inner.temporal_layers
        self.pts = array("q")
        self.times = array("d")
        self._n = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self.inner.recv()
        packet.pts = int(packet.pts or 0) + watermark(self._n)
        packet.dts = packet.pts
        self._n += 1
        self.pts.append(packet.pts)
        self.times.append(time.monotonic())
        return packet

    def request_keyframe(self) -> None:
        self.inner.request_keyframe()

    def set_target_bitrate(self, bps: int) -> None:
        """The server's REMB, for the inner track's bitrate variants."""
        self.inner.set_target_bitrate(bps)

    def stop(self) -> None:
        self.inner.stop()
        super().stop()


class CountingAudioTrack(MediaStreamTrack):
    """Wraps a `PacedAudioTrack` and logs the send time of every packet."""

    kind = "audio"

    def __init__(self, inner: PacedAudioTrack) -> None:
        super().__init__()
        self.inner = inner
        self.times = array("d")

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self.inner.recv()
        self.times.append(time.monotonic())
        return packet

    def stop(self) -> None:
        self.inner.stop()
        super().stop()


@dataclass(slots=True)
class ReceivedStream:
    """Frames of one remote track as they arrived (one SSRC on one transceiver)."""

    mid: str
    kind: str
    ssrc: int
    publisher: str | None
    rtp: array[int] = field(default_factory=lambda: array("q"))
    arrivals: array[float] = field(default_factory=lambda: array("d"))
    #: light subscribers: the SSRC's unrecovered packet losses so far, at each frame
    lost: array[int] = field(default_factory=lambda: array("q"))
    #: light subscribers: extended RTP sequence number of each frame's last packet
    seqs: array[int] = field(default_factory=lambda: array("q"))
    #: light subscribers: extended sequence numbers never received (`collect_holes`)
    holes: list[int] = field(default_factory=list)
    bytes: int = 0
    keyframes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mid": self.mid,
            "kind": self.kind,
            "ssrc": self.ssrc,
            "publisher": self.publisher,
            "rtp": self.rtp.tolist(),
            "arrivals": self.arrivals.tolist(),
            "lost": self.lost.tolist(),
            "seqs": self.seqs.tolist(),
            "holes": self.holes,
            "bytes": self.bytes,
            "keyframes": self.keyframes,
        }


class BenchParticipant:
    """One synthetic participant over `signaling.client.SfuClient` (never decoding; a "full"
    or "light" subscriber, see the module doc): records every received frame per
    `RemoteTrack` (arrival on `time.monotonic()`). `close()` is idempotent."""

    def __init__(
        self,
        url: str,
        room: str,
        name: str,
        timeout: float = ACK_TIMEOUT,
        subscriber: str = "full",
    ) -> None:
        if subscriber not in SUBSCRIBER_MODES:
            raise ValueError(f"subscriber must be one of {', '.join(SUBSCRIBER_MODES)}")
        self.subscriber = subscriber
        self.url = url
        self.room = room
        self.name = name
        self.timeout = timeout
        self.client: SfuClient | None = None
        self.id: str | None = None
        self.streams: dict[int, ReceivedStream] = {}  # by id(RemoteTrack)
        self.offer_at: float | None = None
        self.answer_at: float | None = None
        self.first_remote_video: float | None = None
        self._remotes: dict[int, RemoteTrack] = {}
        self._closed = False

    async def join(self) -> None:
        self.client = await SfuClient.connect(
            self.url,
            decode=False,
            receive=SUBSCRIBER_MODES[self.subscriber],
            timeout=self.timeout,
        )
        self.client.on("frame", self._on_frame)
        result = await self.client.join(self.room, self.name)
        self.id = result.id

    async def publish(
        self,
        video: MediaStreamTrack | None,
        audio: MediaStreamTrack | None,
        *,
        adapt_bitrate: bool = True,
    ) -> None:
        assert self.client is not None
        self.offer_at = time.monotonic()
        await self.client.publish(video=video, audio=audio, adapt_bitrate=adapt_bitrate)
        self.answer_at = time.monotonic()
        # a participant whose peer connection never connects is a failed join
        await self.client.wait_connected(self.timeout)

    def _on_frame(self, remote: RemoteTrack, frame: Any) -> None:
        now = time.monotonic()
        lost = seq = -1
        if isinstance(frame, LightFrame):
            size = frame.size
            lost, seq = frame.lost, frame.seq
        elif isinstance(frame, EncodedFrame):
            size = len(frame.data)
        else:
            return
        key = id(remote)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = ReceivedStream(
                remote.mid, remote.kind, frame.ssrc, remote.participant_id
            )
            self._remotes[key] = remote
        stream.rtp.append(frame.timestamp)
        stream.arrivals.append(now)
        if lost >= 0:
            stream.lost.append(lost)
            stream.seqs.append(seq)
        stream.bytes += size
        if remote.kind == "video":
            if frame.keyframe:
                stream.keyframes += 1
            if self.first_remote_video is None:
                self.first_remote_video = now

    def collect_holes(self) -> None:
        """Light subscribers: copy each stream's unrecovered sequence numbers from its
        receiver's light hook into `ReceivedStream.holes` (call before `close()`)."""
        for key, stream in self.streams.items():
            remote = self._remotes.get(key)
            hook = light_receiver_hook(remote.receiver) if remote is not None else None
            loss = hook.loss.get(stream.ssrc) if hook is not None else None
            if loss is not None:
                stream.holes = loss.holes()

    def counters(self) -> dict[str, Any]:
        client = self.client
        if client is None:
            return {}
        return {
            "serverOffers": client.server_offers,
            "clientOffers": client.client_offers,
            "glareRetries": client.glare_retries,
            "errors": [repr(e) for e in client.errors[:20]],
            "connectionState": client.connection_state,
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client = self.client
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await client.close()
