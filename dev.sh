#!/usr/bin/env bash
# One entry point for newcomers and CI:
#   ./dev.sh run [sfu-server flags]   set up (venv + npm) and start the server
#   ./dev.sh test [pytest args]       set up and run lint, types, JS unit tests and pytest
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-python3}"
VENV=".venv"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        touch "$stamp"
    fi
    if [ -f package.json ]; then
        if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
            npm ci --no-audit --no-fund --loglevel=error
        fi
    fi
}

case "${1:-}" in
    run)
        shift
        setup
        if [ "$#" -eq 0 ]; then
            # embedded default: loopback only, no STUN/TURN, no external services
            set -- --host 127.0.0.1 --port 8080 --ice-address 127.0.0.1
        fi
        exec "$VENV/bin/sfu-server" "$@"
        ;;
    test)
        shift
        setup
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        if [ -d web/tests ]; then
            node --test web/tests/
        fi
        exec "$VENV/bin/pytest" -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh run [sfu-server flags] | ./dev.sh test [pytest args]" >&2
        exit 2
        ;;
esac
