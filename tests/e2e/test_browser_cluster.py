"""Two Chromium participants on a two-node cluster (private redis-server): a moved join,
then a planned drain of the room's node; both pages move to the other node by
themselves. See ``scenario_cluster.py`` for the steps.

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
    print(f"\nhandover seconds: {result.get('info', {}).get('handover_seconds')}")
    assert result.get("ok"), explain(result)
    for name in (
        "Alice joined on node 1",
        "Bob's join on node 2 is moved to node 1 (the room's owner)",
        "Alice moved to node 2 by itself",
        "Bob moved to node 2 by itself",
        "Alice decodes Bob's video again on node 2 within 10 s",
        "Bob decodes Alice's video again on node 2 within 10 s",
        "Alice: no 'left' line in the chat",
        "Bob: chat history intact (one line, no duplicate)",
    ):
        assert name in checks, f"missing check {name!r}"
    screenshot = result.get("info", {}).get("screenshot")
    assert screenshot and Path(screenshot).is_file()
    assert result.get("info", {}).get("in_netns") is True
