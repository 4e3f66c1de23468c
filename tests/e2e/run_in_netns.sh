#!/bin/sh
# Run a command in a fresh network namespace that has only the loopback interface, so
# Chromium (which gathers ICE candidates on every interface) and the server only ever see
# 127.0.0.1. Needs root or unprivileged user namespaces (then: unshare --map-root-user).
#   tests/e2e/run_in_netns.sh CMD [ARGS...]
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
if [ "$(id -u)" -eq 0 ]; then
    exec unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
exec unshare --map-root-user --net sh -c 'ip link set lo up && exec "$@"' sh "$@"
