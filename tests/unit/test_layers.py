"""Temporal layers: the VP8 payload descriptor's TID/Y parsed per frame (hand-built RTP
packets), the `FrameLayer` each relayed packet carries and the per-layer bitrate meter."""

from __future__ import annotations

import asyncio
import gc

import av
import pytest
from aiortc.rtp import RtpPacket

from sfu.frame_assembler import EncodedFrame, FrameAssembler, vp8_temporal_layer
from sfu.layers import LAYERS, MAX_TID, FrameLayer, LayerMeter, frame_layer
from sfu.published_track import PublishedTrack
from tests.unit.fakes import FakeClock

KEY = b"\x10key"  # VP8 payload header bit0 == 0: keyframe
DELTA = b"\x11delta"


def descriptor(
    *,
    start: bool = True,
    tid: int | None = None,
    sync: bool = False,
    picture_id: int | None = None,
    tl0picidx: int | None = None,
    keyidx: int | None = None,
) -> bytes:
    """An RFC 7741 VP8 payload descriptor, built field by field."""
    first = 0x10 if start else 0x00
    if tid is None and picture_id is None and tl0picidx is None and keyidx is None:
        return bytes([first])
    ext = 0
    tail = b""
    if picture_id is not None:
        ext |= 0x80
        tail += (
            bytes([0x80 | picture_id >> 8, picture_id & 0xFF])
            if picture_id > 0x7F
            else bytes([picture_id])
        )
    if tl0picidx is not None:
        ext |= 0x40
        tail += bytes([tl0picidx])
    if tid is not None or keyidx is not None:
        ext |= 0x20 if tid is not None else 0
        ext |= 0x10 if keyidx is not None else 0
        tail += bytes([((tid or 0) << 6) | (0x20 if sync else 0) | (keyidx or 0)])
    return bytes([first | 0x80, ext]) + tail


def rtp(seq: int, ts: int, desc: bytes, data: bytes, marker: bool) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts, ssrc=7
    )
    packet.payload = desc + data
    packet._data = data  # type: ignore[attr-defined]
    return packet


@pytest.mark.parametrize(
    ("desc", "expected"),
    [
        (descriptor(), (None, False)),  # no X byte
        (descriptor(picture_id=5), (None, False)),  # X without T
        (descriptor(picture_id=5, keyidx=3), (None, False)),  # K without T: TID is ignored
        (descriptor(tid=0), (0, False)),
        (descriptor(tid=2, sync=True), (2, True)),
        (descriptor(tid=1, picture_id=0x45), (1, False)),  # 7-bit PictureID
        (descriptor(tid=2, picture_id=0x1234), (2, False)),  # 15-bit PictureID (M bit)
        (descriptor(tid=1, sync=True, picture_id=0x7FFF, tl0picidx=9, keyidx=31), (1, True)),
        (descriptor(tid=3, tl0picidx=0xFF), (3, False)),
        (descriptor(tid=2, picture_id=0x1234)[:-1], (None, False)),  # truncated: no TID byte
        (descriptor(tid=2, picture_id=0x1234)[:3], (None, False)),
        (b"", (None, False)),
        (b"\x90", (None, False)),
    ],
)
def test_vp8_temporal_layer_parses_the_payload_descriptor(
    desc: bytes, expected: tuple[int | None, bool]
) -> None:
    assert vp8_temporal_layer(desc) == expected


def test_assembler_tags_each_frame_from_its_first_packet() -> None:
    frames: list[EncodedFrame] = []
    assembler = FrameAssembler("video", frames.append)
    pid = 0x1234
    # keyframe TL0 in two packets; the second packet's descriptor (S=0) says TID 2: ignored
    first = descriptor(tid=0, sync=True, picture_id=pid, tl0picidx=1)
    cont = descriptor(start=False, tid=2, picture_id=pid, tl0picidx=1)
    assembler.add(rtp(10, 3000, first, KEY, marker=False))
    assembler.add(rtp(11, 3000, cont, b"more", marker=True))
    assembler.add(rtp(12, 6000, descriptor(tid=2, sync=True, picture_id=pid + 1), DELTA, True))
    assembler.add(rtp(13, 9000, descriptor(tid=1, picture_id=pid + 2), DELTA, True))
    assembler.add(rtp(14, 12000, descriptor(picture_id=pid + 3), DELTA, True))  # untagged
    assert [(f.tid, f.layer_sync, f.keyframe) for f in frames] == [
        (0, True, True),
        (2, True, False),
        (1, False, False),
        (None, False, False),
    ]
    assert frames[0].data == KEY + b"more"


def test_pyav_opaque_is_keyed_by_object_identity() -> None:
    """Why every packet gets its own FrameLayer: PyAV 18 drops a shared opaque object from
    every packet holding it when one of them is freed."""
    shared = LAYERS[2 * 1 + 1]
    a, b = av.Packet(b"a"), av.Packet(b"b")
    a.opaque = shared
    b.opaque = shared
    del a
    gc.collect()
    assert b.opaque is None  # the pitfall (if PyAV fixes it, this test tells us)
    c, d = av.Packet(b"c"), av.Packet(b"d")
    c.opaque = FrameLayer.for_packet(1, True)
    d.opaque = FrameLayer.for_packet(1, True)
    del c
    gc.collect()
    assert frame_layer(d) == FrameLayer(1, True) == shared


def test_frame_layer_clamps_and_reads_only_frame_layers() -> None:
    assert FrameLayer.for_packet(3, False) == FrameLayer(MAX_TID, False)
    assert frame_layer(av.Packet(b"x")) is None
    assert frame_layer(object()) is None
    packet = av.Packet(b"x")
    packet.opaque = "something else"
    assert frame_layer(packet) is None
    with pytest.raises(AttributeError):
        LAYERS[0].tid = 1  # type: ignore[misc]


async def test_published_track_tags_packets_and_measures_layers() -> None:
    clock = FakeClock(50.0)
    track = PublishedTrack("video", clock=clock, call_later=clock.call_later)
    assert track.layer_bitrates() == () and track.bitrate() == 0
    # one second of L1T3 at 32 fps (exact binary steps), pattern 0 2 1 2;
    # TL0 1000 B, TL1 500 B, TL2 250 B
    sizes = {0: 1000, 1: 500, 2: 250}
    for i in range(32):
        tid = (0, 2, 1, 2)[i % 4]
        track.push(
            EncodedFrame(
                b"x" * sizes[tid], 3000 * i, i == 0, 1, tid=tid, layer_sync=tid > 0 and i < 4
            )
        )
        clock.advance(1 / 32)
    tl0, tl1, tl2 = 8 * 1000, 8 * 500, 16 * 250
    # the frame at exactly one second ago has left the window
    assert track.layer_bitrates() == (
        8 * (tl0 - 1000),
        8 * (tl0 - 1000 + tl1),
        8 * (tl0 - 1000 + tl1 + tl2),
    )
    assert track.bitrate() == track.layer_bitrates()[-1]
    async with asyncio.timeout(5):
        packets = [await track.recv() for _ in range(4)]
    assert [frame_layer(p) for p in packets] == [
        FrameLayer(0, False),
        FrameLayer(2, True),
        FrameLayer(1, True),
        FrameLayer(2, True),
    ]
    assert len({id(p.opaque) for p in packets}) == 4  # never one object on two packets
    # untagged frames: no layer, no layer rates; the total still counts them
    clock.advance(2.0)
    track.push(EncodedFrame(b"y" * 100, 999000, False, 1))
    async with asyncio.timeout(5):
        while True:
            packet = await track.recv()
            if bytes(packet) == b"y" * 100:
                break
    assert frame_layer(packet) is None
    assert track.layer_bitrates() == () and track.bitrate() == 800
    track.close()


def test_layer_meter_start_span_and_window() -> None:
    clock = FakeClock(0.0)
    meter = LayerMeter(clock, window=1.0)
    meter.add(1000, 1)  # only TL1 seen: TL0 rate is zero, two entries
    assert meter.layer_bitrates() == (0, 32000)  # 8000 bits over the minimum span
    clock.advance(0.5)
    assert meter.bitrate() == 16000
    clock.advance(0.6)
    assert meter.layer_bitrates() == () and meter.bitrate() == 0
    with pytest.raises(ValueError, match="window"):
        LayerMeter(clock, window=0)


def test_layer_meter_leaves_keyframes_out_of_the_layer_rates() -> None:
    clock = FakeClock(0.0)
    meter = LayerMeter(clock, window=1.0)
    meter.add(10_000, 0, keyframe=True)  # a keyframe alone: layers seen, no delta rate
    assert meter.layer_bitrates() == (0,) and meter.bitrate() == 320_000
    clock.advance(0.5)
    meter.add(500, 0)
    meter.add(250, 1)
    assert meter.layer_bitrates() == (8000, 12000)
    assert meter.bitrate() == (10_000 + 750) * 8 * 2
    clock.advance(0.75)  # the keyframe left the window
    assert meter.layer_bitrates() == (4000, 6000) and meter.bitrate() == 6000
