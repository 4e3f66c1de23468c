"""Active speaker highlight and the recording indicator on real Chromium pages (issue 15).
See ``scenario_speaker.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_speaker.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import assert_scenario

EXPECTED_CHECKS = [
    *(
        f"{name}: {what}"
        for name in ("Alice", "Bob")
        for what in (
            "the speaking bot's tile is highlighted",
            "the recording indicator appears",
            "the indicator goes away when it stops",
        )
    ),
    "Carol (joined later) sees the recording indicator",
    "390 px: the active speaker is the large tile",
]


def test_speaker_highlight_and_recording_indicator(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    assert_scenario(run_in_netns("scenario_speaker.py"), EXPECTED_CHECKS)
