"""Room recording: each participant's ENCODED VP8 and Opus frames remuxed (no decoding)
into one WebM file per participant, plus a JSON manifest for the room.

Timeline (also written into the manifest as `timeline`):

- Each file starts at 0 at its participant's first recorded packet; the manifest's
  `offset` of the file is that instant in seconds since the recording started (a
  participant who joins mid-recording gets a file starting at 0 and `offset` > 0).
- Inside a file, a run of packets from one source track (a *segment*) keeps its own RTP
  spacing: `t = segment_start + (pts - segment_first_pts) * time_base`, where
  `segment_start` is the arrival time (the injected monotonic clock, read on the event
  loop when the packet is written) of the segment's first packet, relative to the file's
  start. So mute gaps, lost frames and DTX silences stay gaps of the right length.
- A new segment starts when the source changes (a new publisher track), when pts goes
  backwards, or when the RTP-derived time and the arrival time disagree by more than
  `RESYNC_SECONDS` (a sender restart). Its start is clamped so timestamps stay strictly
  increasing per stream. Video from a new or restarted track resumes at a keyframe (deltas
  are dropped); a drift resync keeps the decoder state and drops nothing.
- The container time base is 1/1000 (Matroska's milliseconds).

Threads: every `ParticipantRecorder` owns one muxer thread fed by a queue that the event
loop fills without blocking (`write()`); the bound is enforced on the producer side and
overflow is counted as drops (video then waits for a keyframe). `close()` enqueues the
end and returns at once; `join()`/`aclose()` wait for the trailer to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
CLOCK_RATES = {"video": 90000, "audio": 48000}
#: The container's time base (Matroska/WebM timestamps are milliseconds).
OUT_TIME_BASE = Fraction(1, 1000)
#: RTP-derived vs arrival time disagreement that starts a new segment.
RESYNC_SECONDS = 2.0
#: Queued packets per recorder before `write()` drops (about 8 s of 30 fps video + audio).
MAX_QUEUE = 400
#: Media seconds to wait for a first video keyframe (its size goes into the header).
HEADER_WAIT_SECONDS = 3.0
#: Picture size written into the header when no keyframe came before `HEADER_WAIT_SECONDS`
#: (decoders use the size in the VP8 bitstream).
FALLBACK_SIZE = (640, 480)
#: The muxer thread sleeps this long whenever it has emptied its queue (batching).
BATCH_SECONDS = 0.1
#: Packets buffered before the header is written.
MAX_PENDING = 1000
TIMELINE_DOC = (
    "Each file starts at 0 at its participant's first recorded packet; 'offset' is that "
    "instant in seconds since 'startedAt'. Inside a file, gaps (mute, packet loss, a track "
    "change) are kept as gaps; timestamps are strictly increasing per stream."
)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _seconds(ticks: int, time_base: Fraction) -> float:
    """`ticks * time_base` as a float, without Fraction arithmetic (per packet)."""
    return ticks * time_base.numerator / time_base.denominator


class RecordingError(Exception):
    """A recording could not be started (its directory or manifest is not writable)."""


def safe_name(text: str, limit: int = 64) -> str:
    """`text` reduced to a file-name-safe token (never empty)."""
    return _SAFE.sub("_", text).strip("._")[:limit] or "x"


def vp8_is_keyframe(data: bytes) -> bool:
    """True when `data` (a VP8 frame) is a keyframe: bit 0 of the frame tag is 0."""
    return bool(data) and not (data[0] & 0x01)


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 keyframe, None for a delta frame or garbage."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    if not width or not height:
        return None
    return width, height


_OPUS_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(data: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 3.1); 960 when
    the packet is too short to tell."""
    if not data:
        return 960
    toc = data[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(data) >= 2:
        frames = data[1] & 0x3F
    else:
        return 960
    return min(per_frame * frames, 5760)  # at most 120 ms


def _vp8_template() -> Any:
    """An input container holding a VP8 stream, for `add_stream_from_template`: the
    output stream then needs no opened encoder (a libvpx encoder opened at the picture
    size costs ~25 MB at 720p; this one is 16x16 and closed at once)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm") as scratch:
        stream = scratch.add_stream("libvpx", rate=30)
        stream.width = 16
        stream.height = 16
        stream.pix_fmt = "yuv420p"
        scratch.start_encoding()
        packet = av.Packet(b"\x01" * 16)  # any bytes: only the track header matters
        packet.pts = packet.dts = 0
        packet.stream = stream
        scratch.mux(packet)
    buf.seek(0)
    return av.open(buf, mode="r", format="webm")


@dataclass(slots=True)
class _Item:
    kind: str
    packet: Any  # av.Packet, read-only here (a MediaRelay may share it)
    pts: int
    time_base: Fraction
    keyframe: bool
    source: str
    arrival: float


@dataclass(slots=True)
class _Segment:
    source: str
    first_pts: int
    start: float  # seconds since the file's start
    last_pts: int


@dataclass(slots=True)
class _Out:
    kind: str
    data: bytes
    ms: int
    keyframe: bool
    duration: int


class _StreamState:
    """Mapping and output state of one kind inside a file (muxer thread only)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.segment: _Segment | None = None
        self.need_keyframe = kind == "video"
        self.last_ms = -1
        self.end_ms = 0
        self.frames = 0
        self.segments = 0
        self.deltas_dropped = 0


class ParticipantRecorder:
    """Owns one participant's WebM file and the thread that muxes it.

    `write(kind, packet, source)` is called on the event loop (from a MediaRelay
    subscription's consumer): it never blocks, never raises, and returns whether the
    packet was queued. The muxer thread opens the file at the first packet (after the
    first video keyframe when video is expected, to put the picture size into the
    header), maps timestamps (see the module docstring) and muxes. Any error (unwritable
    directory, disk full) lands in `error`; later packets are dropped. `close()` is
    idempotent and non-blocking: it ends the queue; the thread then flushes and writes
    the trailer. `join()` (blocking) or `await aclose()` wait for that.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        participant_id: str = "",
        name: str = "",
        kinds: Iterable[str] = KINDS,
        clock: Callable[[], float] = time.monotonic,
        max_queue: int = MAX_QUEUE,
        header_wait: float = HEADER_WAIT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.participant_id = participant_id
        self.name = name
        self.kinds = tuple(k for k in KINDS if k in set(kinds))
        if not self.kinds:
            raise ValueError("a recorder needs at least one of 'audio', 'video'")
        self._clock = clock
        self._max_queue = max_queue
        self._header_wait = header_wait
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._error: BaseException | None = None
        self._video_gap = False  # producer side: a video drop, wait for a keyframe
        #: clock value of the first written packet (the file's 0), None before
        self.first_arrival: float | None = None
        self.written = 0
        self.dropped = 0
        self._streams = {kind: _StreamState(kind) for kind in self.kinds}
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{safe_name(participant_id, 24)}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ event loop side

    @property
    def error(self) -> BaseException | None:
        """The error that stopped this file, or None."""
        return self._error

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        """True once the thread has written the trailer (or given up)."""
        return self._closed and not self._thread.is_alive()

    def write(self, kind: str, packet: Any, source: str = "") -> bool:
        """Queue one encoded frame (`av.Packet` with pts and time_base). Never blocks or
        raises; returns False when the packet was dropped."""
        try:
            if self._closed or self._error is not None or kind not in self._streams:
                self.dropped += 1
                return False
            keyframe = bool(packet.is_keyframe)
            if kind == "video" and self._video_gap:
                if not keyframe:
                    self.dropped += 1
                    return False
                self._video_gap = False
            if self._queue.qsize() >= self._max_queue:
                self.dropped += 1
                if kind == "video":
                    self._video_gap = True
                return False
            pts = packet.pts
            if pts is None:
                self.dropped += 1
                return False
            tb = packet.time_base or Fraction(1, CLOCK_RATES[kind])
            now = self._clock()
            if self.first_arrival is None:
                self.first_arrival = now
            self._queue.put_nowait(_Item(kind, packet, int(pts), tb, keyframe, source, now))
            return True
        except Exception as exc:  # never into the packet path
            self.dropped += 1
            logger.warning("recorder %s: write failed: %r", self.path.name, exc)
            return False

    def close(self) -> None:
        """End the file: the thread flushes and writes the trailer. Idempotent, returns
        at once."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def join(self, timeout: float | None = None) -> bool:
        """`close()` and wait (blocking) for the thread; True when it finished."""
        self.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def aclose(self, timeout: float | None = 30.0) -> bool:
        """`close()` and wait for the thread without blocking the event loop."""
        self.close()
        if not self._thread.is_alive():
            return True
        return await asyncio.to_thread(self.join, timeout)

    # ------------------------------------------------------------------ figures

    def frames(self, kind: str) -> int:
        """Frames muxed so far for `kind`."""
        state = self._streams.get(kind)
        return state.frames if state is not None else 0

    @property
    def duration(self) -> float:
        """Seconds from the file's start to the end of its last muxed frame."""
        return max((s.end_ms for s in self._streams.values()), default=0) / 1000

    def summary(self) -> dict[str, Any]:
        """Figures for the manifest (read after `join()`)."""
        return {
            "participantId": self.participant_id,
            "kinds": [k for k in self.kinds if self._streams[k].frames],
            "duration": round(self.duration, 3),
            "videoFrames": self.frames("video"),
            "audioFrames": self.frames("audio"),
            "dropped": self.dropped + sum(s.deltas_dropped for s in self._streams.values()),
            "error": None if self._error is None else repr(self._error),
        }

    # ------------------------------------------------------------------ muxer thread

    def _run(self) -> None:
        container: Any = None
        streams: dict[str, Any] = {}
        pending: list[_Out] = []
        size: tuple[int, int] | None = None
        ended = False  # the close() sentinel was taken
        try:
            while True:
                if self._queue.empty():
                    # wake up a few times a second, not once per frame: a file does not
                    # need low latency, and every wake-up is a GIL hand-over
                    time.sleep(BATCH_SECONDS)
                item = self._queue.get()
                if item is None:
                    ended = True
                    break
                if self._error is not None:
                    continue
                out = self._map(item)
                if out is None:
                    continue
                if container is None:
                    if out.kind == "video" and size is None:
                        size = vp8_dimensions(out.data)
                    pending.append(out)
                    ready = (
                        "video" not in self.kinds
                        or size is not None
                        or out.ms - pending[0].ms >= self._header_wait * 1000
                        or len(pending) >= MAX_PENDING
                    )
                    if not ready:
                        continue
                    container, streams = self._open(size)
                    for p in pending:
                        self._mux(container, streams, p)
                    pending.clear()
                else:
                    self._mux(container, streams, out)
            if container is None and pending:
                container, streams = self._open(size)
                for p in pending:
                    self._mux(container, streams, p)
            if container is not None:
                container.close()
                container = None
        except Exception as exc:
            self._fail(exc)
            # drain until close() so the producer's queue does not grow
            while not ended:
                ended = self._queue.get() is None
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            logger.error("recorder %s failed: %r", self.path.name, exc)

    def _open(self, size: tuple[int, int] | None) -> tuple[Any, dict[str, Any]]:
        container = av.open(str(self.path), mode="w", format="webm")
        streams: dict[str, Any] = {}
        try:
            if "video" in self.kinds:
                width, height = size or FALLBACK_SIZE
                template = _vp8_template()
                try:
                    video = container.add_stream_from_template(template.streams.video[0])
                finally:
                    template.close()
                video.codec_context.width = width
                video.codec_context.height = height
                streams["video"] = video
            if "audio" in self.kinds:
                # the Opus encoder context is only opened for its header (OpusHead)
                audio = container.add_stream("libopus", rate=48000)
                audio.layout = "stereo"
                streams["audio"] = audio
            container.start_encoding()
        except Exception:
            with contextlib.suppress(Exception):
                container.close()
            raise
        return container, streams

    def _mux(self, container: Any, streams: dict[str, Any], out: _Out) -> None:
        packet = av.Packet(out.data)
        packet.pts = out.ms
        packet.dts = out.ms
        packet.time_base = OUT_TIME_BASE
        packet.duration = out.duration
        packet.is_keyframe = out.keyframe
        packet.stream = streams[out.kind]
        container.mux(packet)
        state = self._streams[out.kind]
        state.frames += 1
        self.written += 1

    def _map(self, item: _Item) -> _Out | None:
        """The item's place on the file's timeline (ms), or None when it is dropped."""
        state = self._streams[item.kind]
        first = self.first_arrival if self.first_arrival is not None else item.arrival
        arrival = item.arrival - first
        data = bytes(item.packet)
        video = item.kind == "video"
        keyframe = vp8_is_keyframe(data) if video else True
        seg = state.segment
        # another track (or a restarted one): the decoder needs a keyframe
        switched = seg is None or seg.source != item.source or item.pts < seg.last_pts
        resync = False
        if seg is not None and not switched:
            t = seg.start + _seconds(item.pts - seg.first_pts, item.time_base)
            resync = abs(t - arrival) > RESYNC_SECONDS
        if switched or resync or seg is None:
            start = max(0.0, arrival)
            if state.last_ms >= 0:
                start = max(start, (state.last_ms + 1) / 1000)
            seg = state.segment = _Segment(item.source, item.pts, start, item.pts)
            state.segments += 1
            if video and switched:
                state.need_keyframe = True
        seg.last_pts = item.pts
        if video and state.need_keyframe:
            if not keyframe:
                state.deltas_dropped += 1
                return None
            state.need_keyframe = False
        t = seg.start + _seconds(item.pts - seg.first_pts, item.time_base)
        ms = max(round(t * 1000), state.last_ms + 1)
        duration = round(opus_packet_samples(data) / 48) if item.kind == "audio" else 0
        state.last_ms = ms
        state.end_ms = max(state.end_ms, ms + duration)
        return _Out(item.kind, data, ms, keyframe, duration)


async def record_track(
    recorder: ParticipantRecorder, track: MediaStreamTrack, source: str = ""
) -> int:
    """Consume `track` (a buffered `MediaRelay` subscription to a published track) into
    `recorder` until the track ends or the recorder closes; returns the packets read.
    The caller owns the subscription: it runs this as a task and cancels it (or stops
    the proxy) when the participant unpublishes."""
    kind = track.kind
    source = source or track.id
    count = 0
    while not recorder.closed:
        try:
            packet = await track.recv()
        except MediaStreamError:
            break
        count += 1
        recorder.write(kind, packet, source)
    return count


@dataclass
class _Member:
    participant_id: str
    name: str
    joined: float  # seconds since the recording started
    left: float | None
    recorder: ParticipantRecorder


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="milliseconds")


class Recording:
    """Owns one room's recording: its directory `<dir>/<room>-<id>/`, one
    `ParticipantRecorder` per participant (per join) and the manifest `manifest.json`.

    `start()` creates the directory and writes a first manifest (`endedAt` null), raising
    `RecordingError` when it cannot. Afterwards nothing raises into the caller: a failing
    file or manifest sets `error` (the first one) and the recording goes on for the
    others. `await stop()` (idempotent) closes every file, waits for their threads and
    writes the final manifest, which it returns.
    """

    def __init__(
        self,
        room: str,
        directory: str | os.PathLike[str],
        *,
        recording_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.room = room
        self.id = recording_id or uuid.uuid4().hex[:12]
        self.directory = Path(directory) / f"{safe_name(room, 48)}-{safe_name(self.id)}"
        self.manifest_path = self.directory / "manifest.json"
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_queue = max_queue
        self._members: list[_Member] = []
        self._active: dict[str, _Member] = {}
        self._start: float | None = None
        self.started_at: float | None = None  # wall clock
        self.ended_at: float | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._manifest: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self._start is not None and not self._stopping

    @property
    def error(self) -> BaseException | None:
        """The first error of the recording, its files or its manifest, or None."""
        if self._error is not None:
            return self._error
        for member in self._members:
            if member.recorder.error is not None:
                return member.recorder.error
        return None

    @property
    def files(self) -> list[Path]:
        return [m.recorder.path for m in self._members]

    def start(self) -> None:
        """Create the directory and the first manifest; `RecordingError` when unwritable."""
        if self._start is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._start = self._clock()
            self.started_at = self._wall_clock()
            self._write_manifest(final=False)
        except OSError as exc:
            self._start = None
            raise RecordingError(f"cannot record into {self.directory.name}: {exc}") from exc
        logger.info("recording %s of room %s started", self.id, self.room)

    def add_participant(self, participant_id: str, name: str = "") -> ParticipantRecorder | None:
        """The recorder of a participant (created at its first call after a join); None
        when the recording is not running."""
        if not self.active:
            return None
        member = self._active.get(participant_id)
        if member is not None:
            return member.recorder
        count = sum(1 for m in self._members if m.participant_id == participant_id)
        stem = safe_name(participant_id) + (f"-{count + 1}" if count else "")
        recorder = ParticipantRecorder(
            self.directory / f"{stem}.webm",
            participant_id=participant_id,
            name=name,
            clock=self._clock,
            max_queue=self._max_queue,
        )
        member = _Member(participant_id, name, self._elapsed(), None, recorder)
        self._members.append(member)
        self._active[participant_id] = member
        return recorder

    def remove_participant(self, participant_id: str) -> None:
        """A participant left: close its file (non-blocking)."""
        member = self._active.pop(participant_id, None)
        if member is not None:
            member.left = self._elapsed()
            member.recorder.close()

    def write(self, participant_id: str, kind: str, packet: Any, source: str = "") -> bool:
        """Record one packet of a participant (added on first use). Never raises."""
        member = self._active.get(participant_id)
        recorder = member.recorder if member is not None else None
        if recorder is None:
            recorder = self.add_participant(participant_id)
            if recorder is None:
                return False
        return recorder.write(kind, packet, source)

    def info(self) -> dict[str, Any]:
        """The protocol's `recording` object."""
        return {
            "id": self.id,
            "room": self.room,
            "startedAt": None if self.started_at is None else _iso(self.started_at),
            "files": [p.name for p in self.files],
            "manifest": str(self.manifest_path),
        }

    async def stop(self) -> dict[str, Any]:
        """Close every file, wait for them, write and return the final manifest."""
        if self._manifest is not None:
            return self._manifest
        self._stopping = True
        for pid in list(self._active):
            self.remove_participant(pid)
        for member in self._members:
            if not await member.recorder.aclose():
                logger.warning("recorder %s did not finish in time", member.recorder.path.name)
        self.ended_at = self._wall_clock()
        if self._start is not None:
            try:
                await asyncio.to_thread(self._write_manifest, True)
            except OSError as exc:
                if self._error is None:
                    self._error = exc
                logger.error("recording %s: manifest not written: %r", self.id, exc)
        self._manifest = self.manifest()
        logger.info("recording %s of room %s stopped", self.id, self.room)
        return self._manifest

    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (final after `stop()`)."""
        files = []
        for m in self._members:
            rec = m.recorder
            offset = (
                rec.first_arrival - self._start
                if rec.first_arrival is not None and self._start is not None
                else None
            )
            files.append(
                {
                    "path": rec.path.name,
                    "exists": rec.path.exists(),
                    "offset": None if offset is None else round(offset, 3),
                    **rec.summary(),
                }
            )
        error = self.error
        return {
            "version": 1,
            "id": self.id,
            "room": self.room,
            "startedAt": None if self.started_at is None else _iso(self.started_at),
            "endedAt": None if self.ended_at is None else _iso(self.ended_at),
            "duration": None
            if self.ended_at is None or self.started_at is None
            else round(self.ended_at - self.started_at, 3),
            "timeline": TIMELINE_DOC,
            "participants": [
                {
                    "id": m.participant_id,
                    "name": m.name,
                    "joinedAt": round(m.joined, 3),
                    "leftAt": None if m.left is None else round(m.left, 3),
                    "file": m.recorder.path.name,
                }
                for m in self._members
            ],
            "files": files,
            "error": None if error is None else repr(error),
        }

    def _elapsed(self) -> float:
        return 0.0 if self._start is None else self._clock() - self._start

    def _write_manifest(self, final: bool) -> None:
        data = json.dumps(self.manifest(), indent=2).encode()
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.manifest_path)
