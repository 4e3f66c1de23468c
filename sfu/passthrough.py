"""Encoded-frame passthrough: the ONE module that touches aiortc private internals.

Stock aiortc decodes every received frame in a per-receiver decoder thread and re-encodes
it once per sender. An SFU only needs to re-packetize: this module taps complete encoded
frames out of an `RTCRtpReceiver` (no decoder thread ever starts), lets a sender's PLI/FIR
reach the SFU instead of a non-existent encoder, and bounds `MediaRelay`'s per-consumer
queues. Everything is per instance: no module global of aiortc is patched.

aiortc private internals relied upon (pinned: aiortc==1.16.0; `check_internals()` verifies
them and the server refuses to start when any is missing):

- `RTCRtpReceiver._handle_rtp_packet` depayloads into `packet._data` and calls
  `self.__jitter_buffer.add(packet) -> (pli_flag, frame_or_None)`; it sends a PLI for
  `packet.ssrc` when the flag is set and queues a frame for decoding only when the frame is
  not None AND `self.__decoder_thread` is set.
- Receiver instance attributes (name-mangled): `_RTCRtpReceiver__jitter_buffer`,
  `__codecs`, `__rtx_ssrc`, `__started`, `__transport`, `__rtcp_task`, `__decoder_thread`;
  and `_track` (the `RemoteStreamTrack`, whose `_queue` gets None to signal its end).
- `RTCRtpReceiver.receive(parameters)`: what it does besides starting the decoder thread
  (record codecs and RTX SSRCs, `transport._register_rtp_receiver(self, parameters)`,
  start `self._run_rtcp()`), re-done by `_receive_without_decoder`.
- `RTCRtpReceiver._RTCRtpReceiver__stop_decoder()`: called on `stop()`, on disconnect and on
  RTCP BYE; replaced per instance to learn that the publisher's stream ended.
- `RTCRtpReceiver._send_rtcp_pli(media_ssrc)` (coroutine): upstream keyframe request.
- `RTCRtpSender._handle_rtcp_packet` calls `self._send_keyframe()` on PLI/FIR; replaced per
  instance. `RTCRtpSender._next_encoded_frame` passes anything that is not an `av.Frame`
  to `encoder.pack(packet)` (re-packetize only), which reads `bytes(packet)`, `packet.pts`
  and `packet.time_base`.
- `aiortc.contrib.media.RelayStreamTrack._queue` / `._buffered`: `MediaRelay` feeds a
  buffered proxy with `proxy._queue.put_nowait(item)`, and None marks the end; an
  unbuffered proxy gets `_frame` and `_new_frame_event` instead (`end_relay_proxy`).
- `RTCRtpReceiver.__codecs` again, read-only, for the negotiated codec in stats.
- `RTCRtpTransceiver._codecs` (narrowed by `pin_negotiated_codecs`: aiortc negotiates the
  first answer's codecs before the `track` event), `_set_mid`, `_set_mline_index`,
  `_offerDirection`, `_bundled` (`park_transceivers`, for a client's glare handling: aiortc
  has no rollback) and the module function `aiortc.rtcpeerconnection.
  add_transport_description` (a client builds an offer without applying it), and
  `RTCIceTransport._role_set` / `._connection.ice_controlling` (`claim_ice_controlling`).
- `RTCRtpTransceiver._codecs` / `._headerExtensions`, which `RTCPeerConnection.createOffer`
  resets to aiortc's defaults (`create_offer_keeping_negotiated` restores them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiortc
from aiortc.contrib.media import MediaRelay, RelayStreamTrack
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.rtcpeerconnection import add_transport_description as _add_transport_description
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtcsessiondescription import RTCSessionDescription
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"

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

_R = "_RTCRtpReceiver__"


@dataclass(slots=True)
class EncodedFrame:
    """One complete encoded frame: depayloaded codec data and its 32-bit RTP timestamp."""

    data: bytes
    timestamp: int
    keyframe: bool
    ssrc: int


FrameSink = Callable[[EncodedFrame], None]


def _ignore_frame(frame: EncodedFrame) -> None:
    pass


class FrameAssembler:
    """Replaces a receiver's `JitterBuffer`: assembles depayloaded RTP packets into encoded
    frames and hands each to `on_frame` as soon as it is complete, strictly in order.

    `add()` always returns `(pli_flag, None)` so the stock decode path never runs.

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
    ) -> None:
        self.kind = kind
        self.on_frame = on_frame
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

    @property
    def capacity(self) -> int:
        """Like `JitterBuffer.capacity` (not used by aiortc 1.16; kept for symmetry)."""
        return self._max_packets

    @property
    def pending_packets(self) -> int:
        return len(self._packets)

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
                self._emit(data, packet.timestamp, True)
            return False, None
        return self._add_video(packet, ext), None

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
            self._emit(data, ts, keyframe)

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

    def _emit(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        self.frames += 1
        self.bytes += len(data)
        if keyframe:
            self.keyframes += 1
        assert self.ssrc is not None
        self.on_frame(EncodedFrame(data, timestamp, keyframe, self.ssrc))


def _is_start(packet: RtpPacket) -> bool:
    payload = packet.payload
    return bool(payload) and (payload[0] & _VP8_S_BIT) != 0 and (payload[0] & _VP8_PID_MASK) == 0


class ReceiverHook:
    """What `install_receiver_sink` installed on one receiver: owns its `FrameAssembler`
    and the PLI tasks it scheduled. `close()` (idempotent) stops frame delivery and cancels
    pending PLI tasks; the receiver itself is owned by its peer connection."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, assembler: FrameAssembler) -> None:
        self.receiver = receiver
        self.kind = kind
        self.assembler = assembler
        self.on_end: Callable[[], None] | None = None
        self.ended = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def ssrc(self) -> int | None:
        return self.assembler.ssrc

    @property
    def packets(self) -> int:
        return self.assembler.packets

    @property
    def frames(self) -> int:
        return self.assembler.frames

    @property
    def keyframes(self) -> int:
        return self.assembler.keyframes

    @property
    def bytes(self) -> int:
        return self.assembler.bytes

    def request_keyframe(self) -> bool:
        """Schedule an RTCP PLI for the last seen media SSRC (fire and forget: the task is
        kept until done). Return False when no SSRC is known yet or the hook is closed."""
        ssrc = self.assembler.ssrc
        if ssrc is None or self._closed:
            return False
        coro: Coroutine[Any, Any, None] = self.receiver._send_rtcp_pli(ssrc)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("PLI failed: %r", task.exception())

    def _stream_ended(self) -> None:
        """Replacement of the receiver's `__stop_decoder`: end its track, notify once."""
        if self.ended:
            return
        self.ended = True
        track = getattr(self.receiver, "_track", None)
        queue = getattr(track, "_queue", None)
        if isinstance(queue, asyncio.Queue):
            queue.put_nowait(None)
        callback = self.on_end
        if callback is not None and not self._closed:
            callback()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.assembler.on_frame = _ignore_frame
        self.on_end = None
        for task in list(self._tasks):
            task.cancel()


def install_receiver_sink(
    receiver: RTCRtpReceiver,
    kind: str,
    on_frame: FrameSink,
    on_end: Callable[[], None] | None = None,
) -> ReceiverHook:
    """Make `receiver` hand complete encoded frames to `on_frame` and never decode.

    Call right after the receiver is created (the peer connection's "track" event), before
    `receiver.receive()` runs. `on_end` is called once when the stream ends (receiver
    stopped, transport disconnected or RTCP BYE).
    """
    if getattr(receiver, _R + "started", False):
        raise RuntimeError("install_receiver_sink: the receiver already started")
    assembler = FrameAssembler(kind, on_frame)
    hook = ReceiverHook(receiver, kind, assembler)
    hook.on_end = on_end
    setattr(receiver, _R + "jitter_buffer", assembler)

    async def receive(parameters: Any) -> None:
        await _receive_without_decoder(receiver, parameters)

    receiver.receive = receive  # type: ignore[method-assign]
    setattr(receiver, _R + "stop_decoder", hook._stream_ended)
    return hook


async def _receive_without_decoder(receiver: RTCRtpReceiver, parameters: Any) -> None:
    """Stock `RTCRtpReceiver.receive` minus the decoder thread."""
    if getattr(receiver, _R + "started"):
        return
    codecs = getattr(receiver, _R + "codecs")
    for codec in parameters.codecs:
        codecs[codec.payloadType] = codec
    rtx_ssrc = getattr(receiver, _R + "rtx_ssrc")
    for encoding in parameters.encodings:
        if encoding.rtx:
            rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
    getattr(receiver, _R + "transport")._register_rtp_receiver(receiver, parameters)
    setattr(receiver, _R + "rtcp_task", asyncio.ensure_future(receiver._run_rtcp()))
    setattr(receiver, _R + "started", True)


def install_sender_keyframe_hook(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route the sender's incoming PLI/FIR to `callback` (replaces `_send_keyframe` on this
    instance only; installing again replaces the callback)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def install_sender_nack_counter(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` once per packet a subscriber NACKs (wraps `_retransmit` on this
    instance only; installing twice wraps twice, so install once per sender)."""
    original = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        callback()
        await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


class _DropOldestQueue(asyncio.Queue[Any]):
    """A bounded queue whose `put_nowait` drops the oldest item instead of raising.

    None (MediaRelay's end marker) is never dropped: once queued, later items are ignored.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._on_drop = on_drop
        self._end_queued = False
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        if self._end_queued:
            return
        if item is None:
            self._end_queued = True
        if self.full():
            self.get_nowait()
            self.dropped += 1
            self._on_drop()
        super().put_nowait(item)


def bound_relay_proxy(proxy: Any, maxsize: int, on_drop: Callable[[], None]) -> None:
    """Replace a buffered `RelayStreamTrack`'s unbounded queue with one of `maxsize` items
    that drops the oldest on overflow and calls `on_drop()` for each drop."""
    if not isinstance(proxy, RelayStreamTrack) or not proxy._buffered:
        raise ValueError("bound_relay_proxy needs a buffered MediaRelay proxy")
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1")
    old = proxy._queue
    queue = _DropOldestQueue(maxsize, on_drop)
    while old is not None and not old.empty():
        queue.put_nowait(old.get_nowait())
    proxy._queue = queue


def end_relay_proxy(proxy: Any) -> None:
    """Wake a `recv()` pending on a relay proxy so it raises `MediaStreamError` (stock
    `RelayStreamTrack.stop()` leaves it blocked). Safe to call on anything, and repeatedly."""
    if not isinstance(proxy, RelayStreamTrack):
        return
    if proxy._buffered:
        queue = proxy._queue
        if queue is not None:
            queue.put_nowait(None)
    else:
        proxy._frame = None
        event = proxy._new_frame_event
        if event is not None:
            event.set()


def _source_has(obj: Any, *needles: str) -> list[str]:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return [f"{obj.__qualname__} (source unavailable)"]
    return [f"{obj.__qualname__}: {n!r}" for n in needles if n not in source]


def check_internals() -> list[str]:
    """Return the names of missing or changed aiortc internals; empty when all are present."""
    problems: list[str] = []
    version = getattr(aiortc, "__version__", None)
    if version != AIORTC_VERSION:
        problems.append(f"aiortc.__version__ == {AIORTC_VERSION!r} (found {version!r})")
    for cls, names in (
        (
            RTCRtpReceiver,
            ("receive", "_handle_rtp_packet", "_run_rtcp", "_send_rtcp_pli", _R + "stop_decoder"),
        ),
        (
            RTCRtpSender,
            ("_send_keyframe", "_handle_rtcp_packet", "_next_encoded_frame", "_retransmit"),
        ),
        (MediaRelay, ("subscribe", "_MediaRelay__run_track")),
        (RTCRtpTransceiver, ("_set_mid", "_set_mline_index", "_get_mline_index")),
    ):
        for name in names:
            if not callable(getattr(cls, name, None)):
                problems.append(f"{cls.__name__}.{name}")
    if problems:
        return problems
    try:
        receiver = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
        attrs = vars(receiver)
        for name in (
            "jitter_buffer",
            "codecs",
            "rtx_ssrc",
            "started",
            "transport",
            "rtcp_task",
            "decoder_thread",
        ):
            if _R + name not in attrs:
                problems.append(f"RTCRtpReceiver.{_R}{name}")
        if "_track" not in attrs:
            problems.append("RTCRtpReceiver._track")
        proxy = RelayStreamTrack(MediaRelay(), AudioStreamTrack(), buffered=True)
        if not isinstance(getattr(proxy, "_queue", None), asyncio.Queue):
            problems.append("RelayStreamTrack._queue")
        if getattr(proxy, "_buffered", None) is not True:
            problems.append("RelayStreamTrack._buffered")
        proxy = RelayStreamTrack(MediaRelay(), AudioStreamTrack(), buffered=False)
        if not isinstance(getattr(proxy, "_new_frame_event", None), asyncio.Event):
            problems.append("RelayStreamTrack._new_frame_event")
        if not hasattr(proxy, "_frame"):
            problems.append("RelayStreamTrack._frame")
    except Exception as exc:  # a changed constructor is a changed internal
        problems.append(f"constructing RTCRtpReceiver/RelayStreamTrack: {exc!r}")
    problems += _source_has(
        RTCRtpReceiver._handle_rtp_packet,
        "packet._data =",
        "self.__jitter_buffer.add(packet)",
        "await self._send_rtcp_pli(packet.ssrc)",
        "encoded_frame is not None and self.__decoder_thread",
    )
    problems += _source_has(
        RTCRtpReceiver.receive,
        "self.__codecs[codec.payloadType] = codec",
        "self.__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc",
        "self.__transport._register_rtp_receiver(self, parameters)",
        "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())",
        "self.__started = True",
    )
    problems += _source_has(RTCRtpReceiver._handle_rtcp_packet, "self.__stop_decoder()")
    problems += _source_has(RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()")
    problems += _source_has(RTCRtpSender._next_encoded_frame, "self.__encoder.pack(data)")
    problems += _source_has(
        MediaRelay._MediaRelay__run_track,  # type: ignore[attr-defined]
        "proxy._queue.put_nowait(frame)",
    )
    return problems


def receiver_codec(receiver: RTCRtpReceiver) -> str | None:
    """The mime type the receiver negotiated (first codec), for stats; None before."""
    codecs = getattr(receiver, _R + "codecs", None) or {}
    for codec in codecs.values():
        return str(codec.mimeType)
    return None


def pin_negotiated_codecs(transceiver: Any, mime_types: tuple[str, ...]) -> bool:
    """Restrict what `setRemoteDescription` already negotiated on a new transceiver
    (`RTCRtpTransceiver._codecs`, which `createAnswer` uses) to `mime_types` plus the RTX
    entries pointing at them. aiortc negotiates before the `track` event, so
    `setCodecPreferences` there is too late for the first answer. Return False when no
    wanted codec was negotiated (the offer cannot be served without transcoding)."""
    codecs = list(getattr(transceiver, "_codecs", []) or [])
    kept = [c for c in codecs if c.mimeType.lower() in mime_types and not _is_rtx(c)]
    if not kept:
        return False
    payload_types = {c.payloadType for c in kept}
    kept += [
        c
        for c in codecs
        if _is_rtx(c) and "video/rtx" in mime_types and c.parameters.get("apt") in payload_types
    ]
    transceiver._codecs = kept
    return True


def _is_rtx(codec: Any) -> bool:
    return str(codec.mimeType).lower().endswith("/rtx")


# ---------------------------------------------------------------- negotiation (clients)


@contextlib.contextmanager
def park_transceivers(
    pc: RTCPeerConnection, transceivers: list[RTCRtpTransceiver]
) -> Iterator[None]:
    """Keep our not-yet-negotiated transceivers out of a remote offer being applied.

    aiortc has no rollback and matches a remote offer's new m-line to the first transceiver
    of its kind without a mid, so a pending send-only transceiver would be taken for the
    server's receive m-line; and `setLocalDescription(answer)` fails on a transceiver that
    was in no offer (`_offerDirection` None). While parked, each gets a placeholder mid (no
    real mid starts with "~"), no m-line index (createOffer gave it one for an offer that
    was refused) and an "inactive" offer direction; afterwards the mid is None again, so
    the next `createOffer` includes it as new.

    With max-bundle the first transceiver of a peer connection creates the one transport
    and aiortc assumes it becomes the BUNDLE's first mid. When that transceiver is ours and
    parked, the server's m-lines take the first mids on the same transport; a later answer
    would then "discard" our transceiver's transport as a bundled-away one, which closes
    the shared transport. So a parked transceiver whose transport is already used by a
    negotiated transceiver is marked bundled. aiortc 1.16 private internals used:
    `RTCRtpTransceiver._set_mid`, `._set_mline_index`, `._offerDirection`, `._bundled`.
    """
    private: list[Any] = list(transceivers)
    for i, transceiver in enumerate(private):
        transceiver._set_mid(f"~parked{i}")
        transceiver._set_mline_index(None)
        transceiver._offerDirection = "inactive"
    try:
        yield
    finally:
        for transceiver in private:
            transceiver._set_mid(None)
            transceiver._offerDirection = None
        negotiated = [t for t in pc.getTransceivers() if t.mid is not None]
        for transceiver in private:
            transport = transceiver.receiver.transport
            if any(t.receiver.transport is transport for t in negotiated):
                transceiver._bundled = True


def add_transport_description(media: Any, transport: Any) -> None:
    """Add ICE/DTLS attributes and candidates to an m-line, as `setLocalDescription` does
    (`aiortc.rtcpeerconnection.add_transport_description`, a module function outside
    aiortc's public API), so a client can send an offer without changing its state."""
    _add_transport_description(media, transport)


def claim_ice_controlling(pc: RTCPeerConnection) -> list[Any]:
    """Make the ICE transports whose role is not yet set controlling, as
    `setLocalDescription(offer)` would (`RTCIceTransport._role_set`,
    `._connection.ice_controlling`). For a client that sends its offer before applying
    it. Returns the transports changed, for `release_ice_role`."""
    changed: list[Any] = []
    for transceiver in pc.getTransceivers():
        transport: Any = transceiver.receiver.transport.transport
        if not transport._role_set and transport not in changed:
            transport._connection.ice_controlling = True
            transport._role_set = True
            changed.append(transport)
    return changed


def release_ice_role(transports: list[Any]) -> None:
    """Undo `claim_ice_controlling` (our offer was refused: we may answer instead)."""
    for transport in transports:
        transport._role_set = False
        transport._connection.ice_controlling = False


async def create_offer_keeping_negotiated(pc: RTCPeerConnection) -> RTCSessionDescription:
    """`pc.createOffer()` that keeps what earlier negotiations settled, bundle-wide.

    aiortc's `createOffer` resets every transceiver's `_codecs` and `_headerExtensions` to
    its fixed defaults, including m-lines the remote peer offered first with its own
    payload types and extension ids. Chrome refuses such a re-offer ("RTP extension ID
    reassignment not supported"), and an `RTCRtpReceiver` reads its codecs once, so a
    publisher moved to new payload types goes silent. And in one BUNDLE group an id or a
    payload type must mean the same thing on every m-line. So: negotiated m-lines keep
    their values; new ones reuse the ids/payload types the bundle already uses for the
    same extension/codec, and take free ones otherwise."""
    transceivers = pc.getTransceivers()
    saved = {
        t.mid: (list(t._codecs), list(t._headerExtensions))
        for t in transceivers
        if t.mid is not None and t.currentDirection is not None and t._codecs
    }
    offer = await pc.createOffer()
    if not saved:
        return offer
    ext_ids: dict[str, int] = {}
    pts: dict[tuple[Any, ...], int] = {}
    for codecs, extensions in saved.values():
        for ext in extensions:
            ext_ids.setdefault(ext.uri, ext.id)
        by_pt = {c.payloadType: c for c in codecs}
        for codec in codecs:
            pts.setdefault(_codec_key(codec, by_pt), codec.payloadType or 0)
    # new transceivers get their mid only from setLocalDescription; createOffer did give
    # every transceiver its m-line index
    by_index = {t._get_mline_index(): t for t in transceivers}
    description = SessionDescription.parse(offer.sdp)
    for index, media in enumerate(description.media):
        transceiver = by_index.get(index)
        if transceiver is None or media.kind != transceiver.kind:
            continue
        if media.rtp.muxId in saved:
            codecs, extensions = saved[media.rtp.muxId]
        else:
            codecs = _align_codecs(transceiver._codecs, pts)
            extensions = _align_extensions(transceiver._headerExtensions, ext_ids)
        transceiver._codecs = codecs
        transceiver._headerExtensions = extensions
        media.rtp.codecs = codecs
        media.rtp.headerExtensions = extensions
        media.fmt = [c.payloadType for c in codecs]
    return RTCSessionDescription(sdp=str(description), type="offer")


def _codec_key(codec: Any, by_pt: dict[Any, Any]) -> tuple[Any, ...]:
    """What makes two codec entries the same codec (RTX: the same codec it repairs)."""
    params = {k: v for k, v in codec.parameters.items() if k != "apt"}
    key: tuple[Any, ...] = (
        codec.mimeType.lower(),
        codec.clockRate,
        codec.channels,
        tuple(sorted(params.items())),
    )
    if "apt" in codec.parameters and codec.parameters["apt"] in by_pt:
        key += _codec_key(by_pt[codec.parameters["apt"]], by_pt)
    return key


def _align_codecs(codecs: list[Any], pts: dict[tuple[Any, ...], int]) -> list[Any]:
    """Copies of `codecs` with the bundle's payload types (new ones for unknown codecs);
    records what it assigns in `pts`."""
    by_pt = {c.payloadType: c for c in codecs}
    mapping: dict[Any, int] = {}
    for codec in sorted(codecs, key=lambda c: "apt" in c.parameters):  # RTX last
        key = _codec_key(codec, by_pt)
        if key not in pts:
            free = next(pt for pt in range(96, 128) if pt not in pts.values())
            pts[key] = free
        mapping[codec.payloadType] = pts[key]
    out = []
    for codec in codecs:
        parameters = dict(codec.parameters)
        if "apt" in parameters and parameters["apt"] in mapping:
            parameters["apt"] = mapping[parameters["apt"]]
        out.append(
            dataclasses.replace(
                codec,
                payloadType=mapping[codec.payloadType],
                parameters=parameters,
                rtcpFeedback=list(codec.rtcpFeedback),
            )
        )
    return out


def _align_extensions(extensions: list[Any], ext_ids: dict[str, int]) -> list[Any]:
    """Copies of `extensions` with the bundle's ids (free ones, 1-14, for new URIs)."""
    out = []
    for ext in extensions:
        if ext.uri not in ext_ids:
            ext_ids[ext.uri] = next(i for i in range(1, 15) if i not in ext_ids.values())
        out.append(dataclasses.replace(ext, id=ext_ids[ext.uri]))
    return out
