"""The relay stats dashboard (``/stats``) under a small load, end to end (run INSIDE a
loopback-only network namespace; ``test_browser_stats.py`` does that through
``run_in_netns.sh``).

Starts ``sfu-server`` as a subprocess, then three Python participants (``SfuClient``, each
publishing a small paced VP8 clip and Opus, nothing decoded) in one room from this
process, and opens ``/stats`` in headless Chromium. Polls the page (``window.sfuStats``,
the Chart.js instances) until each of the four charts holds at least three points, the
latest forwarded bitrate is above zero, the participants chart shows three and the table
has one row per participant; checks ``#status`` shows no error; writes a screenshot to
``--artifacts``/stats-dashboard.png and a JSON result (``--out``); exits 1 when a check
failed.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_stats --out result.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from typing import Any

from tests.e2e.harness import Scenario, launch_chromium, scenario_main, sfu_server

ROOM = "stats-load"
PUBLISHERS = 3
MIN_POINTS = 3

#: What the dashboard shows, read from the Chart.js instances and the DOM.
PAGE_JS = """
() => {
  const charts = window.sfuStats || {};
  const out = { charts: {}, status: document.getElementById("status")?.textContent ?? null,
                updated: document.body.dataset.updated ?? null, rows: [] };
  for (const [id, chart] of Object.entries(charts)) {
    const data = chart.data.datasets[0].data;
    const area = chart.chartArea || null;
    out.charts[id] = { points: data.length, labels: chart.data.labels.length,
                       last: data.length ? data[data.length - 1] : null, tail: data.slice(-5),
                       max: data.length ? Math.max(...data) : null,
                       width: chart.width, height: chart.height,
                       drawn: !!area && area.right > area.left && area.bottom > area.top };
  }
  for (const tr of document.querySelectorAll("#participants tbody tr")) {
    out.rows.push({ id: tr.dataset.participantId,
                    cells: [...tr.cells].map((td) => td.textContent) });
  }
  out.subscriptions = [];
  for (const tr of document.querySelectorAll("#subscriptions tbody tr")) {
    out.subscriptions.push({ id: tr.dataset.participantId, from: tr.dataset.publisherId,
                             cells: [...tr.cells].map((td) => td.textContent) });
  }
  out.summary = [...document.querySelectorAll("#summary div")].map((d) => d.textContent);
  out.overflowX = document.documentElement.scrollWidth - window.innerWidth;
  return out;
}
"""

CHART_IDS = ("chart-bitrate", "chart-fps", "chart-participants", "chart-cpu")


def dashboard_ready(view: dict[str, Any], ids: set[str]) -> bool:
    """Everything the test wants to see on the page at once."""
    charts = view.get("charts", {})
    if any(charts.get(c, {}).get("points", 0) < MIN_POINTS for c in CHART_IDS):
        return False
    # the last MIN_POINTS samples were all taken under the full load
    steady = charts["chart-participants"].get("tail", [])[-MIN_POINTS:]
    return (
        (charts["chart-bitrate"].get("last") or 0) > 0
        and steady == [len(ids)] * MIN_POINTS
        and {r.get("id") for r in view.get("rows", [])} == ids
        and len(view.get("rows", [])) == len(ids)
    )


async def start_load(url: str, clients: list[Any]) -> list[str]:
    """Three publishers in one room; returns their ids once all media is flowing."""
    from signaling.client import SfuClient
    from signaling.sources import PacedAudioTrack, PacedVideoTrack, encode_clip

    for i in range(PUBLISHERS):
        clip = await asyncio.to_thread(
            encode_clip, width=320, height=240, fps=15, seconds=2.0, bitrate=250_000, marker=i + 1
        )
        client = await SfuClient.connect(url, decode=False, timeout=20)
        clients.append(client)
        await client.join(ROOM, f"bot{i + 1}")
        await client.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
    for client in clients:
        await client.wait_connected(timeout=20)
        for other in clients:
            if other is not client:
                remote = await client.wait_for_track(
                    participant_id=other.id, kind="video", timeout=20
                )
                await remote.wait_frames(5, timeout=20)
    return [str(c.id) for c in clients]


def api_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/stats?history=1", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


async def run(sc: Scenario) -> None:
    from playwright.async_api import async_playwright

    from sfu.ice_policy import IcePolicy

    server_log = sc.artifacts / "e2e-stats-server.log"
    sc.info["server_log"] = str(server_log)
    policy = IcePolicy(["127.0.0.1"])  # the clients' side of loopback-only ICE (aioice)
    policy.install()
    clients: list[Any] = []
    try:
        with sfu_server(server_log, "--log-level", "INFO") as url:
            sc.info["url"] = url
            ids = await start_load(url, clients)
            sc.check("three publishers exchange video", len(ids) == PUBLISHERS, ids)
            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                sc.info["browser_version"] = browser.version
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                log = sc.console.setdefault("stats", [])
                page.on(
                    "console", lambda m: log.append(f"{m.type}: {m.text} [{m.location.get('url')}]")
                )
                page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
                failed: list[str] = []
                page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
                page.on(
                    "response",
                    lambda r: (
                        failed.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None
                    ),
                )
                response = await page.goto(url + "/stats")
                sc.check(
                    "/stats answers 200",
                    bool(response) and response.status == 200,
                    response.status if response else None,
                )
                has_chart = await page.evaluate("() => typeof window.Chart")
                sc.check("Chart.js is loaded from /vendor", has_chart == "function", has_chart)

                deadline = time.monotonic() + 30
                view: dict[str, Any] = {}
                want = set(ids)
                while True:
                    view = await page.evaluate(PAGE_JS)
                    if dashboard_ready(view, want) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                charts = view.get("charts", {})
                sc.info["page"] = view
                for cid in CHART_IDS:
                    c = charts.get(cid, {})
                    sc.check(
                        f"{cid} has at least {MIN_POINTS} points and is drawn",
                        c.get("points", 0) >= MIN_POINTS
                        and c.get("labels") == c.get("points")
                        and bool(c.get("drawn")),
                        c,
                    )
                sc.check(
                    "bitrate chart's latest value > 0",
                    (charts.get("chart-bitrate", {}).get("last") or 0) > 0,
                    charts.get("chart-bitrate"),
                )
                sc.check(
                    "fps chart's latest value > 0",
                    (charts.get("chart-fps", {}).get("last") or 0) > 0,
                    charts.get("chart-fps"),
                )
                sc.check(
                    f"participants chart shows {PUBLISHERS}",
                    charts.get("chart-participants", {}).get("last") == PUBLISHERS,
                    charts.get("chart-participants"),
                )
                rows = view.get("rows", [])
                sc.check(
                    "table has one row per participant",
                    len(rows) == PUBLISHERS and {r.get("id") for r in rows} == want,
                    {"rows": rows, "ids": ids},
                )
                sc.check(
                    "each row shows a connected participant publishing and receiving",
                    bool(rows)
                    and all(
                        r["cells"][0] == ROOM
                        and r["cells"][2] == "connected"
                        and "video" in r["cells"][3]
                        and r["cells"][4] == str(2 * (PUBLISHERS - 1))
                        and float(r["cells"][5]) > 0
                        for r in rows
                    ),
                    rows,
                )
                subs = view.get("subscriptions", [])
                sc.info["subscription_rows"] = subs
                sc.check(
                    "subscriptions table has one row per subscription, with layer and estimate",
                    len(subs) == 2 * PUBLISHERS * (PUBLISHERS - 1)
                    and all(
                        r["id"] in want
                        and r["from"] in want
                        and r["from"] != r["id"]
                        and r["cells"][5] != ""
                        and r["cells"][6] in ("forwarding", "paused: poor link")
                        and r["cells"][7] != ""
                        for r in subs
                    ),
                    subs,
                )
                sc.check("page was updated", bool(view.get("updated")), view.get("updated"))
                sc.check("#status shows no error", not view.get("status"), view.get("status"))
                sc.check(
                    "no horizontal overflow at 1280 px",
                    (view.get("overflowX") or 0) <= 1,
                    view.get("overflowX"),
                )

                sc.artifacts.mkdir(parents=True, exist_ok=True)
                shot = sc.artifacts / "stats-dashboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                sc.info["screenshot"] = str(shot)
                print(f"screenshot: {shot}", flush=True)
                sc.check(
                    "screenshot written", shot.is_file() and shot.stat().st_size > 0, str(shot)
                )

                # phone width: the dashboard reflows to one column without overflowing
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.wait_for_timeout(300)
                phone = sc.artifacts / "stats-phone-width.png"
                await page.screenshot(path=str(phone), full_page=True)
                narrow = await page.evaluate(PAGE_JS)
                sc.check(
                    "phone-width layout has no horizontal overflow",
                    (narrow.get("overflowX") or 0) <= 1,
                    {"overflow_px": narrow.get("overflowX"), "path": str(phone)},
                )

                # the server's own view agrees with the page
                snap = await asyncio.to_thread(api_stats, url)
                server = snap.get("server", {})
                sc.info["api_server"] = server
                sc.check(
                    "/api/stats counts the load",
                    server.get("participants") == PUBLISHERS
                    and server.get("publishedTracks") == 2 * PUBLISHERS
                    and server.get("forwardedStreams") == 2 * PUBLISHERS * (PUBLISHERS - 1),
                    {
                        k: server.get(k)
                        for k in ("participants", "publishedTracks", "forwardedStreams")
                    },
                )
                errors = [line for line in log if line.startswith(("error", "pageerror"))]
                sc.info["console_errors"] = {"stats": errors}
                sc.check("no console errors on /stats", not errors, errors)
                sc.check("no failed requests on /stats", not failed, failed)
                await browser.close()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        policy.uninstall()


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, lambda sc: asyncio.run(run(sc))))
