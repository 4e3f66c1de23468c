"""Receiving: `RemoteTrack` (one remote participant's track on one of our transceivers) and
its `TrackStats`. The client drains every track itself and hands frames to the current
`RemoteTrack` (`_deliver`); a reader waits for them with bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

from signaling.client.wire import SfuError, TrackInfo

__all__ = ["DEFAULT_TIMEOUT", "FRAME_QUEUE_SIZE", "RemoteTrack", "TrackStats"]

#: Seconds any single wait may take unless told otherwise.
DEFAULT_TIMEOUT = 15.0
#: Frames kept per remote track for `RemoteTrack.next_frame()` (oldest dropped first).
FRAME_QUEUE_SIZE = 16


@dataclass(slots=True)
class TrackStats:
    """Counters of one `RemoteTrack` (times from `time.monotonic()`).

    `bytes` and `keyframes` are counted in `decode=False` mode only (aiortc's decoded
    frames carry neither their encoded size nor a keyframe flag)."""

    frames: int = 0
    bytes: int = 0
    keyframes: int = 0
    created_at: float = field(default_factory=time.monotonic)
    first_frame_at: float | None = None
    last_frame_at: float | None = None

    @property
    def time_to_first_frame(self) -> float | None:
        if self.first_frame_at is None:
            return None
        return self.first_frame_at - self.created_at


class RemoteTrack:
    """One remote participant's track as received on our transceiver `mid`.

    The client reads the underlying aiortc `track` itself (do not call `track.recv()`):
    frames are counted in `stats`, kept in `last_frame`, queued for `next_frame()` (the
    newest `FRAME_QUEUE_SIZE`) and passed to the client's `"frame"` callbacks. Frames are
    `av.VideoFrame` / `av.AudioFrame` with `decode=True`, `EncodedFrame` otherwise.
    `ended` is set when the server stops sending it (publisher left, transceiver reused)
    or the connection closes.

    Frames in flight while the server switches a reused transceiver to another publisher
    may be counted on the old `RemoteTrack`: compare content (e.g. the marker of
    `signaling.client.sources`) when attribution must be exact.
    """

    def __init__(
        self,
        info: TrackInfo,
        track: MediaStreamTrack | None = None,
        receiver: RTCRtpReceiver | None = None,
    ) -> None:
        self.info = info
        self.participant_id = info.participant_id
        self.kind = info.kind
        self.source = info.source
        self.mid = info.mid
        self.track = track
        self.receiver = receiver
        self.stats = TrackStats()
        self.last_frame: Any = None
        self.ended = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue(FRAME_QUEUE_SIZE)
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"RemoteTrack(mid={self.mid!r}, participant_id={self.participant_id!r}, "
            f"kind={self.kind!r}, source={self.source!r}, frames={self.stats.frames}, "
            f"ended={self.ended})"
        )

    def _deliver(self, frame: Any, size: int, keyframe: bool) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.frames += 1
        stats.bytes += size
        if keyframe:
            stats.keyframes += 1
        if stats.first_frame_at is None:
            stats.first_frame_at = now
        stats.last_frame_at = now
        self.last_frame = frame
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)
        self._changed.set()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._changed.set()

    async def _wait(
        self, done: Callable[[], bool], timeout: float, what: Callable[[], str]
    ) -> None:
        """Until `done()`; `SfuError` closed when the track ends first, timeout past
        `timeout` s (`what()` describes what was missing)."""
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    if self.ended:
                        raise SfuError("closed", f"track {self.mid} ended")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise SfuError("timeout", f"{what()} within {timeout} s") from None

    async def next_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The oldest queued frame, waiting up to `timeout` s for one (`SfuError` timeout;
        `SfuError` closed when the track ended with nothing queued)."""
        await self._wait(
            lambda: not self._queue.empty(), timeout, lambda: f"no frame on track {self.mid}"
        )
        return self._queue.get_nowait()

    async def wait_frames(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until at least `count` frames were received in total."""
        await self._wait(
            lambda: self.stats.frames >= count,
            timeout,
            lambda: f"track {self.mid}: {self.stats.frames}/{count} frames",
        )
