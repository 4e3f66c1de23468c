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
