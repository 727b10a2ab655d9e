#!/usr/bin/env bash
# Measures how long `portico run` takes to become ready with a generated configuration of
# many routes: from starting the process to the "portico ready" line on stderr.
#
#   scripts/startup-time.sh [--portico BIN] [--routes N] [--runs N]
#
# Listens on 127.0.0.1 port 0 (a fresh port each run) and connects to nothing: the routes
# point at loopback ports nobody needs to serve. The CA is created in a temporary ca_dir by
# an untimed first run, so the timed runs measure an ordinary start with an existing CA.
# Every run is bounded by a timeout and stopped with SIGTERM once ready. Prints each run in
# milliseconds and the median.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=build/portico
routes=1000
runs=7
while (($#)); do
    case $1 in
    --portico) bin=$2; shift 2 ;;
    --routes) routes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "startup-time.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[[ -x $bin ]] || { echo "startup-time.sh: '$bin' is not executable (build first)" >&2; exit 1; }

work=$(mktemp -d /tmp/portico-startup.XXXXXX)
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

{
    echo "listen:"
    echo "  - 127.0.0.1:0"
    echo "workers: 1"
    echo "tls:"
    echo "  ca_dir: $work/ca"
    echo "routes:"
    for ((i = 0; i < routes; i++)); do
        case $((i % 4)) in
        0) echo "  - host: app$i.localhost" ;;
        1) echo "  - host: \"*.preview$i.localhost\"" ;;
        2) echo "  - host: api$((i / 4)).localhost"; echo "    path: /v$i" ;;
        3) echo "  - host: svc$i.localhost"; echo "    strip_prefix: true"; echo "    path: /svc" ;;
        esac
        echo "    to: 127.0.0.1:$((20000 + i % 1000))"
    done
} >"$work/portico.yaml"

# One start: prints the milliseconds until the ready line, or fails after 10 s.
start_once() {
    local fifo=$work/stderr line t0 t1
    rm -f "$fifo"
    mkfifo "$fifo"
    t0=$EPOCHREALTIME
    "$bin" run -c "$work/portico.yaml" --log-level info 2>"$fifo" >/dev/null &
    pid=$!
    exec 3<"$fifo"
    while IFS= read -r -t 10 -u 3 line; do
        if [[ $line == *"portico ready"* ]]; then
            t1=$EPOCHREALTIME
            break
        fi
    done
    kill -TERM "$pid" 2>/dev/null || true
    # Drain stderr so that portico's shutdown lines do not block on a full pipe.
    cat <&3 >/dev/null || true
    exec 3<&-
    wait "$pid" 2>/dev/null || true
    pid=
    [[ -n ${t1:-} ]] || { echo "startup-time.sh: no ready line within 10 s" >&2; return 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
}

start_once >/dev/null # creates the CA
times=()
for ((r = 0; r < runs; r++)); do
    times+=("$(start_once)")
done
echo "routes: $routes, runs: ${times[*]} ms"
printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median: %s ms\n", v[int((NR + 1) / 2)] }'
