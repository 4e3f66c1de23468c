"""The room page as a meeting app (issue 13): pre-join, stage fill, pin, camera switch,
screen share, quality indicator, duplicate names, phone width, chat length, leave.
See ``scenario_meeting.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_meeting.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import assert_scenario

pytestmark = pytest.mark.timeout(360)  # the longest scenario (the default is 300 s)

EXPECTED_CHECKS = [
    "a bad room URL shows a friendly HTML page (400)",
    "pre-join: the preview plays the local camera before any peer connection",
    "pre-join: the device pickers list the fake devices",
    "2 participants: the remote video covers >= 30 % of a 1920x1080 viewport",
    "4 participants: remote videos together cover >= 40 % of 1920x1080",
    "pin: Bob's tile covers >= 50 % of the viewport",
    "Full screen shows Bob's tile full screen",
    "Stop camera stops the camera track (light off) and sends nothing",
    "Start camera opens it again on the same sender and Alice decodes Bob",
    "every visible control has an accessible name",
    "camera switch keeps the peer connection and Alice keeps decoding Bob",
    "microphone switch replaces the track on the same peer connection",
    "share 1: Bob's button says Stop sharing, Alice shows his share large",
    "stop 1: Bob's button is back to Share screen, Alice's tile too",
    "share 2: Bob's button says Stop sharing, Alice shows his share large",
    "stop 2: Bob's button is back to Share screen, Alice's tile too",
    "no share is left running",
    "quality: Alice sees Bob (2 fps) as poor",
    "two people called Bob are shown as Bob and Bob (2)",
    "8 participants: Alice shows 7 remote tiles",
    "390 px: one tap on Chat shows the chat input on screen",
    "2 participants: no horizontal overflow at 390 px",
    "4 participants: no horizontal overflow at 390 px",
    "8 participants: no horizontal overflow at 390 px",
    "a chat message over 2,000 characters is refused with a word",
    "leave clears the room view (tiles, people, own video)",
    "Carol joins with camera and mic off",
    "Bob sees Carol with camera and mic off",
    "Carol starts her camera and Bob decodes her",
]

SCREENSHOTS = [f"meeting-{n}p-{w}.png" for n in (2, 4, 8) for w in (390, 1280, 1920)] + [
    "meeting-prejoin-1920.png",
    "meeting-prejoin-390.png",
    "meeting-pinned-share-1920.png",
    "meeting-quality-poor-1920.png",
    "meeting-left-1920.png",
    "meeting-bad-room-1280.png",
]


def test_meeting_room_page(run_in_netns: Callable[..., dict[str, Any]]) -> None:
    result = run_in_netns("scenario_meeting.py", timeout=330.0)
    assert_scenario(result, EXPECTED_CHECKS, screenshots=SCREENSHOTS)
