"""`sfu.rtp_loss.SequenceLoss`: holes in RTP sequence numbers that no packet filled."""

from __future__ import annotations

import pytest

from sfu.rtp_loss import HORIZON, MAX_GAP, SequenceLoss


def feed(loss: SequenceLoss, seqs: list[int]) -> SequenceLoss:
    for seq in seqs:
        loss.add(seq & 0xFFFF)
    return loss


def test_no_loss_in_order() -> None:
    loss = feed(SequenceLoss(), list(range(100)))
    assert (loss.lost, loss.received) == (0, 100)


def test_holes_count_until_filled() -> None:
    loss = feed(SequenceLoss(), [1, 2, 5, 6])
    assert loss.lost == 2
    loss.add(3)  # a retransmission
    assert loss.lost == 1
    loss.add(3)  # a duplicate changes nothing
    loss.add(6)
    assert loss.lost == 1


def test_holes_and_extended_numbers() -> None:
    loss = SequenceLoss()
    assert [loss.add(s) for s in (65534, 65535, 2, 1)] == [65534, 65535, 65538, 65537]
    assert loss.holes() == [65536]


def test_wraparound() -> None:
    loss = feed(SequenceLoss(), [65533, 65534, 1, 2])  # 65535 and 0 missing
    assert loss.lost == 2
    loss.add(0)
    assert loss.lost == 1


def test_old_holes_become_final_and_memory_stays_bounded() -> None:
    loss = SequenceLoss()
    seqs = [s for s in range(20 * HORIZON) if s % 10]  # 10 % loss, never recovered
    feed(loss, seqs)
    assert loss.lost == 2 * HORIZON - 1  # 10, 20, ..., 19990 (the first packet is 1)
    assert len(loss._missing) <= HORIZON + 10
    holes = loss.holes()
    assert len(holes) == loss.lost and holes[:2] == [10, 20]


def test_a_jump_is_a_restart_not_a_loss() -> None:
    loss = feed(SequenceLoss(), [10, 11, 11 + MAX_GAP + 5, 12 + MAX_GAP + 5])
    assert loss.lost == 0


def test_rejects_bad_sequence_numbers() -> None:
    loss = SequenceLoss()
    with pytest.raises(ValueError, match="out of range"):
        loss.add(70000)
    assert loss.received == 0
