"""`sfu/frame_assembler.py`: RTP packets in, complete encoded frames out (no I/O)."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from sfu.frame_assembler import MAX_PENDING_FRAMES, EncodedFrame, FrameAssembler
from tests.unit.fakes import vp8

KEY = b"\x10keyframe"  # VP8 payload header: bit0 == 0 -> keyframe
DELTA = b"\x11delta"  # bit0 == 1 -> interframe


def frame_packets(seq: int, ts: int, data: bytes, count: int = 1) -> list[RtpPacket]:
    """Split `data` into `count` packets starting at `seq`."""
    size = max(1, -(-len(data) // count))
    chunks = [data[i * size : (i + 1) * size] for i in range(count)]
    return [
        vp8(seq + i, ts, chunk, start=i == 0, marker=i == count - 1)
        for i, chunk in enumerate(chunks)
    ]


class Collector:
    def __init__(self, kind: str = "video") -> None:
        self.frames: list[EncodedFrame] = []
        self.assembler = FrameAssembler(kind, self.frames.append)
        self.plis = 0

    def add(self, *packets: RtpPacket) -> None:
        for packet in packets:
            pli, frame = self.assembler.add(packet)
            assert frame is None
            self.plis += pli


# ---------------------------------------------------------------- FrameAssembler: video


def test_releases_on_marker_without_waiting_for_next_frame() -> None:
    c = Collector()
    packets = frame_packets(100, 3000, KEY + b"x" * 20, count=3)
    c.add(*packets[:2])
    assert c.frames == []
    c.add(packets[2])
    assert len(c.frames) == 1
    frame = c.frames[0]
    assert frame.data == KEY + b"x" * 20
    assert frame.keyframe and frame.timestamp == 3000 and frame.ssrc == 1
    assert c.plis == 0
    c.add(*frame_packets(103, 6000, DELTA, count=1))
    assert [f.keyframe for f in c.frames] == [True, False]
    a = c.assembler.stats()
    assert (a.frames, a.keyframes, a.packets) == (2, 1, 4)
    assert a.bytes == len(KEY) + 20 + len(DELTA)
    assert a.pending_packets == 0


def test_reordering_within_and_across_frames() -> None:
    c = Collector()
    f1 = frame_packets(10, 0, KEY + b"abcdef", count=3)
    f2 = frame_packets(13, 3000, DELTA + b"ghi", count=2)
    f3 = frame_packets(15, 6000, DELTA + b"jkl", count=2)
    # f1 out of order, f2 and f3 complete before f1
    c.add(f1[0], f1[2], *f3[::-1], *f2)
    assert c.frames == []
    c.add(f1[1])
    assert [f.timestamp for f in c.frames] == [0, 3000, 6000]
    assert c.frames[0].data == KEY + b"abcdef"
    assert c.frames[2].data == DELTA + b"jkl"
    assert c.plis == 0


def test_nack_retransmission_completes_frame() -> None:
    c = Collector()
    c.add(*frame_packets(1, 0, KEY))
    f = frame_packets(2, 3000, DELTA + b"0123456789", count=4)
    c.add(f[0], f[1], f[3])
    later = [p for i in range(3) for p in frame_packets(6 + i, 6000 + 3000 * i, DELTA)]
    c.add(*later)
    assert len(c.frames) == 1  # everything waits behind the gap
    c.add(f[2])  # the retransmission
    assert [fr.timestamp for fr in c.frames] == [0, 3000, 6000, 9000, 12000]
    assert c.plis == 0
    # the retransmission arriving twice is late
    c.add(f[2])
    assert c.assembler.stats().late == 1 and len(c.frames) == 5


def test_loss_drops_frame_requests_keyframe_and_drops_deltas() -> None:
    c = Collector()
    c.add(*frame_packets(1, 0, KEY))
    lost = frame_packets(2, 3000, DELTA + b"abcd", count=2)
    c.add(lost[0])  # lost[1] never arrives
    seq, ts = 4, 6000
    for _ in range(MAX_PENDING_FRAMES):
        c.add(*frame_packets(seq, ts, DELTA))
        seq, ts = seq + 1, ts + 3000
    assert c.plis == 1
    assert len(c.frames) == 1  # the deltas after the loss are useless
    assert c.assembler.stats().frames_lost == 1
    assert c.assembler.stats().deltas_dropped == MAX_PENDING_FRAMES
    c.add(*frame_packets(seq, ts, KEY + b"new", count=2))
    assert len(c.frames) == 2 and c.frames[-1].keyframe
    c.add(*frame_packets(seq + 2, ts + 3000, DELTA))
    assert len(c.frames) == 3
    assert c.assembler.stats().pending_packets == 0
    # a late packet of the dropped frame is ignored
    c.add(lost[1])
    assert len(c.frames) == 3


def test_repeats_pli_while_waiting_at_most_once_a_second() -> None:
    c = Collector()
    for i in range(60):  # two seconds of deltas, no keyframe
        c.add(*frame_packets(i, i * 3000, DELTA))
    assert c.frames == []
    assert c.plis == 2


def test_first_frame_must_be_keyframe_and_mid_frame_start_is_skipped() -> None:
    c = Collector()
    f = frame_packets(500, 0, DELTA + b"abc", count=3)
    c.add(f[1], f[2])  # joined in the middle of a frame
    c.add(*frame_packets(503, 3000, DELTA))
    assert c.frames == [] and c.plis == 1
    c.add(*frame_packets(504, 6000, KEY))
    assert [fr.timestamp for fr in c.frames] == [6000]


def test_sequence_and_timestamp_wraparound() -> None:
    c = Collector()
    c.add(*frame_packets(65534, 0xFFFFF000, KEY + b"abc", count=3))  # 65534, 65535, 0
    c.add(*frame_packets(1, 0xFFFFF000 + 3000, DELTA, count=2))
    assert [f.data for f in c.frames] == [KEY + b"abc", DELTA]
    assert c.frames[1].timestamp == (0xFFFFF000 + 3000) & 0xFFFFFFFF


def test_padding_packets_between_frames() -> None:
    c = Collector()
    c.add(*frame_packets(1, 0, KEY))
    padding = RtpPacket(payload_type=96, sequence_number=2, timestamp=0, ssrc=1)
    padding._data = b""  # type: ignore[attr-defined]
    c.add(padding)
    c.add(*frame_packets(3, 3000, DELTA))
    assert len(c.frames) == 2 and c.plis == 0


def test_ssrc_change_resets() -> None:
    c = Collector()
    c.add(*frame_packets(1, 0, KEY))
    c.add(vp8(9000, 123, KEY, start=True, marker=True, ssrc=2))
    assert [f.ssrc for f in c.frames] == [1, 2]


def test_memory_is_bounded() -> None:
    c = Collector()
    c.add(*frame_packets(0, 0, KEY))
    seq = 2  # seq 1 never arrives: every later frame is stuck behind it until a drop
    for i in range(5000):
        c.add(*frame_packets(seq, 3000 * (i + 1), DELTA + b"x" * 10, count=3))
        seq += 3
        assert c.assembler.stats().pending_packets <= 3 * (MAX_PENDING_FRAMES + 1)
    # huge forward jump resyncs without waiting
    c.add(*frame_packets(seq + 20000, 10**8, KEY))
    assert c.frames[-1].timestamp == 10**8


def test_sequence_restarting_backwards_resyncs() -> None:
    c = Collector()
    c.add(*frame_packets(5000, 0, KEY))
    for i in range(70):  # same SSRC, sequence numbers restart 1000 lower
        c.add(*frame_packets(4000 + i, 3000 * (i + 1), KEY if i == 66 else DELTA))
    assert [f.timestamp for f in c.frames] == [0, 3000 * 67, 3000 * 68, 3000 * 69, 3000 * 70]


def test_frame_with_missing_marker_is_dropped() -> None:
    c = Collector()
    c.add(*frame_packets(1, 0, KEY))
    c.add(vp8(2, 3000, DELTA, start=True, marker=False))
    c.add(*frame_packets(3, 6000, KEY))  # next frame begins: frame 3000 can't complete
    assert [f.timestamp for f in c.frames] == [0, 6000]
    assert c.plis == 1


# ---------------------------------------------------------------- FrameAssembler: audio


def test_audio_every_packet_is_a_frame_and_late_packets_drop() -> None:
    c = Collector("audio")
    for seq, ts in ((1, 960), (2, 1920), (4, 3840), (3, 2880), (4, 3840), (5, 4800)):
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=ts, ssrc=7)
        packet._data = bytes([seq]) * 10  # type: ignore[attr-defined]
        packet.payload = packet._data  # type: ignore[attr-defined]
        c.add(packet)
    assert [f.timestamp for f in c.frames] == [960, 1920, 3840, 4800]
    assert all(f.keyframe for f in c.frames)
    assert c.assembler.stats().late == 2 and c.plis == 0


# ---------------------------------------------------------------- keyframe callback


def test_keyframe_needed_goes_to_the_callback_not_to_aiortc() -> None:
    frames: list[EncodedFrame] = []
    needed: list[int] = []
    assembler = FrameAssembler("video", frames.append, on_keyframe_needed=lambda: needed.append(1))
    flags = []
    for i in range(60):  # two seconds of deltas, no keyframe
        for packet in frame_packets(i, i * 3000, DELTA):
            flags.append(assembler.add(packet)[0])
    assert not any(flags)  # aiortc never sends a PLI of its own
    assert len(needed) == 2  # the same repeat rate as the flag
    stats = assembler.stats()
    assert stats.keyframes_needed == 2 and stats.deltas_dropped == 60 and stats.frames == 0


def test_audio_frames_carry_the_packets_rfc6464_level_without_copying_it() -> None:
    c = Collector("audio")
    levels = [(True, 30), None]
    for seq, level in enumerate(levels, 1):
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=7)
        packet._data = b"opus"  # type: ignore[attr-defined]
        packet.payload = packet._data  # type: ignore[attr-defined]
        packet.extensions.audio_level = level
        c.add(packet)
    assert c.frames[0].audio_level is levels[0]  # aiortc's parsed tuple, passed on as is
    assert c.frames[1].audio_level is None
