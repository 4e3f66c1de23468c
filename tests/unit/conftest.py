"""Unit tests run their async tests under every event loop the server may use: the stock
asyncio loop and, when installed, uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # uvloop is an optional extra
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
