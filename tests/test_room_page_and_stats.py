"""The room page's error page for a bad room URL, and the additive `stats` request
(docs/protocol.md): a participant's own rows of the server's stats sampler snapshot."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import EventClient, RunningServer


async def test_bad_room_url_is_an_html_page_for_browsers_json_otherwise(
    server: RunningServer,
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.url + "/room/bad%20room", headers={"Accept": "text/html,*/*;q=0.8"}
        ) as resp:
            assert resp.status == 400
            assert resp.content_type == "text/html"
            body = await resp.text()
            assert "<h1>" in body and 'href="/"' in body and "bad room" not in body
        async with http.get(server.url + "/room/bad%20room") as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "bad_request"
        async with http.get(server.url + "/room/good-room") as resp:
            assert resp.status == 200


async def test_stats_returns_own_rows_and_is_validated(server: RunningServer, clients: Any) -> None:
    alice: EventClient = await clients()
    ack = await alice.call("stats", {})
    assert ack["ok"] is False and ack["error"]["code"] == "not_joined"
    joined = await alice.call("join", {"room": "st", "name": "Alice"})
    assert joined["ok"] is True
    bad = await alice.call("stats", "nope")
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request"
    # the sampler runs once a second: our participant shows up in its snapshot
    for _ in range(40):
        ack = await alice.call("stats", {})
        assert ack["ok"] is True, ack
        if ack["connectionState"] is not None:
            break
        await asyncio.sleep(0.1)
    assert ack["connectionState"] is not None
    assert ack["published"] == [] and ack["subscriptions"] == []
    assert (await alice.call("stats"))["ok"] is True  # no payload is fine too


async def test_drain_tells_everyone_before_disconnecting_anyone(
    server: RunningServer, clients: Any
) -> None:
    from signaling.app import EVENTS

    alice: EventClient = await clients()
    bob: EventClient = await clients()
    for client, name in ((alice, "Alice"), (bob, "Bob")):
        assert (await client.call("join", {"room": "dr", "name": name}))["ok"] is True
    await server.app[EVENTS].drain()
    for client in (alice, bob):
        await client.wait_for("error", lambda e: e.get("code") == "server_busy")
    await asyncio.sleep(0.3)
    for client in (alice, bob):
        names = [name for name, _ in client.events]
        # a "participant left" caused by the drain comes after the client knows why
        if "participant left" in names:
            assert names.index("error") < names.index("participant left"), names
