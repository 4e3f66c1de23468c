"""Pieces of the tests that link real aiortc peer connections in one process on 127.0.0.1
(``test_forwarding_loopback.py``, ``unit/test_lean_sender.py``): a pc, codec preferences,
offer/answer, polling, and a consumer that reads (decodes) a received track. The ``pcs``
fixture (``tests/conftest.py``) closes the pcs a test made."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError


def new_pc() -> RTCPeerConnection:
    """A peer connection without STUN/TURN servers."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def prefer(transceiver: RTCRtpTransceiver, *mimes: str) -> None:
    """Offer only the codecs ``mimes`` (e.g. ``"video/VP8"``) on ``transceiver``."""
    caps = RTCRtpSender.getCapabilities(transceiver.kind)
    transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType in mimes])


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def wait_until(pred: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polling counters owned by aiortc tasks
            await asyncio.sleep(0.02)


class Consumer:
    """Reads a received track (stock aiortc: depacketize and decode), counting frames."""

    def __init__(self, track: Any) -> None:
        self.track = track
        self.count = 0
        self.last: Any = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.last = await self.track.recv()
                self.count += 1
        except MediaStreamError:
            pass
