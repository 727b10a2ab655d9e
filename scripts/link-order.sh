#!/usr/bin/env bash
# scripts/link-order.sh [BUILD_DIR]
# Regenerates cmake/link-order.txt: the functions that starting portico, serving plain,
# large and TLS requests, and a burst of keep-alive connections that park and come back run,
# hottest first. lld places them together at link time (see
# docs/decisions/0011-a-compact-binary.md). Runs the built Release binary under callgrind
# (Debian: valgrind) on loopback, with a python3 HTTP/1.1 server as the backend. Names the
# binary no longer has are ignored by the linker, so a stale file costs memory, never
# correctness; CliTest.CodeOrderNamesTheRequestPath says when the request path's are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
binary=$build/portico
[[ -x $binary ]] || { echo "link-order: $binary not built (scripts/build.sh $build)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "link-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(free_port)
port=$(free_port)
mkdir "$work/www"
printf hello >"$work/www/small"
head -c 1048576 /dev/zero >"$work/www/large"
# HTTP/1.1, so that portico keeps its backend connections and reuses them as with a real server.
python3 - "$work/www" "$backend_port" >/dev/null 2>&1 <<'EOF' &
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the burst below opens up to 100 backend connections at once
handler = functools.partial(Handler, directory=sys.argv[1])
Server(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
EOF
pids+=($!)
cat >"$work/portico.yaml" <<EOF
listen:
  - 127.0.0.1:$port
tls:
  ca_dir: $work/ca
routes:
  - host: order.localhost
    to: 127.0.0.1:$backend_port
EOF

valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$work/profile" \
    "$binary" run -c "$work/portico.yaml" --log-level warn >"$work/portico.log" 2>&1 &
portico_pid=$!
pids+=("$portico_pid")
http=(curl -fsS -m 10 -H 'Host: order.localhost')
https=(curl -fsS -m 10 --cacert "$work/ca/ca.pem" --resolve "order.localhost:$port:127.0.0.1")
fail() {
    echo "link-order: $*" >&2
    cat "$work/portico.log" >&2
    exit 1
}
# Ready when a request goes through to the backend, not merely when portico answers.
for ((i = 0; ; i++)); do
    "${http[@]}" -o /dev/null "http://127.0.0.1:$port/small" 2>/dev/null && break
    kill -0 "$portico_pid" 2>/dev/null || fail "portico exited during start-up"
    ((i < 300)) || fail "no answer through 127.0.0.1:$port after 30 s"
    sleep 0.1
done
# Plain, large and TLS requests, one a backend's 404 and one portico's own error page.
"${http[@]}" "http://127.0.0.1:$port/small" "http://127.0.0.1:$port/large" >/dev/null &&
    curl -sS -m 10 "http://127.0.0.1:$port/missing" -H 'Host: order.localhost' >/dev/null &&
    curl -sS -m 10 "http://127.0.0.1:$port/" -H 'Host: unknown.localhost' >/dev/null &&
    "${https[@]}" "https://order.localhost:$port/small" "https://order.localhost:$port/large" \
        >/dev/null &&
    "${https[@]}" "https://order.localhost:$port/small" >/dev/null ||
    fail "a request failed"
# Many keep-alive connections at once, as a browser or a benchmark opens them: they take
# pooled and new backend connections, wait in the parking lot, and come back for a second
# request. Without this the code they run lies outside the ordered pages and costs idle
# memory the first time connections pile up.
timeout 120 python3 - "$port" <<'EOF' || fail "the keep-alive burst failed"
import socket, sys
port, count = int(sys.argv[1]), 100
request = b"GET /small HTTP/1.1\r\nHost: order.localhost\r\nConnection: keep-alive\r\n\r\n"
def answer(conn):
    data = b""
    while not data.endswith(b"hello"):
        chunk = conn.recv(4096)
        if not chunk:
            raise SystemExit("connection closed before the answer")
        data += chunk
conns = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(count)]
for rounds in range(2):
    for conn in conns:
        conn.sendall(request)
    for conn in conns:
        answer(conn)
for conn in conns:
    conn.close()
EOF
# Quiet after the burst: the worker gives its free heap back (decision 0024).
sleep 2
kill -TERM "$portico_pid"
for ((i = 0; i < 300; i++)); do
    kill -0 "$portico_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$portico_pid" 2>/dev/null && fail "portico did not stop within 30 s of SIGTERM"
wait "$portico_pid" || true

python3 - "$work/profile" "$binary" >"$work/link-order.txt" <<'EOF'
import collections, subprocess, sys

profile, binary = sys.argv[1], sys.argv[2]
names, self_cost = {}, collections.Counter()
current, skip_next = None, False

def resolve(spec):
    spec = spec.strip()
    if spec.startswith("("):
        key, _, name = spec.partition(")")
        if name.strip():
            names[key] = name.strip()
        return names.get(key)
    return spec

for line in open(profile):
    if line.startswith("fn="):
        current = resolve(line[3:])
    elif line.startswith("cfn="):
        resolve(line[4:])
    elif line.startswith("calls="):
        skip_next = True  # the next cost line is the call's inclusive cost
    elif line[:1].isdigit() or line[:1] in "+-*":
        if skip_next:
            skip_next = False
            continue
        fields = line.split()
        if current and len(fields) >= 2:
            self_cost[current] += int(fields[1])

defined = set()
for row in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                          check=True).stdout.splitlines():
    fields = row.split()
    if len(fields) == 3 and fields[1] in "tTwW":
        defined.add(fields[2])

print("# Generated by scripts/link-order.sh: functions by instructions run, hottest first.")
for name, _ in self_cost.most_common():
    if name in defined:
        print(name)
EOF
count=$(grep -vc '^#' "$work/link-order.txt" || true)
((count >= 100)) || fail "only $count functions in the profile"
mv "$work/link-order.txt" cmake/link-order.txt
echo "link-order: $count functions in cmake/link-order.txt"
