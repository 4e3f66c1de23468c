"""A published track: the ONE object per incoming track (mediasoup's Producer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import av
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from sfu.compat.fast_queue import FastQueue
from sfu.compat.receiver import ReceiverHook, install_receiver_sink
from sfu.compat.relay import bound_relay_proxy, end_relay_proxy
from sfu.compat.remb import MIN_PUBLISHER_BITRATE
from sfu.config import ReceivePath
from sfu.frame_assembler import AssemblerStats, EncodedFrame
from sfu.keyframe_throttle import KEYFRAME_INTERVAL, CallLater, KeyframeThrottle, ThrottleStats
from sfu.layers import MAX_TID, FrameLayer, LayerMeter
from sfu.wire import Kind, Source

if TYPE_CHECKING:
    from sfu.send_slot import SubscribedTrack

logger = logging.getLogger(__name__)

CLOCK_RATES = {"video": 90000, "audio": 48000}
#: Nominal frame duration (RTP ticks) used to keep pts monotonic across discontinuities.
FRAME_TICKS = {"video": 3000, "audio": 960}
QUEUE_LIMIT = 64
NO_CUT = MAX_TID + 1

Mode = Literal["passthrough", "transcode"]


@dataclass(frozen=True, slots=True)
class PublishedTrackStats:
    """A snapshot of one published track's counters."""

    frames: int
    keyframes: int
    bytes: int
    #: frames dropped before the relay (paused, queue full, waiting for a keyframe)
    drops: int
    #: frames waiting for the relay's reader
    queued: int
    paused: bool
    subscribers: int
    #: the keyframe throttle: asked for / sent upstream
    keyframe_requests: ThrottleStats
    #: the receiver's frame assembler (passthrough only)
    assembler: AssemblerStats | None


class PublishedTrack(MediaStreamTrack):
    """Owns everything about one track a participant publishes: its identity (publisher,
    mid, kind, source), the receiver hook (passthrough), the `MediaRelay` that fans it out,
    the keyframe throttle and the pause state. Subscribers hold it without owning it; it
    keeps only weak references to their `SubscribedTrack`s, to tell them when it closes.

    Passthrough: the hook's `FrameAssembler` calls `push()` with each complete frame; the
    track is the relay's source, a bounded queue of `av.Packet`s (pts = RTP timestamp
    unwrapped to a monotonic count, in `time_base` = 1/clock rate, starting at `clock()`
    converted to ticks: the pts of every published track follow one monotonic clock, so a
    send slot reused for a later publisher keeps increasing timestamps without rewriting
    packets). `push()` never blocks: while paused frames are dropped; on overflow a video
    frame is dropped; in both cases video resumes at a keyframe (audio drops its oldest).
    An overflow that drops a frame above the base layer only stops that layer (and those
    above) until its next layer-sync frame.
    Transcode: the relay's source is aiortc's decoded track; this track's queue stays empty.

    Each packet of a frame with a VP8 temporal layer id carries `packet.opaque =
    FrameLayer(tid, sync)` (None otherwise). The track measures what its publisher sends
    (paused or not): `bitrate()` and `layer_bitrates()` over the last second.

    Every upstream keyframe request (new subscriber, a subscriber gated to a keyframe, a
    subscriber's PLI/FIR, the assembler's loss, a drop here, a resume) goes through ONE
    `KeyframeThrottle`. The relay's source is drained from `drain_always()` on, subscribers
    or not (aiortc#554): a private unbuffered proxy costs O(1) per frame.

    `close()` (idempotent, also `stop()`) tells every subscribed track at once, then ends
    the queue, the drain proxy, the throttle's timer and the receiver hook.
    """

    def __init__(
        self,
        kind: Kind,
        source: Source | str = "",
        *,
        publisher_id: str = "",
        key: str = "",
        decoded: MediaStreamTrack | None = None,
        request_pli: Callable[[], bool] | None = None,
        maxsize: int = QUEUE_LIMIT,
        keyframe_interval: float = KEYFRAME_INTERVAL,
        clock: Callable[[], float] | None = None,
        call_later: CallLater | None = None,
    ) -> None:
        super().__init__()
        if kind not in CLOCK_RATES:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind = kind
        self.source = source
        self.publisher_id = publisher_id
        self.key = key
        self.mode: Mode = "transcode" if decoded is not None else "passthrough"
        self.hook: ReceiverHook | None = None
        self.relay = MediaRelay()
        self.time_base = Fraction(1, CLOCK_RATES[kind])
        self.closed = False
        self._relay_source: MediaStreamTrack = decoded if decoded is not None else self
        self._request_pli = request_pli
        loop = asyncio.get_running_loop()
        self._clock = clock or loop.time
        self._throttle = KeyframeThrottle(self._send_pli, keyframe_interval, clock, call_later)
        self._subscribers: weakref.WeakSet[SubscribedTrack] = weakref.WeakSet()
        self._video = kind == "video"
        self._frame_ticks = FRAME_TICKS[kind]
        self._maxsize = maxsize
        self._queue: asyncio.Queue[av.Packet[Any] | None] = FastQueue()
        self._ended = False
        self._paused = False
        self._need_keyframe = False
        #: frames of this temporal layer and above are dropped (after an overflow drop)
        self._layer_cut = NO_CUT
        self._ssrc: int | None = None
        self._last_ts = 0
        self._pts: int | None = None
        self._drain: MediaStreamTrack | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._meter = LayerMeter(self._clock)
        # counters
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.drops = 0
        #: the last RFC 6464 level (-dBov, 127 = silence) of an audio frame, None before
        self.audio_level: int | None = None
        #: the publisher cap (bps) the server's REMB holds this video to; None: no cap
        self.bitrate_cap: int | None = None
        #: called with (publisher_id, -dBov, voice) per audio frame carrying a level while
        #: not paused (the room's active-speaker detector); None: nobody listens
        self.level_sink: Callable[[str, int, bool], None] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def passthrough(
        cls,
        receiver: RTCRtpReceiver,
        kind: Kind,
        source: Source | str = "",
        *,
        publisher_id: str = "",
        key: str = "",
        clock: Callable[[], float] | None = None,
        call_later: CallLater | None = None,
        receive_path: ReceivePath = "lean",
    ) -> PublishedTrack:
        """Publish the receiver's encoded frames; no decoder thread ever runs for it.

        Call at the peer connection's "track" event, before the receiver starts.
        `receive_path`: who handles each RTP packet (`sfu.config.RECEIVE_PATHS`).
        """
        track = cls(
            kind, source, publisher_id=publisher_id, key=key, clock=clock, call_later=call_later
        )
        hook = install_receiver_sink(
            receiver,
            kind,
            track.push,
            on_end=track.source_ended,
            on_keyframe_needed=track.request_keyframe,
            receive_path=receive_path,
        )
        track.hook = hook
        track._request_pli = hook.request_keyframe
        track.drain_always()
        return track

    @classmethod
    def transcode(
        cls,
        receiver_track: MediaStreamTrack,
        source: Source | str = "",
        *,
        publisher_id: str = "",
        key: str = "",
    ) -> PublishedTrack:
        """The stock aiortc path: decoded frames relayed, re-encoded by every sender."""
        kind: Kind = "video" if receiver_track.kind == "video" else "audio"
        track = cls(kind, source, publisher_id=publisher_id, key=key, decoded=receiver_track)
        track.drain_always()
        return track

    def drain_always(self) -> None:
        """Start reading the relay's source now, subscribers or not (aiortc#554)."""
        if self._drain is None and not self.closed:
            self._drain = self.relay.subscribe(self._relay_source, buffered=False)
            self._drain_task = asyncio.ensure_future(self._start_drain(self._drain))

    async def _start_drain(self, drain: MediaStreamTrack) -> None:
        # The relay registers a proxy and starts reading its source on the proxy's first
        # recv(); once registered, an unbuffered proxy only keeps a reference to the latest
        # frame, so nobody has to keep reading it.
        with contextlib.suppress(MediaStreamError):
            await drain.recv()
        self._drain_task = None

    @property
    def receiver(self) -> RTCRtpReceiver | None:
        return self.hook.receiver if self.hook is not None else None

    # ------------------------------------------------------------------ subscribers

    def subscribe(
        self,
        subscriber: SubscribedTrack,
        maxsize: int,
        on_drop: Callable[[], None],
        on_layer_drop: Callable[[int], None] | None = None,
    ) -> MediaStreamTrack:
        """A bounded relay proxy for `subscriber`: on overflow it drops the highest
        temporal layer first (`on_layer_drop(tid)`), else the oldest item (`on_drop()`).

        The subscriber is referenced weakly, only to tell it when this track closes."""
        if self.closed:
            raise RuntimeError("published track is closed")
        proxy = self.relay.subscribe(self._relay_source, buffered=True)
        bound_relay_proxy(proxy, maxsize, on_drop, on_layer_drop)
        self._subscribers.add(subscriber)
        return proxy

    def subscribe_recorder(self, maxsize: int, on_drop: Callable[[], None]) -> MediaStreamTrack:
        """A bounded relay proxy for a recording (no send slot to tell at close: the
        proxy itself ends when this track closes). The caller ends it with
        `end_relay_proxy` + `stop()`."""
        if self.closed:
            raise RuntimeError("published track is closed")
        proxy = self.relay.subscribe(self._relay_source, buffered=True)
        bound_relay_proxy(proxy, maxsize, on_drop)
        return proxy

    def unsubscribe(self, subscriber: SubscribedTrack, proxy: MediaStreamTrack) -> None:
        """End `subscriber`'s proxy (idempotent; a pending `recv()` on it raises)."""
        self._subscribers.discard(subscriber)
        end_relay_proxy(proxy)
        proxy.stop()

    # ------------------------------------------------------------------ frames in

    def push(self, frame: EncodedFrame) -> None:
        """Take one complete received frame (called from the receiver's packet handler)."""
        if self._ended:
            return
        self._advance_pts(frame)
        self.frames += 1
        self.bytes += len(frame.data)
        tid = frame.tid
        self._meter.add(len(frame.data), tid, frame.keyframe)
        if frame.keyframe:
            self.keyframes += 1
        level = frame.audio_level
        if level is not None:
            self.audio_level = level[1]
            sink = self.level_sink
            if sink is not None and not self._paused:
                sink(self.publisher_id, level[1], level[0])
        if self._paused:
            self.drops += 1
            return
        queue = self._queue
        if self._video:
            if self._need_keyframe:
                if not frame.keyframe:
                    self.drops += 1
                    self.request_keyframe()
                    return
                self._need_keyframe = False
                self._layer_cut = NO_CUT
            if self._layer_cut < NO_CUT and tid is not None and not self._pass_cut(frame, tid):
                self.drops += 1
                return
            if queue.qsize() >= self._maxsize:
                self.drops += 1
                if tid:  # a frame above the base layer: that layer stops until its sync
                    self._layer_cut = min(self._layer_cut, tid, MAX_TID)
                    return
                self._need_keyframe = True
                self.request_keyframe()
                return
        elif queue.qsize() >= self._maxsize:
            queue.get_nowait()
            self.drops += 1
        packet = av.Packet(frame.data)
        packet.pts = self._pts
        packet.dts = self._pts
        packet.time_base = self.time_base
        packet.is_keyframe = frame.keyframe
        if tid is not None:
            packet.opaque = FrameLayer.for_packet(tid, frame.layer_sync)
        queue.put_nowait(packet)

    def _pass_cut(self, frame: EncodedFrame, tid: int) -> bool:
        """After a queue overflow dropped a frame of layer `_layer_cut`: drop that layer and
        those above until a keyframe or that layer's next sync frame."""
        if frame.keyframe:
            self._layer_cut = NO_CUT
            return True
        cut = self._layer_cut
        if tid < cut:
            return True
        if tid == cut and frame.layer_sync:
            self._layer_cut = cut + 1 if cut < MAX_TID else NO_CUT
            return True
        return False

    def _advance_pts(self, frame: EncodedFrame) -> None:
        ts = frame.timestamp
        if self._pts is None:
            self._ssrc = frame.ssrc
            self._pts = round(self._clock() * CLOCK_RATES[self.kind])
        elif frame.ssrc != self._ssrc:
            self._ssrc = frame.ssrc
            self._pts += self._frame_ticks
        else:
            delta = (ts - self._last_ts) & 0xFFFFFFFF
            if delta >= 0x80000000:
                # backwards: a discontinuity; stay monotonic
                delta = self._frame_ticks
            self._pts += delta
        self._last_ts = ts

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def source_ended(self) -> None:
        """The publisher's stream ended (receiver stopped, BYE): end the relay's source;
        its subscribers' proxies end with it."""
        if self._ended:
            return
        self._ended = True
        queue = self._queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    # ------------------------------------------------------------------ rates

    def bitrate(self) -> int:
        """What the publisher sent over the last second, in bps (paused or not)."""
        return self._meter.bitrate()

    def layer_bitrates(self) -> tuple[int, ...]:
        """Cumulative bps of temporal layers `(TID<=0, TID<=1, ...)` over the last second,
        keyframes left out, up to the highest TID seen; empty when no frame carried a TID
        (untagged video, audio)."""
        return self._meter.layer_bitrates()

    # ------------------------------------------------------------------ keyframes

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, through the throttle (passthrough video only:
        in transcode mode every sender's encoder makes its own keyframes)."""
        if self._video and self.mode == "passthrough" and not self.closed:
            self._throttle.request()

    def _send_pli(self) -> bool:
        request = self._request_pli
        return request is not None and request()

    # ------------------------------------------------------------------ pause

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        """Stop (True) or resume forwarding; video resumes at a keyframe (requested)."""
        if value == self._paused:
            return
        self._paused = value
        if not value and self._video:
            self._need_keyframe = True
            self.request_keyframe()

    # ------------------------------------------------------------------ publisher cap

    def cap_bitrate(self, bps: int | None) -> None:
        """Ask the publisher to send at most `bps` (floored at `MIN_PUBLISHER_BITRATE`)
        through the REMB the server's receiver sends it; None lifts the cap. Only a
        passthrough video (whose receiver sends REMB) is affected; bad input raises
        ValueError and changes nothing."""
        if bps is not None and (isinstance(bps, bool) or not isinstance(bps, int) or bps <= 0):
            raise ValueError(f"a bitrate cap must be a positive int or None, got {bps!r}")
        cap = None if bps is None else max(bps, MIN_PUBLISHER_BITRATE)
        estimator = self.hook.estimator if self.hook is not None else None
        if estimator is not None:
            estimator.set_cap(cap)
        if cap != self.bitrate_cap:
            logger.info(
                "%s %s of %s: publisher cap %s", self.kind, self.key, self.publisher_id, cap
            )
        self.bitrate_cap = cap

    # ------------------------------------------------------------------ stats / close

    def stats(self) -> PublishedTrackStats:
        return PublishedTrackStats(
            frames=self.frames,
            keyframes=self.keyframes,
            bytes=self.bytes,
            drops=self.drops,
            queued=self._queue.qsize(),
            paused=self._paused,
            subscribers=len(self._subscribers),
            keyframe_requests=self._throttle.stats(),
            assembler=self.hook.stats() if self.hook is not None else None,
        )

    def close(self) -> None:
        """Idempotent: tell the subscribers, then end the relay, the throttle and the hook."""
        if self.closed:
            return
        self.closed = True
        self.level_sink = None
        for subscriber in list(self._subscribers):
            subscriber.published_closed(self)
        self._subscribers.clear()
        self._throttle.close()
        if self._drain_task is not None:
            self._drain_task.cancel()
            self._drain_task = None
        if self._drain is not None:
            end_relay_proxy(self._drain)
            self._drain.stop()
        if self.hook is not None:
            self.hook.close()
        self.source_ended()
        super().stop()

    def stop(self) -> None:
        self.close()
