"""`ResendGate`: a NACKed packet is resent again only a round trip after its last resend,
and at most `MAX_RESENDS` times; one asked for again a round trip after its last resend
is given up, once; the state stays bounded."""

from __future__ import annotations

import math

import pytest

from sfu.resend_gate import (
    FORGET_AFTER,
    GIVE_UP_AFTER,
    MAX_RESENDS,
    MAX_TRACKED,
    MIN_INTERVAL,
    ResendGate,
)


def ask(gate: ResendGate, seq: int, now: float, rtt: float | None = None) -> bool:
    """One NACK of `seq`, resent whenever the gate allows it."""
    allowed, _ = gate.allow(seq, now, rtt)
    if allowed:
        gate.sent(seq, now)
    return allowed


def test_first_nack_of_each_packet_is_answered() -> None:
    gate = ResendGate()
    assert all(ask(gate, seq, 10.0) for seq in range(100))
    assert gate.refused == 0 and gate.given_up == 0


def test_a_repeat_within_a_round_trip_is_not_answered() -> None:
    gate = ResendGate()
    assert ask(gate, 5, 10.0, rtt=0.3)
    # the receiver's repeat crossed the retransmission, still in the queue
    assert not ask(gate, 5, 10.2, rtt=0.3)
    assert gate.refused == 1
    # a round trip (x 1.2) later the retransmission must have been lost: resend
    assert ask(gate, 5, 10.37, rtt=0.3)
    # without an RTT the interval is MIN_INTERVAL
    assert ask(gate, 6, 20.0)
    assert not ask(gate, 6, 20.0 + MIN_INTERVAL / 2)
    assert ask(gate, 6, 20.0 + MIN_INTERVAL * 1.01)


def test_a_request_not_sent_does_not_count_as_a_resend() -> None:
    gate = ResendGate()
    assert gate.allow(7, 10.0) == (True, False)  # allowed, but refused elsewhere (no room)
    assert gate.allow(7, 10.001) == (True, False)  # so the next request may go at once


def test_a_packet_is_resent_at_most_max_resends_times_and_given_up_once() -> None:
    gate = ResendGate()
    now = 10.0
    answered = 0
    hopeless = []
    for _ in range(10):
        allowed, given_up = gate.allow(9, now, rtt=0.05)
        if allowed:
            gate.sent(9, now)
            answered += 1
        hopeless.append(given_up)
        now += 0.125  # exact in binary
    assert answered == MAX_RESENDS
    assert gate.refused == 10 - MAX_RESENDS
    # the first request after the last resend's round trip, and GIVE_UP_AFTER after the
    # first, gives it up, once
    first = max(MAX_RESENDS, math.ceil(GIVE_UP_AFTER / 0.125))
    assert hopeless.index(True) == first and hopeless.count(True) == 1
    assert gate.given_up == 1


def test_quick_repeats_do_not_give_a_packet_up() -> None:
    """A receiver repeating its NACK faster than the round trip: refused, never given up
    while the resends have not had their round trip."""
    gate = ResendGate()
    now = 10.0
    results = []
    for _ in range(40):
        allowed, given_up = gate.allow(4, now, rtt=0.2)
        if allowed:
            gate.sent(4, now)
        results.append((allowed, given_up))
        now += 0.01  # every 10 ms, for 0.4 s: two resends, 0.24 s apart
    assert sum(a for a, _ in results) == 2 and not any(g for _, g in results)


def test_a_packet_is_not_given_up_before_its_resends_could_cross_a_full_queue() -> None:
    """An RTT of a millisecond (aiortc's smoothed value on an idle link) while the link's
    queue delays the resends: the receiver's repeats within GIVE_UP_AFTER give nothing up."""
    gate = ResendGate()
    now, given = 10.0, []
    while now < 10.0 + GIVE_UP_AFTER - 0.05:
        allowed, given_up = gate.allow(8, now, rtt=0.001)
        if allowed:
            gate.sent(8, now)
        given.append(given_up)
        now += 0.045
    assert len(given) > MAX_RESENDS + 2 and not any(given)
    assert gate.allow(8, 10.0 + GIVE_UP_AFTER, rtt=0.001) == (False, True)


def test_a_sequence_number_seen_again_much_later_is_a_new_loss() -> None:
    gate = ResendGate(max_resends=1)
    assert ask(gate, 3, 10.0)
    assert not ask(gate, 3, 10.5)
    assert ask(gate, 3, 10.0 + FORGET_AFTER + 1)  # wrapped around: another packet


def test_state_is_bounded() -> None:
    gate = ResendGate()
    for seq in range(3 * MAX_TRACKED):
        ask(gate, seq, 10.0)
    assert len(gate._entries) <= MAX_TRACKED
    ask(gate, 99_999, 10.0 + FORGET_AFTER + 1)  # old entries go
    assert len(gate._entries) == 1


@pytest.mark.parametrize(("resends", "interval"), [(0, 0.1), (3, -1.0)])
def test_bad_limits_are_refused(resends: int, interval: float) -> None:
    with pytest.raises(ValueError):
        ResendGate(max_resends=resends, min_interval=interval)


def test_asked_tells_a_first_nack_from_a_repeat() -> None:
    gate = ResendGate()
    assert not gate.asked(5, 10.0)
    ask(gate, 5, 10.0)
    assert gate.asked(5, 10.1)
    assert not gate.asked(5, 10.0 + FORGET_AFTER + 1)  # long ago: a new loss
