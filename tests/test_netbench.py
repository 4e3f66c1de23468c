"""The network benchmark's plumbing (`benchmarks.netbench`, `sfu-bench --net...`).

The analysis and the command line are tested without privileges. The emulated run (a
room of 3 L1T3 bots, p0's downlink at 300 kbit/s) needs root, iproute2 and nftables:
skipped with the reason otherwise (in CI, where ``CI`` is set and the tests run as root,
a missing piece fails instead). It asserts what the report contains, not how good the
figures are: frame rates and freezes belong to the benchmark. Whole file: ~40 s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks import loadtest, netbench
from benchmarks.netbench import (
    FREEZE_GAP,
    NetCondition,
    NetRunOptions,
    conditions_from_args,
    matrix_conditions,
    stream_figures,
)

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- no privileges


def test_stream_figures_fps_freezes_and_loss() -> None:
    window = (10.0, 20.0)
    arrivals = [9.5, *[10.0 + i / 30 for i in range(150)], 16.0, 19.0]  # gaps: ~1 s, 3 s, 1 s
    lost = [5] + [5] * 150 + [7, 9]
    figures = stream_figures(arrivals, lost, window)
    assert figures["frames"] == 152
    assert figures["fps"] == pytest.approx(15.2)
    assert figures["freezes"] == 3
    assert figures["maxFreeze"] == pytest.approx(3.0)
    expected = (16.0 - 10.0 - 149 / 30) + 3.0 + 1.0
    assert figures["freezeSeconds"] == pytest.approx(expected, abs=1e-3)
    assert figures["lostPackets"] == 4  # 9 at the end minus 5 before the window


def test_complete_frames_exclude_those_with_a_packet_lost_for_good() -> None:
    arrivals = [1.0, 2.0, 3.0, 4.0, 5.0]
    seqs = [10, 13, 16, 19, 22]  # three packets per frame
    holes = [15, 20]  # in the third and the fifth frame
    assert netbench.complete_arrivals(arrivals, seqs, holes) == [1.0, 2.0, 4.0]
    figures = stream_figures(arrivals, [0] * 5, (0.5, 5.5), seqs, holes)
    assert (figures["fps"], figures["completeFps"]) == (1.0, 0.6)
    assert figures["freezesOf"] == "complete"
    assert figures["maxFreeze"] == pytest.approx(2.0)  # 2.0 -> 4.0, complete frames


def test_a_stream_never_received_is_one_long_freeze() -> None:
    figures = stream_figures([], [], (0.0, 8.0))
    assert (figures["fps"], figures["freezes"], figures["maxFreeze"]) == (0.0, 1, 8.0)
    assert figures["lostPackets"] is None


def test_short_gaps_are_not_freezes() -> None:
    arrivals = [i * (FREEZE_GAP - 0.01) for i in range(21)]
    assert stream_figures(arrivals, [], (0.0, arrivals[-1]))["freezes"] == 0


def _snapshot(now: float, frames: int, last: float, long: list[list[float]]) -> dict[str, Any]:
    inbound = [{"ssrc": 1, "participantId": "pid-1", "framesDecoded": frames}]
    return {
        "t": now / 1000,
        "now": now,
        "inbound": inbound,
        "outbound": [],
        "rendered": {"pid-1": {"frames": frames, "last": last, "long": long}},
    }


def test_chromium_rendered_freezes_count_like_the_bots() -> None:
    """Chromium's tiles' rendered frames (`requestVideoFrameCallback`): gaps over
    `FREEZE_GAP` inside the window, clipped to it, and one still going at its end."""
    gaps = [[9_000.0, 2_000.0], [12_000.0, 1_500.0], [15_000.0, 400.0]]
    first = _snapshot(10_000.0, 100, 10_000.0, gaps[:1])
    # in the window: the 1.5 s gap (10.5-12 s), the 0.4 s one (no freeze), and nothing
    # rendered for the last 0.8 s
    last = _snapshot(20_000.0, 340, 19_200.0, gaps)
    figures = netbench._chromium_figures({"ok": True, "snapshots": [first, last]}, {"pid-1": "p1"})
    (row,) = figures["inbound"]
    assert row["publisher"] == "p1"
    assert row["renderedFps"] == pytest.approx(24.0)
    assert row["freezes"] == 2
    assert row["freezeSeconds"] == pytest.approx(1.5 + 0.8)
    assert row["maxFreeze"] == pytest.approx(1.5)
    assert row["freezeList"] == [[0.5, 1.5], [9.2, 0.8]]
    table = netbench.chromium_table([{"condition": {"name": "c"}, "chromium": [figures]}])
    assert "| c | p1 | 24.00 | 24.00 | 2 | 1.50 |" in table
    # a gap that began before the window counts from the window's start
    clipped = _snapshot(20_000.0, 340, 19_900.0, [[11_000.0, 3_000.0]])
    (row,) = netbench._chromium_figures({"snapshots": [first, clipped]}, {})["inbound"]
    assert (row["freezes"], row["maxFreeze"]) == (1, pytest.approx(1.0))


def test_a_tile_that_rendered_nothing_is_one_long_freeze() -> None:
    first = _snapshot(10_000.0, 0, 0.0, [])
    last = _snapshot(20_000.0, 0, 0.0, [])
    for snap in (first, last):
        snap["rendered"] = {}
    (row,) = netbench._chromium_figures({"snapshots": [first, last]}, {})["inbound"]
    assert (row["renderedFps"], row["freezes"], row["maxFreeze"]) == (0.0, 1, 10.0)


def test_matrix_is_the_issues_table() -> None:
    conditions = matrix_conditions(buffer_ms=200)
    assert [c.name for c in conditions] == [
        "unimpaired",
        "loss 2 %",
        "loss 5 %",
        "loss 10 %",
        "p0 down 1000 kbit/s",
        "p0 down 500 kbit/s",
        "p0 down 300 kbit/s",
    ]
    up, down = conditions[2].links()
    assert (up.loss, down.loss, conditions[2].constrained) == (5, 5, None)
    up, down = conditions[-1].links()
    assert (up.rate_kbit, down.rate_kbit, down.buffer_ms) == (None, 300, 200)
    assert conditions[-1].constrained == "p0"


@pytest.mark.parametrize(
    "kwargs",
    [{"target": "some"}, {"rate_direction": "sideways"}, {"loss_up": 120}, {"rate_kbit": -1}],
)
def test_bad_conditions_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NetCondition("bad", **kwargs)  # type: ignore[arg-type]


def test_bad_run_options_are_refused() -> None:
    with pytest.raises(ValueError, match="participants"):
        NetRunOptions(participants=1)
    with pytest.raises(ValueError, match="layers"):
        NetRunOptions(layers=2)


def test_command_line_builds_the_condition() -> None:
    args = loadtest.build_parser().parse_args(
        ["--net-target", "one", "--net-rate", "300", "--net-loss", "2", "--net-loss-down", "5"]
    )
    assert loadtest.network_mode(args)
    (condition,) = conditions_from_args(args)
    up, down = condition.links()
    assert (condition.target, down.rate_kbit, up.rate_kbit) == ("one", 300, None)
    assert (up.loss, down.loss, down.buffer_ms) == (2, 5, 250)
    assert not loadtest.network_mode(loadtest.build_parser().parse_args([]))


def test_publisher_adaptation_is_on_by_default_and_can_be_turned_off() -> None:
    parse = loadtest.build_parser().parse_args
    assert netbench.run_options_from_args(parse(["--net"])).publisher_adapt
    off = netbench.run_options_from_args(parse(["--net", "--publisher-adapt", "off"]))
    assert not off.publisher_adapt
    with pytest.raises(SystemExit):
        parse(["--publisher-adapt", "maybe"])


def test_publishers_table_reports_switches_and_bitrates() -> None:
    result = {
        "condition": {"name": "p0 down 300"},
        "publishers": {
            "p1": {
                "variantSwitches": 2,
                "videoBitrate": 174_000,
                "targetBitrate": 239_000,
                "variantBitrates": [174_000, 233_000, 502_000],
            },
            "p0": {"variantSwitches": None, "videoBitrate": None, "targetBitrate": None},
        },
    }
    table = netbench.publishers_table([result])
    assert "| p0 down 300 | p1 | 174/233/502 | 2 | 239 | 174 |" in table
    assert "| p0 down 300 | p0 | - | - | - | - |" in table


def test_command_line_refuses_bad_network_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        loadtest.build_parser().parse_args(["--net-loss", "150"])
    assert "0..100" in capsys.readouterr().err
    assert loadtest.main(["--net", "--rooms", "2"]) == 2
    assert "one room" in capsys.readouterr().err


# ---------------------------------------------------------------- emulated network


def run_room_of_three(
    condition: NetCondition, tmp_path: Path, duration: float, **options: Any
) -> dict[str, Any]:
    """A room of three L1T3 bots through the network benchmark (2 s warm-up); its result."""
    run_options = NetRunOptions(
        participants=3,
        duration=duration,
        warmup=2.0,
        layers=3,
        cache_dir=str(tmp_path / "clips"),
        log_dir=tmp_path / "logs",
        **options,
    )
    result: dict[str, Any] = netbench.run_network(condition, run_options)
    assert result["errors"] == {}, result["errors"]
    return result


@pytest.fixture(scope="module")
def netem_available() -> None:
    from benchmarks.netem import remove_stale_namespaces, unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        remove_stale_namespaces()
        return
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set: not skipping)", pytrace=False)
    pytest.skip(reason)


def test_room_of_three_with_a_slow_downlink(netem_available: None, tmp_path: Path) -> None:
    """The run works end to end and its report has both groups, every stream, the links
    and the server's stats; the unconstrained streams carry video. The bots publish one
    clip each and ignore REMB (`publisher_adapt=False`): otherwise their smallest variants
    would fit p0's link and the server would have nothing to adapt (see the next test)."""
    condition = NetCondition("p0 down 300", rate_kbit=300, buffer_ms=250, target="one")
    result = run_room_of_three(condition, tmp_path, 6.0, publisher_adapt=False)
    assert result["constrained"] == "p0"
    assert {"constrained", "others", "fromConstrained"} <= set(result["groups"])
    pairs = {(s["subscriber"], s["publisher"]) for s in result["streams"]}
    everyone = {"p0", "p1", "p2"}
    assert pairs == {(a, b) for a in everyone for b in everyone if a != b}
    assert result["groups"]["constrained"]["streams"] == 2
    assert result["groups"]["others"]["streams"] == 4
    assert result["groups"]["fromConstrained"]["streams"] == 2
    for stream in result["streams"]:
        assert {"fps", "freezes", "freezeSeconds", "maxFreeze", "lostPackets"} <= set(stream)
        if "constrained" not in stream["groups"]:
            assert stream["fps"] > 0, stream
            assert stream["lostPackets"] is not None
            assert stream["completeFps"] is not None
    # the shaper held p0's downlink to its rate (plus a loose allowance for the burst)
    c0_down = result["links"]["c0"]["downlink"]
    assert c0_down["bytes"] * 8 / 1000 / result["window"] < 2 * 300, c0_down
    assert result["server"] is not None and result["server"]["rooms"]
    assert "| p0 down 300 | constrained | 2 |" in netbench.markdown_table([result])
    # the server adapted to p0 alone: p0's estimate fell below what two cameras need and
    # its video subscriptions lost layers or paused; nobody else's did
    [room] = result["server"]["rooms"]
    by_name = {p["name"]: p for p in room["participants"]}
    slow = by_name["p0"]
    estimate = slow["downlink"]["bitrate"]
    assert estimate is not None and estimate < 600_000, slow["downlink"]
    slow_video = [s for s in slow["subscriptions"] if s["kind"] == "video"]
    assert len(slow_video) == 2
    assert all(s["maxTid"] < 2 or s["linkPaused"] for s in slow_video), slow_video
    for name in ("p1", "p2"):
        video = [s for s in by_name[name]["subscriptions"] if s["kind"] == "video"]
        assert video and all(s["maxTid"] == 2 and not s["linkPaused"] for s in video), video


def test_adapting_bots_report_their_variants(netem_available: None, tmp_path: Path) -> None:
    """With adaptation on (the default) every bot publishes its clip's variants, follows
    the server's REMB between them and reports what it did."""
    condition = NetCondition("p0 down 300", rate_kbit=300, buffer_ms=250, target="one")
    result = run_room_of_three(condition, tmp_path, 4.0)
    everyone = {"p0", "p1", "p2"}
    assert set(result["publishers"]) == everyone
    for figures in result["publishers"].values():
        assert len(figures["variantBitrates"]) == 3
        assert figures["videoBitrate"] in figures["variantBitrates"]
        assert figures["variantSwitches"] >= 0


def test_random_loss_is_recovered_not_adapted_to(netem_available: None, tmp_path: Path) -> None:
    """5 % random loss on every link: the server NACKs the publishers and answers the
    subscribers' NACKs, and no subscription loses a layer or pauses for it (random loss
    is not congestion). Frame rates and freezes are the benchmark's business."""
    condition = NetCondition("loss 5", loss_up=5, loss_down=5, target="all")
    result = run_room_of_three(condition, tmp_path, 8.0)
    for stream in result["streams"]:
        assert stream["fps"] > 0, stream
    [room] = result["server"]["rooms"]
    nacks_sent = retransmits = 0
    for person in room["participants"]:
        for published in person["published"]:
            if published["kind"] == "video":
                nacks_sent += published["nacksSent"]
        for sub in person["subscriptions"]:
            if sub["kind"] == "video":
                retransmits += sub["retransmits"]
                assert sub["maxTid"] == 2 and not sub["linkPaused"], (person["name"], sub)
    assert nacks_sent > 0 and retransmits > 0, (nacks_sent, retransmits)


def test_network_option_without_root_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert loadtest.main(["--net-loss", "5", "--quiet"]) == 2
    assert "needs: root" in capsys.readouterr().err
