"""`ResendGate`: a NACKed packet is resent again only a round trip after its last resend,
and at most `MAX_RESENDS` times; the state stays bounded."""

from __future__ import annotations

import pytest

from sfu.resend_gate import FORGET_AFTER, MAX_RESENDS, MAX_TRACKED, MIN_INTERVAL, ResendGate


def test_first_nack_of_each_packet_is_answered() -> None:
    gate = ResendGate()
    assert all(gate.allow(seq, 10.0) for seq in range(100))
    assert gate.refused == 0


def test_a_repeat_within_a_round_trip_is_not_answered() -> None:
    gate = ResendGate()
    assert gate.allow(5, 10.0, rtt=0.3)
    # the receiver's repeat crossed the retransmission, still in the queue
    assert not gate.allow(5, 10.2, rtt=0.3)
    assert gate.refused == 1
    # a round trip (x 1.2) later the retransmission must have been lost: resend
    assert gate.allow(5, 10.37, rtt=0.3)
    # without an RTT the interval is MIN_INTERVAL
    assert gate.allow(6, 20.0)
    assert not gate.allow(6, 20.0 + MIN_INTERVAL / 2)
    assert gate.allow(6, 20.0 + MIN_INTERVAL * 1.01)


def test_a_packet_is_resent_at_most_max_resends_times() -> None:
    gate = ResendGate()
    now = 10.0
    answered = 0
    for _ in range(10):
        answered += gate.allow(9, now, rtt=0.05)
        now += 0.1
    assert answered == MAX_RESENDS
    assert gate.refused == 10 - MAX_RESENDS


def test_a_sequence_number_seen_again_much_later_is_a_new_loss() -> None:
    gate = ResendGate(max_resends=1)
    assert gate.allow(3, 10.0)
    assert not gate.allow(3, 10.5)
    assert gate.allow(3, 10.0 + FORGET_AFTER + 1)  # wrapped around: another packet


def test_state_is_bounded() -> None:
    gate = ResendGate()
    for seq in range(3 * MAX_TRACKED):
        gate.allow(seq, 10.0)
    assert len(gate._sent) <= MAX_TRACKED
    gate.allow(99_999, 10.0 + FORGET_AFTER + 1)  # old entries go
    assert len(gate._sent) == 1


@pytest.mark.parametrize(("resends", "interval"), [(0, 0.1), (3, -1.0)])
def test_bad_limits_are_refused(resends: int, interval: float) -> None:
    with pytest.raises(ValueError):
        ResendGate(max_resends=resends, min_interval=interval)
