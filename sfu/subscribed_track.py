"""One outgoing copy of a published track, for one subscriber's sender."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.compat.relay import bound_relay_proxy, end_relay_proxy

logger = logging.getLogger(__name__)

PROXY_QUEUE_LIMIT = 32


class SubscribedTrack(MediaStreamTrack):
    """Owns one buffered `MediaRelay` proxy, bounded to `maxsize` items (oldest dropped).

    Passthrough video (`gate_keyframes`): drops everything until the first keyframe, and
    again after any queue drop or a pause, calling `request_keyframe` while it waits (the
    caller throttles). With `rebase`, output pts = `base_pts` + (in pts - first in pts), so a
    transceiver reused for a later publisher never sees timestamps go backwards; `last_pts`
    is the last pts handed out. Packets are copied only when the pts really changes: the
    relay shares one packet between all subscribers. In transcode mode (decoded frames)
    gating and rebasing are off and frames pass through untouched.

    `stop()` (idempotent) stops the proxy and wakes a pending `recv()`, which then raises
    `MediaStreamError`.
    """

    def __init__(
        self,
        proxy: MediaStreamTrack,
        kind: str,
        request_keyframe: Callable[[], None] | None = None,
        base_pts: int = 0,
        *,
        gate_keyframes: bool = True,
        rebase: bool = True,
        maxsize: int = PROXY_QUEUE_LIMIT,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._proxy = proxy
        self._request_keyframe = request_keyframe
        self._gate = gate_keyframes and kind == "video"
        self._rebase = rebase
        self.base_pts = base_pts
        self._offset: int | None = None
        self._paused = False
        self.waiting_keyframe = False
        self.last_pts = base_pts
        # counters
        self.frames_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.keyframes_waited = 0
        bound_relay_proxy(proxy, maxsize, self._on_drop)
        self._wait_for_keyframe()

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if self._paused and not value:
            self._wait_for_keyframe()
        self._paused = value

    def _wait_for_keyframe(self) -> None:
        if self._gate and not self.waiting_keyframe:
            self.waiting_keyframe = True
            self.keyframes_waited += 1

    def _on_drop(self) -> None:
        """The proxy queue overflowed: the picture is broken until the next keyframe."""
        self.dropped += 1
        self._wait_for_keyframe()

    def _ask(self) -> None:
        callback = self._request_keyframe
        if callback is not None:
            callback()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self.waiting_keyframe:
            self._ask()
        while True:
            try:
                item: Any = await self._proxy.recv()
            except MediaStreamError:
                self.stop()
                raise
            if self._paused:
                self.dropped += 1
                continue
            if self.waiting_keyframe:
                if not item.is_keyframe:
                    self.dropped += 1
                    self._ask()
                    continue
                self.waiting_keyframe = False
            self.frames_out += 1
            if not isinstance(item, av.Packet):
                return item  # transcode mode: a decoded frame, shared with other senders
            self.bytes_out += item.size
            if not self._rebase:
                if item.pts is not None:
                    self.last_pts = item.pts
                return item
            return self._rebased(item)

    def _rebased(self, packet: av.Packet[Any]) -> av.Packet[Any]:
        pts = packet.pts or 0
        if self._offset is None:
            self._offset = self.base_pts - pts
        offset = self._offset
        self.last_pts = pts + offset
        if offset == 0:
            return packet
        out = av.Packet(bytes(packet))
        out.pts = pts + offset
        out.dts = out.pts
        out.time_base = packet.time_base
        out.is_keyframe = packet.is_keyframe
        return out

    def stop(self) -> None:
        if self.readyState == "live":
            end_relay_proxy(self._proxy)
            self._proxy.stop()
        super().stop()
