"""`sfu/compat/srtp.py`: the lean send path's SRTP protect is byte-identical to
`pylibsrtp.Session.protect`, and fails the same way on what the stock method refuses."""

from __future__ import annotations

import os

import pylibsrtp
import pytest

from sfu.compat.srtp import check_srtp_internals, fast_protect, fast_protect_parts


def sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session, pylibsrtp.Session]:
    key = os.urandom(30)

    def make(direction: int) -> pylibsrtp.Session:
        policy = pylibsrtp.Policy(key=key, ssrc_type=direction)
        policy.allow_repeat_tx = True
        return pylibsrtp.Session(policy=policy)

    out = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return make(out), make(out), make(pylibsrtp.Policy.SSRC_ANY_INBOUND)


def rtp(seq: int, size: int) -> bytes:
    header = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(4) + (1234).to_bytes(4, "big")
    return header + os.urandom(size)


def test_internals_are_present() -> None:
    assert check_srtp_internals() == []


def test_fast_protect_is_byte_identical_and_unprotects() -> None:
    stock, lean, rx = sessions()
    protect = fast_protect(lean)
    assert protect is not lean.protect  # the fast closure, not the fallback
    for seq, size in enumerate((0, 1, 160, 1200, 1300)):
        packet = rtp(seq, size)
        protected = protect(packet)
        assert protected == stock.protect(packet)
        assert len(protected) > len(packet)
        assert rx.unprotect(protected) == packet


def test_fast_protect_refuses_what_stock_refuses() -> None:
    _, lean, _ = sessions()
    protect = fast_protect(lean)
    with pytest.raises(ValueError):
        protect(rtp(1, 1500))  # too long for the session's buffer, as stock
    with pytest.raises(TypeError):
        protect(bytearray(rtp(2, 10)))  # type: ignore[arg-type]
    with pytest.raises(pylibsrtp.Error):
        protect(b"\x80")  # not an RTP packet: libsrtp's own error


def test_fast_protect_parts_is_byte_identical_to_protecting_the_joined_packet() -> None:
    stock, lean, rx = sessions()
    protect = fast_protect_parts(lean)
    frame = os.urandom(4000)
    view = memoryview(frame)
    for seq, (start, stop) in enumerate(((0, 0), (0, 1296), (1296, 2592), (3888, 4000))):
        head = rtp(seq, 4)  # a header and a 4-byte descriptor
        protected = protect(head, view[start:stop])
        assert protected == stock.protect(head + frame[start:stop])
        assert rx.unprotect(protected) == head + frame[start:stop]
    with pytest.raises(ValueError):
        protect(rtp(9, 4), view[0:1490])  # too long for the session's buffer, as stock
