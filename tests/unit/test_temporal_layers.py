"""Three temporal layers (L1T3) from the Python client: the clip, its layer pattern and the
VP8 payload descriptor the client's lean sender writes (RFC 7741 T/TID/Y/TL0PICIDX).

The clip is checked by decoding: dropping every TL2 frame (and then every TL1 frame too)
leaves the remaining pictures bit-identical to a full decode (so the dropped frames are
never references, and carry no entropy state over), and a layer-sync frame decodes to the
same picture from base-layer history only.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from sfu.compat.lean_sender import LeanSender, install_lean_sender, vp8_payloads
from sfu.layers import FrameLayer
from signaling.client.sources import _clip_memo
from signaling.sources import (
    L1T3_PATTERN,
    PacedVideoTrack,
    VideoClip,
    encode_clip,
    marker_from_frame,
)
from tests import loopback
from tests.loopback import Consumer, negotiate, new_pc, prefer

WAIT = 10.0


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> VideoClip:
    cache: Path = tmp_path_factory.mktemp("clips")
    # 2.2 s at 30 fps with a keyframe every 32 frames: three GOPs, the last one short
    return encode_clip(
        width=160,
        height=120,
        seconds=2.2,
        bitrate=300_000,
        gop=32,
        cache_dir=cache,
        temporal_layers=3,
    )


def decode(frames: list[bytes]) -> list[np.ndarray]:
    """Luma planes of every picture; any decoder error raises."""
    codec = av.CodecContext.create("vp8", "r")
    pictures: list[np.ndarray] = []
    for data in frames:
        for picture in codec.decode(av.Packet(data)):
            pictures.append(picture.to_ndarray(format="gray"))
    return pictures


# ---------------------------------------------------------------- descriptor bytes


def test_descriptor_with_layer_fields() -> None:
    frame = bytes(range(256)) * 10  # 2560 bytes: two packets
    payloads = vp8_payloads(frame, 0x1234, FrameLayer(2, True), 0xAB)
    assert [len(p) for p in payloads] == [1300, 2560 - 1294 + 6]
    # X=1 S=1 | I L T | M + picture id | TL0PICIDX | TID=2 Y=1 KEYIDX=0
    assert payloads[0][:6] == bytes([0x90, 0xE0, 0x92, 0x34, 0xAB, 0b1010_0000])
    assert payloads[1][:6] == bytes([0x80, 0xE0, 0x92, 0x34, 0xAB, 0b1010_0000])
    assert payloads[0][6:] + payloads[1][6:] == frame
    descriptor, rest = VpxPayloadDescriptor.parse(payloads[0])
    assert (descriptor.partition_start, descriptor.picture_id) == (1, 0x1234)
    assert (descriptor.tl0picidx, descriptor.tid, descriptor.keyidx) == (0xAB, (2, 1), None)
    assert rest == frame[:1294]


def test_descriptor_base_layer_without_sync() -> None:
    payloads = vp8_payloads(b"\x10\x02\x00abc", 7, FrameLayer(0, False), 0)
    assert payloads == [bytes([0x90, 0xE0, 0x80, 0x07, 0x00, 0x00]) + b"\x10\x02\x00abc"]


def test_descriptor_default_path_is_aiortcs() -> None:
    frame = bytes(3000)
    assert vp8_payloads(frame, 99) == Vp8Encoder._packetize(frame, 99)
    assert vp8_payloads(frame, 99, None, 5) == Vp8Encoder._packetize(frame, 99)


@pytest.mark.parametrize(("tid", "tl0"), [(4, 0), (-1, 0), (0, 256)])
def test_descriptor_rejects_bad_fields(tid: int, tl0: int) -> None:
    with pytest.raises(ValueError, match="VP8 descriptor"):
        vp8_payloads(b"x", 1, FrameLayer(tid, False), tl0)


# ---------------------------------------------------------------- the clip


def test_clip_layer_pattern(layered: VideoClip) -> None:
    assert layered.temporal_layers == 3
    assert [(p.tid, p.sync) for p in layered.packets[:8]] == list(L1T3_PATTERN) * 2
    assert layered.keyframe_indexes == [0, 32, 64]
    assert all(layered.packets[k].tid == 0 for k in layered.keyframe_indexes)


def test_clip_cache_keeps_layers(layered: VideoClip) -> None:
    assert layered.path is not None and layered.path.name.endswith("-l3.clip")
    _clip_memo.pop(layered.path)
    again = encode_clip(
        width=160,
        height=120,
        seconds=2.2,
        bitrate=300_000,
        gop=32,
        cache_dir=layered.path.parent,
        temporal_layers=3,
    )
    assert again is not layered
    assert again.packets == layered.packets  # read back from the file, layers included


def test_clip_without_layers_has_no_tid(tmp_path: Path) -> None:
    clip = encode_clip(width=64, height=48, seconds=0.2, cache_dir=tmp_path)
    assert clip.temporal_layers == 1
    assert all(p.tid is None and not p.sync for p in clip.packets)


def test_clip_rejects_bad_layer_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="temporal_layers"):
        encode_clip(width=64, height=48, seconds=0.2, cache_dir=tmp_path, temporal_layers=2)
    with pytest.raises(ValueError, match="multiple of 4"):
        encode_clip(width=64, height=48, gop=30, cache_dir=tmp_path, temporal_layers=3)


@pytest.mark.parametrize("max_tid", [1, 0])
def test_clip_decodes_with_upper_layers_dropped(layered: VideoClip, max_tid: int) -> None:
    frames = [p.data for p in layered.packets]
    full = decode(frames)
    assert len(full) == len(frames)
    kept = [i for i, p in enumerate(layered.packets) if p.tid is not None and p.tid <= max_tid]
    assert len(kept) == len(frames) // (2 if max_tid else 4) + (1 if max_tid == 0 else 0)
    reduced = decode([frames[i] for i in kept])
    assert len(reduced) == len(kept)
    for picture, index in zip(reduced, kept, strict=True):
        assert np.array_equal(picture, full[index]), f"frame {index} differs"


def test_layer_sync_frames_need_base_layer_only(layered: VideoClip) -> None:
    frames = [p.data for p in layered.packets]
    full = decode(frames)
    syncs = [i for i, p in enumerate(layered.packets) if p.sync]
    assert syncs
    for index in syncs[:6]:
        tid = layered.packets[index].tid
        assert tid is not None and tid > 0
        start = max(k for k in layered.keyframe_indexes if k <= index)
        history = [
            frames[i]
            for i in range(start, index)
            if (layer := layered.packets[i].tid) is not None and layer == 0
        ]
        pictures = decode([*history, frames[index]])
        assert np.array_equal(pictures[-1], full[index]), f"sync frame {index} differs"


async def test_paced_track_puts_the_layer_on_opaque(layered: VideoClip) -> None:
    track = PacedVideoTrack(layered)
    try:
        assert track.temporal_layers == 3
        seen = [(await track.recv()).opaque for _ in range(5)]
    finally:
        track.stop()
    assert all(isinstance(o, FrameLayer) for o in seen)
    layers = [(o.tid, o.sync) for o in seen if isinstance(o, FrameLayer)]
    assert layers == [*L1T3_PATTERN, L1T3_PATTERN[0]]
    assert seen[0] == seen[4] and seen[0] is not seen[4]  # one instance per packet


# ---------------------------------------------------------------- over a peer connection


@pytest.mark.usefixtures("loopback_ice")
async def test_lean_sender_writes_layer_descriptors(
    layered: VideoClip, pcs: list[RTCPeerConnection]
) -> None:
    """A layered clip through a lean sender with `temporal_layers=True` into a stock
    aiortc receiver that decodes: TID/Y as the clip says, TL0PICIDX counts TID 0 frames."""
    tx, rx = new_pc(), new_pc()
    pcs.extend([tx, rx])
    source = PacedVideoTrack(layered)
    transceiver = tx.addTransceiver(source, direction="sendonly")
    prefer(transceiver, "video/VP8")
    lean: LeanSender = install_lean_sender(transceiver.sender, temporal_layers=True)
    consumers: list[Consumer] = []
    rx.on("track", lambda track: consumers.append(Consumer(track)))
    async with asyncio.timeout(WAIT):
        await negotiate(tx, rx)
    await loopback.wait_until(lambda: consumers and consumers[0].count >= 12, WAIT)
    ext_map: Any = transceiver.sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    packets = [RtpPacket.parse(raw, ext_map) for raw in lean.history.packets()]
    packets.sort(key=lambda p: p.sequence_number)
    firsts = [VpxPayloadDescriptor.parse(p.payload)[0] for p in packets]
    firsts = [d for d in firsts if d.partition_start]
    assert len(firsts) >= 12
    layers = [(d.tid[0], bool(d.tid[1])) for d in firsts if d.tid is not None]
    assert len(layers) == len(firsts)
    start = [(tid, sync) for tid, sync in L1T3_PATTERN].index(layers[0])
    expected = [L1T3_PATTERN[(start + i) % 4] for i in range(len(layers))]
    assert layers == expected
    for before, after in itertools.pairwise(firsts):
        assert after.tid is not None and before.tl0picidx is not None
        step = 1 if after.tid[0] == 0 else 0
        assert after.tl0picidx == (before.tl0picidx + step) & 0xFF
        assert after.picture_id == (before.picture_id + 1) & 0x7FFF  # type: ignore[operator]
    source.stop()


# ---------------------------------------------------------------- through the server


async def test_client_publishes_layers_through_the_server(
    server: Any, make_client: Any, layered: VideoClip
) -> None:
    """`SfuClient.publish` of an L1T3 track sends it with the layer descriptor (lean
    sender, `temporal_layers=True`); a subscriber decodes it, marker and all."""
    publisher = await make_client(server.url, decode=False)
    await publisher.join("layers", "pub")
    await publisher.publish(video=PacedVideoTrack(layered))
    pc = publisher.pc
    assert pc is not None
    senders = [t.sender for t in pc.getTransceivers() if t.sender.track is not None]
    lean = [getattr(s._run_rtp, "__self__", None) for s in senders]
    assert any(isinstance(x, LeanSender) and x.temporal_layers for x in lean), lean
    viewer = await make_client(server.url, decode=True)
    await viewer.join("layers", "viewer")
    remote = await viewer.wait_for_track(participant_id=publisher.id, kind="video", timeout=WAIT)
    await remote.wait_frames(10, timeout=WAIT)
    assert marker_from_frame(remote.last_frame) == layered.marker
