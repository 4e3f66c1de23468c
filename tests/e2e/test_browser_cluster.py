"""Two Chromium participants on a two-node cluster (private redis-server): a moved join,
then a planned drain of the room's node; both pages move to the other node by
themselves; then node 1 is back and node 2 is killed (-9): both pages fail over.
See ``scenario_cluster.py`` for the steps.

    .venv/bin/pytest -m browser tests/e2e/test_browser_cluster.py -s
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import explain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

REDIS_SERVER = "/usr/bin/redis-server"


def test_pages_follow_the_room_across_cluster_nodes(
    run_in_netns: Callable[..., dict[str, Any]],
) -> None:
    if not os.path.exists(REDIS_SERVER) and not os.environ.get("CI"):
        pytest.skip("redis-server missing (Debian package redis-server)")
    result = run_in_netns("scenario_cluster.py", timeout=180.0)
    checks = result.get("checks", {})
    info = result.get("info", {})
    print(f"\nplanned move, s to video: {info.get('handover_seconds')}")
    print(f"kill -9 failover, s to video: {info.get('failover_seconds')}")
    assert result.get("ok"), explain(result)
    for name in (
        "Alice joined on node 1",
        "Bob's join on node 2 is moved to node 1 (the room's owner)",
        "no error shown for the moved join",
        "Alice is on n2 by itself",
        "Bob is on n2 by itself",
        "Alice decodes Bob's video on n2 within 10 s",
        "Bob decodes Alice's video on n2 within 10 s",
        "Alice: no 'left' line in the chat after the move",
        "Bob: no new chat notice after the move",
        "Bob: chat history intact after the move (one line, no duplicate)",
        "Alice is on n1 by itself",
        "Bob decodes Alice's video on n1 within 20 s",
        "Alice: chat history intact after the failover (one line, no duplicate)",
    ):
        assert name in checks, f"missing check {name!r}"
    screenshot = info.get("screenshot")
    assert screenshot and Path(screenshot).is_file()
    assert info.get("in_netns") is True
