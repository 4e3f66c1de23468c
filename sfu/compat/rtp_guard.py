"""Receive-path guard: a malformed datagram is counted and dropped; it never ends the DTLS
transport's receive loop (issue #12).

Where aiortc 1.16.0 dies on malformed input: `RTCDtlsTransport.__run` loops
`await self._recv_next()` and treats ANY exception but `ConnectionError` as fatal (logs it,
re-raises, state "closed"): every receiver on that transport stops getting media and the
participant's peer connection is dead while its signaling lives on. `_handle_rtp_data` /
`_handle_rtcp_data` catch only `ValueError`, but the parsers also raise others:

- `rtp.HeaderExtensionsMap.get` unpacks known header extensions with `struct.unpack`, so
  an abs-send-time, toffset, audio-level or transport-cc element of the wrong length
  raises `struct.error` (not a `ValueError`) out of `RtpPacket.parse`;
- `RtpRouter.route_rtcp` unpacks a REMB FCI whose SSRC count exceeds its length with
  `struct.unpack_from` (`struct.error`, the router only catches `ValueError`);
- an EMPTY datagram: aioice hands every non-STUN datagram, from any source address, to the
  queue, and `_recv_next` reads `data[0]` (`IndexError`). This one needs no keys: anyone
  who can reach the server's ICE port can end a participant's media.

SRTP authentication failures are already dropped by aiortc (`pylibsrtp.Error` is caught);
the guard only counts them.

The guard is per instance (no aiortc module global is patched): `guard_dtls_transport`
sets instance attributes that shadow `_handle_rtp_data`, `_handle_rtcp_data` and
`_recv_next`, and wraps `_rx_srtp` once aiortc created it. `_recv_next` increments
`__rx_packets` as soon as a datagram arrived: an error after that is the datagram's (count
and drop it), an error before it is the ICE transport's (end the loop, as aiortc does).
It can be installed at any time (the loop looks these up on every datagram); the natural
place is right after the participant's peer connection got its transports
(`guard_peer_connection`).
`check_rtp_guard_internals()` lists the internals relied upon that are missing or changed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import pylibsrtp
from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtp import RtcpPacket, RtpPacket

from sfu.compat.introspect import source_has

logger = logging.getLogger(__name__)

MalformedKind = Literal["rtp", "rtcp", "srtp", "datagram"]
"""What was dropped: an RTP packet that does not parse; an RTCP compound packet (or one
packet in it) that does not parse or route; a datagram SRTP could not authenticate or
decrypt; any other datagram whose handling raised (e.g. an empty one)."""

_GUARD_ATTR = "_sfu_rtp_guard"
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"  # counts datagrams `_recv_next` received
_LOGGED_TRACEBACKS = 5  # per guard: the first few unexpected errors with a traceback


class _CountingSrtp:
    """Stands in for the transport's receiving `pylibsrtp.Session`: counts what fails to
    unprotect, then re-raises so aiortc drops it as before. Owns nothing."""

    def __init__(self, session: Any, count: Callable[[MalformedKind], None]) -> None:
        self.session = session
        self._count = count

    def unprotect(self, data: bytes) -> bytes:
        try:
            result: bytes = self.session.unprotect(data)
        except pylibsrtp.Error:
            self._count("srtp")
            raise
        return result

    def unprotect_rtcp(self, data: bytes) -> bytes:
        try:
            result: bytes = self.session.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self._count("srtp")
            raise
        return result


class RtpGuard:
    """What `guard_dtls_transport` installed on one `RTCDtlsTransport`: owns the instance
    attributes shadowing its receive methods and the per-kind drop counts. `remove()`
    (idempotent) deletes them, restoring aiortc's own methods; the transport itself is
    owned by its peer connection and closes with it (the guard needs no closing then)."""

    def __init__(
        self, transport: RTCDtlsTransport, on_malformed: Callable[[MalformedKind], None]
    ) -> None:
        self.transport = transport
        self.counts: dict[MalformedKind, int] = {"rtp": 0, "rtcp": 0, "srtp": 0, "datagram": 0}
        self._on_malformed = on_malformed
        self._original_recv_next: Callable[[], Coroutine[Any, Any, None]] = transport._recv_next
        self._installed = False

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def install(self) -> None:
        transport = self.transport
        transport._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]
        transport._handle_rtcp_data = self._handle_rtcp_data  # type: ignore[method-assign]
        transport._recv_next = self._recv_next  # type: ignore[method-assign]
        setattr(transport, _GUARD_ATTR, self)
        self._installed = True

    def remove(self) -> None:
        if not self._installed:
            return
        self._installed = False
        attrs = vars(self.transport)
        for name in ("_handle_rtp_data", "_handle_rtcp_data", "_recv_next", _GUARD_ATTR):
            attrs.pop(name, None)
        srtp = attrs.get("_rx_srtp")
        if isinstance(srtp, _CountingSrtp):
            attrs["_rx_srtp"] = srtp.session

    def _count(self, kind: MalformedKind) -> None:
        self.counts[kind] += 1
        try:
            self._on_malformed(kind)
        except Exception:  # a metrics callback must not become the next fatal error
            logger.exception("on_malformed callback failed")

    # -- the shadowing methods ------------------------------------------------------

    async def _recv_next(self) -> None:
        """aiortc's `_recv_next`, but an error raised while handling a received datagram
        drops that datagram instead of ending the loop. Errors before any datagram was
        received (the ICE transport's `_recv`, DTLS timeouts) still end it as before, so
        a broken transport cannot make the loop spin."""
        transport = self.transport
        srtp = transport._rx_srtp
        if srtp is not None and not isinstance(srtp, _CountingSrtp):
            transport._rx_srtp = _CountingSrtp(srtp, self._count)  # type: ignore[assignment]
        received_before = getattr(transport, _RX_PACKETS)
        try:
            await self._original_recv_next()
        except ConnectionError:
            raise
        except Exception:
            if getattr(transport, _RX_PACKETS) == received_before:
                raise  # not about a datagram: aiortc's own failure, not ours to hide
            self._count("datagram")
            if self.counts["datagram"] <= _LOGGED_TRACEBACKS:
                logger.warning("dropped a datagram whose handling raised", exc_info=True)

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        """aiortc's `_handle_rtp_data`, with any parse error counted and dropped."""
        transport = self.transport
        try:
            packet = RtpPacket.parse(data, transport._rtp_header_extensions_map)
        except Exception as exc:
            logger.debug("dropped a malformed RTP packet: %r", exc)
            self._count("rtp")
            return
        router: RtpRouter = transport._rtp_router
        receiver = router.route_rtp(packet)
        if receiver is not None:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        """aiortc's `_handle_rtcp_data`, with parse and routing errors counted and dropped
        (a packet that fails to route is skipped; the rest of the compound is delivered)."""
        try:
            packets = RtcpPacket.parse(data)
        except Exception as exc:
            logger.debug("dropped a malformed RTCP packet: %r", exc)
            self._count("rtcp")
            return
        router: RtpRouter = self.transport._rtp_router
        for packet in packets:
            try:
                recipients = router.route_rtcp(packet)
            except Exception as exc:
                logger.debug("dropped an unroutable RTCP packet %r: %r", packet, exc)
                self._count("rtcp")
                continue
            for recipient in recipients:
                await recipient._handle_rtcp_packet(packet)


def guard_dtls_transport(
    transport: RTCDtlsTransport, on_malformed: Callable[[MalformedKind], None]
) -> RtpGuard:
    """Make `transport` count and drop malformed datagrams instead of ending its receive
    loop; `on_malformed(kind)` is called for each. Installing twice returns the first
    guard (its callback stays)."""
    existing = getattr(transport, _GUARD_ATTR, None)
    if isinstance(existing, RtpGuard):
        return existing
    guard = RtpGuard(transport, on_malformed)
    guard.install()
    return guard


def guard_peer_connection(
    pc: RTCPeerConnection, on_malformed: Callable[[MalformedKind], None]
) -> list[RtpGuard]:
    """Guard every DTLS transport the peer connection has now (its transceivers' and the
    SCTP one). Call it after `setRemoteDescription` (aiortc creates the transports there or
    in `addTransceiver`); calling it again later guards transports added since."""
    transports: dict[int, RTCDtlsTransport] = {}
    for transceiver in pc.getTransceivers():
        for transport in (transceiver.receiver.transport, transceiver.sender.transport):
            if transport is not None:
                transports[id(transport)] = transport
    if pc.sctp is not None:
        transports[id(pc.sctp.transport)] = pc.sctp.transport
    return [guard_dtls_transport(t, on_malformed) for t in transports.values()]


def check_rtp_guard_internals() -> list[str]:
    """Return the aiortc internals the guard relies on that are missing or changed; empty
    when all are present (same contract as `check.check_internals`)."""
    problems: list[str] = []
    for cls, names in (
        (
            RTCDtlsTransport,
            ("_recv_next", "_handle_rtp_data", "_handle_rtcp_data", "_RTCDtlsTransport__run"),
        ),
        (RtpRouter, ("route_rtp", "route_rtcp")),
        (RtpPacket, ("parse",)),
        (RtcpPacket, ("parse",)),
    ):
        for name in names:
            if not callable(getattr(cls, name, None)):
                problems.append(f"{cls.__name__}.{name}")
    if not isinstance(getattr(pylibsrtp, "Error", None), type):
        problems.append("pylibsrtp.Error")
    if problems:
        return problems
    init_source = inspect.getsource(RTCDtlsTransport.__init__)
    for attr in ("_rtp_header_extensions_map", "_rtp_router", "_rx_srtp", "__rx_packets"):
        if f"self.{attr} =" not in init_source and f"self.{attr}:" not in init_source:
            problems.append(f"RTCDtlsTransport.{attr}")
    problems += source_has(
        RTCDtlsTransport._RTCDtlsTransport__run,  # type: ignore[attr-defined]
        "await self._recv_next()",
        "except ConnectionError",
    )
    problems += source_has(
        RTCDtlsTransport._recv_next,
        "self._rx_srtp.unprotect_rtcp(data)",
        "self._rx_srtp.unprotect(data)",
        "await self._handle_rtcp_data(data)",
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "except pylibsrtp.Error",
        "self.__rx_packets += 1\n\n        first_byte = data[0]",
    )
    problems += source_has(
        RTCDtlsTransport._handle_rtp_data,
        "RtpPacket.parse(data, self._rtp_header_extensions_map)",
        "self._rtp_router.route_rtp(packet)",
        "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)",
    )
    problems += source_has(
        RTCDtlsTransport._handle_rtcp_data,
        "RtcpPacket.parse(data)",
        "self._rtp_router.route_rtcp(packet)",
        "await recipient._handle_rtcp_packet(packet)",
    )
    return problems
