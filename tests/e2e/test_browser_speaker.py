"""Active speaker highlight and the recording indicator on real Chromium pages (issue 15).
See ``scenario_speaker.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_speaker.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import explain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_speaker_highlight_and_recording_indicator(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    result = run_in_netns("scenario_speaker.py")
    assert result.get("ok"), explain(result)
    checks = result.get("checks", {})
    for name in ("Alice", "Bob"):
        assert f"{name}: the speaking bot's tile is highlighted" in checks
        assert f"{name}: the recording indicator appears" in checks
        assert f"{name}: the indicator goes away when it stops" in checks
    assert "Carol (joined later) sees the recording indicator" in checks
    assert "390 px: the active speaker is the large tile" in checks
    assert result.get("info", {}).get("in_netns") is True
