"""The network emulator (benchmarks/netem.py) does what it says: rate caps, random loss,
run-time changes, and it leaves no namespace behind.

Needs root, iproute2 and nftables: skipped with the reason otherwise (in CI, where ``CI``
is set and the tests run as root, a missing piece fails instead). Whole file: ~15 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.netem import (
    Link,
    NetemUnavailable,
    NetworkLab,
    list_namespaces,
    measure_udp,
    probe_command,
    read_line,
    remove_stale_namespaces,
    unavailable_reason,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def netem_available() -> None:
    reason = unavailable_reason()
    if reason is None:
        remove_stale_namespaces()  # left by a killed earlier run, if any
        return
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set: not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def lab(netem_available: None) -> Iterator[NetworkLab]:
    with NetworkLab() as network_lab:
        yield network_lab


def test_unlimited_link_delivers_everything(lab: NetworkLab) -> None:
    srv, c1 = lab.add_host("srv"), lab.add_host("c1")
    result = measure_udp(lab, c1, srv, kbit=2400, duration=2.0)  # 3000 datagrams
    assert result.sent >= 2900
    assert result.unique >= 0.99 * result.sent, result


def test_rate_cap_limits_throughput(lab: NetworkLab) -> None:
    srv = lab.add_host("srv")
    c1 = lab.add_host("c1", uplink=Link(rate_kbit=300, buffer_ms=200))
    result = measure_udp(lab, c1, srv, kbit=1000, duration=2.0)
    assert 240 <= result.wire_kbit_per_s <= 360, result  # 300 kbit/s +- 20 %
    counters = lab.counters(c1)
    assert counters.uplink.queue_drops > 0.5 * result.sent, counters  # 2/3 cannot fit
    assert counters.uplink.loss_drops == 0


def test_random_loss_drops_its_share(lab: NetworkLab) -> None:
    srv = lab.add_host("srv")
    c1 = lab.add_host("c1", uplink=Link(loss=10))
    result = measure_udp(lab, c1, srv, kbit=2400, duration=2.0)
    assert result.sent >= 2900
    assert 0.06 <= result.loss <= 0.14, result  # 10 % +- 4 %
    drops = lab.counters(c1).uplink.loss_drops
    assert abs(drops - (result.sent - result.unique)) <= 5, (drops, result)


_GSO_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, 100)  # UDP_SEGMENT: 100-byte datagrams
for i in range(150):
    s.sendto(bytes([i]) * 1000, (sys.argv[1], 9999))  # one batch of 10 datagrams
    time.sleep(0.004)
"""
_GSO_RECV = """
import collections, json, socket
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
r.bind(("0.0.0.0", 9999))
r.settimeout(2)
print("ready", flush=True)
got = collections.Counter()
try:
    while True:
        got[r.recv(2000)[0]] += 1
except socket.timeout:
    pass
print(json.dumps(sorted(collections.Counter(got.values()).items())))
"""


def test_loss_is_per_datagram_even_for_gso_batches(lab: NetworkLab) -> None:
    """The server sends a frame's packets as one UDP GSO batch: at 30 % loss most batches
    arrive in part (a batch crossing the veth whole would be dropped whole)."""
    srv = lab.add_host("srv")
    c1 = lab.add_host("c1", downlink=Link(loss=30))
    rx = lab.popen(c1, [sys.executable, "-c", _GSO_RECV], stdout=subprocess.PIPE, text=True)
    assert rx.stdout is not None
    assert read_line(rx.stdout, 10).strip() == "ready"
    lab.run(srv, [sys.executable, "-c", _GSO_SEND, c1.address])
    out, _ = rx.communicate(timeout=15)
    sizes = dict(json.loads(out.strip().splitlines()[-1]))  # received per batch -> batches
    partial = sum(n for got, n in sizes.items() if got < 10)
    assert sum(sizes.values()) >= 100 and partial > 0.5 * sum(sizes.values()), sizes


_OVERFLOW = """
import socket
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    tx.sendto(b"x" * 1000, rx.getsockname())
"""


def test_receive_buffer_drops_are_counted_per_host(lab: NetworkLab) -> None:
    """A reader too slow for its socket's buffer loses datagrams past the link: counted in
    its host's namespace, not in any other's."""
    c1, c2 = lab.add_host("c1"), lab.add_host("c2")
    before1, before2 = lab.counters(c1), lab.counters(c2)
    lab.run(c1, [sys.executable, "-c", _OVERFLOW])
    dropped = lab.counters(c1).receive_buffer_drops - before1.receive_buffer_drops
    assert 100 <= dropped <= 200, dropped  # a 4 kB buffer holds a few of the 200
    assert lab.counters(c2).receive_buffer_drops == before2.receive_buffer_drops


def test_link_change_at_run_time_takes_effect(lab: NetworkLab) -> None:
    """Downlink at 300 kbit/s, then unlimited while the same stream is running."""
    srv = lab.add_host("srv")
    c1 = lab.add_host("c1", downlink=Link(rate_kbit=300))
    receiver = lab.popen(
        c1,
        probe_command("udp-recv", "--port", "5002", "--duration", "15"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    assert read_line(receiver.stdout, 10.0).strip() == "ready"
    sender = lab.popen(
        srv,
        probe_command(
            *("udp-send", "--host", c1.address, "--port", "5002"),
            *("--kbit", "1200", "--size", "200", "--duration", "3"),
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    before = lab.counters(c1).downlink
    lab.set_link(c1, downlink=Link())
    sender.wait(timeout=20)
    receiver.wait(timeout=20)
    after = lab.counters(c1).downlink
    # capped: ~300 kbit/s of 242-byte frames for 1.5 s is ~230 frames; 1200 kbit/s is ~930
    assert before.packets < 400, before
    assert after.packets - before.packets > 500, (before, after)
    assert after.queue_drops >= before.queue_drops > 0  # kept across the qdisc removal


def test_everything_is_cleaned_up(netem_available: None, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), NetworkLab() as lab:
        hosts = [lab.add_host("srv"), lab.add_host("c1", uplink=Link(rate_kbit=100, loss=1))]
        names = [lab.hub] + [host.netns for host in hosts]
        assert set(names) <= set(list_namespaces())
        sleeper = lab.popen(hosts[0], ["sleep", "30"])
        raise RuntimeError("boom")
    assert sleeper.poll() is not None  # ended by the lab
    assert not set(names) & set(list_namespaces())
    assert not [n for n in list_namespaces() if n.startswith(lab.prefix)]


def test_stale_namespaces_of_dead_processes_are_removed(netem_available: None) -> None:
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    stale = f"netem{child.pid}xdead-hub"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        assert stale in remove_stale_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=10)
    assert stale not in list_namespaces()


def test_lab_refuses_clearly_without_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NetemUnavailable, match="'tc' command"), NetworkLab():
        pass


def test_lab_refuses_clearly_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = unavailable_reason()
    assert reason is not None and reason.startswith("network emulator needs: root")
    with pytest.raises(NetemUnavailable, match="root"), NetworkLab():
        pass


@pytest.mark.browser
def test_chromium_runs_inside_a_host(lab: NetworkLab, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed")
    (tmp_path / "index.html").write_text("<p id=netem>hello through the emulator</p>")
    srv = lab.add_host("srv")
    c1 = lab.add_host("c1", downlink=Link(rate_kbit=500, loss=1))
    server = lab.popen(
        srv,
        [
            *(sys.executable, "-u", "-m", "http.server", "8000"),
            *("--bind", srv.address, "--directory", str(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    assert read_line(server.stdout, 10.0).startswith("Serving HTTP")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
    argv += [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    done = lab.run(c1, [*argv, f"http://{srv.address}:8000/"], timeout=60, check=False)
    assert "hello through the emulator" in done.stdout, done.stderr[-2000:]
    assert lab.counters(c1).downlink.packets > 0
