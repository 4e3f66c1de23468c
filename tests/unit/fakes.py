"""Fakes shared by the unit tests: a manual clock with timers, a signaler, a receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc.rtp import RtpPacket


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic seconds that move only when told; `call_later` timers fire on `advance`."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted(self.pending, key=lambda t: t.when):
            if timer.when <= self.now and not timer.cancelled:
                timer.cancelled = True
                timer.callback()


class FakeReceiver:
    """Just enough of an `RTCRtpReceiver` for `install_receiver_sink`: records PLIs."""

    def __init__(self) -> None:
        self.plis: list[int] = []

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


class FakeSignaler:
    """Records emits; answers `request` with `reply(participant_id, event, payload)`."""

    def __init__(self, reply: Callable[[str, str, dict[str, Any]], Any] | None = None) -> None:
        self.emitted: list[tuple[str, str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.disconnected: list[str] = []
        self.reply = reply

    async def emit(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        self.emitted.append((participant_id, event, payload))

    async def request(
        self, participant_id: str, event: str, payload: dict[str, Any], timeout: float
    ) -> Any:
        self.requests.append((participant_id, event, payload))
        if self.reply is None:
            raise TimeoutError("no answer")
        result = self.reply(participant_id, event, payload)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def disconnect(self, participant_id: str) -> None:
        self.disconnected.append(participant_id)

    def events(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(pid, payload) for pid, name, payload in self.emitted if name == event]


def vp8(seq: int, ts: int, data: bytes, *, start: bool, marker: bool, ssrc: int = 1) -> RtpPacket:
    """A depayloaded VP8 RTP packet (descriptor S bit = frame start)."""
    packet = RtpPacket(
        payload_type=96,
        marker=int(marker),
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=(b"\x10" if start else b"\x00") + data,
    )
    packet._data = data  # type: ignore[attr-defined]
    return packet


# ---------------------------------------------------------------- a fake peer connection

#: The smallest SDP `sfu.sdp_check.check_offer` accepts, with the given m-lines.
SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def sdp(*mlines: str, setup: str = "actpass") -> str:
    """`mlines`: "video", "audio", "video recvonly", "video novp8"..."""
    out = SDP_HEAD
    for line in mlines:
        kind, *flags = line.split()
        pt = "96" if kind == "video" else "111"
        out += (
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\n"
            f"a=fingerprint:sha-256 AA:BB\r\na=setup:{setup}\r\n"
            "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        )
        out += f"a={flags[0]}\r\n" if flags and flags[0] != "novp8" else "a=sendonly\r\n"
        if "novp8" in flags:
            out += "a=x-novp8\r\n"
    return out


class FakeDescription:
    def __init__(self, sdp: str, type: str) -> None:
        self.sdp = sdp
        self.type = type


class FakeSender:
    def __init__(self) -> None:
        self.retransmitted: list[int] = []

    async def _retransmit(self, sequence_number: int) -> None:
        self.retransmitted.append(sequence_number)

    def _send_keyframe(self) -> None:
        pass


class FakeRemoteTrack:
    def __init__(self, kind: str) -> None:
        self.kind = kind


class FakeTransceiver:
    def __init__(
        self, kind: str, direction: str, mid: str | None = None, codecs: list[Any] | None = None
    ) -> None:
        self.kind = kind
        self.direction = direction
        self.currentDirection: str | None = None
        self.mid = mid
        self.sender = FakeSender()
        self.receiver = FakeReceiver()
        self.receiver.track = FakeRemoteTrack(kind)  # type: ignore[attr-defined]
        self._codecs = codecs or []
        self._headerExtensions: list[Any] = []
        self.preferences: list[Any] | None = None

    def setCodecPreferences(self, codecs: list[Any]) -> None:
        self.preferences = codecs

    def _get_mline_index(self) -> int | None:
        return None if self.mid is None else int(self.mid)


def _codec(mime: str, pt: int) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(mimeType=mime, payloadType=pt, parameters={}, clockRate=90000)


class FakePeerConnection:
    """Just enough of `RTCPeerConnection` for `Participant`: an offer's m-lines become
    receiving transceivers (and "track" events), answers set current directions; no
    network. `connectionState` is "connected" once a description pair is applied."""

    def __init__(self, configuration: Any = None) -> None:
        self.configuration = configuration
        self.handlers: dict[str, list[Callable[..., Any]]] = {}
        self.transceivers: list[FakeTransceiver] = []
        self.signalingState = "stable"
        self.connectionState = "new"
        self.localDescription: FakeDescription | None = None
        self.remoteDescription: FakeDescription | None = None
        self.closed = False
        self.candidates: list[Any] = []
        self._next_mid = 0

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers.setdefault(event, []).append(handler)

    def emit(self, event: str, *args: Any) -> None:
        for handler in self.handlers.get(event, []):
            handler(*args)

    def set_state(self, state: str) -> None:
        self.connectionState = state
        self.emit("connectionstatechange")

    def getTransceivers(self) -> list[FakeTransceiver]:
        return list(self.transceivers)

    def addTransceiver(self, track: Any, direction: str = "sendrecv") -> FakeTransceiver:
        transceiver = FakeTransceiver(track.kind, direction)
        transceiver.sender.track = track  # type: ignore[attr-defined]
        self.transceivers.append(transceiver)
        return transceiver

    def _mid(self) -> str:
        mid = str(self._next_mid)
        self._next_mid += 1
        return mid

    async def setRemoteDescription(self, description: Any) -> None:
        if description.type == "offer":
            sections = description.sdp.split("m=")[1:]
            for index, section in enumerate(sections):
                kind = section.split()[0]
                sending = "a=recvonly" not in section and "a=inactive" not in section
                if index < len(self.transceivers):
                    self.transceivers[index].currentDirection = (
                        "recvonly" if sending else "inactive"
                    )
                    continue
                codecs = (
                    []
                    if "x-novp8" in section
                    else [_codec("video/VP8" if kind == "video" else "audio/opus", 96)]
                )
                transceiver = FakeTransceiver(kind, "recvonly", self._mid(), codecs)
                self.transceivers.append(transceiver)
                self.signalingState = "have-remote-offer"
                if sending:
                    self.emit("track", transceiver.receiver.track)  # type: ignore[attr-defined]
            self.signalingState = "have-remote-offer"
        else:
            for transceiver in self.transceivers:
                transceiver.currentDirection = transceiver.direction
            self.signalingState = "stable"
            self.connectionState = "connected"
        self.remoteDescription = description

    async def createAnswer(self) -> FakeDescription:
        return FakeDescription(SDP_HEAD + "a=x-answer\r\n", "answer")

    async def createOffer(self) -> FakeDescription:
        return FakeDescription(SDP_HEAD, "offer")

    async def setLocalDescription(self, description: Any) -> None:
        self.localDescription = description
        if description.type == "answer":
            for transceiver in self.transceivers:
                if transceiver.currentDirection is None:
                    transceiver.currentDirection = "recvonly"
            self.signalingState = "stable"
            self.connectionState = "connected"
        else:
            for transceiver in self.transceivers:
                if transceiver.mid is None:
                    transceiver.mid = self._mid()
            self.signalingState = "have-local-offer"

    async def addIceCandidate(self, candidate: Any) -> None:
        self.candidates.append(candidate)

    async def close(self) -> None:
        self.closed = True
        self.connectionState = "closed"
