"""Relay statistics: a sampler that walks the room tree once per interval and keeps a
pulled snapshot (Galène's stats.json / Jitsi's colibri stats are the models).

The hot path only increments plain integers (on the assembler, the published tracks and
the send slots' tracks); the sampler reads them through each object's typed `stats()`
and computes all rates here, over a sliding window, never on request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.active_speaker import level_to_linear
from sfu.allocator import SubscriberAllocator
from sfu.compat.receiver import receiver_codec
from sfu.downlink import DownlinkStats
from sfu.published_track import PublishedTrack
from sfu.room_manager import RoomManager
from sfu.send_slot import SendSlot

logger = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(slots=True)
class _Series:
    """A window of (time, counters) samples of one object, for rates."""

    points: deque[tuple[float, tuple[float, ...]]] = field(default_factory=deque)

    def add(self, now: float, values: tuple[float, ...], window: float) -> None:
        self.points.append((now, values))
        while len(self.points) > 2 and now - self.points[0][0] > window:
            self.points.popleft()

    def rates(self) -> tuple[float, ...]:
        if len(self.points) < 2:
            return tuple(0.0 for _ in self.points[-1][1]) if self.points else ()
        (t0, a), (t1, b) = self.points[0], self.points[-1]
        dt = t1 - t0
        if dt <= 0:
            return tuple(0.0 for _ in a)
        return tuple(max(0.0, (y - x) / dt) for x, y in zip(a, b, strict=True))

    def last_delta(self) -> tuple[float, ...]:
        if len(self.points) < 2:
            return self.points[-1][1] if self.points else ()
        (_, a), (_, b) = self.points[-2], self.points[-1]
        return tuple(max(0.0, y - x) for x, y in zip(a, b, strict=True))


def downlink_row(stats: DownlinkStats) -> dict[str, Any]:
    """A participant's downlink estimate for `/api/stats` (bps; loss as a fraction)."""
    return {
        "bitrate": stats.bitrate,
        "lossBitrate": stats.loss_bitrate,
        "remb": stats.remb,
        "loss": None if stats.loss is None else round(stats.loss, 4),
        "sentBitrate": stats.sent_bitrate,
        "reports": stats.reports,
        "rembs": stats.rembs,
        "nacks": stats.nacks,
        "retransmissionsRefused": stats.retransmissions_refused,
        "delayCuts": stats.delay_cuts,
        "decreases": stats.decreases,
        "increases": stats.increases,
    }


def pacer_row(allocator: SubscriberAllocator | None) -> dict[str, Any]:
    """A participant's video pacer for `/api/stats` (`sfu.pacer`): the rate it paces at
    (bytes/s, None: not pacing), datagrams that waited, backlogs sent at once."""
    pacer = None if allocator is None else allocator.pacer
    return {
        "pacerRate": None if pacer is None or pacer.rate is None else round(pacer.rate),
        "pacedDatagrams": 0 if pacer is None else pacer.paced,
        "pacerFlushes": 0 if pacer is None else pacer.flushes,
    }


@dataclass(slots=True)
class Totals:
    """Cumulative counters that survive participants leaving (Prometheus counters)."""

    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    frames_forwarded: int = 0
    keyframe_requests: int = 0
    negotiation_failures: int = 0
    #: loss recovery: NACKs the server sent to publishers, RTX retransmissions it received
    #: from them, frames it gave up on (unrecovered); NACKed packets subscribers asked
    #: for and the retransmissions it answered them with (lean send path)
    nacks_sent: int = 0
    rtx_received: int = 0
    frames_lost: int = 0
    nacks_received: int = 0
    retransmits_sent: int = 0


class StatsSampler:
    """Owns the sampling task and the latest snapshot. `start()` begins sampling every
    `interval` seconds; `close()` (idempotent) cancels it. Also measures event-loop lag
    (how late its own timer fires)."""

    def __init__(
        self,
        rooms: RoomManager,
        interval: float = 1.0,
        window: float = 5.0,
        history: int = 300,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.rooms = rooms
        self.interval = interval
        self.window = window
        self._extra = extra
        self._series: dict[tuple[str, ...], _Series] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = time.time()
        self._cpu = (time.monotonic(), time.process_time())
        self.cpu_percent = 0.0
        self.loop_lag = 0.0
        self.max_loop_lag = 0.0
        self.totals = Totals()
        self.history: deque[dict[str, float]] = deque(maxlen=history)
        self._snapshot: dict[str, Any] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stats-sampler")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def snapshot(self) -> dict[str, Any]:
        """The latest snapshot tree (empty until the first sample)."""
        return self._snapshot

    async def _run(self) -> None:
        await self.sample()  # a snapshot from the start, not after the first interval
        while True:
            planned = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            self.loop_lag = max(0.0, time.monotonic() - planned)
            self.max_loop_lag = max(self.max_loop_lag, self.loop_lag)
            try:
                await self.sample()
            except Exception:  # pragma: no cover - never let the sampler die
                logger.exception("stats sample failed")

    async def sample(self) -> dict[str, Any]:
        """Take one sample now and return the new snapshot."""
        now = time.monotonic()
        wall, cpu = time.monotonic(), time.process_time()
        dt = wall - self._cpu[0]
        if dt > 0:
            self.cpu_percent = 100.0 * (cpu - self._cpu[1]) / dt
        self._cpu = (wall, cpu)
        seen: set[tuple[str, ...]] = set()
        rooms_out = []
        forwarded_streams = published_tracks = participants = 0
        bitrate_out_total = fps_out_total = 0.0
        for room in list(self.rooms.rooms.values()):
            people = []
            for participant in list(room.participants.values()):
                participants += 1
                published = []
                for pub in list(participant.published.values()):
                    published_tracks += 1
                    published.append(await self._published(now, seen, participant.id, pub))
                subscriptions = []
                for slot in participant.send_slots():
                    if slot.published is None:
                        continue
                    forwarded_streams += 1
                    row = await self._subscription(now, seen, participant.id, slot)
                    bitrate_out_total += row["bitrateOut"]
                    if row["kind"] == "video":
                        fps_out_total += row["fps"]
                    subscriptions.append(row)
                people.append(
                    {
                        **participant.info(),
                        "connectionState": participant.connection_state(),
                        "malformedPackets": sum(participant.malformed.values()),
                        "downlink": {
                            **downlink_row(participant.downlink.stats()),
                            **pacer_row(participant.allocator),
                        },
                        "published": published,
                        "subscriptions": subscriptions,
                    }
                )
            rooms_out.append(
                {
                    "name": room.name,
                    "participantCount": len(people),
                    "participants": people,
                    **room.media_info(),
                }
            )
        for key in list(self._series):
            if key not in seen:
                del self._series[key]
        server: dict[str, Any] = {
            "uptime": round(time.time() - self._started, 3),
            "forwarding": self.rooms.config.forwarding,
            "cpuPercent": round(self.cpu_percent, 2),
            "rssBytes": rss_bytes(),
            "eventLoopLag": round(self.loop_lag, 6),
            "maxEventLoopLag": round(self.max_loop_lag, 6),
            "rooms": len(rooms_out),
            "participants": participants,
            "publishedTracks": published_tracks,
            "forwardedStreams": forwarded_streams,
            "bitrateOut": round(bitrate_out_total),
            "fpsOut": round(fps_out_total, 2),  # video frames/s, all subscriptions
            "packetsForwarded": self.totals.packets_forwarded,
            "bytesForwarded": self.totals.bytes_forwarded,
            "keyframeRequests": self.totals.keyframe_requests,
            "nacksSent": self.totals.nacks_sent,
            "rtxReceived": self.totals.rtx_received,
            "framesLost": self.totals.frames_lost,
            "nacksReceived": self.totals.nacks_received,
            "retransmitsSent": self.totals.retransmits_sent,
        }
        if self._extra is not None:
            server.update(self._extra())
        self.history.append(
            {
                "t": round(time.time(), 3),
                "cpuPercent": server["cpuPercent"],
                "participants": participants,
                "bitrateOut": server["bitrateOut"],
                "fpsOut": server["fpsOut"],
                "eventLoopLag": server["eventLoopLag"],
            }
        )
        self._snapshot = {"server": server, "rooms": rooms_out}
        return self._snapshot

    def _series_for(self, key: tuple[str, ...], now: float, values: tuple[float, ...]) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.add(now, values, self.window)
        return series

    async def _published(
        self, now: float, seen: set[tuple[str, ...]], pid: str, pub: PublishedTrack
    ) -> dict[str, Any]:
        stats = pub.stats()
        requests = stats.keyframe_requests.sent
        recovery = pub.hook.recovery() if pub.hook is not None else None
        nacks_sent = recovery.nacks_sent if recovery is not None else 0
        rtx = recovery.rtx_received if recovery is not None else 0
        frames_lost = stats.assembler.frames_lost if stats.assembler is not None else 0
        key = ("pub", pid, pub.key)
        seen.add(key)
        series = self._series_for(
            key, now, (stats.frames, stats.bytes, requests, nacks_sent, rtx, frames_lost)
        )
        fps, byte_rate, *_ = series.rates()
        # a new series counts everything so far: totals miss nothing before the first sample
        _, _, d_requests, d_nacks, d_rtx, d_lost = series.last_delta()
        totals = self.totals
        totals.keyframe_requests += int(d_requests)
        totals.nacks_sent += int(d_nacks)
        totals.rtx_received += int(d_rtx)
        totals.frames_lost += int(d_lost)
        lost, jitter, codec = 0, 0.0, None
        receiver = pub.receiver
        if receiver is not None:
            with contextlib.suppress(Exception):
                for stat in (await receiver.getStats()).values():
                    if getattr(stat, "type", "") == "inbound-rtp":
                        lost = int(getattr(stat, "packetsLost", 0) or 0)
                        jitter = float(getattr(stat, "jitter", 0) or 0)
            codec = receiver_codec(receiver)
        row: dict[str, Any] = {
            "mid": pub.key,
            "kind": pub.kind,
            "source": pub.source,
            "codec": codec,
            "paused": stats.paused,
            "bitrateIn": round(byte_rate * 8),
            "fps": round(fps, 2),
            "frames": stats.frames,
            "keyframes": stats.keyframes,
            "keyframeRequests": requests,
            "keyframesAsked": stats.keyframe_requests.asked,
            "drops": stats.drops,
            "packetsLost": lost,
            "jitter": jitter,
            "subscribers": stats.subscribers,
        }
        if recovery is not None:
            row.update(
                nacksSent=recovery.nacks_sent,
                nackedPackets=recovery.nacked_packets,
                rtxReceived=recovery.rtx_received,
            )
        if pub.kind == "video":
            # the publisher cap (bps) the server's REMB holds the publisher to, None: none
            row["bitrateCap"] = getattr(pub, "bitrate_cap", None)
        if pub.kind == "audio":
            # the last RFC 6464 level received (linear 0..1; None: the sender sends none)
            level = pub.audio_level
            row["audioLevel"] = None if level is None else round(level_to_linear(level), 4)
        assembler = stats.assembler
        if assembler is not None:
            row.update(
                framesLost=assembler.frames_lost,
                deltasDropped=assembler.deltas_dropped,
                keyframesNeeded=assembler.keyframes_needed,
                latePackets=assembler.late,
            )
        return row

    async def _subscription(
        self, now: float, seen: set[tuple[str, ...]], pid: str, slot: SendSlot
    ) -> dict[str, Any]:
        pub = slot.published
        assert pub is not None
        stats = slot.stats()
        sender = slot.transceiver.sender
        packets = nbytes = 0
        rtt: float | None = None
        lost = 0
        with contextlib.suppress(Exception):
            for stat in (await sender.getStats()).values():
                kind = getattr(stat, "type", "")
                if kind == "outbound-rtp":
                    packets = int(getattr(stat, "packetsSent", 0) or 0)
                    nbytes = int(getattr(stat, "bytesSent", 0) or 0)
                elif kind == "remote-inbound-rtp":
                    rtt = getattr(stat, "roundTripTime", None)
                    lost = int(getattr(stat, "packetsLost", 0) or 0)
        frames = stats.track.frames_out
        # a reused slot carries another publisher's track: a new series, not a drop
        key = ("sub", pid, slot.transceiver.mid or "?", pub.publisher_id, pub.key)
        seen.add(key)
        series = self._series_for(
            key, now, (frames, packets, nbytes, stats.nacks, stats.retransmits)
        )
        fps, _, byte_rate, *_ = series.rates()
        d_frames, d_packets, d_bytes, d_nacks, d_retransmits = series.last_delta()
        totals = self.totals
        totals.frames_forwarded += int(d_frames)
        totals.packets_forwarded += int(d_packets)
        totals.bytes_forwarded += int(d_bytes)
        totals.nacks_received += int(d_nacks)
        totals.retransmits_sent += int(d_retransmits)
        track = slot.track
        downlink = slot.downlink
        return {
            "mid": slot.transceiver.mid,
            "publisherId": pub.publisher_id,
            "publisherMid": pub.key,
            "kind": pub.kind,
            "source": pub.source,
            "bitrateOut": round(byte_rate * 8),
            "fps": round(fps, 2),
            "framesOut": frames,
            "packetsOut": packets,
            "bytesOut": nbytes,
            "drops": stats.track.dropped,
            "keyframesWaited": stats.track.keyframes_waited,
            "viewerPaused": slot.track.viewer_paused,
            "viewerDropped": stats.track.viewer_dropped,
            "copied": stats.track.copied,
            "nacks": stats.nacks,
            "plis": stats.plis,
            "packetsLost": lost,
            "rtt": rtt,
            "sendPath": stats.send_path,
            "packetsLean": stats.packets_lean,
            "packetsStock": stats.packets_stock,
            "gsoBatches": stats.gso_batches,
            "framesPushed": stats.frames_pushed,
            "retransmits": stats.retransmits,
            # NACKed packets no longer in the send history: unrecoverable for the subscriber
            # (lean send path; None on the stock one, which does not count its answers)
            "nacksUnanswered": (
                max(
                    0,
                    stats.nacks
                    - stats.retransmits
                    - stats.retransmits_skipped
                    - stats.retransmits_repeated,
                )
                if stats.send_path == "lean"
                else None
            ),
            # NACKed packets deliberately not resent (no room on a congested downlink)
            "retransmitsSkipped": stats.retransmits_skipped,
            # repeated NACKs of a packet resent less than a round trip ago (or 3 times)
            "retransmitsRepeated": stats.retransmits_repeated,
            # keyframes asked for because the subscriber NACKed a packet again and again
            "keyframesForLosses": stats.keyframes_for_losses,
            "lossFraction": None if stats.loss is None else round(stats.loss, 4),
            "receiverReports": stats.reports,
            "rembs": stats.rembs,
            # the subscriber's downlink estimate (shared by its subscriptions), bps
            "downlinkEstimate": None if downlink is None else downlink.bitrate(),
            # the temporal layer forwarded (2: all) and the link pause (sfu.send_slot)
            "maxTid": getattr(track, "max_tid", None) if pub.kind == "video" else None,
            "linkPaused": bool(getattr(track, "link_paused", False)),
            # frames not forwarded by layer selection, and of them those the subscriber's
            # modelled link queue shed (upper layers only)
            "layerDrops": stats.track.layer_drops,
            "shed": stats.track.shed,
        }
