"""A send slot: one server transceiver that carries some remote participant's track, and
the ONE track its sender reads (`SubscribedTrack`).

aiortc's `RTCRtpSender` loop ends for good when its track raises `MediaStreamError`, and
`replaceTrack` does not interrupt a pending `recv()`. So a slot gives its sender one
long-lived `SubscribedTrack` that switches between published tracks: a slot is released
when a publisher leaves and reused for the next one without renegotiating new m-lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.compat.lean_sender import LeanSender, install_lean_sender
from sfu.compat.sender import (
    install_sender_feedback,
    install_sender_keyframe_hook,
    install_sender_nack_counter,
    sender_octets,
)
from sfu.config import SendPath
from sfu.downlink import DownlinkEstimate
from sfu.published_track import FRAME_TICKS, PublishedTrack

PROXY_QUEUE_LIMIT = 32


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
    retransmits: int = 0
    #: the subscriber's last receiver-report loss fraction for this slot's stream (0..1),
    #: None before its first report
    loss: float | None = None
    #: receiver-report blocks and REMBs the subscriber sent about this slot's stream
    reports: int = 0
    rembs: int = 0


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
        self.last_pts = base_pts
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.frames_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.keyframes_waited = 0
        self.copied = 0

    # ------------------------------------------------------------------ switching

    def attach(self, published: PublishedTrack) -> None:
        """Read `published` from now on (leaving the current one)."""
        self.detach()
        if self.readyState != "live":
            raise RuntimeError("subscribed track is stopped")
        self._reset_counters()
        self._proxy = published.subscribe(self, self._maxsize, self._on_drop)
        self.published = published
        self._passthrough = published.mode == "passthrough"
        self._gate = self._passthrough and self.kind == "video"
        if self._sent:
            self._floor = self.last_pts + FRAME_TICKS.get(self.kind, 3000)
        self._offset = None
        self.waiting_keyframe = False
        self._wait_for_keyframe()
        self._wake.set()

    def detach(self) -> None:
        """Stop reading the current published track (idempotent)."""
        published, proxy = self.published, self._proxy
        self.published = self._proxy = None
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

    def _wait_for_keyframe(self) -> None:
        if self._gate and not self.waiting_keyframe:
            self.waiting_keyframe = True
            self.keyframes_waited += 1

    def _on_drop(self) -> None:
        """The proxy queue overflowed: the picture is broken until the next keyframe."""
        self.dropped += 1
        self._wait_for_keyframe()

    # ------------------------------------------------------------------ the sender's read

    async def recv(self) -> Any:
        asked: PublishedTrack | None = None
        while self.readyState == "live":
            proxy, published = self._proxy, self.published
            if proxy is None or published is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.waiting_keyframe and asked is not published:
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
            if published.paused:
                self.dropped += 1
                continue
            if self.waiting_keyframe:
                if not item.is_keyframe:
                    self.dropped += 1
                    published.request_keyframe()
                    continue
                self.waiting_keyframe = False
            self.frames_out += 1
            if not self._passthrough:
                return item  # transcode: a decoded frame, shared with other senders
            self.bytes_out += item.size
            return self._with_pts(item)
        raise MediaStreamError

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
        )

    def stop(self) -> None:
        super().stop()
        self.detach()


class SendSlot:
    """One server transceiver sending some remote participant's track to this one. Owns
    its `SubscribedTrack` (the only owner) and counts the subscriber's PLIs and NACKs.
    With a `downlink` (the subscriber's `DownlinkEstimate`, shared by its slots), the
    subscriber's NACKs, REMBs and receiver reports about this slot's stream feed it; its
    owner sums `octets_sent()` over its slots for the estimate's `sent_bytes`.

    When the published track it carries closes, the slot releases itself at once and calls
    `on_published_closed(slot)` (its owner then renegotiates). `release()` keeps the
    transceiver for reuse (inactive); `close()` (idempotent) also ends the track.

    With `send_path="lean"` the sender gets the lean RTP loop (`install_lean_sender`) at
    once: build the slot right after `addTransceiver`, before the negotiation that starts
    the sender. A reused slot keeps its sender and so its send path. (Test fakes that are
    not an `RTCRtpSender` keep the stock path.)
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
        self.plis = 0
        self.nacks = 0
        self._on_published_closed = on_published_closed
        self._keyframe_hook = False
        track.on_published_closed = self._published_closed
        install_sender_nack_counter(transceiver.sender, self._count_nack)
        self.downlink = downlink
        self.fraction_lost: int | None = None
        self.reports = self.rembs = 0
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

    def _on_keyframe_request(self) -> None:
        self.plis += 1
        published = self.track.published
        if published is not None:
            published.request_keyframe()

    def _count_nack(self) -> None:
        self.nacks += 1
        downlink = self.downlink
        if downlink is not None:
            downlink.on_nack(1)

    def on_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        """The subscriber's REMB naming this slot's stream (from the sender hook)."""
        self.rembs += 1
        if self.downlink is not None:
            self.downlink.on_remb(bitrate, ssrcs)

    def on_report(self, fraction_lost: int, highest_sequence: int, ssrc: int) -> None:
        """A receiver-report block about this slot's stream (from the sender hook)."""
        self.reports += 1
        self.fraction_lost = fraction_lost
        if self.downlink is not None:
            self.downlink.on_receiver_report(fraction_lost, highest_sequence, ssrc)

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
            )
        return SendSlotStats(
            track=self.track.stats(),
            plis=self.plis,
            nacks=self.nacks,
            send_path="lean",
            packets_lean=lean.packets_lean,
            packets_stock=lean.packets_stock,
            gso_batches=lean.gso_batches,
            retransmits=lean.history.retransmits,
            loss=loss,
            reports=self.reports,
            rembs=self.rembs,
        )
