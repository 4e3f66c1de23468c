"""The frame assembler: a jitter-buffer replacement that releases each complete encoded
frame on its RTP marker bit, in order (aiortc's `jitterbuffer.py` is the counterpart it
replaces). Pure logic over `RtpPacket`s: no I/O, no task, nothing to close."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

#: Video frames (distinct RTP timestamps) kept pending behind a gap before giving up on it.
MAX_PENDING_FRAMES = 8
#: Hard cap on pending video packets (a 1080p keyframe is a few hundred packets).
MAX_PENDING_PACKETS = 2048
#: A forward sequence jump larger than this resynchronises at once.
MAX_SEQ_GAP = 1000
#: This many late packets in a row mean the sequence restarted: resynchronise.
MAX_LATE_RUN = 64
#: While waiting for a keyframe, repeat the PLI flag at most once per this many 90 kHz ticks.
PLI_REPEAT_TICKS = 90000

_VP8_S_BIT = 0x10
_VP8_PID_MASK = 0x07
_VP8_X_BIT = 0x80
_VP8_I_BIT = 0x80
_VP8_L_BIT = 0x40
_VP8_T_BIT = 0x20
_VP8_M_BIT = 0x80
#: (TID, Y) for the top three bits of the descriptor's TID|Y|KEYIDX byte (no allocation)
_TID_Y = tuple((bits >> 1, bool(bits & 1)) for bits in range(8))
_NO_LAYER: tuple[int | None, bool] = (None, False)


@dataclass(slots=True)
class EncodedFrame:
    """One complete encoded frame: depayloaded codec data and its 32-bit RTP timestamp.

    `audio_level` is the RFC 6464 `(voice, -dBov)` pair of an audio packet's header
    extension as aiortc parsed it (the same tuple object: no allocation), or None.
    `tid` is the VP8 temporal layer id of the frame's first packet's payload descriptor
    (None when the publisher writes no TID: T bit clear) and `layer_sync` its Y bit (the
    frame depends only on base-layer frames)."""

    data: bytes
    timestamp: int
    keyframe: bool
    ssrc: int
    audio_level: tuple[bool, int] | None = None
    tid: int | None = None
    layer_sync: bool = False


FrameSink = Callable[[EncodedFrame], None]


@dataclass(frozen=True, slots=True)
class AssemblerStats:
    """A snapshot of one `FrameAssembler`'s counters."""

    packets: int
    frames: int
    keyframes: int
    bytes: int
    late: int
    frames_lost: int
    deltas_dropped: int
    #: times the assembler needed a keyframe from the publisher (its "PLI flag")
    keyframes_needed: int
    pending_packets: int


def discard_frame(frame: EncodedFrame) -> None:
    pass


class FrameAssembler:
    """Replaces a receiver's `JitterBuffer`: assembles depayloaded RTP packets into encoded
    frames and hands each to `on_frame` as soon as it is complete, strictly in order.

    `add()` always returns `(pli_flag, None)` so the stock decode path never runs. With
    `on_keyframe_needed` set, the flag goes to that callback instead (the owner throttles
    and counts upstream requests) and `add()` returns `(False, None)`.

    Video (VP8): a frame runs from the packet whose descriptor has S=1 and PID=0 to the
    packet with the RTP marker bit, over contiguous sequence numbers and one timestamp. A
    gap is waited for (reordering, NACK retransmission) while at most `max_pending_frames`
    frames are pending; then the oldest incomplete frame is dropped, the PLI flag is raised
    and delta frames are dropped until the next keyframe. Audio: every packet is a frame,
    released at once. Late and duplicate packets are dropped. Memory is bounded by
    `max_pending_packets`. Owns only its pending packets; nothing to close (set `on_frame`
    to stop delivery).
    """

    def __init__(
        self,
        kind: str,
        on_frame: FrameSink,
        max_pending_frames: int = MAX_PENDING_FRAMES,
        max_pending_packets: int = MAX_PENDING_PACKETS,
        on_keyframe_needed: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self.on_frame = on_frame
        self.on_keyframe_needed = on_keyframe_needed
        self._video = kind == "video"
        self._max_frames = max_pending_frames
        self._max_packets = max_pending_packets
        self.ssrc: int | None = None
        # sequence state (extended 64-bit sequence numbers)
        self._max_ext: int | None = None
        self._released: int | None = None  # last ext seq released or skipped
        self._synced = False
        self._packets: dict[int, RtpPacket] = {}
        self._ts_counts: dict[int, int] = {}
        self._scan = 0  # last ext seq verified as a non-final packet of the head frame
        self._late_run = 0
        # keyframe state
        self._need_keyframe = self._video
        self._pli_ts: int | None = None
        # counters
        self.packets = 0
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.late = 0
        self.frames_lost = 0
        self.deltas_dropped = 0
        self.pli_count = 0

    def stats(self) -> AssemblerStats:
        return AssemblerStats(
            packets=self.packets,
            frames=self.frames,
            keyframes=self.keyframes,
            bytes=self.bytes,
            late=self.late,
            frames_lost=self.frames_lost,
            deltas_dropped=self.deltas_dropped,
            keyframes_needed=self.pli_count,
            pending_packets=len(self._packets),
        )

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.packets += 1
        if packet.ssrc != self.ssrc:
            self._reset(packet.ssrc)
        seq = packet.sequence_number
        if self._max_ext is None:
            ext = seq
            self._max_ext = seq
        else:
            delta = (seq - self._max_ext) & 0xFFFF
            if delta >= 0x8000:
                delta -= 0x10000
            ext = self._max_ext + delta
            if delta > 0:
                self._max_ext = ext
        released = self._released
        if released is not None and ext <= released:
            self.late += 1
            self._late_run += 1
            if self._late_run > MAX_LATE_RUN:
                # the sender restarted its sequence numbers backwards: start over
                self._reset(packet.ssrc)
                self.packets -= 1
                return self.add(packet)
            return False, None
        self._late_run = 0
        if not self._video:
            self._released = ext
            data: bytes = packet._data  # type: ignore[attr-defined]
            if data:
                self._emit(data, packet.timestamp, True, packet.extensions.audio_level)
            return False, None
        pli = self._add_video(packet, ext)
        if pli and self.on_keyframe_needed is not None:
            self.on_keyframe_needed()
            return False, None
        return pli, None

    # ------------------------------------------------------------------ video

    def _add_video(self, packet: RtpPacket, ext: int) -> bool:
        pli = False
        packets = self._packets
        if ext in packets:
            self.late += 1
            return False
        if self._synced and self._released is not None and ext - self._released > MAX_SEQ_GAP:
            self._clear_pending()
            self._synced = False
            pli = self._lost()
        packets[ext] = packet
        ts = packet.timestamp
        self._ts_counts[ts] = self._ts_counts.get(ts, 0) + 1
        if not self._synced:
            if not _is_start(packet):
                if len(packets) > self._max_packets:
                    self._clear_pending()
                return pli
            self._sync_at(ext)
        if self._release_ready():
            pli = True
        while len(self._ts_counts) > self._max_frames or len(packets) > self._max_packets:
            self._skip_head()
            pli = self._lost() or pli
            if self._release_ready():
                pli = True
        if pli:
            self.pli_count += 1
        return pli

    def _sync_at(self, ext: int) -> None:
        """Start releasing at the frame that starts at `ext`; drop anything older."""
        for old in [s for s in self._packets if s < ext]:
            self._remove(old)
        self._released = ext - 1
        self._scan = ext - 1
        self._synced = True

    def _release_ready(self) -> bool:
        """Release every complete frame at the head; return True when a PLI is due."""
        pli = False
        packets = self._packets
        while True:
            assert self._released is not None
            head = self._released + 1
            first = packets.get(head)
            if first is None:
                return pli
            if not first._data:  # type: ignore[attr-defined]
                # padding-only packet between frames
                self._remove(head)
                self._released = head
                self._scan = head
                continue
            if not _is_start(first):
                # the head is not a frame start: its start was lost
                self._skip_head()
                pli = self._lost() or pli
                continue
            ts = first.timestamp
            pos = max(self._scan + 1, head)
            end = -1
            while True:
                p = packets.get(pos)
                if p is None:
                    break
                if p.timestamp != ts or (pos != head and _is_start(p)):
                    end = -2  # next frame began without a marker: broken frame
                    break
                if p.marker:
                    end = pos
                    break
                self._scan = pos
                pos += 1
            if end == -1:
                return pli
            if end == -2:
                self._skip_head()
                pli = self._lost() or pli
                continue
            frame_packets = [packets[s] for s in range(head, end + 1)]
            for s in range(head, end + 1):
                self._remove(s)
            self._released = end
            self._scan = end
            data = b"".join([p._data for p in frame_packets])  # type: ignore[attr-defined]
            keyframe = not (data[0] & 0x01)
            if self._need_keyframe and not keyframe:
                self.deltas_dropped += 1
                if self._pli_ts is None or ((ts - self._pli_ts) & 0xFFFFFFFF) >= PLI_REPEAT_TICKS:
                    self._pli_ts = ts
                    pli = True
                continue
            self._need_keyframe = False
            self._pli_ts = None
            tid, sync = vp8_temporal_layer(first.payload)
            self._emit(data, ts, keyframe, None, tid, sync)

    def _skip_head(self) -> None:
        """Give up on the head frame: resume at the next frame start after it."""
        assert self._released is not None
        head = self._released + 1
        first = self._packets.get(head)
        floor = head if first is not None and _is_start(first) else self._released
        starts = [s for s, p in self._packets.items() if s > floor and _is_start(p)]
        self.frames_lost += 1
        if starts:
            self._sync_at(min(starts))
        else:
            self._released = max(self._released, max(self._packets, default=self._released))
            self._clear_pending()
            self._synced = False

    def _lost(self) -> bool:
        """A frame was lost: wait for a keyframe; return True when a PLI is due now."""
        self._need_keyframe = True
        self._pli_ts = None
        return True

    def _remove(self, ext: int) -> None:
        packet = self._packets.pop(ext)
        ts = packet.timestamp
        count = self._ts_counts[ts] - 1
        if count:
            self._ts_counts[ts] = count
        else:
            del self._ts_counts[ts]

    def _clear_pending(self) -> None:
        self._packets.clear()
        self._ts_counts.clear()

    def _reset(self, ssrc: int) -> None:
        if self.ssrc is not None:
            logger.info("%s assembler: SSRC changed %d -> %d", self.kind, self.ssrc, ssrc)
        self.ssrc = ssrc
        self._max_ext = None
        self._released = None
        self._synced = False
        self._late_run = 0
        self._clear_pending()
        self._need_keyframe = self._video
        self._pli_ts = None

    def _emit(
        self,
        data: bytes,
        timestamp: int,
        keyframe: bool,
        audio_level: tuple[bool, int] | None = None,
        tid: int | None = None,
        layer_sync: bool = False,
    ) -> None:
        self.frames += 1
        self.bytes += len(data)
        if keyframe:
            self.keyframes += 1
        assert self.ssrc is not None
        self.on_frame(
            EncodedFrame(data, timestamp, keyframe, self.ssrc, audio_level, tid, layer_sync)
        )


def _is_start(packet: RtpPacket) -> bool:
    payload = packet.payload
    return bool(payload) and (payload[0] & _VP8_S_BIT) != 0 and (payload[0] & _VP8_PID_MASK) == 0


def vp8_temporal_layer(payload: bytes) -> tuple[int | None, bool]:
    """`(TID, Y)` of a VP8 RTP payload descriptor (RFC 7741 section 4.2), `(None, False)`
    when it carries no temporal layer (X or T bit clear) or is truncated.

    Layout: byte 0 `X|R|N|S|R|PID`; when X, byte 1 `I|L|T|K|RSV`; when I, a 7- or 15-bit
    PictureID (M bit); when L, TL0PICIDX; when T or K, `TID(2)|Y(1)|KEYIDX(5)`."""
    size = len(payload)
    if size < 2 or not payload[0] & _VP8_X_BIT:
        return _NO_LAYER
    ext = payload[1]
    if not ext & _VP8_T_BIT:
        return _NO_LAYER
    pos = 2
    if ext & _VP8_I_BIT:
        if size <= pos:
            return _NO_LAYER
        pos += 2 if payload[pos] & _VP8_M_BIT else 1
    if ext & _VP8_L_BIT:
        pos += 1
    if size <= pos:
        return _NO_LAYER
    return _TID_Y[payload[pos] >> 5]
