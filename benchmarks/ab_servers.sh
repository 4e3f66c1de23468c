#!/usr/bin/env bash
# Server CPU per forwarded packet of two checkouts, interleaved (issue #14's comparison).
#
#   benchmarks/ab_servers.sh BASE_TREE NEW_TREE N [ROUNDS] [OUT_DIR]
#
# For each round, starts BASE_TREE's server, then NEW_TREE's (each `python -m signaling`
# run from its own tree with PYTHONPATH on it, loopback only), and drives it with THIS
# checkout's `sfu-bench --url --server-pid --participants N --duration 20 --subscriber
# light`: the same light clients for both, so the runs differ only in the server. A base
# tree is e.g. `git worktree add ../base 8272604` (main when issue #14 was filed).
# Prints one markdown row per run; each run's JSON goes to OUT_DIR.
set -euo pipefail

base=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
n=$3
rounds=${4:-2}
out=${5:-ab-results}
here=$(cd "$(dirname "$0")/.." && pwd)
python="$here/.venv/bin/python"
bench="$here/.venv/bin/sfu-bench"
mkdir -p "$out"
out=$(cd "$out" && pwd)

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run() {
    local label=$1 tree=$2 port pid load
    port=$(free_port)
    (cd "$tree" && PYTHONPATH="$tree" exec "$python" -m signaling --host 127.0.0.1 \
        --port "$port" --ice-address 127.0.0.1 --max-participants 30 \
        >"$out/$label.server.log" 2>&1) &
    pid=$!
    sleep 3
    load=$(cut -d' ' -f1 /proc/loadavg)
    timeout 300 "$bench" --url "http://127.0.0.1:$port" --server-pid "$pid" \
        --participants "$n" --duration 20 --subscriber light --json "$out/$label.json" \
        >"$out/$label.bench.log" 2>&1 || echo "$label: sfu-bench failed" >&2
    kill "$pid" 2>/dev/null || true
    # an old server may hang in its shutdown: give it 3 s, then end it
    for _ in 1 2 3; do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    "$python" - "$out/$label.json" "$label" "$load" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
s, v, j, c = run["server"], run["video"], run["join"], run["clients"]
print(
    f"| {sys.argv[2]} | {run['participants']} | {sys.argv[3]} | {s['usPerPacket']:.1f} "
    f"| {s['cpuCores']:.3f} | {v['lossPercent']:.2f} "
    f"| {v['latencyP50Ms']:.1f} / {v['latencyP95Ms']:.1f} | {j['p50Ms']:.0f} "
    f"| {c['machineBusyCores']:.2f} |"
)
PY
}

echo "| run | N | load avg | us/pkt | srv cores | loss % | lat p50 / p95 ms | join p50 ms | box busy |"
echo "|---|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
    run "base-$n-$round" "$base"
    run "new-$n-$round" "$new"
done
