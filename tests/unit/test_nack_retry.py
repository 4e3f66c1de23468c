"""`sfu/compat/nack_retry.py`: packets still missing are NACKed again, spaced and bounded."""

from __future__ import annotations

import pytest

from sfu.compat.nack_retry import NackRetry


def test_asks_again_after_the_interval_and_at_most_max_retries_times() -> None:
    retry = NackRetry(retry_ms=100, max_retries=2)
    missing = {10, 11}
    retry.sent(1000)  # the generator's first NACK
    assert retry.due(missing, 1050) == []  # too soon
    assert retry.due(missing, 1100) == [10, 11]
    assert retry.due(missing, 1150) == []  # spaced by the interval again
    missing.discard(10)  # its retransmission arrived
    assert retry.due(missing, 1200) == [11]
    assert retry.due(missing, 1300) == []  # 11 was asked for twice more: given up
    assert retry.retries == 3


def test_a_new_gap_restarts_the_wait_and_new_numbers_get_their_own_tries() -> None:
    retry = NackRetry(retry_ms=100, max_retries=1)
    assert retry.due({5}, 0) == [5]  # nothing sent yet: due at once
    retry.sent(50)  # a new gap: the generator NACKed everything missing
    assert retry.due({5, 9}, 120) == []
    assert retry.due({5, 9}, 150) == [9]  # 5 has used its retry
    assert retry.due(set(), 400) == []  # nothing missing: state forgotten
    assert retry.due({5}, 500) == [5]


def test_wrap_around_numbers_and_bad_settings() -> None:
    retry = NackRetry()
    assert retry.due({65535, 0, 1}, 0) == [0, 1, 65535]
    with pytest.raises(ValueError):
        NackRetry(retry_ms=0)
    with pytest.raises(ValueError):
        NackRetry(max_retries=-1)


def test_lost_asks_for_a_new_gap_at_once_then_repeats_what_is_still_missing() -> None:
    from aiortc.rtcrtpreceiver import NackGenerator
    from aiortc.rtp import RtpPacket

    nack, retry = NackGenerator(), NackRetry(retry_ms=100, max_retries=1)
    assert retry.lost(nack, RtpPacket(sequence_number=1), 0) == []
    assert retry.lost(nack, RtpPacket(sequence_number=4), 10) == [2, 3]  # a new gap
    assert retry.lost(nack, RtpPacket(sequence_number=2), 50) == []  # 2 recovered
    assert retry.lost(nack, RtpPacket(sequence_number=5), 110) == [3]  # 3 asked again
    assert retry.lost(nack, RtpPacket(sequence_number=6), 300) == []  # retries used up
