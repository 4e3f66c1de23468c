"""A small network emulator for tests and benchmarks: rate, buffer and random loss per link.

Topology (a star, like hosts on one switch): the lab owns a *hub* network namespace holding
a bridge; every host (the server and each client) gets its own namespace, joined to the hub
by a veth pair, with ``lo`` up and one IPv4 address (``10.77.0.N/24`` by default) on its
``eth0``. Each host's link is shaped per direction:

* **uplink** (host -> hub, e.g. client -> server): ``tbf`` on the host's ``eth0`` egress,
  random loss by an nftables ``netdev`` rule at the hub-side veth end's ingress;
* **downlink** (hub -> host, e.g. server -> client): ``tbf`` on the hub-side veth end's
  egress, random loss by an nftables ``netdev`` rule at the host's ``eth0`` ingress.

Loss is applied after the shaper and silently, like on a real path (a drop at the sender's
``output`` hook would fail its ``sendto`` with EPERM); ARP is never dropped. It is per
datagram: every veth end has ``gso_max_segs 1``, so a UDP GSO batch is segmented before
it crosses a veth (the loss rule would otherwise drop a whole batch or none of it).

``tbf`` is given a *realistic* buffer (``buffer_ms`` of queue at the link rate, 200 ms by
default, or ``buffer_bytes``) rather than a 1000-packet queue, so a congested link drops
instead of queueing for seconds. Conditions can be changed at run time with
:meth:`NetworkLab.set_link`. The server is usually a host with unlimited links.

**Delay (latency/jitter) cannot be emulated on this kernel**: it has no ``sch_netem``. Only
rate, queue size and random loss are available. Ingress shaping (``ifb`` + ``mirred``)
is not needed by this design (every direction is shaped at some egress), and the
``matchall`` classifier it would use is missing here.

Needs root and ``ip`` (iproute2), ``tc`` and ``nft`` (nftables); the module imports without
them, and :class:`NetworkLab` raises :class:`NetemUnavailable` with a clear message when
something is missing (:func:`unavailable_reason` answers the same question without raising).

Example::

    with NetworkLab() as lab:
        srv = lab.add_host("srv")
        c1 = lab.add_host("c1", uplink=Link(loss=5), downlink=Link(rate_kbit=300))
        server = lab.popen(srv, ["python3", "-m", "http.server", "8000"])
        lab.run(c1, ["curl", f"http://{srv.address}:8000/"], timeout=10)
        lab.set_link(c1, downlink=Link(rate_kbit=1000, loss=1))
        print(lab.counters(c1))

``python -m benchmarks.netem udp-recv|udp-send`` is a paced UDP probe to measure a link.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

logger = logging.getLogger(__name__)

REQUIRED_TOOLS = ("ip", "tc", "nft")
IFNAME = "eth0"
_NFT_TABLE = "netem"
_LOSS_SCALE = 10_000  # loss granularity: 0.01 %
_MTU_BYTES = 1514
_FRAME_OVERHEAD = 8 + 20 + 14  # UDP + IPv4 + Ethernet headers
_CMD_TIMEOUT = 10.0
# netdev tables: loss is applied at a device's ingress, silently (the sender sees no error
# and ARP is never dropped: only IPv4/IPv6 frames)
_NFT_HUB_TABLE = f"table netdev {_NFT_TABLE} {{ }}\n"
_NFT_UP_CHAIN = """add counter netdev {table} up_{port}
add chain netdev {table} up_{port} {{
  type filter hook ingress device "{port}" priority 0; policy accept;
}}
"""
_NFT_HOST_TABLE = f"""table netdev {_NFT_TABLE} {{
  counter down_drops {{ }}
  chain down {{ type filter hook ingress device "{IFNAME}" priority 0; policy accept; }}
}}
"""


class NetemUnavailable(RuntimeError):
    """The emulator cannot run here (not root, a tool or a kernel feature is missing)."""


@dataclass(frozen=True)
class Link:
    """Conditions of one direction of a link.

    ``rate_kbit`` None means unlimited (no shaper). The queue in front of a rate limit
    holds ``buffer_bytes`` if given, else ``buffer_ms`` of traffic at the rate. ``loss``
    is the random loss in percent (0.01 % granularity), independent of the rate.
    """

    rate_kbit: float | None = None
    buffer_ms: float = 200.0
    buffer_bytes: int | None = None
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_kbit is not None and self.rate_kbit <= 0:
            raise ValueError(f"rate_kbit must be positive or None, got {self.rate_kbit}")
        if not 0.0 <= self.loss <= 100.0:
            raise ValueError(f"loss is a percentage in [0, 100], got {self.loss}")
        if self.buffer_ms <= 0 or (self.buffer_bytes is not None and self.buffer_bytes <= 0):
            raise ValueError("buffer_ms / buffer_bytes must be positive")

    def queue_bytes(self) -> int | None:
        """The tbf queue limit in bytes (None when unlimited); at least two full frames."""
        if self.rate_kbit is None:
            return None
        if self.buffer_bytes is not None:
            wanted = self.buffer_bytes
        else:
            wanted = int(self.rate_kbit * 1000 / 8 * self.buffer_ms / 1000)
        return max(wanted, 2 * _MTU_BYTES)

    def burst_bytes(self) -> int:
        """The tbf bucket: about 5 ms at the rate, at least two full frames."""
        rate = self.rate_kbit or 0.0
        return max(int(rate * 1000 / 8 * 0.005), 2 * _MTU_BYTES)


@dataclass(frozen=True)
class DirectionCounters:
    """Counters of one direction. ``packets``/``bytes`` crossed the veth (uplink: left the
    host; downlink: left the hub towards the host), including frames the loss rule then
    dropped; ``queue_drops`` were dropped by the shaper's full queue; ``loss_drops`` by the
    random-loss rule at the far end's ingress."""

    packets: int
    bytes: int
    queue_drops: int
    loss_drops: int


@dataclass(frozen=True)
class HostCounters:
    uplink: DirectionCounters
    downlink: DirectionCounters
    #: UDP datagrams the host's own sockets dropped because a receive buffer was full
    #: (``RcvbufErrors`` of its namespace): loss past the link, from a reader too slow
    receive_buffer_drops: int = 0


@dataclass
class Host:
    """One emulated machine: a network namespace with ``lo`` and ``eth0`` (``address``).
    Owned by its :class:`NetworkLab`, which deletes the namespace when it closes."""

    name: str
    netns: str
    address: str
    hub_port: str
    uplink: Link
    downlink: Link
    _drop_offsets: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name}({self.address})"


def missing_tools() -> list[str]:
    """What is missing for the emulator, cheaply (no kernel probe): root and the tools."""
    missing = [f"the {tool!r} command" for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root (network namespaces, tc and nftables need CAP_NET_ADMIN)")
    return missing


def unavailable_reason() -> str | None:
    """Why the emulator cannot run here, or None. Probes the kernel once by building (and
    deleting) a two-host lab with a tbf shaper and a loss rule."""
    missing = missing_tools()
    if missing:
        return "network emulator needs: " + "; ".join(missing)
    try:
        with NetworkLab() as lab:
            lab.add_host("a")
            lab.add_host("b", uplink=Link(rate_kbit=1000, loss=1), downlink=Link(rate_kbit=1000))
    except (NetemUnavailable, subprocess.SubprocessError, OSError) as exc:
        return f"network emulator kernel probe failed: {exc}"
    return None


def _run(argv: list[str], *, timeout: float = _CMD_TIMEOUT, stdin: str | None = None) -> str:
    """Run a set-up command; raise NetemUnavailable with its stderr when it fails."""
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise NetemUnavailable(f"{argv[0]!r} not found: install iproute2 and nftables") from exc
    if done.returncode != 0:
        raise NetemUnavailable(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of the network namespaces that ``ip netns`` knows (empty without ``ip``)."""
    try:
        out = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=_CMD_TIMEOUT
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by labs whose process died without closing them (named
    ``netem<pid>x...`` with no such process any more); returns their names."""
    removed = []
    for netns in list_namespaces():
        match = re.fullmatch(r"netem(\d+)x[0-9a-f]+-.+", netns)
        if match is None or _process_exists(int(match.group(1))):
            continue
        with contextlib.suppress(NetemUnavailable):
            _run(["ip", "netns", "del", netns])
            removed.append(netns)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NetworkLab:
    """Owns a hub namespace (with a bridge), one namespace per host, the veth pairs between
    them, their shapers and loss rules, and every process started with :meth:`popen`.

    Use it as a context manager: leaving it (also on an exception) ends the processes it
    started (SIGTERM to their process group, then SIGKILL) and deletes every namespace it
    created, which deletes the veths, qdiscs and nftables tables with them. Names are
    unique (``prefix`` defaults to ``netem<pid>x<random hex>``).
    """

    def __init__(self, *, prefix: str | None = None, subnet: str = "10.77.0.0/24") -> None:
        if prefix is None:
            prefix = f"netem{os.getpid()}x{secrets.token_hex(3)}"
        self.prefix = prefix
        self.network = ipaddress.IPv4Network(subnet)
        self.hub = f"{prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._open = False

    # -- life cycle -----------------------------------------------------------------

    def __enter__(self) -> NetworkLab:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create the hub namespace and its bridge; raise NetemUnavailable if impossible."""
        missing = missing_tools()
        if missing:
            raise NetemUnavailable("network emulator needs: " + "; ".join(missing))
        self._open = True
        try:
            self._add_namespace(self.hub)
            # the hub only switches frames: no IPv6 link-local address (nor its chatter)
            _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", self.hub, "link", "set", "br0", "addrgenmode", "none"])
            _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
            self.exec_checked(self.hub, ["nft", "-f", "-"], stdin=_NFT_HUB_TABLE)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End started processes, delete every namespace created. Idempotent."""
        for proc in self._procs:
            _end_process(proc)
        self._procs.clear()
        for netns in reversed(self._namespaces):
            try:
                _run(["ip", "netns", "del", netns])
            except NetemUnavailable as exc:
                logger.warning("netem: could not delete namespace %s: %s", netns, exc)
        self._namespaces.clear()
        self.hosts.clear()
        self._open = False

    def _add_namespace(self, netns: str) -> None:
        _run(["ip", "netns", "add", netns])
        self._namespaces.append(netns)
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])

    # -- hosts and links ------------------------------------------------------------

    def add_host(
        self, name: str, *, uplink: Link | None = None, downlink: Link | None = None
    ) -> Host:
        """Create a host (namespace + veth to the hub + address) with the given links."""
        if not self._open:
            raise RuntimeError("NetworkLab is not open (use it as a context manager)")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        index = len(self.hosts) + 1
        if index >= self.network.num_addresses - 1:
            raise ValueError(f"subnet {self.network} is full")
        netns = f"{self.prefix}-{name}"
        address = str(self.network.network_address + index)
        hub_port = f"p{index}"
        self._add_namespace(netns)
        _run(
            [
                *("ip", "link", "add", IFNAME, "netns", netns, "type", "veth"),
                *("peer", "name", hub_port, "netns", self.hub),
            ]
        )
        _run(
            ["ip", "-n", netns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", IFNAME]
        )
        # no IPv6 link-local address on the emulated link (lo keeps ::1): no router
        # solicitations, no link-local ICE candidates
        _run(["ip", "-n", netns, "link", "set", IFNAME, "addrgenmode", "none", "up"])
        _run(["ip", "-n", self.hub, "link", "set", hub_port, "addrgenmode", "none"])
        # a UDP GSO batch (the server sends a frame's packets in one) would cross the
        # veth as ONE buffer, and the loss rule would drop all its datagrams or none: the
        # kernel segments it before the veth instead, so loss is per datagram
        _run(["ip", "-n", netns, "link", "set", IFNAME, "gso_max_segs", "1"])
        _run(["ip", "-n", self.hub, "link", "set", hub_port, "gso_max_segs", "1"])
        _run(["ip", "-n", self.hub, "link", "set", hub_port, "master", "br0", "up"])
        self.exec_checked(netns, ["nft", "-f", "-"], stdin=_NFT_HOST_TABLE)
        self.exec_checked(
            self.hub,
            ["nft", "-f", "-"],
            stdin=_NFT_UP_CHAIN.format(table=_NFT_TABLE, port=hub_port),
        )
        host = Host(name, netns, address, hub_port, Link(), Link())
        self.hosts[name] = host
        self.set_link(host, uplink=uplink or Link(), downlink=downlink or Link())
        logger.debug("netem: host %s in %s", host, netns)
        return host

    def set_link(
        self, host: Host, *, uplink: Link | None = None, downlink: Link | None = None
    ) -> None:
        """Change the conditions of a host's link at run time (a None direction is kept)."""
        if uplink is not None:
            self._shape(host, "uplink", uplink)
            host.uplink = uplink
        if downlink is not None:
            self._shape(host, "downlink", downlink)
            host.downlink = downlink
        self._set_loss(host)

    def _shaper_dev(self, host: Host, direction: str) -> tuple[str, str]:
        return (host.netns, IFNAME) if direction == "uplink" else (self.hub, host.hub_port)

    def _shape(self, host: Host, direction: str, link: Link) -> None:
        netns, dev = self._shaper_dev(host, direction)
        before = _qdisc_drops(netns, dev)
        limit = link.queue_bytes()
        if limit is None:
            # back to the veth default (noqueue); fails harmlessly when nothing is attached
            subprocess.run(
                ["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", dev, "root"],
                capture_output=True,
                timeout=_CMD_TIMEOUT,
                check=False,
            )
        else:
            rate = f"{link.rate_kbit:.3f}kbit"
            self.exec_checked(
                netns,
                [
                    *("tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf"),
                    *("rate", rate, "burst", str(link.burst_bytes()), "limit", str(limit)),
                ],
            )
        if _qdisc_drops(netns, dev) < before:  # the qdisc was replaced: keep the total
            host._drop_offsets[direction] = host._drop_offsets.get(direction, 0) + before

    def _set_loss(self, host: Host) -> None:
        for netns, chain, counter, link in (
            (self.hub, f"up_{host.hub_port}", f"up_{host.hub_port}", host.uplink),
            (host.netns, "down", "down_drops", host.downlink),
        ):
            script = f"flush chain netdev {_NFT_TABLE} {chain}\n"
            threshold = round(link.loss * _LOSS_SCALE / 100)
            if threshold > 0:
                script += (
                    f"add rule netdev {_NFT_TABLE} {chain} meta protocol {{ ip, ip6 }} "
                    f"numgen random mod {_LOSS_SCALE} < {threshold} "
                    f"counter name {counter} drop\n"
                )
            self.exec_checked(netns, ["nft", "-f", "-"], stdin=script)

    def counters(self, host: Host) -> HostCounters:
        """Read a host's link counters (cumulative over :meth:`set_link` changes)."""
        up_stats = _link_stats(host.netns, IFNAME)["tx"]
        down_stats = _link_stats(self.hub, host.hub_port)["tx"]
        loss = {
            "uplink": _nft_counters(self.hub).get(f"up_{host.hub_port}", 0),
            "downlink": _nft_counters(host.netns).get("down_drops", 0),
        }
        result = []
        for direction, stats in (("uplink", up_stats), ("downlink", down_stats)):
            netns, dev = self._shaper_dev(host, direction)
            result.append(
                DirectionCounters(
                    packets=int(stats["packets"]),
                    bytes=int(stats["bytes"]),
                    queue_drops=_qdisc_drops(netns, dev) + host._drop_offsets.get(direction, 0),
                    loss_drops=loss[direction],
                )
            )
        return HostCounters(
            uplink=result[0],
            downlink=result[1],
            receive_buffer_drops=_udp_rcvbuf_errors(host.netns),
        )

    # -- running things inside hosts ------------------------------------------------

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def command(self, host: Host | str, argv: list[str]) -> list[str]:
        """The argv that runs ``argv`` inside the host's namespace (``ip netns exec``)."""
        netns = host.netns if isinstance(host, Host) else host
        return ["ip", "netns", "exec", netns, *argv]

    def exec_checked(self, netns: str, argv: list[str], *, stdin: str | None = None) -> str:
        return _run(self.command(netns, argv), stdin=stdin)

    def run(
        self,
        host: Host,
        argv: list[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the host (captured text output, bounded)."""
        kwargs.setdefault("capture_output", True)
        return subprocess.run(
            self.command(host, argv), text=True, timeout=timeout, check=check, **kwargs
        )

    def popen(self, host: Host, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside the host in its own process group; the lab ends it (and
        its children, e.g. Chromium's) when it closes, if it is still running."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(host, argv), **kwargs)
        self._procs.append(proc)
        return proc


def _end_process(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, the process group of a process the lab started."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        # the leader is gone; children it left in its group still get a SIGKILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _qdisc_drops(netns: str, dev: str) -> int:
    out = _run(["ip", "netns", "exec", netns, "tc", "-s", "-j", "qdisc", "show", "dev", dev])
    qdiscs = json.loads(out or "[]")
    return sum(int(q.get("drops", 0)) for q in qdiscs if q.get("root"))


def _udp_rcvbuf_errors(netns: str) -> int:
    """``Udp: RcvbufErrors`` of `netns` (/proc/net/snmp is per namespace), 0 if absent."""
    out = _run(["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"])
    rows = [line.split() for line in out.splitlines() if line.startswith("Udp:")]
    if len(rows) >= 2 and "RcvbufErrors" in rows[0]:
        return int(rows[1][rows[0].index("RcvbufErrors")])
    return 0


def _link_stats(netns: str, dev: str) -> dict[str, dict[str, int]]:
    out = _run(["ip", "-n", netns, "-s", "-j", "link", "show", "dev", dev])
    stats: dict[str, dict[str, int]] = json.loads(out)[0]["stats64"]
    return stats


def _nft_counters(netns: str) -> dict[str, int]:
    out = _run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "nft",
            "-j",
            "list",
            "counters",
            "table",
            "netdev",
            _NFT_TABLE,
        ]
    )
    counters: dict[str, int] = {}
    for item in json.loads(out).get("nftables", []):
        counter = item.get("counter")
        if counter:
            counters[counter["name"]] = int(counter["packets"])
    return counters


def read_line(stream: IO[str], timeout: float) -> str:
    """One line from a process's text pipe, or "" when nothing arrives within ``timeout``."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


# -- UDP probe: ``python -m benchmarks.netem udp-recv|udp-send`` ------------------------


def udp_receive(port: int, *, duration: float, idle: float = 1.0, out: IO[str]) -> dict[str, Any]:
    """Count datagrams on ``port`` until ``duration`` passed or ``idle`` s without one
    after the first. Prints ``ready`` on ``out`` once bound, then returns the counts."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("0.0.0.0", port))
        print("ready", file=out, flush=True)
        deadline = time.monotonic() + duration
        seen: set[int] = set()
        received = total_bytes = 0
        first = last = 0.0
        while (now := time.monotonic()) < deadline:
            wait = deadline - now if not received else min(idle, deadline - now)
            sock.settimeout(max(wait, 0.001))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if received:
                    break
                continue
            last = time.monotonic()
            if not received:
                first = last
            received += 1
            total_bytes += len(data)
            seen.add(int.from_bytes(data[:4], "big"))
    span = last - first
    # what a shaper counts: the Ethernet frame (UDP payload + UDP, IPv4 and Ethernet headers)
    wire_bytes = total_bytes + received * _FRAME_OVERHEAD
    return {
        "packets": received,
        "unique": len(seen),
        "bytes": total_bytes,
        "seconds": span,
        "kbit_per_s": total_bytes * 8 / span / 1000 if span > 0 else 0.0,
        "wire_kbit_per_s": wire_bytes * 8 / span / 1000 if span > 0 else 0.0,
    }


def udp_send(
    host: str, port: int, *, kbit: float, size: int, duration: float = 0.0, count: int = 0
) -> dict[str, Any]:
    """Send ``size``-byte datagrams (numbered) at ``kbit`` kbit/s for ``duration`` s or
    ``count`` packets, paced every 5 ms; datagrams the socket refuses are counted too."""
    pps = kbit * 1000 / 8 / size
    limit = count or int(pps * duration)
    sent = refused = 0
    padding = bytes(max(size - 4, 0))
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        while sent + refused < limit:
            due = min(int((time.monotonic() - start) * pps) + 1, limit)
            while sent + refused < due:
                try:
                    sock.send((sent + refused).to_bytes(4, "big") + padding)
                    sent += 1
                except (BlockingIOError, ConnectionRefusedError, OSError):
                    refused += 1
            if time.monotonic() - start > limit / pps + 5.0:
                break  # bounded whatever happens
            time.sleep(0.005)
    return {"sent": sent, "refused": refused, "seconds": time.monotonic() - start}


@dataclass(frozen=True)
class UdpMeasurement:
    """One paced UDP run between two hosts: what the sender sent and the receiver got."""

    sent: int
    received: int
    unique: int
    seconds: float
    kbit_per_s: float
    wire_kbit_per_s: float

    @property
    def loss(self) -> float:
        """Fraction of the sent datagrams that never arrived."""
        return 1.0 - self.unique / self.sent if self.sent else 0.0


def probe_command(*args: str) -> list[str]:
    """The argv of this module's UDP probe, for :meth:`NetworkLab.popen`/``run``."""
    return [sys.executable, "-m", "benchmarks.netem", *args]


def measure_udp(
    lab: NetworkLab,
    src: Host,
    dst: Host,
    *,
    kbit: float,
    size: int = 200,
    duration: float = 2.0,
    port: int = 5001,
) -> UdpMeasurement:
    """Send paced UDP from ``src`` to ``dst`` for ``duration`` s and measure what arrives
    (bounded: the receiver stops 1 s after the last datagram or ``duration`` + 10 s)."""
    receiver = lab.popen(
        dst,
        probe_command("udp-recv", "--port", str(port), "--duration", str(duration + 10)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    if read_line(receiver.stdout, 10.0).strip() != "ready":
        raise RuntimeError(f"UDP receiver in {dst} did not start")
    sender = lab.run(
        src,
        probe_command(
            *("udp-send", "--host", dst.address, "--port", str(port)),
            *("--kbit", str(kbit), "--size", str(size), "--duration", str(duration)),
        ),
        timeout=duration + 15,
    )
    out, _ = receiver.communicate(timeout=duration + 15)
    sent = json.loads(sender.stdout)
    got = json.loads(out.strip().splitlines()[-1])
    return UdpMeasurement(
        sent=int(sent["sent"]),
        received=int(got["packets"]),
        unique=int(got["unique"]),
        seconds=float(got["seconds"]),
        kbit_per_s=float(got["kbit_per_s"]),
        wire_kbit_per_s=float(got["wire_kbit_per_s"]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.netem", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    recv = sub.add_parser("udp-recv", help="count datagrams, print JSON")
    recv.add_argument("--port", type=int, required=True)
    recv.add_argument("--duration", type=float, default=10.0)
    recv.add_argument("--idle", type=float, default=1.0)
    send = sub.add_parser("udp-send", help="send paced datagrams, print JSON")
    send.add_argument("--host", required=True)
    send.add_argument("--port", type=int, required=True)
    send.add_argument("--kbit", type=float, required=True)
    send.add_argument("--size", type=int, default=200)
    send.add_argument("--duration", type=float, default=2.0)
    send.add_argument("--count", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "udp-recv":
        result = udp_receive(args.port, duration=args.duration, idle=args.idle, out=sys.stdout)
    else:
        result = udp_send(
            args.host,
            args.port,
            kbit=args.kbit,
            size=args.size,
            duration=args.duration,
            count=args.count,
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
