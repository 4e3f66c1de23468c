"""A send slot: one server transceiver that carries some remote participant's track, and
the ONE track its sender reads (`SubscribedTrack`).

aiortc's `RTCRtpSender` loop ends for good when its track raises `MediaStreamError`, and
`replaceTrack` does not interrupt a pending `recv()`. So a slot gives its sender one
long-lived `SubscribedTrack` that switches between published tracks: a slot is released
when a publisher leaves and reused for the next one without renegotiating new m-lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.allocator import SubscriberAllocator
from sfu.compat.lean_sender import FrameSink, LeanSender, install_lean_sender
from sfu.compat.relay import set_relay_sink
from sfu.compat.sender import (
    install_sender_feedback,
    install_sender_keyframe_hook,
    install_sender_nack_counter,
    sender_octets,
    sender_rtt,
)
from sfu.config import SendPath
from sfu.downlink import RETRANSMISSION_SIZE, DownlinkEstimate
from sfu.layers import MAX_TID
from sfu.pacer import Pacer
from sfu.published_track import FRAME_TICKS, PublishedTrack
from sfu.resend_gate import ResendGate

logger = logging.getLogger(__name__)

PROXY_QUEUE_LIMIT = 32
#: Frames a subscription waits to move up a temporal layer for a layer-sync frame before it
#: asks for a keyframe (through the throttle): a publisher that writes no Y bits. Chromium
#: writes a sync frame per layer every 8 frames.
UP_WAIT_FRAMES = 90


@dataclass(frozen=True, slots=True)
class SubscribedTrackStats:
    """Counters of the current subscription (reset when the track switches publisher)."""

    frames_out: int
    bytes_out: int
    #: items not sent: relay queue overflow, paused, waiting for a keyframe
    dropped: int
    keyframes_waited: int
    #: packets copied to offset their pts (a reused slot whose new publisher's pts would go
    #: backwards); 0 in steady state
    copied: int
    #: of `dropped`: video items dropped because the viewer paused this video
    viewer_dropped: int = 0
    #: the highest temporal layer forwarded (`MAX_TID`: all, also for untagged video)
    max_tid: int = MAX_TID
    #: video stopped because not even its base layer fits the subscriber's budget
    link_paused: bool = False
    #: frames not forwarded by layer selection: above `max_tid`, link pause, or a layer
    #: left after a queue overflow until its next sync frame
    layer_drops: int = 0
    #: of `layer_drops`: upper-layer frames the subscriber's modelled link queue shed
    #: (`SubscriberAllocator.admit`)
    shed: int = 0


@dataclass(frozen=True, slots=True)
class SendSlotStats:
    track: SubscribedTrackStats
    #: PLI/FIR received from the subscriber on this slot's sender (slot lifetime)
    plis: int
    #: packets the subscriber NACKed on this slot's sender (slot lifetime)
    nacks: int
    #: "lean" when the slot's sender runs `sfu.compat.lean_sender`, else "stock"
    send_path: str = "stock"
    #: lean sender counters (slot lifetime; 0 on the stock path): packets sent straight to
    #: the selected ICE pair, packets sent through aiortc's DTLS transport (before DTLS
    #: connected), frames sent in one GSO system call, NACKs answered from the history
    packets_lean: int = 0
    packets_stock: int = 0
    gso_batches: int = 0
    #: frames sent inside the relay's fan-out (the push path) instead of by the sender's task
    frames_pushed: int = 0
    retransmits: int = 0
    #: the subscriber's last receiver-report loss fraction for this slot's stream (0..1),
    #: None before its first report
    loss: float | None = None
    #: receiver-report blocks and REMBs the subscriber sent about this slot's stream
    reports: int = 0
    rembs: int = 0
    #: NACKed packets not resent: the subscriber's limited downlink had no room
    retransmits_skipped: int = 0
    #: repeated NACKs not answered: the packet was resent less than a round trip ago, or
    #: `sfu.resend_gate.MAX_RESENDS` times already
    retransmits_repeated: int = 0
    #: keyframes asked for because the subscriber NACKed a packet again and again
    keyframes_for_losses: int = 0


class SubscribedTrack(MediaStreamTrack):
    """The track one send slot's sender reads: reads the bounded `MediaRelay` proxy of the
    current `PublishedTrack` directly (one `recv()` over the proxy), owns that proxy.

    Passthrough video: the ONE per-subscriber keyframe gate. It drops everything until the
    first keyframe, and again after a proxy overflow, asking the published track (which
    throttles) for a keyframe while it waits. Output pts never go backwards over the
    track's life: the first packet of a subscription is sent with its own pts when that is
    past the previous subscription's last pts (always in steady state: published pts
    follow one monotonic clock), else every packet of the subscription is copied with a
    pts offset (counted as `copied`). While the published track is paused, items are
    dropped. Transcode (decoded frames): no gate, no offset.

    Viewer pause (`set_viewer_paused`, video only): while the subscriber does not show
    this video every item is dropped (counted as `viewer_dropped`); on resume the gate
    waits for a keyframe and asks the published track for one. A new `attach()` resumes.
    Temporal layers (passthrough video): with a `SubscriberAllocator` (`set_allocator`),
    the allocator sets the target layer (`set_target`); the track forwards frames whose
    `FrameLayer.tid <= max_tid`, moves `max_tid` down at once and up only at a keyframe or
    at a layer-sync frame of the next layer (its references are then all forwarded); after
    `UP_WAIT_FRAMES` frames without one it asks for a keyframe. Untagged frames pass. A
    target of None is a link pause: video stops (`link_paused`) until the allocator gives
    a layer again, then resumes at a keyframe (asked through the published track's
    throttle). `on_video_state` hears "paused-link" / "active". A relay queue overflow
    that drops a frame of layer k (the queue drops the highest layer first) lowers
    `max_tid` below k until the next sync frame; one of the base layer or untagged gates
    to a keyframe. Without an allocator and with every layer forwarded, the per-frame
    cost is one attribute read.

    Push path: a lean sender offers a `FrameSink` (`set_frame_sink`); while the sender's
    task waits in `recv()`, the relay's fan-out hands each passthrough frame to `_push`,
    which applies the same gate (`_take`) and has the sender send it at once. The proxy's
    sink is set on `attach()` and withdrawn on `detach()`.

    `attach()` switches to a published track, `detach()` leaves it (the sender then waits),
    `stop()` (idempotent) ends the track: a pending `recv()` raises `MediaStreamError`.
    """

    def __init__(self, kind: str, base_pts: int = 0, maxsize: int = PROXY_QUEUE_LIMIT) -> None:
        super().__init__()
        self.kind = kind
        self.published: PublishedTrack | None = None
        #: called when the published track closes (after the track detached itself)
        self.on_published_closed: Callable[[], None] | None = None
        self._maxsize = maxsize
        self._proxy: MediaStreamTrack | None = None
        self._wake = asyncio.Event()
        self._passthrough = True
        self._gate = False
        self._floor = base_pts
        self._offset: int | None = None
        self._sent = False
        self.waiting_keyframe = False
        #: the subscriber does not show this video: drop it (`set_viewer_paused`)
        self.viewer_paused = False
        self.last_pts = base_pts
        #: the highest temporal layer currently forwarded (`MAX_TID`: all)
        self.max_tid = MAX_TID
        #: video stopped: not even the base layer fits the budget (never for audio)
        self.link_paused = False
        #: called with "paused-link" / "active" when the link pause starts / ends
        self.on_video_state: Callable[[str], None] | None = None
        self._target = MAX_TID
        self._allocator: SubscriberAllocator | None = None
        #: True when layer selection must look at each frame (see `_update_filter`)
        self._filter = False
        self._up_wait = 0
        #: the temporal layer of the last frame the link queue shed: frames of it and
        #: above wait for a frame of a lower layer (they may reference the one shed)
        self._hole: int | None = None
        #: the sender's push offer (`set_frame_sink`)
        self._sink: FrameSink | None = None
        self.push_errors = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.frames_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.keyframes_waited = 0
        self.copied = 0
        self.viewer_dropped = 0
        self.layer_drops = 0
        self.shed = 0

    # ------------------------------------------------------------------ switching

    def attach(self, published: PublishedTrack) -> None:
        """Read `published` from now on (leaving the current one)."""
        self.detach()
        if self.readyState != "live":
            raise RuntimeError("subscribed track is stopped")
        self._reset_counters()
        self._proxy = published.subscribe(
            self, self._maxsize, self._on_drop, on_layer_drop=self._on_layer_drop
        )
        self.published = published
        self._passthrough = published.mode == "passthrough"
        self._gate = self._passthrough and self.kind == "video"
        self._update_push()
        # a new subscription: the allocator decides again at its first frame
        self.link_paused = False
        self.max_tid = self._target
        self._update_filter()
        if self._allocator is not None and self.kind == "video":
            self._allocator.add(self)
        if self._sent:
            self._floor = self.last_pts + FRAME_TICKS.get(self.kind, 3000)
        self._offset = None
        self.waiting_keyframe = False
        self.viewer_paused = False
        self._wait_for_keyframe()
        self._wake.set()

    def detach(self) -> None:
        """Stop reading the current published track (idempotent)."""
        published, proxy = self.published, self._proxy
        self.published = self._proxy = None
        if proxy is not None:
            set_relay_sink(proxy, None)
        self.waiting_keyframe = False
        if published is not None and proxy is not None:
            published.unsubscribe(self, proxy)
        self._wake.set()

    def published_closed(self, published: PublishedTrack) -> None:
        """Called by a closing published track: leave it and tell the owner at once."""
        if self.published is not published:
            return
        self.detach()
        callback = self.on_published_closed
        if callback is not None:
            callback()

    # ------------------------------------------------------------------ gating

    def set_viewer_paused(self, paused: bool) -> bool:
        """The subscriber stops (True) or resumes (False) receiving this video; True when
        the state changed. Resuming waits for a keyframe and asks the published track
        (which throttles) for one. Video only: `ValueError` for audio, which never pauses."""
        if self.kind != "video":
            raise ValueError("only a video track can be paused by its viewer")
        if paused == self.viewer_paused:
            return False
        self.viewer_paused = paused
        if not paused:
            self._wait_for_keyframe()
            published = self.published
            if published is not None and self.waiting_keyframe:
                published.request_keyframe()
        return True

    def _wait_for_keyframe(self) -> None:
        if self._gate and not self.waiting_keyframe:
            self.waiting_keyframe = True
            self.keyframes_waited += 1

    def _on_drop(self) -> None:
        """The proxy queue overflowed: the picture is broken until the next keyframe."""
        self.dropped += 1
        self._wait_for_keyframe()

    def _on_layer_drop(self, tid: int) -> None:
        """The proxy queue overflowed and dropped a frame of temporal layer `tid` (>= 1):
        forward only the layers below it until that layer's next sync frame or keyframe."""
        self.dropped += 1
        if tid < 1:
            self._wait_for_keyframe()
        elif self.max_tid >= tid:
            self.max_tid = tid - 1
            self._update_filter()

    # ------------------------------------------------------------------ layers

    @property
    def allocator(self) -> SubscriberAllocator | None:
        return self._allocator

    @property
    def budget(self) -> Callable[[], int | None] | None:
        """The downlink budget this track's allocator shares (None: every layer)."""
        return self._allocator.budget if self._allocator is not None else None

    @budget.setter
    def budget(self, budget: Callable[[], int | None] | None) -> None:
        """A budget for this track alone (its own allocator); a participant shares one
        allocator between its video slots instead (`Participant.downlink_budget`)."""
        self.set_allocator(None if budget is None else SubscriberAllocator(budget))

    def set_allocator(self, allocator: SubscriberAllocator | None) -> None:
        """Share the subscriber's budget through `allocator` (None: forward every layer)."""
        if allocator is self._allocator:
            return
        if self._allocator is not None:
            self._allocator.remove(self)
        self._allocator = allocator
        if allocator is None:
            self.set_target(MAX_TID)
        elif self.kind == "video":
            allocator.add(self)
        self._update_filter()

    def set_target(self, tid: int | None) -> None:
        """The allocator's decision: forward up to `tid` (None: link pause). Moving down
        is immediate; moving up waits for a keyframe or a layer-sync frame."""
        if tid is None:
            if not self.link_paused and self.kind == "video":
                self.link_paused = True
                self._update_filter()
                self._notify("paused-link")
            return
        if not 0 <= tid <= MAX_TID:
            raise ValueError(f"temporal layer {tid!r} out of range")
        self._target = tid
        if self.link_paused:
            self.link_paused = False
            self.max_tid = tid  # the keyframe the gate waits for starts every layer
            self._wait_for_keyframe()
            published = self.published
            if published is not None:
                published.request_keyframe()
            self._notify("active")
        elif tid < self.max_tid:
            self.max_tid = tid
        self._update_filter()

    def _update_filter(self) -> None:
        self._filter = self._gate and (
            self._allocator is not None or self.link_paused or self.max_tid < MAX_TID
        )

    def _notify(self, state: str) -> None:
        callback = self.on_video_state
        if callback is not None:
            try:
                callback(state)
            except Exception:  # runs inside a sender's read, which must not fail
                logger.exception("on_video_state(%r) failed", state)

    def _admit(self, item: Any) -> bool:
        """Layer selection for one relayed frame (only while `_filter`)."""
        allocator = self._allocator
        if allocator is not None:
            allocator.refresh()
        if self.link_paused:
            return False
        layer = item.opaque
        max_tid = self.max_tid
        if max_tid < MAX_TID and layer is not None:
            tid: int = layer.tid
            if self._target > max_tid:
                if item.is_keyframe or (layer.sync and tid == max_tid + 1):
                    max_tid = self.max_tid = self._target if item.is_keyframe else tid
                    self._up_wait = 0
                    if max_tid >= MAX_TID:
                        self._update_filter()
                else:
                    self._up_wait += 1
                    if self._up_wait >= UP_WAIT_FRAMES:
                        self._up_wait = 0
                        published = self.published
                        if published is not None:
                            published.request_keyframe()
            if tid > max_tid:
                return False
        if allocator is None:
            return True
        # untagged video and keyframes count as the base layer: never shed
        level = 0 if layer is None or item.is_keyframe else layer.tid
        hole = self._hole
        if hole is not None:
            if level >= hole:
                # it may reference the frame shed: wait for a lower layer. A non-sync
                # frame after that may still reference it (Chromium then drops it);
                # waiting for the layer's sync frame instead measured worse at 300 kbit/s
                # (benchmarks/README.md)
                return False
            self._hole = None
        if allocator.admit(item.size, level):
            return True
        self._hole = level
        self.shed += 1
        return False

    # ------------------------------------------------------------------ the sender's read

    async def recv(self) -> Any:
        asked: PublishedTrack | None = None
        while self.readyState == "live":
            proxy, published = self._proxy, self.published
            if proxy is None or published is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.waiting_keyframe and asked is not published and not self.viewer_paused:
                asked = published
                published.request_keyframe()
            try:
                item: Any = await proxy.recv()
            except MediaStreamError:
                if self._proxy is proxy:
                    self._proxy = None  # the publisher's stream ended: idle until switched
                continue
            if self._proxy is not proxy:
                continue  # switched while waiting
            out = self._take(item, published)
            if out is not None:
                return out
        raise MediaStreamError

    def _take(self, item: Any, published: PublishedTrack) -> Any | None:
        """What the sender gets of one relayed `item` (None: dropped, counted): the gate,
        layer selection and the pts offset."""
        if published.paused:
            self.dropped += 1
            return None
        if self.viewer_paused:
            self.dropped += 1
            self.viewer_dropped += 1
            return None
        if self._filter and not self._admit(item):
            self.layer_drops += 1
            return None
        if self.waiting_keyframe:
            if not item.is_keyframe:
                self.dropped += 1
                published.request_keyframe()
                return None
            self.waiting_keyframe = False
        self.frames_out += 1
        if not self._passthrough:
            return item  # transcode: a decoded frame, shared with other senders
        self.bytes_out += item.size
        return self._with_pts(item)

    # ------------------------------------------------------------------ the push path

    def set_frame_sink(self, sink: FrameSink | None) -> None:
        """The lean sender's offer (`sfu.compat.lean_sender.FrameSink`): while its task
        waits for a frame, the relay's fan-out hands each passthrough frame to `_push`,
        which gates it and has the sender send it at once (no task switch per frame and
        subscriber). None withdraws it."""
        self._sink = sink
        self._update_push()

    def _update_push(self) -> None:
        proxy = self._proxy
        if proxy is not None:
            push = self._sink is not None and self._passthrough
            set_relay_sink(proxy, self._push if push else None)

    def _push(self, item: Any) -> bool:
        """One relayed item offered by the proxy queue while the sender's task waits:
        False (not taken, nothing changed) when the sender cannot send now."""
        sink, published = self._sink, self.published
        if sink is None or published is None:
            return False
        route = sink.route()
        if route is None:
            return False
        out = self._take(item, published)
        if out is not None:
            try:
                sink.send(out, route)
            except Exception:
                # the frame is lost for this subscriber: its decoder needs a keyframe
                self.push_errors += 1
                if self.push_errors <= 3:
                    logger.exception("sending a pushed frame failed")
                self._wait_for_keyframe()
                published.request_keyframe()
        return True

    def _with_pts(self, packet: av.Packet[Any]) -> av.Packet[Any]:
        pts = packet.pts or 0
        offset = self._offset
        if offset is None:
            offset = self._offset = 0 if pts >= self._floor else self._floor - pts
        self._sent = True
        if offset == 0:
            self.last_pts = pts
            return packet
        # the relay shares one packet between all subscribers: never modify it
        self.copied += 1
        out = av.Packet(bytes(packet))
        out.pts = pts + offset
        out.dts = out.pts
        out.time_base = packet.time_base
        out.is_keyframe = packet.is_keyframe
        self.last_pts = out.pts
        return out

    def stats(self) -> SubscribedTrackStats:
        return SubscribedTrackStats(
            frames_out=self.frames_out,
            bytes_out=self.bytes_out,
            dropped=self.dropped,
            keyframes_waited=self.keyframes_waited,
            copied=self.copied,
            viewer_dropped=self.viewer_dropped,
            max_tid=self.max_tid,
            link_paused=self.link_paused,
            layer_drops=self.layer_drops,
            shed=self.shed,
        )

    def stop(self) -> None:
        super().stop()
        self.detach()
        if self._allocator is not None:
            self._allocator.remove(self)
            self._allocator = None


class SendSlot:
    """One server transceiver sending some remote participant's track to this one. Owns
    its `SubscribedTrack` (the only owner) and counts the subscriber's PLIs and NACKs.
    With a `downlink` (the subscriber's `DownlinkEstimate`, shared by its slots), the
    subscriber's NACKs, REMBs and receiver reports about this slot's stream feed it; its
    owner sums `octets_sent()` over its slots for the estimate's `sent_bytes`.

    When the published track it carries closes, the slot releases itself at once and calls
    `on_published_closed(slot)` (its owner then renegotiates). `on_video_state(state)`, when
    set, hears the track's link pause: "paused-link" when it starts, "active" when it ends.
    `release()` keeps the transceiver for reuse (inactive); `close()` (idempotent) also
    ends the track.

    With `send_path="lean"` the sender gets the lean RTP loop (`install_lean_sender`) at
    once: build the slot right after `addTransceiver`, before the negotiation that starts
    the sender. A reused slot keeps its sender and so its send path. (Test fakes that are
    not an `RTCRtpSender` keep the stock path.)

    `on_video_state` (set by the owner) is called with the slot's new forwarding state of
    its video: "active", "paused-link" (the link cannot carry it) or "paused-viewer"
    (`set_viewer_paused`).
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        track: SubscribedTrack,
        on_published_closed: Callable[[SendSlot], None] | None = None,
        send_path: SendPath = "stock",
        downlink: DownlinkEstimate | None = None,
    ) -> None:
        self.transceiver = transceiver
        self.track = track
        self.lean: LeanSender | None = None
        if send_path == "lean" and isinstance(transceiver.sender, RTCRtpSender):
            self.lean = install_lean_sender(transceiver.sender)
            # passthrough: the published track's pts are in 1 / clock rate ticks
            self.lean.pts_in_clock_rate = True
        self.plis = 0
        self.nacks = 0
        self._on_published_closed = on_published_closed
        self._keyframe_hook = False
        #: called with "active" | "paused-link" | "paused-viewer" when the state changes
        self.on_video_state: Callable[[str], None] | None = None
        track.on_published_closed = self._published_closed
        track.on_video_state = self._video_state
        install_sender_nack_counter(transceiver.sender, self._count_nack)
        #: repeated NACKs of a packet resent less than a round trip ago are not answered
        self.resends = ResendGate()
        #: keyframes asked for because the gate gave a packet up (lost for good)
        self.keyframes_for_losses = 0
        self._clock = time.monotonic
        self.downlink = downlink
        self.fraction_lost: int | None = None
        self.reports = self.rembs = 0
        #: NACKed packets not retransmitted: the subscriber's downlink had no room
        self.retransmits_skipped = 0
        if downlink is not None and isinstance(transceiver.sender, RTCRtpSender):
            install_sender_feedback(transceiver.sender, self.on_remb, self.on_report)

    @property
    def kind(self) -> str:
        return self.track.kind

    @property
    def published(self) -> PublishedTrack | None:
        return self.track.published

    def attach(self, published: PublishedTrack) -> None:
        """Send `published` on this slot (sendonly)."""
        self.track.attach(published)
        self.transceiver.direction = "sendonly"
        if published.mode == "passthrough" and not self._keyframe_hook:
            # transcode: the sender's encoder answers PLI/FIR itself
            install_sender_keyframe_hook(self.transceiver.sender, self._on_keyframe_request)
            self._keyframe_hook = True

    def set_pacer(self, pacer: Pacer | None) -> None:
        """Send this slot's video through `pacer` (the subscriber's, `sfu.pacer`; None:
        at once). Only the lean send path paces."""
        if self.lean is not None:
            self.lean.pacer = pacer

    def set_viewer_paused(self, paused: bool) -> bool:
        """Stop (True) or resume (False) forwarding this slot's video because the
        subscriber does not show it; reports the new state to `on_video_state`. True when
        the state changed; `ValueError` for an audio slot."""
        if not self.track.set_viewer_paused(paused):
            return False
        callback = self.on_video_state
        if callback is not None:
            callback(self.video_state())
        return True

    def video_state(self) -> str:
        """The video's forwarding state: paused-viewer, paused-link (`link_paused`) or active."""
        if self.track.viewer_paused:
            return "paused-viewer"
        if getattr(self.track, "link_paused", False):
            return "paused-link"
        return "active"

    def _on_keyframe_request(self) -> None:
        self.plis += 1
        published = self.track.published
        if published is not None:
            published.request_keyframe()

    def _video_state(self, state: str) -> None:
        callback = self.on_video_state
        if callback is not None:
            callback(state)

    def _count_nack(self, seq: int) -> bool:
        """One NACKed packet: count it; False (skip the retransmission) when it was resent
        less than a round trip ago or often enough already (`ResendGate`), or, without an
        allocator, when retransmissions used up their share of the subscriber's limited
        downlink (`DownlinkEstimate.allow_retransmission`). With one, a resend is queued in
        its modelled link queue (`SubscriberAllocator.charge`): upper-layer frames make
        room for it. A packet the gate gives up asks the publisher for a keyframe."""
        self.nacks += 1
        downlink = self.downlink
        if downlink is not None:
            downlink.on_nack(1)
        now = self._clock()
        rtt = sender_rtt(self.transceiver.sender)
        lean = self.lean
        if downlink is not None and lean is not None and not self.resends.asked(seq, now):
            # a first NACK: how late it came says whether a queue stands at the link
            sent = lean.sent_after(seq)
            if sent is not None:
                downlink.on_nack_delay(time.time() - sent, rtt)
        allocator = self.track.allocator
        if allocator is not None:
            # a resend waits behind what the link queue holds: a NACK repeated before it
            # could have arrived crossed it (aiortc's RTT is smoothed over seconds)
            rtt = (rtt or 0.0) + allocator.queue_delay()
        allowed, hopeless = self.resends.allow(seq, now, rtt)
        if hopeless:
            # asked for again and again: lost for good for this subscriber, whose decoder
            # waits for a keyframe (a browser asks for one only after up to 3 s)
            self.keyframes_for_losses += 1
            published = self.track.published
            if published is not None:
                published.request_keyframe()
        if not allowed:
            return False
        if allocator is not None:
            # never refused for room: a frame missing a packet is worth nothing (a
            # keyframe's most of all), so upper-layer frames make room for the resend
            allocator.charge(RETRANSMISSION_SIZE)
        elif downlink is not None and not downlink.allow_retransmission():
            self.retransmits_skipped += 1
            return False
        self.resends.sent(seq, now)
        return True

    def on_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        """The subscriber's REMB naming this slot's stream (from the sender hook)."""
        self.rembs += 1
        if self.downlink is not None:
            self.downlink.on_remb(bitrate, ssrcs)

    def on_report(
        self, fraction_lost: int, highest_sequence: int, ssrc: int, cumulative_lost: int
    ) -> None:
        """A receiver-report block about this slot's stream (from the sender hook)."""
        self.reports += 1
        self.fraction_lost = fraction_lost
        if self.downlink is not None:
            self.downlink.on_receiver_report(fraction_lost, highest_sequence, ssrc, cumulative_lost)

    def octets_sent(self) -> int:
        """Payload bytes this slot's sender has sent (its lifetime; read, not counted)."""
        return sender_octets(self.transceiver.sender)

    def _published_closed(self) -> None:
        self.release()
        callback = self._on_published_closed
        if callback is not None:
            callback(self)

    def release(self) -> None:
        """Stop sending on this slot; keep the transceiver for reuse (inactive)."""
        self.track.detach()
        self.transceiver.direction = "inactive"

    def close(self) -> None:
        """Idempotent: release and end the track (the sender loop ends too)."""
        self.release()
        self.track.stop()

    def stats(self) -> SendSlotStats:
        lean = self.lean
        fraction = self.fraction_lost
        loss = None if fraction is None else fraction / 256
        if lean is None:
            return SendSlotStats(
                track=self.track.stats(),
                plis=self.plis,
                nacks=self.nacks,
                loss=loss,
                reports=self.reports,
                rembs=self.rembs,
                retransmits_skipped=self.retransmits_skipped,
                retransmits_repeated=self.resends.refused,
                keyframes_for_losses=self.keyframes_for_losses,
            )
        return SendSlotStats(
            track=self.track.stats(),
            plis=self.plis,
            nacks=self.nacks,
            send_path="lean",
            packets_lean=lean.packets_lean,
            packets_stock=lean.packets_stock,
            gso_batches=lean.gso_batches,
            frames_pushed=lean.frames_pushed,
            retransmits=lean.history.retransmits,
            loss=loss,
            reports=self.reports,
            rembs=self.rembs,
            retransmits_skipped=self.retransmits_skipped,
            retransmits_repeated=self.resends.refused,
            keyframes_for_losses=self.keyframes_for_losses,
        )
