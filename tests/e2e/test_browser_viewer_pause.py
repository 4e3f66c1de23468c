"""Viewer pause and the camera's temporal layers in real Chromium (issue #12). See
``scenario_viewer_pause.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_viewer_pause.py -s
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import assert_scenario

EXPECTED_CHECKS = [
    "Alice publishes her camera",
    "every camera packet the server receives carries a TID (T bit)",
    "TIDs 0, 1 and 2 all occur (L1T3)",
    "Chromium's getStats says it encodes L1T3",
    "the server forwards the bot's video to Alice",
    "the bot's tile is hidden",
    "hidden tile: the page paused the bot's video",
    "hidden tile: /api/stats shows the subscription paused, 0 fps forwarded",
    "hidden tile: the bot's audio still flows to Alice",
    "tile shown again: forwarding resumed from a keyframe",
    "tile shown again: the page decodes the bot's video again",
    "the page is hidden",
    "background page: the page paused the bot's video",
    "background page: /api/stats shows the subscription paused, 0 fps forwarded",
    "background page: the bot's audio still flows to Alice",
    "page visible again: forwarding resumed from a keyframe",
    "page visible again: the page decodes the bot's video again",
    "a paused-link video shows the tile as 'paused: poor connection'",
    "'active' clears the poor-connection note",
]


def test_hidden_tiles_and_background_pages_pause_video_and_the_camera_has_layers(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    result = run_in_netns("scenario_viewer_pause.py")
    print("\nVP8 descriptor of Chromium's camera:", result["info"].get("vp8Descriptor"))
    print("Chromium outbound:", result["info"].get("chromiumOutbound"))
    assert_scenario(result, EXPECTED_CHECKS, screenshot="a tile paused for a poor connection")
