"""`QueueDelay`: NACKs that come a queue's delay late say a queue stands at the link;
random loss, a lone late NACK or a path that is slow for good do not."""

from __future__ import annotations

from sfu.queue_delay import BASE_WINDOW, MIN_SAMPLES, THRESHOLD, WINDOW, QueueDelay


def feed(detector: QueueDelay, start: float, delays: list[float], step: float = 0.05) -> list[bool]:
    return [detector.sample(start + i * step, d) for i, d in enumerate(delays)]


def test_random_loss_on_an_idle_link_is_no_queue() -> None:
    detector = QueueDelay()
    verdicts = feed(detector, 10.0, [0.002, 0.015, 0.004, 0.021, 0.003] * 8)
    assert not any(verdicts) and detector.overuses == 0
    assert detector.base == 0.002


def test_an_overflowing_queue_is_seen_after_a_few_first_nacks() -> None:
    detector = QueueDelay()
    feed(detector, 10.0, [0.002, 0.01, 0.003])
    verdicts = feed(detector, 12.0, [0.25, 0.26, 0.27, 0.25], step=0.02)
    assert verdicts == [False] * (MIN_SAMPLES - 1) + [True, False]
    assert detector.overuses == 1  # a new verdict needs new samples


def test_the_first_nacks_of_a_clean_link_come_from_the_overflow() -> None:
    """No NACK before the overflow: the round trip from receiver reports is the base."""
    detector = QueueDelay()
    verdicts = [detector.sample(10.0 + 0.02 * i, 0.25, rtt=0.001) for i in range(MIN_SAMPLES)]
    assert verdicts[-1]
    without = QueueDelay()
    assert not any(without.sample(10.0 + 0.02 * i, 0.25) for i in range(MIN_SAMPLES))


def test_lone_or_spread_late_nacks_are_no_queue() -> None:
    detector = QueueDelay()
    feed(detector, 10.0, [0.002] * 3)
    # a repeat that looked like a first NACK (the first was lost on the way), now and then
    assert not any(feed(detector, 11.0, [0.002, 0.2, 0.003, 0.003, 0.15, 0.002]))
    # late ones, but further apart than the window
    assert not any(feed(detector, 12.0, [0.2] * 4, step=WINDOW * 1.1))


def test_a_path_slow_for_good_becomes_the_base() -> None:
    detector = QueueDelay()
    feed(detector, 10.0, [0.002] * 3)
    late = [0.1 + THRESHOLD] * 3
    now = 10.0 + BASE_WINDOW + 1
    verdicts = feed(detector, now, late, step=0.1)
    assert verdicts[-1]  # first: a queue
    # after a whole base window of it, that is the path's delay
    later = now + BASE_WINDOW + 1
    feed(detector, later, late, step=0.5)
    assert detector.base is not None and detector.base > THRESHOLD
    assert not any(feed(detector, later + 2.0, late, step=0.05))


def test_bad_samples_are_ignored() -> None:
    detector = QueueDelay()
    assert not detector.sample(10.0, -1.0) and not detector.sample(10.0, 1e6)
    assert detector.samples == 0 and detector.base is None
