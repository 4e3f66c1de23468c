"""One incoming track as encoded frames (`av.Packet`s): the source a `MediaRelay` fans out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.frame_assembler import EncodedFrame

logger = logging.getLogger(__name__)

CLOCK_RATES = {"video": 90000, "audio": 48000}
#: Nominal frame duration (RTP ticks) used to keep pts monotonic across discontinuities.
FRAME_TICKS = {"video": 3000, "audio": 960}
QUEUE_LIMIT = 64


class PublishedTrack(MediaStreamTrack):
    """Owns a bounded queue of one publisher's encoded frames as `av.Packet`s.

    `push()` never blocks and never grows memory: on overflow a video frame is dropped and
    delta frames are dropped until the next keyframe (`on_keyframe_needed` is called so the
    owner can ask the publisher for one); audio drops its oldest frame. While `paused`
    frames are dropped, and video resumes at a keyframe. pts is the RTP timestamp unwrapped
    to a monotonic count starting at 0, in `time_base` = 1/clock rate.

    `stop()` (idempotent) ends `recv()` with `MediaStreamError`, also a pending one.
    """

    def __init__(
        self,
        kind: str,
        source: str = "",
        maxsize: int = QUEUE_LIMIT,
        on_keyframe_needed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        if kind not in CLOCK_RATES:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind = kind
        self.source = source
        self.time_base = Fraction(1, CLOCK_RATES[kind])
        self.on_keyframe_needed = on_keyframe_needed
        self._video = kind == "video"
        self._frame_ticks = FRAME_TICKS[kind]
        self._maxsize = maxsize
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue()
        self._paused = False
        self._need_keyframe = False
        self._ssrc: int | None = None
        self._last_ts = 0
        self._pts = 0
        # counters
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.drops = 0

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if self._paused and not value and self._video:
            self._need_keyframe = True
        self._paused = value

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def push(self, frame: EncodedFrame) -> None:
        """Take one complete received frame (called from the receiver's packet handler)."""
        if self.readyState != "live":
            return
        self._advance_pts(frame)
        self.frames += 1
        self.bytes += len(frame.data)
        if frame.keyframe:
            self.keyframes += 1
        if self._paused:
            self.drops += 1
            return
        queue = self._queue
        if self._video:
            if self._need_keyframe:
                if not frame.keyframe:
                    self.drops += 1
                    self._keyframe_needed()
                    return
                self._need_keyframe = False
            if queue.qsize() >= self._maxsize:
                self.drops += 1
                self._need_keyframe = True
                self._keyframe_needed()
                return
        elif queue.qsize() >= self._maxsize:
            queue.get_nowait()
            self.drops += 1
        packet = av.Packet(frame.data)
        packet.pts = self._pts
        packet.dts = self._pts
        packet.time_base = self.time_base
        packet.is_keyframe = frame.keyframe
        queue.put_nowait(packet)

    def _advance_pts(self, frame: EncodedFrame) -> None:
        ts = frame.timestamp
        if self._ssrc is None:
            self._ssrc = frame.ssrc
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

    def _keyframe_needed(self) -> None:
        callback = self.on_keyframe_needed
        if callback is not None:
            callback()

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            queue = self._queue
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
        super().stop()
