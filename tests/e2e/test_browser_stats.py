"""The relay stats dashboard (``/stats``) in real Chromium while three Python participants
load the server (issue 5). See ``scenario_stats.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_stats.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import explain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

EXPECTED_CHECKS = [
    "three publishers exchange video",
    "chart-bitrate has at least 3 points and is drawn",
    "chart-fps has at least 3 points and is drawn",
    "chart-participants has at least 3 points and is drawn",
    "chart-cpu has at least 3 points and is drawn",
    "bitrate chart's latest value > 0",
    "participants chart shows 3",
    "table has one row per participant",
    "#status shows no error",
    "screenshot written",
]


def test_stats_dashboard_plots_a_small_load(run_in_netns: Callable[..., dict[str, Any]]) -> None:
    result = run_in_netns("scenario_stats.py")
    screenshot = result.get("info", {}).get("screenshot")
    if screenshot:
        print(f"\nscreenshot of the stats dashboard under load: {screenshot}")
    assert result.get("ok"), explain(result)
    checks = result.get("checks", {})
    # the scenario really ran every step (a silently skipped step is a failure too)
    for name in EXPECTED_CHECKS:
        assert name in checks, f"missing check {name!r}"
    assert screenshot and Path(screenshot).is_file()
    assert result.get("info", {}).get("in_netns") is True
