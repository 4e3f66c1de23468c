"""Two Chromium participants in one room on a two-node cluster; the room's node is
drained (SIGTERM) and both pages move to the other node by themselves (docs/protocol.md
"Cluster", browser behaviour). Run INSIDE a loopback-only network namespace
(``test_browser_cluster.py`` does that); starts its own redis-server on a free loopback
port there.

Steps: node 1 and node 2 share the private Redis. Page B opens the room on node 2 (the
pre-join screen: no join yet). Page A opens the room on node 1 and joins: node 1 owns the
room. B then joins from node 2: the join is refused with `moved` and B follows it to
node 1 (no error shown). Both see each other's video and names; A chats. SIGTERM to the
owner: both get `moved`, join on node 2 with new peer connections, and see each other's
video again; chat history intact (no duplicate lines), no "left" line, no error banner.

    tests/e2e/run_in_netns.sh .venv/bin/python tests/e2e/scenario_cluster.py --out result.json
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.servers import ServerProcess
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, Scenario, free_port, in_netns, scenario_main
from tests.e2e.scenario_room import STATS_JS, frames_by_participant, poll

ROOM = "e2e-cluster"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

CLIENT_JS = """
() => window.sfuApp ? {state: sfuApp.client.state, id: sfuApp.client.id,
  url: sfuApp.client.url ?? null, node: sfuApp.client.node, nodes: sfuApp.client.nodes,
  names: sfuApp.client.participants.map((p) => p.name)} : null
"""

PAGE_JS = """
() => ({
  notices: [...document.querySelectorAll('.chat-notice')].map((n) => n.textContent),
  lines: [...document.querySelectorAll('.chat-message')].map((n) => n.dataset.messageId),
  banner: [...document.querySelectorAll('.banner-item')].map((n) => n.textContent),
  people: [...document.querySelectorAll('#participant-list li')].map((n) => n.textContent),
  status: document.getElementById('conn-status').textContent,
})
"""


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free 127.0.0.1 port, no persistence."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [
            *(REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_timeout=0.5).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def decoding(page: Any, other_name: str) -> tuple[int, str | None]:
    """(camera framesDecoded from the participant named `other_name`, its id)."""
    stats = page.evaluate(STATS_JS)
    if not stats:
        return 0, None
    names = page.evaluate("() => sfuApp.client.participants.map((p) => [p.id, p.name])")
    ids = [pid for pid, name in names if name == other_name]
    if not ids:
        return 0, None
    return frames_by_participant(stats).get(ids[0], 0), ids[0]


def video_grows(page: Any, other_name: str, timeout: float) -> tuple[bool, Any]:
    """framesDecoded from `other_name` is > 0 and increasing (two samples 1 s apart)."""
    ok, first = poll(lambda: decoding(page, other_name), lambda d: d[0] > 0, timeout)
    if not ok:
        return False, {"first": first}
    time.sleep(1.0)
    second = decoding(page, other_name)
    return second[1] == first[1] and second[0] > first[0], {"before": first, "after": second}


def run(sc: Scenario) -> None:
    from playwright.sync_api import sync_playwright

    sc.info["in_netns"] = in_netns()
    sc.artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sfu-redis-") as workdir:
        redis_proc, redis_url = start_redis(workdir)
        nodes: list[ServerProcess] = []
        try:
            for i in (1, 2):
                nodes.append(start_node(sc, redis_url, i))
            for node in nodes:
                node.wait_ready()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                run_pages(sc, browser, nodes, redis_url)
                browser.close()
        finally:
            for node in nodes:
                node.stop()
            redis_proc.terminate()
            redis_proc.wait(5)


def start_node(sc: Scenario, redis_url: str, i: int, port: int | None = None) -> ServerProcess:
    log = sc.artifacts / f"e2e-cluster-node{i}.log"
    if port is None:
        log.unlink(missing_ok=True)
    node = ServerProcess(
        "--redis-url",
        redis_url,
        "--node-id",
        f"n{i}",
        "--log-level",
        "INFO",
        port=port,
        log_path=log,
        inherit_sfu_env=True,
        die_with_parent=True,
        stop_timeout=20.0,
    )
    return node


def open_page(sc: Scenario, browser: Any, name: str, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log = sc.console.setdefault(name, [])
    page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
    page.goto(url)
    return page


def run_pages(sc: Scenario, browser: Any, nodes: list[ServerProcess], redis_url: str) -> None:
    n1, n2 = nodes
    sc.info["nodes"] = [n1.url, n2.url]
    # B first opens the room on node 2 and stays on the pre-join screen (nobody owns the
    # room yet: no 307)
    page_b = open_page(sc, browser, "Bob", f"{n2.url}/room/{ROOM}")
    page_b.wait_for_selector("#name-input")
    page_a = open_page(sc, browser, "Alice", f"{n1.url}/room/{ROOM}?name=Alice")
    ok, a = poll(
        lambda: page_a.evaluate(CLIENT_JS), lambda c: bool(c and c["state"] == "joined"), 20
    )
    sc.check("Alice joined on node 1", ok and a["node"] == "n1", a)
    sc.check(
        "the join ack's nodes are kept",
        ok and sorted(a["nodes"]) == sorted([n1.url, n2.url]),
        a and a["nodes"],
    )
    # B joins from node 2's page: refused with `moved`, follows it to node 1
    page_b.fill("#name-input", "Bob")
    page_b.click("#name-form button[type=submit]")
    ok, b = poll(
        lambda: page_b.evaluate(CLIENT_JS), lambda c: bool(c and c["state"] == "joined"), 20
    )
    sc.check(
        "Bob's join on node 2 is moved to node 1 (the room's owner)",
        ok and b["node"] == "n1" and b["url"] == n1.url and page_b.url.startswith(n2.url),
        {"client": b, "page": page_b.url},
    )
    sc.check("no error shown for the moved join", page_b.evaluate(PAGE_JS)["banner"] == [], b)
    for me, page, other in (("Alice", page_a, "Bob"), ("Bob", page_b, "Alice")):
        ok, names = poll(
            lambda page=page: page.evaluate(CLIENT_JS)["names"], lambda n, o=other: o in n, 15
        )
        sc.check(f"{me} sees {other} in the participant list", ok, names)
        ok, detail = video_grows(page, other, 30)
        sc.check(f"{me} decodes {other}'s video (framesDecoded increasing)", ok, detail)
    page_a.fill("#chat-input", "before the move")
    page_a.press("#chat-input", "Enter")
    ok, lines = poll(lambda: page_b.evaluate(PAGE_JS)["lines"], lambda x: len(x) == 1, 10)
    sc.check("Bob sees Alice's chat line", ok, lines)

    # --- drain the owner (node 1): both pages move to node 2
    pages = {"Alice": (page_a, "Bob"), "Bob": (page_b, "Alice")}
    before = {me: page.evaluate(PAGE_JS)["notices"] for me, (page, _) in pages.items()}
    n1.terminate()
    handover = wait_moved(sc, pages, n2, "n2", limit=10.0)
    sc.info["handover_seconds"] = handover
    print(f"planned move (SIGTERM -> video decoded on node 2): {handover}", flush=True)
    check_room(sc, pages, "after the move", before)
    try:
        sc.info["drained_node_exit"] = n1.wait(30)
    except subprocess.TimeoutExpired:
        sc.info["drained_node_exit"] = "still running after 30 s"
    shot = sc.artifacts / "room-cluster-after-move.png"
    page_b.screenshot(path=str(shot))
    sc.info["screenshot"] = str(shot)
    print(f"screenshot: {shot}", flush=True)

    # --- node 1 comes back; node 2 (the room's owner now) is killed: both find node 1
    restarted = start_node(sc, redis_url, 1, port=n1.port)
    nodes.append(restarted)
    restarted.wait_ready()
    time.sleep(2.5)  # a heartbeat: node 1 knows node 2's URL (Socket.IO origin check)
    n2.proc.kill()
    failover = wait_moved(sc, pages, restarted, "n1", limit=20.0)
    sc.info["failover_seconds"] = failover
    print(f"failover (kill -9 -> video decoded on node 1): {failover}", flush=True)
    check_room(sc, pages, "after the failover", None)
    shot = sc.artifacts / "room-cluster-after-failover.png"
    page_a.screenshot(path=str(shot))
    sc.info["screenshot_failover"] = str(shot)


def wait_moved(
    sc: Scenario, pages: dict[str, tuple[Any, str]], node: ServerProcess, node_id: str, limit: float
) -> dict[str, float]:
    """Poll every page until it is joined on `node` and decodes the other's video there;
    return the seconds each took (checked against `limit`)."""
    t0 = time.monotonic()
    done: dict[str, float] = {}
    last: dict[str, Any] = {}
    while len(done) < len(pages) and time.monotonic() - t0 < limit + 10:
        for me, (page, other) in pages.items():
            if me in done:
                continue
            try:
                c = page.evaluate(CLIENT_JS)
                # url null: the page's own origin
                url = c and (c["url"] or page.evaluate("() => location.origin"))
                if c and c["state"] == "joined" and url == node.url and c["node"] == node_id:
                    frames, _ = decoding(page, other)
                    last[me] = {"client": c, "frames": frames}
                    if frames > 0:
                        done[me] = round(time.monotonic() - t0, 2)
                else:
                    last[me] = c
            except Exception as exc:  # a page busy: poll again
                last[me] = repr(exc)
        time.sleep(0.1)
    for me, (page, other) in pages.items():
        sc.check(f"{me} is on {node_id} by itself", me in done, last.get(me))
        ok, detail = video_grows(page, other, 5)
        sc.check(
            f"{me} decodes {other}'s video on {node_id} within {limit:g} s",
            ok and done.get(me, limit + 1) <= limit,
            {"seconds": done.get(me), **detail},
        )
    return done


def check_room(
    sc: Scenario,
    pages: dict[str, tuple[Any, str]],
    when: str,
    notices_before: dict[str, list[str]] | None,
) -> None:
    """Names, tiles, banner and chat of every page; `notices_before`: the chat notices
    before a planned move, which adds none."""
    for me, (page, other) in pages.items():
        ok, names = poll(
            lambda page=page: page.evaluate(CLIENT_JS)["names"], lambda n, o=other: o in n, 10
        )
        sc.check(f"{me} sees {other} in the participant list {when}", ok, names)
        ok, tiles = poll(
            lambda page=page: [
                page.locator(".tile:not(.local)").count(),
                page.locator(".tile.stale").count(),
            ],
            lambda t: t == [1, 0],
            10,
        )
        sc.check(f"{me}: one remote tile, not greyed, {when}", ok, tiles)
        ok, view = poll(lambda page=page: page.evaluate(PAGE_JS), lambda v: v["banner"] == [], 5)
        sc.check(f"{me}: no banner {when}", ok, view["banner"])
        sc.check(
            f"{me}: chat history intact {when} (one line, no duplicate)",
            len(view["lines"]) == 1,
            view["lines"],
        )
        sc.check(
            f"{me}: no 'left' line in the chat {when}",
            not any(n.endswith(" left") for n in view["notices"]),
            view["notices"],
        )
        if notices_before is not None:
            sc.check(
                f"{me}: no new chat notice {when}",
                view["notices"] == notices_before[me],
                {"before": notices_before[me], "after": view["notices"]},
            )


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, run))
