#!/usr/bin/env bash
# Installs what is missing, builds portico (Release, build/) and runs it with
# config/portico.yaml. Extra arguments go to `portico run` (e.g. --log-format json).
#
# config/portico.yaml routes demo.localhost to 127.0.0.1:7081; unless something already
# listens there, a small static server for config/demo/ is started first and stopped when
# portico stops.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo_port=7081

scripts/install-deps.sh
PORTICO_TARGETS=portico scripts/build.sh build -DCMAKE_BUILD_TYPE=Release

is_listening() {
    (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

demo_pid=
portico_pid=
# shellcheck disable=SC2317  # called from a trap
stop_demo() {
    if [[ -n "$demo_pid" ]]; then
        kill "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
}
trap stop_demo EXIT

if is_listening "$demo_port"; then
    echo "run.sh: 127.0.0.1:$demo_port is already in use; not starting the demo backend" >&2
else
    python3 -m http.server "$demo_port" --bind 127.0.0.1 --directory config/demo \
        >build/demo-backend.log 2>&1 &
    demo_pid=$!
    echo "run.sh: demo backend for config/demo/ on 127.0.0.1:$demo_port" \
        "(its log: build/demo-backend.log)" >&2
    # Python takes a moment to listen; portico is ready in milliseconds, and a browser
    # opened at its ready line would meet the "start your dev server" page meanwhile.
    for ((tries = 0; tries < 50; tries++)); do
        if is_listening "$demo_port" || ! kill -0 "$demo_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if ! is_listening "$demo_port"; then
        echo "run.sh: the demo backend is not listening yet (see build/demo-backend.log)" >&2
    fi
fi

# portico runs as a child rather than through exec so that the EXIT trap can stop the demo
# backend; signals sent to this script are passed on (INT and TERM stop it, HUP reloads).
# shellcheck disable=SC2317  # called from traps
forward() {
    if [[ -n "$portico_pid" ]]; then
        kill "-$1" "$portico_pid" 2>/dev/null || true
    fi
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP

build/portico run -c config/portico.yaml "$@" &
portico_pid=$!

# `wait` also returns when a trapped signal arrives; keep waiting while portico lives.
status=0
while :; do
    wait "$portico_pid" && status=0 || status=$?
    if ! kill -0 "$portico_pid" 2>/dev/null; then
        break
    fi
done
exit "$status"
