"""A lean receive path for the server's publisher-facing receivers (`--receive-path lean`).

`install_lean_receiver(receiver)` replaces, on one `RTCRtpReceiver` instance whose jitter
buffer `sfu.compat.receiver.install_receiver_sink` already replaced by a `FrameAssembler`,
the per-packet handler `_handle_rtp_packet` with `LeanReceiver.handle_rtp`. It feeds
everything aiortc's handler feeds, in the same order, with less Python per packet:

- the receive-side bandwidth estimator the receiver holds (the per-interval one of
  `sfu.compat.remb`, read from the receiver per packet) and the REMB it returns, sent as
  stock sends it;
- the RTCP receiver-report statistics (`aiortc.rtcrtpreceiver.StreamStatistics`, per SSRC,
  read by aiortc's `_run_rtcp`);
- RTX: a retransmission is counted in its own SSRC's statistics, then unwrapped;
- the NACK generator (video): an in-order packet with nothing missing only advances its
  `max_seq` (exactly what `NackGenerator.add` does then, without its per-packet
  `truncate()`); anything else goes through `add()`, and NACKs are sent through the
  receiver's `_send_rtcp_nack` as stock sends them; packets still missing are NACKed
  again (`sfu.compat.nack_retry`: a lost retransmission is asked for again);
- depayloading into `packet._data`: VP8 by skipping the payload descriptor (the same
  checks and `ValueError`s as aiortc's `VpxPayloadDescriptor.parse`, without building a
  descriptor object; a malformed one drops the packet, as stock does), Opus as is, any
  other codec through aiortc's `depayload`;
- the frame assembler (`__jitter_buffer.add`), and a PLI for its flag;
- the receiver's active-source times (`getSynchronizationSources`): refreshed once per
  second per SSRC instead of a `datetime` per packet.

Audio levels need nothing here: `RtpPacket.parse` already parsed the RFC 6464 extension
into `packet.extensions.audio_level`, which the assembler passes on with each frame.
Malformed datagrams are still `sfu.compat.rtp_guard`'s (it parses and routes before this
handler runs, and counts whatever this handler raises).

Counters (`LeanReceiver.stats()`): packets handled, RTX packets received, NACK packets
sent and the lost sequence numbers they requested, payloads that failed to depayload.

aiortc private internals relied upon (pinned: aiortc==1.16.0;
`check_lean_receiver_internals()` verifies them), besides those of `sfu.compat.receiver`:
the receiver instance attributes `_enabled` and name-mangled `__codecs`, `__rtx_ssrc`,
`__remote_streams`, `__nack_generator` (`NackGenerator.max_seq` / `.missing` / `.add`),
`__rtcp_ssrc`, `__jitter_buffer`, `__remote_bitrate_estimator`, `__active_ssrc`; the
methods `_send_rtcp(packet)`, `_send_rtcp_nack(media_ssrc, lost)` and
`_send_rtcp_pli(media_ssrc)`; and that the DTLS transport awaits
`receiver._handle_rtp_packet(packet, arrival_time_ms)` through the instance attribute.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from aiortc import clock
from aiortc.codecs import depayload, is_rtx
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci, unwrap_rtx

from sfu.compat.introspect import source_has
from sfu.compat.nack_retry import NackRetry

_R = "_RTCRtpReceiver__"

#: How often (ms of arrival time) a source's `getSynchronizationSources` time is refreshed.
ACTIVE_SOURCE_REFRESH_MS = 1000
#: SSRCs whose last refresh is remembered (more: the memory starts over).
MAX_TRACKED_SOURCES = 64

# what a payload type's codec is, for the per-packet dispatch: VP8 (descriptor skipped
# here), a codec aiortc depayloads (H264), one whose payload is the data (Opus), RTX
_MEDIA_VP8, _MEDIA_DEPAYLOAD, _MEDIA_OTHER, _RTX = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class LeanReceiverStats:
    """A snapshot of one `LeanReceiver`'s counters."""

    #: RTP packets handled (RTX included), after the `_enabled` check
    packets: int
    #: RTX retransmissions received and unwrapped
    rtx: int
    #: RTCP NACK packets sent to the publisher
    nack_packets: int
    #: lost sequence numbers those NACKs requested (a number NACKed again counts again)
    nacks_sent: int
    #: packets dropped because their payload did not depayload
    malformed: int


def vp8_descriptor_size(payload: bytes) -> int:
    """The length of the VP8 payload descriptor at the start of `payload`: the same checks
    and `ValueError`s as aiortc's `VpxPayloadDescriptor.parse`, without building it."""
    size = len(payload)
    if size < 1:
        raise ValueError("VPX descriptor is too short")
    if not payload[0] & 0x80:
        return 1
    if size < 2:
        raise ValueError("VPX descriptor has truncated extended bits")
    ext = payload[1]
    pos = 2
    if ext & 0x80:  # I: picture id
        if size < pos + 1:
            raise ValueError("VPX descriptor has truncated PictureID")
        if payload[pos] & 0x80:
            if size < pos + 2:
                raise ValueError("VPX descriptor has truncated long PictureID")
            pos += 2
        else:
            pos += 1
    if ext & 0x40:  # L: TL0PICIDX
        if size < pos + 1:
            raise ValueError("VPX descriptor has truncated TL0PICIDX")
        pos += 1
    if ext & 0x30:  # T or K
        if size < pos + 1:
            raise ValueError("VPX descriptor has truncated T/K")
        pos += 1
    return pos


def _media_kind(codec: RTCRtpCodecParameters) -> int:
    """How a media codec's payload becomes `packet._data` (as `aiortc.codecs.depayload`)."""
    name = codec.name
    if name == "VP8":
        return _MEDIA_VP8
    return _MEDIA_DEPAYLOAD if name == "H264" else _MEDIA_OTHER


class LeanReceiver:
    """The lean `_handle_rtp_packet` of one receiver (module docstring). Owns only its
    counters and small caches; the receiver, its statistics, NACK generator, estimator and
    assembler stay the receiver's. Nothing to close: the receiver stops calling it."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self.packets = 0
        self.rtx = 0
        self.nack_packets = 0
        self.nacks_sent = 0
        self.malformed = 0
        self._rd: dict[str, Any] = vars(receiver)
        # payload type -> (codec, what it is); validated by the codec's identity
        self._dispatch: dict[int, tuple[RTCRtpCodecParameters, int]] = {}
        self._active_ms: dict[int, int] = {}
        #: NACKs repeated for packets still missing
        self.nack_retry = NackRetry()

    def stats(self) -> LeanReceiverStats:
        return LeanReceiverStats(
            packets=self.packets,
            rtx=self.rtx,
            nack_packets=self.nack_packets,
            nacks_sent=self.nacks_sent,
            malformed=self.malformed,
        )

    def _classify(self, payload_type: int, codec: RTCRtpCodecParameters) -> int:
        what = _RTX if is_rtx(codec) else _media_kind(codec)
        self._dispatch[payload_type] = (codec, what)
        return what

    async def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Replacement of the receiver's `_handle_rtp_packet` (module docstring)."""
        rd = self._rd
        if not rd["_enabled"]:
            return
        self.packets += 1
        receiver: Any = self.receiver
        ssrc = packet.ssrc

        # the receive-side bandwidth estimator (video), and its REMB
        estimator = rd[_R + "remote_bitrate_estimator"]
        if estimator is not None:
            abs_send_time = packet.extensions.abs_send_time
            if abs_send_time is not None:
                remb = estimator.add(
                    abs_send_time=abs_send_time,
                    arrival_time_ms=arrival_time_ms,
                    payload_size=len(packet.payload) + packet.padding_size,
                    ssrc=ssrc,
                )
                rtcp_ssrc = rd[_R + "rtcp_ssrc"]
                if rtcp_ssrc is not None and remb is not None:
                    await receiver._send_rtcp(
                        RtcpPsfbPacket(
                            fmt=RTCP_PSFB_APP,
                            ssrc=rtcp_ssrc,
                            media_ssrc=0,
                            fci=pack_remb_fci(*remb),
                        )
                    )

        # active sources, refreshed once per second per SSRC
        last = self._active_ms.get(ssrc)
        if last is None or arrival_time_ms - last >= ACTIVE_SOURCE_REFRESH_MS:
            if last is None and len(self._active_ms) >= MAX_TRACKED_SOURCES:
                self._active_ms.clear()
            self._active_ms[ssrc] = arrival_time_ms
            active: dict[int, datetime.datetime] = rd[_R + "active_ssrc"]
            active[ssrc] = clock.current_datetime()

        codecs: dict[int, RTCRtpCodecParameters] = rd[_R + "codecs"]
        payload_type = packet.payload_type
        codec = codecs.get(payload_type)
        if codec is None:
            return
        entry = self._dispatch.get(payload_type)
        what = entry[1] if entry is not None and entry[0] is codec else None
        if what is None:
            what = self._classify(payload_type, codec)

        # RTCP receiver-report statistics
        streams: dict[int, StreamStatistics] = rd[_R + "remote_streams"]
        statistics = streams.get(ssrc)
        if statistics is None:
            statistics = streams[ssrc] = StreamStatistics(codec.clockRate)
        statistics.add(packet)

        # unwrap a retransmission
        if what == _RTX:
            original_ssrc = rd[_R + "rtx_ssrc"].get(ssrc)
            if original_ssrc is None:
                return
            apt = codec.parameters.get("apt")
            if len(packet.payload) < 2 or not isinstance(apt, int) or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            self.rtx += 1
            codec = codecs[apt]
            what = _media_kind(codec)

        # NACKs for missing packets (video)
        nack: NackGenerator | None = rd[_R + "nack_generator"]
        if nack is not None:
            max_seq = nack.max_seq
            if (
                max_seq is not None
                and not nack.missing
                and packet.sequence_number == (max_seq + 1) & 0xFFFF
            ):
                nack.max_seq = packet.sequence_number  # in order, nothing missing
            elif lost := self.nack_retry.lost(nack, packet, arrival_time_ms):
                self.nack_packets += 1
                self.nacks_sent += len(lost)
                await receiver._send_rtcp_nack(packet.ssrc, lost)

        # depayload
        payload = packet.payload
        if not payload:
            packet._data = b""  # type: ignore[attr-defined]
        elif what == _MEDIA_VP8:
            try:
                packet._data = payload[vp8_descriptor_size(payload) :]  # type: ignore[attr-defined]
            except ValueError:
                self.malformed += 1
                return
        elif what == _MEDIA_DEPAYLOAD:
            try:
                packet._data = depayload(codec, payload)  # type: ignore[attr-defined]
            except ValueError:
                self.malformed += 1
                return
        else:
            packet._data = payload  # type: ignore[attr-defined]

        # the frame assembler, and a PLI when it asks for one
        pli_flag, _ = rd[_R + "jitter_buffer"].add(packet)
        if pli_flag:
            await receiver._send_rtcp_pli(packet.ssrc)


def install_lean_receiver(receiver: RTCRtpReceiver) -> LeanReceiver:
    """Make `receiver` use the lean `_handle_rtp_packet` (module docstring). Call after
    `install_receiver_sink` replaced its jitter buffer and before the receiver starts.
    Raises RuntimeError when it already started."""
    if getattr(receiver, _R + "started", False):
        raise RuntimeError("install_lean_receiver: the receiver already started")
    lean = LeanReceiver(receiver)
    r: Any = receiver
    r._handle_rtp_packet = lean.handle_rtp
    return lean


def check_lean_receiver_internals(probe: RTCRtpReceiver) -> list[str]:
    """The internals the lean receiver relies on that are missing or changed (`probe`: a
    fresh video receiver); empty when all are present."""
    problems: list[str] = []
    attrs = vars(probe)
    for name in (
        "codecs",
        "rtx_ssrc",
        "remote_streams",
        "nack_generator",
        "rtcp_ssrc",
        "jitter_buffer",
        "remote_bitrate_estimator",
        "active_ssrc",
        "started",
    ):
        if _R + name not in attrs:
            problems.append(f"RTCRtpReceiver.{_R}{name}")
    if "_enabled" not in attrs:
        problems.append("RTCRtpReceiver._enabled")
    nack = attrs.get(_R + "nack_generator")
    if not isinstance(nack, NackGenerator) or not isinstance(getattr(nack, "missing", None), set):
        problems.append("NackGenerator.missing")
    elif not hasattr(nack, "max_seq"):
        problems.append("NackGenerator.max_seq")
    if not isinstance(attrs.get(_R + "active_ssrc"), dict):
        problems.append(f"RTCRtpReceiver.{_R}active_ssrc (a dict)")
    for name in ("_send_rtcp", "_send_rtcp_nack", "_send_rtcp_pli", "_handle_rtp_packet"):
        if not callable(getattr(RTCRtpReceiver, name, None)):
            problems.append(f"RTCRtpReceiver.{name}")
    if not callable(getattr(StreamStatistics, "add", None)):
        problems.append("StreamStatistics.add")
    problems += source_has(
        RTCRtpReceiver._handle_rtp_packet,
        "if not self._enabled:",
        "self.__remote_bitrate_estimator.add(",
        "payload_size=len(packet.payload) + packet.padding_size",
        "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
        "codec = self.__codecs.get(packet.payload_type)",
        "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
        "self.__remote_streams[packet.ssrc].add(packet)",
        "original_ssrc = self.__rtx_ssrc.get(packet.ssrc)",
        "packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)",
        "self.__nack_generator.add(packet)",
        "sorted(self.__nack_generator.missing)",
        "packet._data = depayload(codec, packet.payload)",
        "self.__jitter_buffer.add(packet)",
        "await self._send_rtcp_pli(packet.ssrc)",
    )
    problems += source_has(
        NackGenerator.add,
        "self.max_seq = packet.sequence_number",
        "self.missing.discard(packet.sequence_number)",
        "self.truncate()",
    )
    problems += source_has(NackGenerator.truncate, "for seq in list(self.missing):")
    problems += source_has(
        depayload,
        'codec.name == "VP8"',
        "vp8_depayload(payload)",
        'codec.name == "H264"',
        "return payload",
    )
    problems += source_has(
        VpxPayloadDescriptor.parse,
        "extended = octet >> 7",
        "if ext_I:",
        "if ext_L:",
        "if ext_T or ext_K:",
        "return obj, data[pos:]",
    )
    problems += source_has(
        RTCDtlsTransport._handle_rtp_data,
        "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)",
    )
    return problems
