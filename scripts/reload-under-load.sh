#!/usr/bin/env bash
# Rewrites portico.yaml N times (alternately in place and by rename) while wrk sends
# keep-alive requests through portico, then reports wrk's counters and the reloads portico
# applied. Exits 1 when any request failed (socket errors or non-2xx responses).
#
#   scripts/reload-under-load.sh [PORTICO_BINARY] [REWRITES]
#
# Loopback only; needs wrk, curl and python3 (nginx as the backend when installed). Takes about REWRITES/2 + 4 seconds.
set -euo pipefail

binary=${1:-build/portico}
rewrites=${2:-20}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(free_port)
proxy_port=$(free_port)

if command -v nginx >/dev/null; then
    # nginx keeps up with wrk, so the reloads happen under real load.
    mkdir -p "$work/nginx"
    cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$backend_port; location / { return 200 "hello\n"; } }
}
CONF
    nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
    pids+=($!)
else
    # A keep-alive HTTP/1.1 backend with one thread per connection.
    python3 - "$backend_port" <<'PY' &
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
    pids+=($!)
fi
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$backend_port/" && break
    sleep 0.05
done

write_config() { # $1: generation number
    cat <<YAML
listen: [127.0.0.1:$proxy_port]
workers: 2
tls: { ca_dir: $work/ca }
routes:
  - host: app.localhost
    to: 127.0.0.1:$backend_port
    headers:
      response: { set: { X-Generation: "$1" } }
  - host: extra-$1.localhost
    to: 127.0.0.1:$backend_port
YAML
}

write_config 0 > "$work/portico.yaml"
"$binary" run -c "$work/portico.yaml" 2> "$work/portico.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "portico ready" "$work/portico.log" 2>/dev/null && break
    sleep 0.05
done
grep -q "portico ready" "$work/portico.log" || { cat "$work/portico.log" >&2; exit 2; }

duration=$(( rewrites / 2 + 4 ))
wrk -t2 -c20 -d"${duration}s" -H "Host: app.localhost" "http://127.0.0.1:$proxy_port/" \
    > "$work/wrk.txt" &
wrk_pid=$!
sleep 1
for i in $(seq 1 "$rewrites"); do
    if (( i % 2 == 0 )); then
        write_config "$i" > "$work/portico.yaml"
    else
        write_config "$i" > "$work/.portico.yaml.tmp"
        mv "$work/.portico.yaml.tmp" "$work/portico.yaml"
    fi
    sleep 0.5
done
wait "$wrk_pid"

cat "$work/wrk.txt"
reloads=$(grep -c "config reloaded" "$work/portico.log" || true)
echo "rewrites: $rewrites, reloads applied: $reloads"
last=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: extra-$rewrites.localhost" "http://127.0.0.1:$proxy_port/")
echo "route added by the last rewrite answers: $last"
if grep -qE "Socket errors|Non-2xx" "$work/wrk.txt" || [[ "$last" != 200 ]]; then
    echo "FAILED: requests failed during reloads" >&2
    exit 1
fi
echo "OK: no failed request"
