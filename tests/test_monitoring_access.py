"""Operator endpoints without media: token enforcement, bad requests, Prometheus format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from signaling.config import ServerConfig
from tests.clients import EventClient

TOKEN = "s3cret-admin-token"


@pytest.fixture
async def guarded() -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        sfu=SfuConfig(ice_addresses=("127.0.0.1",)), admin_token=TOKEN, stats_interval=0.2
    )
    async with running(config) as server:
        yield server


@pytest.mark.parametrize("path", ["/api/stats", "/metrics", "/stats"])
async def test_admin_token_required(guarded: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(guarded.url + path) as resp:
            assert resp.status == 401
        async with http.get(guarded.url + path, params={"token": "wrong"}) as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer " + "x" * 5000}
        async with http.get(guarded.url + path, headers=headers) as resp:
            assert resp.status == 401
        async with http.get(guarded.url + path, params={"token": TOKEN}) as resp:
            assert resp.status == 200
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(guarded.url + path, headers=headers) as resp:
            assert resp.status == 200


async def test_malformed_stats_request_is_4xx(guarded: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        params = {"token": TOKEN, "history": "lots"}
        async with http.get(guarded.url + "/api/stats", params=params) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "bad_request"


async def test_metrics_parse_and_count_joins(server: RunningServer) -> None:
    client = await EventClient().connect(server.url)
    try:
        assert (await client.call("join", {"room": "m", "name": "A"}))["ok"]
        bad = await client.call("chat message", {"text": 5})
        assert bad["error"]["code"] == "bad_request"
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        await client.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["sfu_rooms"].samples[0].value == 1
    assert families["sfu_participants"].samples[0].value == 1
    joins = {s.labels["outcome"]: s.value for s in families["sfu_joins"].samples}
    assert joins["ok"] == 1
    rejected = {s.labels["reason"]: s.value for s in families["sfu_rejected_messages"].samples}
    assert rejected["bad_request"] >= 1
    assert "process_cpu_seconds" in families
