"""Three real Chromium participants in one room through the real server (PROTOCOL.md,
ARCHITECTURE.md "Testing without leaving loopback"). See ``scenario_room.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import assert_scenario

NAMES = ("Alice", "Bob", "Carol")

EACH_PARTICIPANT = [
    "{0} joined",
    "{0} sees both others in the participant list",
    "{0} decodes video from both others (framesDecoded increasing)",
    "{0} receives VP8 only",
]

EXPECTED_CHECKS = (
    [pattern.format(name) for name in NAMES for pattern in EACH_PARTICIPANT]
    + [
        f"{name}: video of {other} {what}"
        for name in NAMES
        for other in NAMES
        if other != name
        for what in ("advances", "is not black")
    ]
    + [f"{name} sees Alice's chat message" for name in ("Bob", "Carol")]
    + ["Alice sees Bob muted", "Carol's tile disappears on Alice's page"]
)


def test_three_participants_in_one_room(run_in_netns: Callable[..., dict[str, Any]]) -> None:
    result = run_in_netns("scenario_room.py")
    assert_scenario(result, EXPECTED_CHECKS, screenshot="a room page with two remote tiles")


def test_reconnect_and_rejoin_after_server_restart(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    result = run_in_netns("scenario_reconnect.py")
    assert_scenario(result, ["page rejoins by itself when the server is back"])
