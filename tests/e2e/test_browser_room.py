"""Three real Chromium participants in one room through the real server (PROTOCOL.md,
ARCHITECTURE.md "Testing without leaving loopback"). See ``scenario_room.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e -s
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import explain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

EXPECTED_CHECKS = [
    "{0} joined",
    "{0} sees both others in the participant list",
    "{0} decodes video from both others (framesDecoded increasing)",
    "{0} receives VP8 only",
]


def test_three_participants_in_one_room(run_in_netns: Callable[..., dict[str, Any]]) -> None:
    result = run_in_netns("scenario_room.py")
    checks = result.get("checks", {})
    screenshot = result.get("info", {}).get("screenshot")
    if screenshot:
        print(f"\nscreenshot of a room page with two remote tiles: {screenshot}")
    assert result.get("ok"), explain(result)
    # the scenario really ran every step (a silently skipped step is a failure too)
    for name in ("Alice", "Bob", "Carol"):
        for pattern in EXPECTED_CHECKS:
            assert pattern.format(name) in checks, f"missing check {pattern.format(name)!r}"
        for other in ("Alice", "Bob", "Carol"):
            if other != name:
                assert f"{name}: video of {other} advances" in checks
                assert f"{name}: video of {other} is not black" in checks
    for name in ("Bob", "Carol"):
        assert f"{name} sees Alice's chat message" in checks
    assert "Alice sees Bob muted" in checks
    assert "Carol's tile disappears on Alice's page" in checks
    assert screenshot and Path(screenshot).is_file()
    assert result.get("info", {}).get("in_netns") is True


def test_reconnect_and_rejoin_after_server_restart(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    result = run_in_netns("scenario_reconnect.py")
    assert result.get("ok"), explain(result)
    assert "page rejoins by itself when the server is back" in result.get("checks", {})
