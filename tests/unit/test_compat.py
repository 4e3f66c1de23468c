"""`sfu/compat/`: the aiortc internals are there, and the relay proxy helpers."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import av
import pytest
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.compat.check import check_internals
from sfu.compat.relay import bound_relay_proxy, end_relay_proxy


def test_check_internals() -> None:
    assert check_internals() == []


class ListTrack(MediaStreamTrack):
    """A source that yields the given items, then ends."""

    kind = "video"

    def __init__(self, items: list[Any]) -> None:
        super().__init__()
        self.items = list(items)
        self.gate = asyncio.Event()

    async def recv(self) -> Any:
        await self.gate.wait()
        if not self.items:
            raise MediaStreamError
        return self.items.pop(0)


async def test_bounded_relay_proxy_drops_oldest_and_delivers_end() -> None:
    relay = MediaRelay()
    source = ListTrack([av.Packet(bytes([i])) for i in range(10)])
    proxy = relay.subscribe(source, buffered=True)
    drops: list[int] = []
    bound_relay_proxy(proxy, 4, lambda: drops.append(1))
    # the first recv starts the relay; release everything at once, queue holds 4
    async with asyncio.timeout(5):
        recv = asyncio.ensure_future(proxy.recv())
        await asyncio.sleep(0)
        source.gate.set()
        first = await recv
        await asyncio.sleep(0.05)
        rest = []
        with pytest.raises(MediaStreamError):
            while True:
                rest.append(await proxy.recv())
    # the relay ran through the whole source before the reader woke: 4 slots, the newest
    # frames survive, and the end marker is never dropped
    got = [bytes(cast("av.Packet[Any]", p))[0] for p in [first, *rest]]
    assert got == [7, 8, 9]
    assert len(drops) == 7


async def test_bounded_relay_proxy_rejects_unbuffered() -> None:
    proxy = MediaRelay().subscribe(ListTrack([]), buffered=False)
    with pytest.raises(ValueError):
        bound_relay_proxy(proxy, 4, lambda: None)


async def test_end_relay_proxy_wakes_pending_recv() -> None:
    relay = MediaRelay()
    for buffered in (True, False):
        proxy = relay.subscribe(ListTrack([]), buffered=buffered)
        if buffered:
            bound_relay_proxy(proxy, 2, lambda: None)
        async with asyncio.timeout(5):
            pending = asyncio.ensure_future(proxy.recv())
            await asyncio.sleep(0.01)
            end_relay_proxy(proxy)
            with pytest.raises(MediaStreamError):
                await pending


async def test_sender_audio_level_hook_fills_only_missing_levels() -> None:
    from types import SimpleNamespace

    from sfu.compat.sender import install_sender_audio_level

    frames = [SimpleNamespace(audio_level=None), SimpleNamespace(audio_level=-40), None]

    async def next_encoded_frame(codec: Any) -> Any:
        return frames.pop(0)

    sender = SimpleNamespace(_next_encoded_frame=next_encoded_frame)
    level: list[int | None] = [25]
    install_sender_audio_level(sender, lambda: level[0])  # type: ignore[arg-type]
    assert (await sender._next_encoded_frame(None)).audio_level == -25
    assert (await sender._next_encoded_frame(None)).audio_level == -40  # encoded: kept
    assert await sender._next_encoded_frame(None) is None
