"""A browser that refuses camera and microphone still joins and receives (issue 4).
See ``scenario_receive_only.py`` for the steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import assert_scenario

EXPECTED_CHECKS = [
    "the publisher sees Dave join",
    "Dave decodes the publisher's video (framesDecoded increasing)",
    "the page says the camera was refused",
    "the server holds no track published by Dave",
]


def test_receive_only_when_the_camera_is_refused(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    result = run_in_netns("scenario_receive_only.py")
    assert_scenario(result, EXPECTED_CHECKS)
