"""The downlink estimate: loss-based decrease, slow increase, REMB cap, recovery, expiry."""

from __future__ import annotations

import pytest

from sfu.downlink import (
    CLEAN_HEADROOM,
    DECREASE_HOLD,
    DELAY_CUT,
    DELAY_HOLD,
    FEEDBACK_TIMEOUT,
    MIN_DOWNLINK_BITRATE,
    REMB_TIMEOUT,
    DownlinkEstimate,
)
from tests.unit.fakes import FakeClock


class Link:
    """Drives one estimate like a subscriber's feedback: one report round per second."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.estimate = DownlinkEstimate(clock=self.clock)
        self.seq = 1000
        self.estimate.on_receiver_report(0, self.seq, ssrc=1)  # a stream's first report

    def round(
        self, sent_bps: int, loss: float, packets: int = 100, seconds: float = 1.0
    ) -> int | None:
        self.clock.advance(seconds)
        self.estimate.on_sent(round(sent_bps * seconds) // 8)
        self.seq += packets
        self.estimate.on_receiver_report(round(loss * 256), self.seq, ssrc=1)
        return self.estimate.bitrate()


def test_unknown_until_feedback() -> None:
    estimate = DownlinkEstimate(clock=FakeClock())
    assert estimate.bitrate() is None
    stats = estimate.stats()
    assert stats.bitrate is None and stats.loss is None and stats.reports == 0


def test_clean_link_stays_unlimited() -> None:
    link = Link()
    for _ in range(10):
        assert link.round(600_000, 0.0) is None
    assert link.estimate.stats().loss == 0.0


def test_heavy_loss_cuts_from_the_rate_sent() -> None:
    link = Link()
    rate = link.round(600_000, 0.5)
    # 600 kbps sent, half lost: 600k * (1 - 0.5/2)
    assert rate == pytest.approx(450_000, rel=0.01)
    again = link.round(450_000, 0.3, seconds=DECREASE_HOLD)
    assert again is not None and rate is not None and again < rate
    assert link.estimate.stats().decreases == 2


def test_a_round_right_after_a_cut_cuts_no_lower_than_its_goodput() -> None:
    """Its reports still cover what was sent before the cut (the queue, the report
    interval): judged against the lowered rate it would overshoot; the round of the last
    cut measured what the link got through, 90 % of which stays the floor."""
    link = Link()
    cut = link.round(630_000, 0.5)
    assert cut == pytest.approx(630_000 * 0.75, rel=0.01)
    # the layers were lowered; the next reports still show the queue's old losses
    second = link.round(240_000, 0.9, seconds=0.9)
    floor = 0.9 * 630_000 * 0.5
    assert second == pytest.approx(floor, rel=0.01)
    assert link.estimate.stats().decreases == 2
    # later loss is the new rate's own: no floor from the old round
    later = link.round(240_000, 0.5, seconds=DECREASE_HOLD)
    assert later is not None and later < floor


def test_a_cut_judges_the_loss_against_what_was_sent_before_it() -> None:
    """The layers were lowered before the lossy report arrived: the loss belongs to the
    rate of the round before, so the cut starts from that, not from the lowered one."""
    link = Link()
    link.round(400_000, 0.0)  # a burst into the queue: its reports are still clean
    cut = link.round(180_000, 0.3)  # now lowered; the burst's losses arrive
    assert cut == pytest.approx(400_000 * (1 - 0.3 / 2), rel=0.01)


def test_after_a_cut_clean_rounds_grow_only_up_to_the_remb() -> None:
    """The link has shown congestion: clean rounds grow the rate up to the REMB; a round
    above it is believed once the round after it is clean too (a burst a deep queue
    absorbed looks clean until its losses are reported), and without room added."""
    link = Link()
    cut = link.round(300_000, 0.5)
    assert cut is not None and cut < 320_000
    rates = []
    for _ in range(20):
        link.estimate.on_remb(320_000, [1])
        rates.append(link.round(250_000, 0.0))
    assert all(r is not None and r <= 320_000 for r in rates), rates
    assert rates[-1] == 320_000  # it does grow, up to the REMB
    link.estimate.on_remb(320_000, [1])
    burst = link.round(440_000, 0.0)  # clean so far: the queue absorbed it
    assert burst == 320_000  # not believed yet: its losses come with the next reports
    # a rate carried cleanly for two rounds is believed, past the REMB, which then bounds
    # nothing (a REMB below what the link carries cleanly): room is added
    link.estimate.on_remb(320_000, [1])
    carried = link.round(440_000, 0.0)
    assert carried == pytest.approx(CLEAN_HEADROOM * 440_000, abs=1)


def test_a_remb_below_what_the_link_carries_cleanly_does_not_hold_the_rate_down() -> None:
    """After an overuse Chromium's REMB climbs back slowly (about 1 kbps a round) from far
    below what its link carries: while it is below what was carried cleanly and not
    falling it bounds nothing, and the estimate grows. A falling REMB (a queue building
    up) still bounds it."""
    link = Link()
    cut = link.round(400_000, 0.5)
    assert cut is not None and cut < 320_000
    remb = 45_000
    rates = []
    for _ in range(12):
        link.estimate.on_remb(remb, [1])
        remb += 1_000
        rates.append(link.round(120_000, 0.0))  # 120 kbps get through cleanly
    values = [r for r in rates if r is not None]
    assert len(values) == 12 and values[-1] > 1.5 * cut, rates
    assert values == sorted(values)
    # now the REMB falls below what is carried: the rate stops growing
    link.estimate.on_remb(40_000, [1])
    held = link.round(120_000, 0.0)
    link.estimate.on_remb(38_000, [1])
    assert link.round(120_000, 0.0) == held


def test_a_cut_stops_at_the_goodput_of_a_congested_link() -> None:
    link = Link()
    rates = [link.round(640_000, 0.55) for _ in range(10)]  # the sender has not adapted
    # 640 kbps into a ~290 kbps link: 55 % lost; never below 90 % of what got through
    last = rates[-1]
    assert last == pytest.approx(0.9 * 640_000 * 0.45, rel=0.02)
    assert last is not None and all(r is not None and r >= last for r in rates)


def test_moderate_random_loss_does_not_cut() -> None:
    link = Link()
    for loss in (0.05, 0.08, 0.11, 0.06, 0.04):
        assert link.round(600_000, loss, packets=150) is None
    assert link.estimate.stats().decreases == 0


def test_decrease_never_below_floor() -> None:
    link = Link()
    rate = None
    for _ in range(40):
        rate = link.round(100_000, 0.9)
    assert rate == MIN_DOWNLINK_BITRATE


def test_increase_when_clean_and_recovery() -> None:
    link = Link()
    low = link.round(600_000, 0.5)
    assert low is not None
    previous = low
    for _ in range(30):
        # the subscriber now receives about what the estimate allows, without loss
        rate = link.round(previous, 0.0)
        assert rate is not None and rate >= previous
        previous = rate
    assert previous > 3 * low
    assert link.estimate.stats().increases >= 20


def test_increase_bounded_by_the_remb_or_what_is_sent() -> None:
    link = Link()
    low = link.round(600_000, 0.5)
    assert low is not None
    for _ in range(50):
        link.estimate.on_remb(400_000, [1])  # a receiver sends REMB about every second
        link.round(100_000, 0.0)  # sending far less than the estimate
    # the loss-based rate is not above max(REMB, 2 x 100 kbps) = REMB: no growth
    assert link.estimate.stats().loss_bitrate == low
    for _ in range(50):
        link.estimate.on_remb(900_000, [1])
        link.round(100_000, 0.0)
    assert link.estimate.stats().loss_bitrate == 900_000  # up to the REMB, not past it


def test_recovery_from_a_paused_video_is_fast_below_the_remb() -> None:
    link = Link()
    for _ in range(5):
        link.round(600_000, 0.8)  # a congested link: cut towards the goodput
    low = link.estimate.stats().loss_bitrate
    assert low is not None and low < 150_000
    rounds = 0
    while (link.estimate.bitrate() or 0) < 300_000 and rounds < 100:
        link.estimate.on_remb(320_000, [1])  # the receiver's delay-based estimate
        link.round(40_000, 0.0)  # video paused: only audio flows, nothing lost
        rounds += 1
    # 10 % per round below half the REMB, 5 % above: about 16 rounds, not 20+
    assert rounds < 20


def test_moderate_loss_grows_slowly_and_is_never_cut() -> None:
    """5 % random loss after a cut (a burst of congestion): the rate does not stay held
    down for good; it grows 5 % a round (a clean round would grow it faster)."""
    link = Link()
    low = link.round(600_000, 0.5)
    assert low is not None
    rates = [link.round(400_000, 0.05) for _ in range(5)]
    assert rates[0] == pytest.approx(low * 1.05, rel=0.01)
    values = [r for r in rates if r is not None]
    assert len(values) == 5 and values == sorted(set(values))  # strictly growing
    assert link.estimate.stats().decreases == 1


def test_remb_alone_limits_nothing_but_bounds_growth() -> None:
    link = Link()
    link.estimate.on_remb(300_000, [1, 2])
    link.round(600_000, 0.0)
    # a receive-side REMB is no congestion signal by itself (aiortc's ramps up from low)
    assert link.estimate.bitrate() is None
    assert link.estimate.stats().remb == 300_000
    cut = link.round(600_000, 0.5)  # loss: 600k * (1 - 0.5 / 2)
    assert cut == pytest.approx(450_000, rel=0.01)
    # clean rounds grow it, up to the REMB
    link.estimate.on_remb(500_000, [1, 2])
    grown = [link.round(200_000, 0.0) for _ in range(8)]  # within the REMB's lifetime
    assert all(g is not None and g <= 500_000 + 1 for g in grown), grown
    assert grown[-1] == 500_000


def test_a_clean_round_is_believed_at_once() -> None:
    link = Link()
    low = link.round(640_000, 0.55)  # congested: cut
    assert low is not None
    lower = link.round(300_000, 0.5, seconds=DECREASE_HOLD)
    assert lower is not None and lower < low
    # a probe of 250 kbps gets through cleanly: the link carries at least that
    after = link.round(250_000, 0.0)
    assert after is not None and after >= 1.25 * 250_000 * 0.99


def test_remb_of_disjoint_receivers_add_up() -> None:
    estimate = DownlinkEstimate(clock=FakeClock())
    estimate.on_remb(200_000, [1])
    estimate.on_remb(300_000, [2])
    estimate.on_remb(250_000, [1])  # receiver 1 again: replaces its own
    assert estimate.stats().remb == 550_000
    estimate.on_remb(400_000, [1, 2])  # one REMB for both now
    assert estimate.stats().remb == 400_000


def test_remb_expires() -> None:
    clock = FakeClock()
    estimate = DownlinkEstimate(clock=clock)
    estimate.on_remb(200_000, [1])
    assert estimate.stats().remb == 200_000
    clock.advance(REMB_TIMEOUT + 1)
    assert estimate.stats().remb is None


def test_no_feedback_for_long_makes_it_unknown_again() -> None:
    link = Link()
    assert link.round(600_000, 0.5) is not None
    link.clock.advance(FEEDBACK_TIMEOUT + 1)
    assert link.estimate.bitrate() is None
    assert link.estimate.stats().loss_bitrate is None


def test_reports_are_weighted_by_packets() -> None:
    clock = FakeClock()
    estimate = DownlinkEstimate(clock=clock)
    estimate.on_receiver_report(0, 0, ssrc=1)
    estimate.on_receiver_report(0, 0, ssrc=2)
    clock.advance(1.0)
    estimate.on_sent(75_000)
    # stream 1: 500 packets, clean; stream 2: 10 packets, all lost
    estimate.on_receiver_report(255, 10, ssrc=2)
    estimate.on_receiver_report(0, 500, ssrc=1)
    stats = estimate.stats()
    assert stats.loss is not None and stats.loss < 0.05
    assert stats.decreases == 0 and stats.bitrate is None


def test_cumulative_counts_measure_loss_across_lost_and_short_reports() -> None:
    """A browser reports with every NACK (a few packets, a high fraction); when the report
    before such a one is lost on the uplink, its fraction must not stand for both
    intervals: the cumulative counts give the loss between the reports that arrived."""
    clock = FakeClock()
    estimate = DownlinkEstimate(clock=clock)
    estimate.on_receiver_report(0, 1000, ssrc=1, cumulative_lost=10)
    clock.advance(1.0)
    estimate.on_sent(75_000)
    # 100 packets since the last report that arrived, 5 of them lost; the report's own
    # interval was the last 3 packets, one of them lost (fraction 1/3)
    estimate.on_receiver_report(85, 1100, ssrc=1, cumulative_lost=15)
    stats = estimate.stats()
    assert stats.loss == pytest.approx(0.05)
    assert stats.decreases == 0 and stats.bitrate is None
    # by the fraction alone, the same report reads as a third of 100 packets lost: a cut
    other_clock = FakeClock()
    fraction_only = DownlinkEstimate(clock=other_clock)
    fraction_only.on_receiver_report(0, 1000, ssrc=1)
    other_clock.advance(1.0)
    fraction_only.on_sent(75_000)
    fraction_only.on_receiver_report(85, 1100, ssrc=1)
    assert fraction_only.stats().decreases == 1


def test_retransmissions_that_lower_the_cumulative_count_are_no_negative_loss() -> None:
    clock = FakeClock()
    estimate = DownlinkEstimate(clock=clock)
    estimate.on_receiver_report(0, 0, ssrc=1, cumulative_lost=40)
    clock.advance(1.0)
    estimate.on_sent(75_000)
    # late retransmissions brought the count down by more than this round lost
    estimate.on_receiver_report(0, 100, ssrc=1, cumulative_lost=20)
    assert estimate.stats().loss == 0.0
    clock.advance(1.0)
    estimate.on_sent(75_000)
    estimate.on_receiver_report(0, 200, ssrc=1, cumulative_lost=80)  # 60 of 100 lost
    stats = estimate.stats()
    assert stats.loss == pytest.approx(0.6) and stats.decreases == 1


def test_small_rounds_wait_for_packets() -> None:
    clock = FakeClock()
    estimate = DownlinkEstimate(clock=clock)
    estimate.on_receiver_report(0, 0, ssrc=1)
    clock.advance(1.0)
    estimate.on_receiver_report(128, 5, ssrc=1)  # 5 packets: not a round yet
    assert estimate.stats().loss is None
    clock.advance(1.0)
    estimate.on_receiver_report(128, 40, ssrc=1)
    assert estimate.stats().loss == pytest.approx(0.5)


def test_counters() -> None:
    estimate = DownlinkEstimate(clock=FakeClock())
    estimate.on_nack(3)
    estimate.on_nack()
    estimate.on_sent(1200)
    estimate.on_remb(1_000_000)
    stats = estimate.stats()
    assert (stats.nacks, stats.rembs, estimate.bytes_sent) == (4, 1, 1200)


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        ("on_remb", -1),
        ("on_remb", 1.5),
        ("on_receiver_report", 256),
        ("on_receiver_report", -1),
        ("on_receiver_report", True),
        ("on_nack", -2),
        ("on_sent", "10"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(call: str, arg: object) -> None:
    estimate = DownlinkEstimate(clock=FakeClock())
    with pytest.raises(ValueError):
        getattr(estimate, call)(arg)
    assert estimate.stats() == DownlinkEstimate(clock=FakeClock()).stats()


def test_bad_sequence_is_refused() -> None:
    estimate = DownlinkEstimate(clock=FakeClock())
    with pytest.raises(ValueError):
        estimate.on_receiver_report(0, -5)
    with pytest.raises(ValueError):
        estimate.on_receiver_report(0, 5, cumulative_lost=1.5)  # type: ignore[arg-type]
    assert estimate.reports == 0


def test_bitrate_is_cached_between_changes() -> None:
    link = Link()
    link.round(1_000_000, 0.0)  # a clean round: 1 Mbps sent, no limit
    clock, estimate = link.clock, link.estimate
    calls = 0
    compute = estimate._compute

    def counting(now: float) -> int | None:
        nonlocal calls
        calls += 1
        return compute(now)

    estimate._compute = counting  # type: ignore[method-assign]
    clock.advance(1.0)  # past the cached value of the round's own bitrate() call
    for _ in range(100):
        assert estimate.bitrate() is None
    assert calls == 1
    clock.advance(1.0)
    link.seq += 100
    estimate.on_sent(600_000 // 8)
    estimate.on_receiver_report(128, link.seq, ssrc=1)  # feedback (50 % lost) cuts at once
    assert estimate.bitrate() is not None and calls == 2
    clock.advance(FEEDBACK_TIMEOUT + 1)  # expiry is noticed within RECHECK
    assert estimate.bitrate() is None and calls == 3


def test_retransmissions_get_a_share_of_a_limited_downlink() -> None:
    link = Link()
    estimate = link.estimate
    assert all(estimate.allow_retransmission() for _ in range(1000))  # unlimited: all
    rate = link.round(640_000, 0.55)  # congested: limited
    assert rate is not None
    link.clock.advance(1.0)
    allowed = sum(estimate.allow_retransmission() for _ in range(1000))
    # at most a half-second bucket of 15 % of the estimate, in 1200-byte packets
    assert 1 <= allowed <= 0.15 * rate / 8 * 0.5 / 1200 + 1
    assert estimate.stats().retransmissions_refused == 1000 - allowed
    link.clock.advance(1.0)  # the bucket refills with time
    assert estimate.allow_retransmission()


def test_retransmissions_use_what_the_last_round_left_of_the_estimate() -> None:
    link = Link()
    estimate = link.estimate
    rate = link.round(640_000, 0.55)
    assert rate is not None
    link.round(rate // 4, 0.05)  # layers dropped: a quarter of the estimate sent
    link.clock.advance(1.0)
    allowed = sum(estimate.allow_retransmission() for _ in range(1000))
    left = (estimate.bitrate() or 0) - estimate.stats().sent_bitrate
    assert left > 0.5 * rate
    # the half-second bucket of what is left, not of 15 %
    assert 0.15 * rate / 8 * 0.5 / 1200 + 1 < allowed <= left / 8 * 0.5 / 1200 + 1


def test_a_standing_queue_seen_by_nack_delay_cuts_at_once() -> None:
    """The first NACKs of an overflow come a queue's delay late: the estimate, unknown
    so far, is cut to 0.85 x what was sent lately, long before a round of reports is
    significant; a lower estimate is left alone, and a cut holds off the next."""
    link = Link()
    link.round(400_000, 0.0)  # a clean round: unknown, unlimited
    assert link.estimate.bitrate() is None
    link.clock.advance(0.5)
    link.estimate.on_sent(500_000 // 8 // 2)  # half a second at 500 kbit/s
    cut = [link.estimate.on_nack_delay(delay, rtt=0.001) for delay in (0.25, 0.26, 0.25)]
    assert cut == [False, False, True]
    rate = link.estimate.bitrate()
    assert rate == pytest.approx(DELAY_CUT * 500_000, rel=0.02)
    stats = link.estimate.stats()
    assert (stats.delay_cuts, stats.decreases) == (1, 1)
    # the queue is still draining: more late NACKs within the hold cut nothing more
    link.clock.advance(0.1)
    assert not any(link.estimate.on_nack_delay(0.25, rtt=0.001) for _ in range(3))
    # random loss on an idle link is no queue
    link.clock.advance(DELAY_HOLD)
    assert not any(link.estimate.on_nack_delay(0.003, rtt=0.001) for _ in range(5))
    assert link.estimate.stats().delay_cuts == 1


def test_a_delay_cut_never_raises_a_lower_estimate() -> None:
    link = Link()
    low = link.round(150_000, 0.6)  # cut far below what is sent next
    assert low is not None
    link.clock.advance(DECREASE_HOLD + 0.5)
    link.estimate.on_sent(400_000 // 8)
    assert not link.estimate.on_queue_overuse()
    assert link.estimate.bitrate() == low


def test_a_delay_cut_counts_the_loss_this_rounds_reports_showed_so_far() -> None:
    link = Link()
    link.round(400_000, 0.0)
    link.clock.advance(0.5)
    link.estimate.on_sent(500_000 // 8 // 2)
    link.seq += 40
    link.estimate.on_receiver_report(64, link.seq, ssrc=1)  # a quarter of 40 lost so far
    assert link.estimate.bitrate() is None  # half a round: not evaluated yet
    assert any(link.estimate.on_nack_delay(0.25, rtt=0.001) for _ in range(3))
    assert link.estimate.bitrate() == pytest.approx(DELAY_CUT * 500_000 * 0.75, rel=0.02)


def test_a_delay_cut_early_in_a_round_judges_the_last_rounds_rate_too() -> None:
    """A round just begun may hold a lull between bursts: its rate alone would cut far
    below the link (a video paused for seconds)."""
    link = Link()
    link.round(400_000, 0.0)
    link.clock.advance(0.3)
    link.estimate.on_sent(100_000 // 8 * 3 // 10)  # 0.3 s at 100 kbit/s: a lull
    assert any(link.estimate.on_nack_delay(0.25, rtt=0.001) for _ in range(3))
    assert link.estimate.bitrate() == pytest.approx(DELAY_CUT * 400_000, rel=0.02)


def test_every_cut_is_announced() -> None:
    link = Link()
    cuts: list[int] = []
    link.estimate.on_cut = lambda: cuts.append(link.estimate.stats().decreases)
    link.round(400_000, 0.0)  # clean: no cut
    link.clock.advance(0.5)
    link.estimate.on_sent(500_000 // 8 // 2)
    assert any(link.estimate.on_nack_delay(0.25, rtt=0.001) for _ in range(3))  # a delay cut
    link.round(375_000, 0.5, seconds=0.5)  # a loss cut
    assert cuts == [1, 2] and link.estimate.stats().delay_cuts == 1


def test_late_nacks_on_a_lossy_link_cut_nothing() -> None:
    """10 % random loss: a receiver's first NACKs get lost and come again in its retries,
    several at once and late (seen: 0.27, 0.20, 0.14 s in one NACK). The last round showed
    the loss: the loss rounds judge that link, not the NACK delay."""
    link = Link()
    assert link.round(400_000, 0.1, packets=200) is None  # 10 %: not significant, no cut
    link.clock.advance(0.5)
    link.estimate.on_sent(400_000 // 8 // 2)
    assert not any(link.estimate.on_nack_delay(d, rtt=0.001) for d in (0.266, 0.202, 0.135))
    assert link.estimate.bitrate() is None and link.estimate.stats().delay_cuts == 0
