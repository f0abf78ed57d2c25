#!/usr/bin/env bash
# The tribune nginx example, end to end, on one machine:
#   tribune agent -dev  ->  two demo web backends with HTTP health checks
#   tribune-template    ->  renders nginx.conf from KV nginx/* and healthy "web"
#   nginx               ->  private prefix in a temp dir, on 127.0.0.1
#
# Usage: examples/nginx/run.sh               watch mode (blocking queries)
#        examples/nginx/run.sh -interval 2   poll every 2 s instead
#        examples/nginx/run.sh -sidecar      tribune-template supervises nginx (-exec)
# Ctrl-C stops everything it started and removes its temp files.
#
# Environment (optional): HTTP_PORT (8500), DNS_PORT (8600), NGINX_PORT (8080),
# BACKEND_PORTS ("9001 9002"), TRIBUNE_BIN_DIR (use built binaries, skip cargo build).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
HTTP_PORT="${HTTP_PORT:-8500}"
DNS_PORT="${DNS_PORT:-8600}"
NGINX_PORT="${NGINX_PORT:-8080}"
BACKEND_PORTS="${BACKEND_PORTS:-9001 9002}"

MODE=watch
RUNNER_ARGS=()
case "${1:-}" in
  "") ;;
  -interval|--interval) MODE=interval; RUNNER_ARGS=(-interval "${2:-2}") ;;
  -sidecar|--sidecar|-exec|--exec) MODE=sidecar ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "unknown option $1 (try -interval 2 or -sidecar)" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts the system nginx on install; this example runs its own.
  as_root systemctl stop nginx >/dev/null 2>&1 || true
fi
export PATH="$PATH:/usr/sbin"

if [ -n "${TRIBUNE_BIN_DIR:-}" ]; then
  BIN="$(cd "$TRIBUNE_BIN_DIR" && pwd)"
else
  echo "==> building tribune and tribune-template (release)"
  (cd "$ROOT" && cargo build --release -q -p tribune -p tribune-template)
  BIN="$ROOT/target/release"
fi

W="$(mktemp -d "${TMPDIR:-/tmp}/tribune-nginx.XXXXXX")"
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  if [ "$MODE" != sidecar ] && [ -f "$W/nginx.pid" ]; then
    nginx -e stderr -p "$W/" -c nginx.conf -s quit 2>/dev/null || true
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  # nginx may take a moment to quit
  for _ in $(seq 50); do [ -f "$W/nginx.pid" ] && kill -0 "$(cat "$W/nginx.pid")" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$W"
  echo "==> stopped; removed $W"
  exit 0
}
trap cleanup EXIT INT TERM

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$HTTP_PORT" "$NGINX_PORT" $((NGINX_PORT + 1)) $BACKEND_PORTS; do
  if busy "$p"; then echo "port $p is in use; set HTTP_PORT/NGINX_PORT/BACKEND_PORTS" >&2; exit 1; fi
done

API="http://127.0.0.1:$HTTP_PORT"
echo "==> starting tribune agent -dev (HTTP $HTTP_PORT, DNS $DNS_PORT)"
"$BIN/tribune" agent -dev -node example -http-port "$HTTP_PORT" -dns-port "$DNS_PORT" >"$W/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$API/v1/kv/?keys" >/dev/null && break; sleep 0.1; done
curl -sf "$API/v1/kv/?keys" >/dev/null || { echo "agent did not start:"; cat "$W/agent.log"; exit 1; }

echo "==> starting demo backends on ports: $BACKEND_PORTS"
i=0
for port in $BACKEND_PORTS; do
  i=$((i + 1))
  mkdir -p "$W/backend-$i"
  echo "hello from backend $i (port $port)" >"$W/backend-$i/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$W/backend-$i" >"$W/backend-$i.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$W/backend-$i.pid"
  curl -sf -X PUT "$API/v1/agent/service/register" -d "{
    \"Name\": \"web\", \"ID\": \"web-$i\", \"Address\": \"127.0.0.1\", \"Port\": $port, \"Tags\": [\"demo\"],
    \"Check\": {\"HTTP\": \"http://127.0.0.1:$port/\", \"Interval\": \"1s\", \"Timeout\": \"1s\"}}" >/dev/null
done
curl -sf -X PUT -d "$NGINX_PORT" "$API/v1/kv/nginx/http/server/listen" >/dev/null

cd "$W"
mkdir -p tmp
if [ "$MODE" = sidecar ]; then
  # Same template; no reload_cmd: tribune-template signals its child instead.
  mkdir -p confdir/conf.d
  ln -s "$HERE/templates" confdir/templates
  sed '/^reload_cmd/d' "$HERE/conf.d/nginx.toml" >confdir/conf.d/nginx.toml
  echo "==> starting tribune-template -exec nginx (sidecar)"
  "$BIN/tribune-template" -confdir "$W/confdir" -node "127.0.0.1:$HTTP_PORT" \
    -exec "nginx -e stderr -p $W/ -c nginx.conf -g 'daemon off;'" -exec-reload-signal SIGHUP \
    -exec-kill-signal SIGQUIT -exec-kill-timeout 10s >"$W/template.log" 2>&1 &
  PIDS+=($!)
else
  # Render once so nginx has a config to start with (no reload: nginx is
  # not running yet), check it, start nginx, then keep watching.
  "$BIN/tribune-template" -onetime -sync-only -confdir "$HERE" -node "127.0.0.1:$HTTP_PORT" >"$W/template.log" 2>&1 ||
    { echo "first render failed:"; cat "$W/template.log"; exit 1; }
  nginx -t -q -e stderr -p "$W/" -c nginx.conf
  nginx -e stderr -p "$W/" -c nginx.conf
  echo "==> starting tribune-template ($MODE mode)"
  "$BIN/tribune-template" -confdir "$HERE" -node "127.0.0.1:$HTTP_PORT" "${RUNNER_ARGS[@]}" >>"$W/template.log" 2>&1 &
  PIDS+=($!)
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$NGINX_PORT/tribune/knobs" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$NGINX_PORT/tribune/knobs" >/dev/null || { echo "nginx did not come up:"; cat "$W/template.log" "$W"/error.log 2>/dev/null; exit 1; }
# Health checks start critical: wait until every demo backend is healthy and
# in the rendered upstream, and nginx proxies to them.
# During a reload nginx's old workers may answer for a moment with the old
# config, so ask for a few answers in a row.
ok=0
for _ in $(seq 150); do
  ready=1
  for port in $BACKEND_PORTS; do grep -q "127.0.0.1:$port " "$W/nginx.conf" 2>/dev/null || ready=0; done
  if [ "$ready" = 1 ] && curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null; then ok=$((ok + 1)); else ok=0; fi
  [ "$ok" -ge 5 ] && break
  sleep 0.1
done

cat <<TXT

tribune nginx example is running ($MODE mode). Work dir: $W
  rendered config:   $W/nginx.conf
  logs:              $W/agent.log  $W/template.log

Try:
  curl http://127.0.0.1:$NGINX_PORT/                      # served by a healthy web backend
  curl -X PUT -d 2048 localhost:$HTTP_PORT/v1/kv/nginx/worker_connections
  curl http://127.0.0.1:$NGINX_PORT/tribune/knobs         # the running config's knobs
  kill \$(cat $W/backend-1.pid)                            # stop a backend: it leaves the upstream
  curl -X PUT -d abc localhost:$HTTP_PORT/v1/kv/nginx/worker_connections   # rejected by nginx -t
  dig @127.0.0.1 -p $DNS_PORT web.service.consul SRV
Press Ctrl-C to stop everything.
TXT

while true; do
  sleep 1 &
  wait $! || true
done
