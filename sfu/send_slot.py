"""A send slot: one server transceiver that carries some remote participant's track.

aiortc's `RTCRtpSender` loop ends for good when its track raises `MediaStreamError`, and
`replaceTrack` does not interrupt a pending `recv()`. So a slot gives its sender ONE
long-lived `SlotTrack` and switches the source behind it: a slot can be released when a
publisher leaves and reused for the next one without renegotiating new m-lines.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class SlotTrack(MediaStreamTrack):
    """The track a slot's sender reads. Owns nothing but a reference to the current source;
    `stop()` ends it (the sender loop then ends too, as at peer connection close)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._wake = asyncio.Event()

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    def switch(self, source: MediaStreamTrack | None) -> None:
        """Read from `source` from now on (None: idle). The old source is not stopped here."""
        self._source = source
        self._wake.set()

    async def recv(self) -> Any:
        while self.readyState == "live":
            src = self._source
            if src is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                item = await src.recv()
            except MediaStreamError:
                if self._source is src:
                    self._source = None
                continue
            if self._source is src:
                return item
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._source = None
        self._wake.set()
