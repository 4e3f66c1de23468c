"""Fixtures of the browser end-to-end tests (each test here is marked ``browser``).

Chromium gathers ICE candidates on every interface, so each scenario runs the server and
the browser together in a fresh network namespace that has only ``lo``
(``run_in_netns.sh``); the scenario script starts the server subprocess inside it
(``harness.sfu_server``) and writes a JSON result that the test asserts on.

Outside CI (``CI`` unset) the tests are skipped with a message when Chromium, ``unshare``
or playwright is missing; in CI that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test here is a browser test: marked ``browser`` in this one place."""
    item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Skip (or, in CI, fail) when the browser tests cannot run on this machine."""
    missing = harness.missing_tools()
    if not missing:
        return
    message = "browser end-to-end tests need: " + "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: not skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def run_in_netns(browser_tools: None, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run ``tests/e2e/<script>`` (server + Chromium) in a loopback-only namespace and
    return its JSON result."""

    def run(script: str, *args: str, timeout: float = 240.0) -> dict[str, Any]:
        return harness.run_scenario(script, tmp_path, timeout, *args)

    return run
