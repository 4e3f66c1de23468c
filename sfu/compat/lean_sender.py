"""A lean RTP send path for ENCODED frames: per frame, not per packet, no await per packet.

`install_lean_sender(sender)` replaces, on one `RTCRtpSender` instance and before
`send()` starts it, the sender's RTP loop (`_run_rtp`). The replacement awaits one
`av.Packet` from the sender's track, packetizes it (VP8 and Opus by a byte-identical fast
path, any other codec through aiortc's `encoder.pack`), builds each RTP packet from a
header template made once per sender (payload type, SSRC, the negotiated `mid` and
`abs-send-time` header extensions exactly as aiortc serializes them; abs-send-time and the
timestamp are patched once per frame), protects it with the DTLS transport's SRTP session
and hands the datagrams synchronously to the selected ICE pair's datagram transport (on
Linux, a frame's datagrams go out in ONE `sendmsg` with UDP GSO when their sizes allow, see
`LeanSender._send_gso`; the standard library suffices, no package offers sendmmsg). The
sender also offers its track a `FrameSink`: a track that takes it (`SubscribedTrack`)
then has the relay's fan-out send each frame synchronously while the sender's task is
idle, so a forwarded frame costs no task switch per subscriber. When
DTLS is not connected or no pair is selected yet it falls back to aiortc's
`RTCDtlsTransport._send_rtp` (the stock, awaited path). Per frame the loop does as little
Python as it can: the selected pair is looked up once (`_Route`) and re-validated by
identity, each packet is built, recorded and protected in one pass, the frame's header
tail is one struct pack, and the sender's counters are written through its `__dict__`.

With `install_lean_sender(sender, temporal_layers=True)` a VP8 frame whose `av.Packet.opaque`
has a temporal layer (`tid`, `sync`: `sfu.layers.FrameLayer`) gets the RFC 7741 payload
descriptor fields T/TID/Y and TL0PICIDX (a running index of the TID 0 frames this loop
sent); other frames, and every frame by default, get aiortc's 4-byte descriptor.

RTCP stays aiortc's: the sender's `_run_rtcp` sends SR/SDES from the counters this loop
keeps up to date, and `_handle_rtcp_packet` handles receiver reports (RTT), REMB, PLI/FIR
(`_send_keyframe`, which `sender.install_sender_keyframe_hook` replaces) and NACK through
aiortc's own `_retransmit` (RTX when negotiated). The retransmission history is replaced
by `RawHistory`: it keeps one record per frame (the header tail and the frame data the
relay shares between subscribers, no copy per packet) and rebuilds the packet asked for,
byte-identical, into an `RtpPacket` on demand, which is all `_retransmit` does with it.

aiortc / aioice private internals relied upon (pinned: aiortc==1.16.0, aioice==0.13.0;
`check_lean_sender_internals()` verifies them):

- `RTCRtpSender.send()` starts `asyncio.ensure_future(self._run_rtp(parameters.codecs[0]))`
  through the instance attribute, after `_register_rtp_sender` and
  `__rtp_header_extensions_map.configure(parameters)` and after setting `__mid`; it is
  replaced per instance (`sender._run_rtp = ...`).
- `RTCRtpSender.stop()` waits for `__rtp_started`, cancels the task and waits for
  `__rtp_exited` (both `asyncio.Event`, set by the loop).
- Sender instance attributes (name-mangled `_RTCRtpSender__`): `started`, `mid`,
  `rtp_header_extensions_map`, `rtp_history` (replaced by a `RawHistory`), `rtp_started`,
  `rtp_exited`, `track` (set to None when the loop ends, as stock does), `transport`
  (what the `transport` property returns; read per frame), and the counters
  `_run_rtcp` / `getStats` read: `packet_count`, `octet_count` (payload bytes),
  `rtp_timestamp`, `ntp_timestamp`; plus `_ssrc` and `_enabled`.
- `RTCRtpSender._retransmit` only calls `self.__rtp_history.get(seq % RTP_HISTORY_SIZE)`,
  compares `.sequence_number` and serializes (or `wrap_rtx`es) the packet it gets.
- `RTCDtlsTransport._state` (`aiortc.rtcdtlstransport.State.CONNECTED`), `._tx_srtp`
  (a `pylibsrtp.Session`; its policy has `allow_repeat_tx`), `._send_rtp(data)` (the
  fallback), `.transport` (the `RTCIceTransport`) and the counters `_RTCDtlsTransport__tx_bytes`
  / `__tx_packets` that its stats report.
- `RTCIceTransport._connection` (the `aioice.Connection`), whose `_nominated[1]` is the
  selected `CandidatePair` for RTP (component 1, as `Connection.send` uses); a pair's
  `.protocol` (`StunProtocol`, whose `send_data(data, addr)` is `self.transport.sendto(data,
  addr)`; a TURN relayed pair has a `TurnTransport` there, with the same synchronous
  `sendto`) and `.remote_addr`. For GSO, the pair's asyncio datagram transport's
  `get_extra_info("socket")` (duplicated with `os.dup`, never a `TurnTransport`) and
  `get_write_buffer_size()` (GSO only when asyncio has nothing buffered, to keep order).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import random
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any, Protocol

import av
from aioice.ice import CandidatePair, Connection, StunProtocol
from aioice.turn import TurnTransport
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket
from aiortc.utils import random32

from sfu.compat.introspect import source_has
from sfu.compat.srtp import fast_protect, fast_protect_parts

logger = logging.getLogger(__name__)

_S = "_RTCRtpSender__"
_D = "_RTCDtlsTransport__"

#: Largest RTP payload aiortc's VP8 packetizer emits (`aiortc.codecs.vpx.PACKET_MAX`).
VP8_PACKET_MAX = 1300
_VP8_DESCRIPTOR = struct.Struct("!BBH")
_VP8_LAYER_DESCRIPTOR = struct.Struct("!BBHBB")
#: the payload bytes of one packet after aiortc's 4-byte descriptor
VP8_CHUNK = VP8_PACKET_MAX - _VP8_DESCRIPTOR.size
vp8_descriptor = _VP8_DESCRIPTOR.pack
_FIRST_WORD = struct.Struct("!BBH")
_U32 = struct.Struct("!L")
_U16 = struct.Struct("=H")

#: Linux UDP generic segmentation offload (`UDP_SEGMENT`, linux/udp.h; Linux >= 4.18): one
#: `sendmsg` carries up to 64 datagrams of one size (the last may be shorter).
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000

#: With `LeanSender.pts_in_clock_rate`, one frame in this many has its time base checked.
TIME_BASE_CHECK = 64

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800


def ntp_now() -> int:
    """The 64-bit NTP time now, in the format of `aiortc.clock.current_ntp_time()` (whole
    microseconds), from one `time.time_ns()` instead of two `datetime` computations."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | ((micros << 32) // 1_000_000)


def rtp_ticks(pts: int, time_base: fractions.Fraction | None, clock_rate: int) -> int:
    """`convert_timebase(pts, time_base, 1 / clock_rate)` without building `Fraction`s
    (integer arithmetic; truncates toward zero like aiortc's)."""
    if time_base is None:
        return pts
    value = pts * time_base.numerator * clock_rate
    den = time_base.denominator
    return value // den if value >= 0 else -(-value // den)


#: A test hook: called with each outgoing (first-transmission) RTP sequence number; True
#: drops that datagram (it is still recorded in the history, so a NACK recovers it).
DropHook = Callable[[int], bool]


class TemporalLayer(Protocol):
    """What the lean sender reads of a frame's temporal layer (`sfu.layers.FrameLayer`)."""

    @property
    def tid(self) -> int: ...

    @property
    def sync(self) -> bool: ...


def vp8_payloads(
    frame: memoryview | bytes,
    picture_id: int,
    layer: TemporalLayer | None = None,
    tl0_pic_idx: int = 0,
) -> list[bytes]:
    """The RTP payloads of one VP8 frame. Without `layer`: byte-identical to aiortc's
    `Vp8Encoder._packetize(frame, picture_id)` (a 4-byte descriptor with a 15-bit picture
    id, then at most `VP8_PACKET_MAX - 4` bytes of the frame). With `layer` (RFC 7741):
    a 6-byte descriptor with I, L and T set: the picture id, `tl0_pic_idx` (0-255) and
    TID (0-3) / Y (`layer.sync`) / KEYIDX 0; at most `VP8_PACKET_MAX - 6` bytes each."""
    if layer is not None:
        return _vp8_layer_payloads(frame, picture_id, layer, tl0_pic_idx)
    chunk = VP8_PACKET_MAX - _VP8_DESCRIPTOR.size
    first = _VP8_DESCRIPTOR.pack(0x90, 0x80, 0x8000 | picture_id)
    rest = _VP8_DESCRIPTOR.pack(0x80, 0x80, 0x8000 | picture_id)
    return [
        (rest if pos else first) + frame[pos : pos + chunk] for pos in range(0, len(frame), chunk)
    ]


#: One frame in the history: (header tail, first sequence number, packet count, the
#: frame's data and its VP8 picture id, or its payloads and -1). Every packet of the frame
#: points at the same record: the history holds no per-packet copy of the media.
FrameRecord = tuple[bytes, int, int, Any, int]


def _vp8_layer_payloads(
    frame: memoryview | bytes, picture_id: int, layer: TemporalLayer, tl0_pic_idx: int
) -> list[bytes]:
    tid = layer.tid
    if not 0 <= tid <= 3 or not 0 <= tl0_pic_idx <= 0xFF:
        raise ValueError(f"VP8 descriptor: tid {tid} not in 0..3 or TL0PICIDX {tl0_pic_idx}")
    chunk = VP8_PACKET_MAX - _VP8_LAYER_DESCRIPTOR.size
    # X | S (first packet only); I | L | T; M + 15-bit picture id; TL0PICIDX; TID | Y | KEYIDX
    tail = (0x8000 | picture_id, tl0_pic_idx, (tid << 6) | (0x20 if layer.sync else 0))
    first = _VP8_LAYER_DESCRIPTOR.pack(0x90, 0xE0, *tail)
    rest = _VP8_LAYER_DESCRIPTOR.pack(0x80, 0xE0, *tail)
    return [
        (rest if pos else first) + frame[pos : pos + chunk] for pos in range(0, len(frame), chunk)
    ]


class RawHistory:
    """The retransmission history, by `seq % RTP_HISTORY_SIZE`: per packet either its
    unprotected RTP bytes or the `FrameRecord` of its frame (what the lean loop stores:
    the shared frame data the relay handed every subscriber, not a 1.3 kB copy per packet
    and subscriber, which kept megabytes of cold memory in the send path).

    Stands in for `RTCRtpSender.__rtp_history` (a dict of `RtpPacket`): aiortc's
    `_retransmit` only calls `.get(key)`, so a packet is rebuilt and parsed only when a
    NACK asks for it (byte-identical to what was sent).
    """

    __slots__ = ("_extensions_map", "first_byte", "payload_type", "raw", "retransmits")

    def __init__(self, extensions_map: HeaderExtensionsMap) -> None:
        self._extensions_map = extensions_map
        self.raw: list[bytes | FrameRecord | None] = [None] * RTP_HISTORY_SIZE
        self.retransmits = 0
        #: the first header byte and payload type of the sender's packets (set by the loop)
        self.first_byte = 0x80
        self.payload_type = 0

    def packet_bytes(self, key: int) -> bytes | None:
        """The unprotected bytes of the latest packet stored under `key`, or None."""
        entry = self.raw[key % RTP_HISTORY_SIZE]
        if entry is None or isinstance(entry, bytes):
            return entry
        tail, first_seq, count, frame, picture_id = entry
        last = (first_seq + count - 1) & 0xFFFF
        seq = (last - ((last - key) % RTP_HISTORY_SIZE)) & 0xFFFF
        index = (seq - first_seq) & 0xFFFF
        payloads = vp8_payloads(frame, picture_id) if picture_id >= 0 else frame
        pt = self.payload_type | (0x80 if index == count - 1 else 0)
        return bytes(_FIRST_WORD.pack(self.first_byte, pt, seq) + tail + payloads[index])

    def packets(self) -> list[bytes]:
        """Every stored packet's unprotected bytes (tests, diagnostics)."""
        out = [self.packet_bytes(key) for key in range(RTP_HISTORY_SIZE)]
        return [p for p in out if p is not None]

    def get(self, key: int, default: RtpPacket | None = None) -> RtpPacket | None:
        """The packet stored under `key` (parsed with the sender's extension map)."""
        data = self.packet_bytes(key)
        if data is None:
            return default
        self.retransmits += 1
        return RtpPacket.parse(data, self._extensions_map)

    def __setitem__(self, key: int, packet: RtpPacket) -> None:
        self.raw[key % RTP_HISTORY_SIZE] = packet.serialize(self._extensions_map)


class _HeaderTemplate:
    """RTP header bytes of one sender, as aiortc's `RtpPacket.serialize` writes them."""

    __slots__ = ("abs_offset", "extension", "first_byte", "payload_type", "ssrc")

    def __init__(
        self, payload_type: int, ssrc: int, mid: str | None, extensions_map: HeaderExtensionsMap
    ) -> None:
        probe = RtpPacket(payload_type=payload_type, ssrc=ssrc)
        probe.extensions.mid = mid
        probe.extensions.abs_send_time = 0
        zeros = probe.serialize(extensions_map)
        probe.extensions.abs_send_time = 0xFFFFFF
        ones = probe.serialize(extensions_map)
        self.first_byte = zeros[0]
        self.payload_type = payload_type
        self.ssrc = _U32.pack(ssrc)
        self.extension = zeros[12:]
        diff = [i for i in range(len(zeros)) if zeros[i] != ones[i]]
        self.abs_offset: int | None = diff[0] - 12 if diff else None

    def tail_packer(self) -> Callable[[int, int], bytes]:
        """`frame_tail` as ONE struct pack per frame: `pack(timestamp, abs_send_time)`."""
        ext = self.extension
        o = self.abs_offset
        if o is None:
            rest = self.ssrc + ext
            pack_ts = _U32.pack
            return lambda timestamp, abs_send_time: pack_ts(timestamp) + rest
        head, tail = self.ssrc + ext[:o], ext[o + 3 :]
        pack = struct.Struct(f"!L{len(head)}sHB{len(tail)}s").pack
        return lambda timestamp, abs_send_time: pack(
            timestamp, head, abs_send_time >> 8, abs_send_time & 0xFF, tail
        )

    def frame_tail(self, timestamp: int, abs_send_time: int) -> bytes:
        """Bytes 4.. of every packet header of one frame (timestamp, SSRC, extensions)."""
        ext = self.extension
        if self.abs_offset is not None:
            o = self.abs_offset
            ext = ext[:o] + abs_send_time.to_bytes(3, "big") + ext[o + 3 :]
        return _U32.pack(timestamp) + self.ssrc + ext


def _never() -> bool:
    return False


class _Route:
    """Where the fast path sends: the selected ICE pair of one DTLS transport, with its
    datagram transport's bound methods. Still valid while the DTLS transport is the
    sender's and connected, the pair is still the nominated one (by identity) and its
    transport is not closing (checked per frame)."""

    __slots__ = (
        "addr",
        "counters",
        "dtls",
        "gso",
        "is_closing",
        "nominated",
        "pair",
        "protect",
        "protect_parts",
        "sendto",
        "srtp",
        "transport",
    )

    def __init__(
        self, dtls: Any, nominated: dict[int, CandidatePair], pair: CandidatePair, transport: Any
    ) -> None:
        self.dtls = dtls
        #: the DTLS transport's SRTP session (checked per frame by identity) and its
        #: `fast_protect`
        self.srtp = dtls._tx_srtp
        self.protect: Callable[[bytes], bytes] = fast_protect(self.srtp)
        self.protect_parts: Callable[[bytes, Any], bytes] = fast_protect_parts(self.srtp)
        #: the DTLS transport's `__dict__` (its tx counters are written per frame)
        self.counters: dict[str, Any] = vars(dtls)
        self.nominated = nominated
        self.pair = pair
        self.transport = transport
        self.addr: tuple[str, int] = pair.remote_addr
        self.sendto: Callable[[bytes, tuple[str, int]], None] = transport.sendto
        self.is_closing: Callable[[], bool] = getattr(transport, "is_closing", None) or _never
        # a TurnTransport wraps each datagram for TURN: never GSO through it
        self.gso = not isinstance(transport, TurnTransport)


class FrameSink:
    """What a lean sender offers its track (`track.set_frame_sink(sink)`, when the track
    has that method) so that a frame can be sent synchronously by whoever has it (the
    relay's fan-out, see `SubscribedTrack`) instead of waking the sender's task: first
    `route()` (None: not now, hand the frame to the task as usual; nothing changed), then
    at once `send(frame, route)`. Only valid while the sender's task waits for its next
    frame (the caller's queue is empty and has a waiter), so frames stay in order. The
    sender sets it when its loop sees the track and sets None when the loop ends or the
    track changes."""

    __slots__ = ("route", "send")

    def __init__(self, route: Callable[[], Any | None], send: Callable[[Any, Any], None]) -> None:
        self.route = route
        self.send = send


def _set_sink(track: Any, sink: FrameSink | None) -> bool:
    """Offer `sink` to `track` (None withdraws it); False when the track takes none."""
    setter = getattr(track, "set_frame_sink", None)
    if setter is None:
        return False
    setter(sink)
    return True


class DatagramPacer(Protocol):
    """What the lean sender needs of a pacer (`sfu.pacer.Pacer`)."""

    engaged: bool

    def submit(self, datagrams: list[bytes], emit: Callable[[list[bytes], int], None]) -> None: ...


class LeanSender:
    """The lean RTP loop of one `RTCRtpSender` (see the module docstring).

    Counters: `frames`, `frames_pushed` (of those, sent through the `FrameSink` inside
    the relay's fan-out, see `SubscribedTrack.set_frame_sink`; `push = False` turns the
    offer off), `packets_lean` (sent straight to the selected pair),
    `packets_stock` (sent through `RTCDtlsTransport._send_rtp`), `packets_dropped` (by
    `drop_hook`), `gso_batches` (frames sent in one system call) and `history.retransmits`
    (NACK look-ups that found a stored packet; aiortc's `_retransmit` then checks the
    sequence number, so a stale slot counts too). Set `gso = False` to send one datagram per
    system call (it turns itself off when the kernel refuses UDP GSO).
    """

    def __init__(self, sender: RTCRtpSender, *, temporal_layers: bool = False) -> None:
        self._sender = sender
        #: write T/TID/Y/TL0PICIDX for VP8 frames whose `opaque` has a temporal layer
        self.temporal_layers = temporal_layers
        s: Any = sender
        self.history = RawHistory(getattr(s, _S + "rtp_header_extensions_map"))
        self.drop_hook: DropHook | None = None
        self.frames = 0
        self.packets_lean = 0
        self.packets_stock = 0
        self.packets_dropped = 0
        self.gso = sys.platform == "linux"
        self.gso_batches = 0
        self._gso_transport: Any = None
        self._gso_socket: socket.socket | None = None
        self._gso_cmsg: dict[int, list[tuple[int, int, bytes]]] = {}
        self._warned_frame = False
        #: offer the sender's track a `FrameSink` (frames pushed without a task switch)
        self.push = True
        #: the track's frames have pts in 1 / clock rate ticks (the SFU's published
        #: tracks): read a frame's `time_base` only every `TIME_BASE_CHECK` frames
        self.pts_in_clock_rate = False
        #: frames sent through the sink, inside the relay's fan-out
        self.frames_pushed = 0
        #: sends this sender's frames at the subscriber's downlink rate while `engaged`
        #: (`sfu.pacer.Pacer`, shared by the subscriber's video senders); None: at once
        self.pacer: DatagramPacer | None = None
        #: per `seq % RTP_HISTORY_SIZE`, written for a frame's first packet and for the
        #: first of each part the pacer sends later: when it went out (wall clock, us);
        #: the other slots of a frame hold older times (`sent_after`)
        self.sent_us: list[int] = [0] * RTP_HISTORY_SIZE

    @property
    def sender(self) -> RTCRtpSender:
        """The aiortc sender this loop drives."""
        return self._sender

    def _selected_pair(self, dtls: Any) -> tuple[Any, tuple[str, int]] | None:
        """The selected pair's datagram transport (synchronous `sendto`) and remote address,
        or None when the stock path must be used (not connected, no pair yet, an unknown
        protocol)."""
        route = self._route(dtls)
        return None if route is None else (route.transport, route.addr)

    def _route(self, dtls: Any) -> _Route | None:
        """The `_Route` to the selected pair, or None when the stock path must be used."""
        if dtls._state is not State.CONNECTED or dtls._tx_srtp is None:
            return None
        connection = getattr(dtls.transport, "_connection", None)
        if connection is None:
            return None
        nominated: dict[int, CandidatePair] = connection._nominated
        pair = nominated.get(1)
        if pair is None:
            return None
        protocol = pair.protocol
        if type(protocol).send_data is not StunProtocol.send_data:
            return None
        transport = protocol.transport
        if transport is None:
            return None
        route = _Route(dtls, nominated, pair, transport)
        if route.is_closing():  # a TurnTransport has no is_closing
            return None
        return route

    def _send_datagrams(
        self, transport: Any, addr: tuple[str, int], datagrams: list[bytes]
    ) -> None:
        """Send one frame's datagrams: one `sendmsg` with UDP GSO when possible, else one
        `transport.sendto` each (asyncio buffers on EAGAIN)."""
        if (
            len(datagrams) > 1
            and self.gso
            and not isinstance(transport, TurnTransport)  # wraps each datagram for TURN
            and self._send_gso(transport, addr, datagrams)
        ):
            return
        sendto = transport.sendto
        for datagram in datagrams:
            sendto(datagram, addr)

    def _emit(self, r: _Route, first_seq: int, datagrams: list[bytes], offset: int) -> None:
        """Send datagrams of one frame on route `r` (the pacer's callback: the frame's
        packets from index `offset` on; its first has sequence number `first_seq`): one GSO
        `sendmsg` when possible, else one `sendto` each; when the part went out recorded."""
        if r.is_closing():
            return
        self.sent_us[((first_seq + offset) & 0xFFFF) % RTP_HISTORY_SIZE] = time.time_ns() // 1000
        if len(datagrams) == 1 or not (
            self.gso and r.gso and self._send_gso(r.transport, r.addr, datagrams)
        ):
            sendto, addr = r.sendto, r.addr
            for datagram in datagrams:
                sendto(datagram, addr)

    def sent_after(self, seq: int) -> float | None:
        """When (wall clock, s) the packet after `seq` went out: a receiver NACKs `seq`
        once a later packet arrived (`sfu.queue_delay`). None when that packet is not in
        the history (not sent yet, or by the stock path)."""
        following = (seq + 1) & 0xFFFF
        entry = self.history.raw[following % RTP_HISTORY_SIZE]
        if not isinstance(entry, tuple):
            return None
        first, count = entry[1], entry[2]
        index = (following - first) & 0xFFFF
        if index >= count:
            return None  # the slot holds another packet
        # the latest part of its frame that went out at or before it: a slot not written
        # for this frame holds an older time
        sent_us = self.sent_us
        us = max(sent_us[((first + i) & 0xFFFF) % RTP_HISTORY_SIZE] for i in range(index + 1))
        return us / 1e6 if us else None

    def _send_gso(self, transport: Any, addr: tuple[str, int], datagrams: list[bytes]) -> bool:
        """Send `datagrams` in one system call (Linux UDP generic segmentation offload: all
        the same size but the last, which may be shorter). False when not possible now."""
        size = len(datagrams[0])
        count = len(datagrams)
        if (
            count > GSO_MAX_SEGMENTS
            or size * count > GSO_MAX_BYTES
            or len(datagrams[-1]) > size
            or (
                count > 2 and (len(datagrams[1]) != size or len(set(map(len, datagrams[2:-1]))) > 1)
            )
            or transport.get_write_buffer_size()  # keep order behind asyncio's buffer
        ):
            return False
        sock = self._gso_socket if self._gso_transport is transport else None
        if sock is None:
            sock = self._gso_socket_for(transport)
            if sock is None:
                return False
        cmsg = self._gso_cmsg.get(size)
        if cmsg is None:
            if len(self._gso_cmsg) >= 64:
                self._gso_cmsg.clear()
            cmsg = self._gso_cmsg[size] = [(socket.SOL_UDP, UDP_SEGMENT, _U16.pack(size))]
        try:
            sock.sendmsg(datagrams, cmsg, 0, addr)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            logger.info("UDP GSO not available (%s): one datagram per system call", exc)
            self.gso = False
            self._close_gso_socket()
            return False
        self.gso_batches += 1
        return True

    def _gso_socket_for(self, transport: Any) -> socket.socket | None:
        """A duplicate of `transport`'s socket for `sendmsg` (asyncio hides the real one)."""
        if self._gso_transport is transport:
            return self._gso_socket
        self._close_gso_socket()
        raw = transport.get_extra_info("socket")
        if raw is None:
            return None
        self._gso_transport = transport
        self._gso_socket = socket.socket(fileno=os.dup(raw.fileno()))
        return self._gso_socket

    def _close_gso_socket(self) -> None:
        if self._gso_socket is not None:
            self._gso_socket.close()
        self._gso_socket = None
        self._gso_transport = None

    async def _send_slow(
        self,
        dtls: Any,
        route: _Route | None,
        packets: list[tuple[int, bytes]],
        drop: DropHook | None,
    ) -> None:
        """Send one frame's packets when the fast path cannot: with a `drop_hook`, or
        through aiortc's `RTCDtlsTransport._send_rtp` when no pair is usable."""
        if route is None:
            for _, packet in packets:
                await dtls._send_rtp(packet)
            self.packets_stock += len(packets)
            return
        protect = dtls._tx_srtp.protect
        datagrams: list[bytes] = []
        for seq, packet in packets:
            if drop is not None and drop(seq):
                self.packets_dropped += 1
                continue
            datagrams.append(protect(packet))
        if datagrams:
            self._send_datagrams(route.transport, route.addr, datagrams)
        setattr(dtls, _D + "tx_bytes", getattr(dtls, _D + "tx_bytes") + sum(map(len, datagrams)))
        setattr(dtls, _D + "tx_packets", getattr(dtls, _D + "tx_packets") + len(datagrams))
        self.packets_lean += len(datagrams)

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        s: Any = self._sender
        getattr(s, _S + "rtp_started").set()
        try:
            await self._loop(s, codec)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            logger.warning("lean RTP sender(%s) failed: %s", s.kind, traceback.format_exc())
        finally:
            self._close_gso_socket()
        track = s.track
        if track is not None:
            track.stop()
            setattr(s, _S + "track", None)
        getattr(s, _S + "rtp_exited").set()

    async def _loop(self, s: Any, codec: RTCRtpCodecParameters) -> None:
        mime = codec.mimeType.lower()
        if codec.payloadType is None:
            raise ValueError(f"codec {codec.mimeType} has no payload type")
        template = _HeaderTemplate(
            codec.payloadType,
            s._ssrc,
            getattr(s, _S + "mid"),
            getattr(s, _S + "rtp_header_extensions_map"),
        )
        first_byte = template.first_byte
        pt = template.payload_type
        marker_pt = 0x80 | pt
        pack_first = _FIRST_WORD.pack
        frame_tail = template.tail_packer()
        history = self.history.raw
        sent_us = self.sent_us
        self.history.first_byte, self.history.payload_type = first_byte, pt
        sequence_number = random_sequence_number()
        timestamp_origin = random32()
        picture_id = random.randint(0, (1 << 15) - 1)
        tl0_pic_idx = random.randint(0, 0xFF)
        layered = self.temporal_layers
        encoder = None
        clock_rate = codec.clockRate
        is_vp8 = mime == "video/vp8"
        is_opus = mime == "audio/opus"
        fast_codec = is_vp8 or is_opus
        time_ns = time.time_ns
        packet_type = av.Packet
        connected = State.CONNECTED
        # the sender's counters and references are plain instance attributes: read and
        # write them through its __dict__ (no property call, no name building per frame)
        sd = vars(s)
        k_track, k_transport = _S + "track", _S + "transport"
        k_ntp, k_rtp = _S + "ntp_timestamp", _S + "rtp_timestamp"
        k_octets, k_packets = _S + "octet_count", _S + "packet_count"
        k_tx_bytes, k_tx_packets = _D + "tx_bytes", _D + "tx_packets"
        # the selected pair, re-validated per frame by identity (see _route)
        route: _Route | None = None
        # the track the push sink is registered with (see `FrameSink`)
        sink_track: Any = None
        # frames whose time base is not read (see `ticks`)
        skip_time_base = 0

        def fast_route() -> _Route | None:
            """The route of the fast path, or None when this frame needs the slow one."""
            nonlocal route
            if not fast_codec or self.drop_hook is not None:
                return None
            dtls: Any = sd[k_transport]
            r = route
            if (
                r is None
                or r.dtls is not dtls
                or dtls._state is not connected
                or r.nominated.get(1) is not r.pair
                or r.srtp is not dtls._tx_srtp
                or r.is_closing()
            ):
                r = route = self._route(dtls)
            return r

        def ticks(data: Any, pts: int) -> int:
            """The frame's RTP timestamp before the random origin: `rtp_ticks()` inlined,
            with the SFU's own time base (1 / clock rate) as is. With `pts_in_clock_rate`
            (the track promises that time base), the next `TIME_BASE_CHECK - 1` frames
            skip reading `time_base` (PyAV builds a `Fraction` per read); a frame that
            breaks the promise turns the promise off."""
            nonlocal skip_time_base
            if skip_time_base > 0:
                skip_time_base -= 1
                return pts
            time_base = data.time_base
            if time_base is None or (
                time_base.numerator == 1 and time_base.denominator == clock_rate
            ):
                if self.pts_in_clock_rate:
                    skip_time_base = TIME_BASE_CHECK - 1
                return pts
            if self.pts_in_clock_rate:
                self.pts_in_clock_rate = False
                logger.warning(
                    "lean RTP sender: a frame in time base %s, not 1/%d: checking every frame",
                    time_base,
                    clock_rate,
                )
            return rtp_ticks(pts, time_base, clock_rate)

        def packetize(data: Any) -> tuple[Any, list[bytes], int, int] | None:
            """(what the history keeps, payloads, its VP8 picture id or -1, RTP timestamp
            before the random origin) of one frame, or None to skip it."""
            nonlocal picture_id, tl0_pic_idx, encoder
            pts = data.pts
            if pts is None:
                return None
            if not fast_codec:
                if encoder is None:
                    encoder = get_encoder(codec)
                payloads, timestamp = encoder.pack(data)
                return payloads, payloads, -1, timestamp
            if is_vp8:
                frame: Any = memoryview(data)
                layer: Any = data.opaque if layered else None
                if layer is not None and isinstance(getattr(layer, "tid", None), int):
                    # a bot's layered descriptor: the history keeps these payloads
                    if layer.tid == 0:
                        tl0_pic_idx = (tl0_pic_idx + 1) & 0xFF
                    frame = payloads = vp8_payloads(frame, picture_id, layer, tl0_pic_idx)
                    frame_picture_id = -1
                else:
                    payloads = vp8_payloads(frame, picture_id)
                    frame_picture_id = picture_id
                picture_id = (picture_id + 1) & 0x7FFF
            else:
                frame = payloads = [bytes(data)]
                frame_picture_id = -1
            # rtp_ticks() inlined, with the SFU's own time base (1 / clock rate) as is
            return frame, payloads, frame_picture_id, ticks(data, pts)

        def finish(octets: int, count: int, ntp: int, timestamp: int) -> None:
            """The counters of one sent frame (`octets` payload bytes in `count` packets)."""
            self.frames += 1
            sd[k_ntp] = ntp
            sd[k_rtp] = timestamp
            sd[k_octets] += octets
            sd[k_packets] += count

        def send_fast(data: Any, r: _Route, pushed: int = 1) -> None:
            """Packetize, record, protect and send one frame on route `r` (synchronous).
            Also `FrameSink.send` (`pushed` 1); the sender's own loop passes 0."""
            nonlocal sequence_number, picture_id
            if not isinstance(data, packet_type):
                self._warn_frame(data)
                return
            protect = r.protect
            datagrams: list[bytes] = []
            append = datagrams.append
            seq = sequence_number
            layer: Any = data.opaque if layered and is_vp8 else None
            if is_vp8 and (layer is None or not isinstance(getattr(layer, "tid", None), int)):
                # the SFU's VP8 case, aiortc's 4-byte descriptor: the RTP header and the
                # descriptor are one small bytes object per packet, the payload a slice of
                # the shared frame; SRTP copies both into its buffer (no payload copy here)
                pts = data.pts
                if pts is None:
                    return
                frame: Any = memoryview(data)
                pid = picture_id
                picture_id = (pid + 1) & 0x7FFF
                size = len(frame)
                if not size:
                    return
                timestamp = (timestamp_origin + ticks(data, pts)) & 0xFFFFFFFF
                # ntp_now() inlined
                now_us = time_ns() // 1000
                seconds, micros = divmod(now_us, 1_000_000)
                ntp = ((seconds + NTP_UNIX_OFFSET) << 32) | ((micros << 32) // 1_000_000)
                tail = frame_tail(timestamp, (ntp >> 14) & 0x00FFFFFF)
                count = -(-size // VP8_CHUNK)
                record = (tail, seq, count, frame, pid)
                sent_us[seq % RTP_HISTORY_SIZE] = now_us
                head = tail + vp8_descriptor(0x90, 0x80, 0x8000 | pid)
                protect_parts = r.protect_parts
                last = count - 1
                for i in range(count):
                    if i == 1:
                        head = tail + vp8_descriptor(0x80, 0x80, 0x8000 | pid)
                    history[seq % RTP_HISTORY_SIZE] = record
                    start = i * VP8_CHUNK
                    append(
                        protect_parts(
                            pack_first(first_byte, marker_pt if i == last else pt, seq) + head,
                            frame[start : start + VP8_CHUNK],
                        )
                    )
                    seq = (seq + 1) & 0xFFFF
                octets = size + _VP8_DESCRIPTOR.size * count
            else:
                packetized = packetize(data)
                if packetized is None or not packetized[1]:
                    return
                frame, payloads, frame_picture_id, timestamp = packetized
                timestamp = (timestamp_origin + timestamp) & 0xFFFFFFFF
                now_us = time_ns() // 1000
                seconds, micros = divmod(now_us, 1_000_000)
                ntp = ((seconds + NTP_UNIX_OFFSET) << 32) | ((micros << 32) // 1_000_000)
                tail = frame_tail(timestamp, (ntp >> 14) & 0x00FFFFFF)
                count = len(payloads)
                record = (tail, seq, count, frame, frame_picture_id)
                sent_us[seq % RTP_HISTORY_SIZE] = now_us
                # build, record and protect each packet in one pass
                for payload in payloads[:-1]:
                    history[seq % RTP_HISTORY_SIZE] = record
                    append(protect(pack_first(first_byte, pt, seq) + tail + payload))
                    seq = (seq + 1) & 0xFFFF
                history[seq % RTP_HISTORY_SIZE] = record
                append(protect(pack_first(first_byte, marker_pt, seq) + tail + payloads[-1]))
                seq = (seq + 1) & 0xFFFF
                octets = sum(map(len, payloads))
            sequence_number = seq
            pacer = self.pacer
            if pacer is not None and pacer.engaged:
                pacer.submit(datagrams, partial(self._emit, r, sequence_number - count))
            elif count == 1 or not (
                self.gso and r.gso and self._send_gso(r.transport, r.addr, datagrams)
            ):
                sendto, addr = r.sendto, r.addr
                for datagram in datagrams:
                    sendto(datagram, addr)
            dd = r.counters
            dd[k_tx_bytes] += sum(map(len, datagrams))
            dd[k_tx_packets] += count
            self.packets_lean += count
            self.frames_pushed += pushed
            finish(octets, count, ntp, timestamp)

        def push_route() -> _Route | None:
            """`FrameSink.route`: the route when a pushed frame can be sent right now."""
            if not s._enabled or sink_track is None or sd[k_track] is not sink_track:
                return None
            return fast_route()

        sink = FrameSink(push_route, send_fast)
        try:
            while True:
                track = sd[k_track]
                if track is not sink_track:
                    _set_sink(sink_track, None)
                    sink_track = track if self.push and _set_sink(track, sink) else None
                if track is None:
                    await asyncio.sleep(0.02)
                    continue
                data = await track.recv()
                if not s._enabled:
                    continue
                r = fast_route()
                if r is not None:
                    send_fast(data, r, 0)
                    continue
                # the slow path: a drop hook, no usable pair, or another codec
                if not isinstance(data, packet_type):
                    self._warn_frame(data)
                    continue
                packetized = packetize(data)
                if packetized is None or not packetized[1]:
                    continue
                frame, payloads, frame_picture_id, timestamp = packetized
                timestamp = (timestamp_origin + timestamp) & 0xFFFFFFFF
                ntp = ntp_now()
                tail = frame_tail(timestamp, (ntp >> 14) & 0x00FFFFFF)
                count = len(payloads)
                record = (tail, sequence_number, count, frame, frame_picture_id)
                sent_us[sequence_number % RTP_HISTORY_SIZE] = time_ns() // 1000
                packets: list[tuple[int, bytes]] = []
                last = count - 1
                for i, payload in enumerate(payloads):
                    packet = (
                        pack_first(first_byte, marker_pt if i == last else pt, sequence_number)
                        + tail
                        + payload
                    )
                    history[sequence_number % RTP_HISTORY_SIZE] = record
                    packets.append((sequence_number, packet))
                    sequence_number = (sequence_number + 1) & 0xFFFF
                dtls = sd[k_transport]
                await self._send_slow(dtls, self._route(dtls), packets, self.drop_hook)
                finish(sum(map(len, payloads)), count, ntp, timestamp)
        finally:
            _set_sink(sink_track, None)

    def _warn_frame(self, data: Any) -> None:
        if not self._warned_frame:
            self._warned_frame = True
            logger.warning("lean RTP sender got %s, not an encoded frame: dropped", data)


def install_lean_sender(sender: RTCRtpSender, *, temporal_layers: bool = False) -> LeanSender:
    """Make `sender` use the lean send path; call before `send()` starts it (i.e. before
    the negotiation that starts the transceiver completes). Raises RuntimeError when the
    sender has already started. `temporal_layers`: write the VP8 temporal-layer fields of
    frames that carry a layer on `opaque` (see the module docstring)."""
    s: Any = sender
    if getattr(s, _S + "started"):
        raise RuntimeError("install_lean_sender: the sender has already started")
    lean = LeanSender(sender, temporal_layers=temporal_layers)
    s._run_rtp = lean._run_rtp
    setattr(s, _S + "rtp_history", lean.history)
    return lean


def _probe_sender() -> RTCRtpSender:
    """An unstarted sender to inspect; its constructor needs an event loop, so make a
    temporary one when called outside a running loop (e.g. a synchronous check)."""
    transport: Any = SimpleNamespace(state="new")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            return RTCRtpSender("video", transport)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return RTCRtpSender("video", transport)


def check_lean_sender_internals() -> list[str]:
    """Return the aiortc/aioice internals the lean sender relies on that are missing or
    changed; empty when all are present."""
    problems: list[str] = []
    for cls, names in (
        (RTCRtpSender, ("send", "stop", "_run_rtp", "_retransmit", "_handle_rtcp_packet")),
        (RTCDtlsTransport, ("_send_rtp",)),
        (Connection, ("send", "sendto")),
        (StunProtocol, ("send_data",)),
        (RtpPacket, ("parse", "serialize")),
    ):
        for name in names:
            if not callable(getattr(cls, name, None)):
                problems.append(f"{cls.__name__}.{name}")
    if not hasattr(State, "CONNECTED"):
        problems.append("aiortc.rtcdtlstransport.State.CONNECTED")
    if problems:
        return problems
    try:
        attrs = vars(_probe_sender())
        for name in (
            "started",
            "mid",
            "rtp_header_extensions_map",
            "rtp_history",
            "rtp_started",
            "rtp_exited",
            "track",
            "transport",
            "packet_count",
            "octet_count",
            "rtp_timestamp",
            "ntp_timestamp",
        ):
            if _S + name not in attrs:
                problems.append(f"RTCRtpSender.{_S}{name}")
        for name in ("_ssrc", "_enabled"):
            if name not in attrs:
                problems.append(f"RTCRtpSender.{name}")
    except Exception as exc:  # a changed constructor is a changed internal
        problems.append(f"constructing RTCRtpSender: {exc!r}")
    problems += source_has(
        RTCRtpSender.send,
        "self.__mid = parameters.muxId",
        "self.__rtp_header_extensions_map.configure(parameters)",
        "asyncio.ensure_future(self._run_rtp(parameters.codecs[0]))",
    )
    problems += source_has(
        RTCRtpSender.stop, "self.__rtp_started.wait()", "self.__rtp_exited.wait()"
    )
    problems += source_has(
        RTCRtpSender._retransmit,
        "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)",
        "packet.sequence_number == sequence_number",
    )
    problems += source_has(
        RTCRtpSender._run_rtcp,
        "self.__ntp_timestamp",
        "self.__rtp_timestamp",
        "self.__packet_count",
        "self.__octet_count",
    )
    problems += source_has(RTCRtpSender._handle_rtcp_packet, "await self._retransmit(seq)")
    problems += source_has(
        RTCDtlsTransport.__init__,
        "self._tx_srtp",
        "self.__tx_bytes = 0",
        "self.__tx_packets = 0",
    )
    problems += source_has(RTCDtlsTransport._setup_srtp, "allow_repeat_tx = True")
    problems += source_has(
        RTCDtlsTransport._send_rtp, "self._state != State.CONNECTED", "self._tx_srtp.protect("
    )
    problems += source_has(Connection.send, "self.sendto(data, 1)")
    problems += source_has(
        Connection.sendto,
        "self._nominated.get(component)",
        "active_pair.protocol.send_data(data, active_pair.remote_addr)",
    )
    problems += source_has(StunProtocol.send_data, "self.transport.sendto(data, addr)")
    problems += source_has(CandidatePair.__init__, "self.protocol = protocol")
    if not isinstance(getattr(CandidatePair, "remote_addr", None), property):
        problems.append("CandidatePair.remote_addr")
    return problems
