"""The relay stats dashboard (``/stats``) in real Chromium while three Python participants
load the server (issue 5). See ``scenario_stats.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_stats.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import assert_scenario

EXPECTED_CHECKS = [
    "three publishers exchange video",
    "chart-bitrate has at least 3 points and is drawn",
    "chart-fps has at least 3 points and is drawn",
    "chart-participants has at least 3 points and is drawn",
    "chart-cpu has at least 3 points and is drawn",
    "bitrate chart's latest value > 0",
    "participants chart shows 3",
    "table has one row per participant",
    "subscriptions table has one row per subscription, with layer and estimate",
    "#status shows no error",
    "screenshot written",
]


def test_stats_dashboard_plots_a_small_load(run_in_netns: Callable[..., dict[str, Any]]) -> None:
    result = run_in_netns("scenario_stats.py")
    assert_scenario(result, EXPECTED_CHECKS, screenshot="the stats dashboard under load")
