"""Fan-out of one published track to its subscribers through aiortc's `MediaRelay`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from sfu.compat.receiver import ReceiverHook, install_receiver_sink
from sfu.compat.relay import end_relay_proxy
from sfu.compat.sender import install_sender_keyframe_hook
from sfu.published_track import PublishedTrack
from sfu.subscribed_track import PROXY_QUEUE_LIMIT, SubscribedTrack

logger = logging.getLogger(__name__)

#: At most one upstream keyframe request per this many seconds per published track.
KEYFRAME_INTERVAL = 1.0


class Forwarder:
    """Owns one source track, one `MediaRelay`, the `ReceiverHook` (passthrough) and the
    `SubscribedTrack`s it hands out.

    Passthrough: the source is a `PublishedTrack` fed with encoded frames by the receiver
    hook; senders only re-packetize. Keyframe requests (new subscriber, a subscriber waiting
    for its first keyframe, a subscriber's PLI/FIR, a publisher-side drop) are coalesced
    and throttled to one per `keyframe_interval` per track. Transcode: the source is aiortc's
    decoded `RemoteStreamTrack`; every sender re-encodes and handles PLI/FIR natively.

    The source is drained from creation on, subscribers or not (aiortc#554): a private
    unbuffered relay proxy starts the relay's reader at once and costs O(1) per frame.

    `close()` is idempotent: it stops every subscribed track, the published track (in
    transcode mode the receiver's track belongs to its peer connection and is left alone),
    the drain proxy, the pending keyframe timer and the receiver hook's tasks.
    """

    def __init__(
        self,
        kind: str,
        source: str,
        track: MediaStreamTrack,
        hook: ReceiverHook | None,
        keyframe_interval: float = KEYFRAME_INTERVAL,
    ) -> None:
        self.kind = kind
        self.source = source
        self.track = track
        self.hook = hook
        self.relay = MediaRelay()
        self.keyframe_interval = keyframe_interval
        self.keyframe_requests = 0
        self.closed = False
        self._subscribers: set[SubscribedTrack] = set()
        self._paused = False
        self._loop = asyncio.get_running_loop()
        self._last_request: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drain = self.relay.subscribe(track, buffered=False)
        self._drain_task: asyncio.Task[None] | None = asyncio.ensure_future(self._start_drain())

    # ------------------------------------------------------------------ construction

    @classmethod
    def passthrough(cls, receiver: RTCRtpReceiver, kind: str, source: str = "") -> Forwarder:
        """Forward the receiver's encoded frames; no decoder thread ever runs for it.

        Call at the peer connection's "track" event, before the receiver starts.
        """
        published = PublishedTrack(kind, source)
        hook = install_receiver_sink(receiver, kind, published.push, on_end=published.stop)
        forwarder = cls(kind, source, published, hook)
        published.on_keyframe_needed = forwarder.request_keyframe
        return forwarder

    @classmethod
    def transcode(cls, receiver_track: MediaStreamTrack, source: str = "") -> Forwarder:
        """The stock aiortc path: decoded frames relayed, re-encoded by every sender."""
        return cls(receiver_track.kind, source, receiver_track, None)

    @property
    def mode(self) -> str:
        return "passthrough" if self.hook is not None else "transcode"

    @property
    def published(self) -> PublishedTrack | None:
        return self.track if isinstance(self.track, PublishedTrack) else None

    @property
    def subscribers(self) -> tuple[SubscribedTrack, ...]:
        return tuple(self._subscribers)

    async def _start_drain(self) -> None:
        # The relay registers a proxy and starts reading its source on the proxy's first
        # recv(); once registered, an unbuffered proxy only keeps a reference to the latest
        # frame, so nobody has to keep reading it.
        with contextlib.suppress(MediaStreamError):
            await self._drain.recv()
        self._drain_task = None

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, base_pts: int = 0) -> SubscribedTrack:
        """A new outgoing copy of the track for one subscriber.

        Its first `recv()` (the sender starting) asks for a keyframe: asking here could
        spend the throttle window on a keyframe that arrives before the relay delivers to
        the new proxy.
        """
        if self.closed:
            raise RuntimeError("forwarder is closed")
        proxy = self.relay.subscribe(self.track, buffered=True)
        passthrough = self.hook is not None
        track = SubscribedTrack(
            proxy,
            self.kind,
            self.request_keyframe,
            base_pts,
            gate_keyframes=passthrough,
            rebase=passthrough,
            maxsize=PROXY_QUEUE_LIMIT,
        )
        track.paused = self._paused
        self._subscribers.add(track)
        return track

    def unsubscribe(self, track: MediaStreamTrack) -> None:
        """Stop one subscriber's copy (idempotent; unknown tracks are only stopped)."""
        if isinstance(track, SubscribedTrack):
            self._subscribers.discard(track)
        track.stop()

    def attach_sender(
        self,
        sender: RTCRtpSender,
        subscribed: MediaStreamTrack,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        """Route PLI/FIR received by the subscriber's `sender` to the publisher (throttled).

        A no-op in transcode mode, where the sender's encoder makes the keyframe itself.
        Attaching the sender again (a reused transceiver) replaces the previous route.
        """
        if self.hook is None:
            return

        def on_keyframe_request() -> None:
            if on_request is not None:
                on_request()
            if subscribed in self._subscribers:
                self.request_keyframe()

        install_sender_keyframe_hook(sender, on_keyframe_request)

    # ------------------------------------------------------------------ keyframes

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: at once if none was asked for during the last
        `keyframe_interval`, else once at the end of it (requests in between coalesce)."""
        if self.hook is None or self.kind != "video" or self.closed or self._timer is not None:
            return
        now = self._loop.time()
        last = self._last_request
        if last is None or now - last >= self.keyframe_interval:
            self._send_request()
        else:
            self._timer = self._loop.call_later(last + self.keyframe_interval - now, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.closed:
            self._send_request()

    def _send_request(self) -> None:
        assert self.hook is not None
        if self.hook.request_keyframe():
            self._last_request = self._loop.time()
            self.keyframe_requests += 1

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
        published = self.published
        if published is not None:
            published.paused = value
        for track in self._subscribers:
            track.paused = value
        if not value:
            self.request_keyframe()

    # ------------------------------------------------------------------ stats / close

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (plain ints)."""
        out: dict[str, int] = {
            "subscribers": len(self._subscribers),
            "keyframe_requests": self.keyframe_requests,
            "frames_out": sum(t.frames_out for t in self._subscribers),
            "bytes_out": sum(t.bytes_out for t in self._subscribers),
            "subscriber_drops": sum(t.dropped for t in self._subscribers),
        }
        if self.hook is not None:
            assembler = self.hook.assembler
            out.update(
                packets_in=assembler.packets,
                frames_in=assembler.frames,
                keyframes_in=assembler.keyframes,
                bytes_in=assembler.bytes,
                frames_lost=assembler.frames_lost,
                late_packets=assembler.late,
            )
        published = self.published
        if published is not None:
            out["published_drops"] = published.drops
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for track in list(self._subscribers):
            track.stop()
        self._subscribers.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drain_task is not None:
            self._drain_task.cancel()
            self._drain_task = None
        end_relay_proxy(self._drain)
        self._drain.stop()
        if self.hook is not None:
            self.hook.close()
            self.track.stop()
