#!/usr/bin/env bash
# The tribune nginx example, end to end, on one machine:
#   tribune agent -dev  ->  two demo web backends with HTTP health checks
#   tribune-template    ->  renders nginx.conf from KV nginx/* and healthy "web"
#   nginx               ->  private prefix in a temp dir, on 127.0.0.1
#
# Usage: examples/nginx/run.sh               watch mode (blocking queries)
#        examples/nginx/run.sh -interval 2   poll every 2 s instead
#        examples/nginx/run.sh -sidecar      tribune-template supervises nginx (-exec)
# Ctrl-C stops everything it started, removes its temp files and exits 0.
# A failed start, or the agent, runner or nginx dying, exits non-zero with
# a message (after the same cleanup).
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

usage() {
  echo "usage: $0 [-interval SECONDS | -sidecar]" >&2
  exit 2
}
MODE=watch
RUNNER_ARGS=()
case "${1:-}" in
  "") [ $# -eq 0 ] || usage ;;
  -interval|--interval)
    [ $# -eq 2 ] || usage
    # A positive whole number of seconds (no leading zero, so not octal).
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "$0: -interval needs a positive whole number of seconds, got '$2'" >&2; exit 2; }
    MODE=interval; RUNNER_ARGS=(-interval "$2") ;;
  -sidecar|--sidecar|-exec|--exec) [ $# -eq 1 ] || usage; MODE=sidecar ;;
  -h|--help) sed -n '2,/^set /{/^set /!p}' "$0"; exit 0 ;;
  *) echo "$0: unknown option '$1'" >&2; usage ;;
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
AGENT_PID=""
RUNNER_PID=""
SLEEP_PID=""

die() {
  echo "run.sh: $*" >&2
  exit 1
}

# The nginx master from $W/nginx.pid, if it is alive and is nginx (the pid
# file may be stale).
nginx_pid() {
  local pid="" cmd=""
  # Builtins only, no cat or grep: check_alive runs this every second, and a
  # Ctrl-C that lands while the shell waits on a foreground child which then
  # exits normally counts as handled by that child (bash's wait-and-
  # cooperative-exit), so the INT trap would never run.
  read -r pid 2>/dev/null <"$W/nginx.pid"
  [ -n "$pid" ] || return 1
  read -r -d '' cmd 2>/dev/null <"/proc/$pid/cmdline"
  [[ $cmd == *nginx* ]] && echo "$pid"
}

# Stop this example's nginx and wait until it is gone: quit gracefully,
# then TERM, then KILL (with its workers), so $W is never removed under it.
stop_nginx() {
  local pid sig
  pid="$(nginx_pid)" || return 0
  for sig in QUIT TERM KILL; do
    # Workers outlive a killed master and keep the port: kill them too.
    [ "$sig" = KILL ] && kill -KILL $(cat "/proc/$pid/task/$pid/children" 2>/dev/null) 2>/dev/null
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "==> nginx ($pid) did not stop on SIG$sig" >&2
  done
}

cleanup() {
  local status=$1
  trap - EXIT INT TERM
  set +e
  echo
  echo "==> stopping"
  for p in "${PIDS[@]}" $SLEEP_PID; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $SLEEP_PID; do wait "$p" 2>/dev/null; done
  # In sidecar mode the runner stopped nginx; otherwise nginx is a daemon
  # that none of the kills above reached.
  stop_nginx
  rm -rf "$W"
  echo "==> stopped; removed $W"
  exit "$status"
}
# A signal (Ctrl-C, kill) is the normal way to stop: exit 0. Any other exit
# keeps its status, so a failed start is a failure.
trap 'cleanup $?' EXIT
trap 'cleanup 0' INT TERM

tcp_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# UDP cannot be probed by connecting; try to bind it instead.
udp_busy() {
  ! python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
for p in "$HTTP_PORT" "$DNS_PORT" "$NGINX_PORT" $((NGINX_PORT + 1)) $BACKEND_PORTS; do
  tcp_busy "$p" && die "TCP port $p is in use; set HTTP_PORT/DNS_PORT/NGINX_PORT/BACKEND_PORTS"
done
udp_busy "$DNS_PORT" && die "UDP port $DNS_PORT (DNS) is in use; set DNS_PORT"

API="http://127.0.0.1:$HTTP_PORT"
echo "==> starting tribune agent -dev (HTTP $HTTP_PORT, DNS $DNS_PORT)"
"$BIN/tribune" agent -dev -node example -http-port "$HTTP_PORT" -dns-port "$DNS_PORT" >"$W/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
deadline=$((SECONDS + 30))
until curl -sf "$API/v1/kv/?keys" >/dev/null; do
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$W/agent.log" >&2; die "tribune agent exited during startup (log above)"; }
  [ "$SECONDS" -lt "$deadline" ] || { cat "$W/agent.log" >&2; die "tribune agent did not answer on $API within 30 s (log above)"; }
  sleep 0.1
done

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
    \"Check\": {\"HTTP\": \"http://127.0.0.1:$port/\", \"Interval\": \"1s\", \"Timeout\": \"1s\"}}" >/dev/null ||
    die "registering web-$i with the agent failed"
done
curl -sf -X PUT -d "$NGINX_PORT" "$API/v1/kv/nginx/http/server/listen" >/dev/null ||
  die "writing nginx/http/server/listen to the agent failed"

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
  RUNNER_PID=$!
  PIDS+=("$RUNNER_PID")
else
  # Render once so nginx has a config to start with (no reload: nginx is
  # not running yet), check it, start nginx, then keep watching.
  "$BIN/tribune-template" -onetime -sync-only -confdir "$HERE" -node "127.0.0.1:$HTTP_PORT" >"$W/template.log" 2>&1 ||
    { cat "$W/template.log" >&2; die "the first render of nginx.conf failed (log above)"; }
  nginx -t -q -e stderr -p "$W/" -c nginx.conf || die "nginx -t rejected the first rendered $W/nginx.conf"
  nginx -e stderr -p "$W/" -c nginx.conf || die "nginx did not start (see $W/error.log)"
  echo "==> starting tribune-template ($MODE mode)"
  "$BIN/tribune-template" -confdir "$HERE" -node "127.0.0.1:$HTTP_PORT" "${RUNNER_ARGS[@]}" >>"$W/template.log" 2>&1 &
  RUNNER_PID=$!
  PIDS+=("$RUNNER_PID")
fi

# Exits non-zero with the logs if the agent, the runner or (outside sidecar
# mode, where the runner exits with it) nginx has died.
check_alive() {
  local what="" log=""
  if ! kill -0 "$AGENT_PID" 2>/dev/null; then
    what="tribune agent" log="$W/agent.log"
  elif ! kill -0 "$RUNNER_PID" 2>/dev/null; then
    what="tribune-template" log="$W/template.log"
  elif [ "$MODE" != sidecar ] && ! nginx_pid >/dev/null; then
    what="nginx" log="$W/error.log"
  fi
  [ -n "$what" ] || return 0
  # Ctrl-C reaches the whole process group at once, so the agent may have
  # stopped on it a moment before this shell runs its INT trap: give a
  # pending trap the chance to stop everything cleanly (exit 0) first.
  sleep 0.5
  tail -n 20 "$log" >&2
  die "$what exited (log above)"
}

# Health checks start critical: wait until every demo backend is healthy and
# in the rendered upstream, and nginx proxies to them.
# During a reload nginx's old workers may answer for a moment with the old
# config, so ask for a few answers in a row.
READY_SECS=60
deadline=$((SECONDS + READY_SECS))
ok=0
while [ "$ok" -lt 5 ]; do
  check_alive
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$W/template.log" "$W/error.log" >&2 2>/dev/null
    die "nginx did not serve every healthy backend within $READY_SECS s (logs above; rendered config: $W/nginx.conf)"
  fi
  ready=1
  for port in $BACKEND_PORTS; do grep -q "127.0.0.1:$port " "$W/nginx.conf" 2>/dev/null || ready=0; done
  if [ "$ready" = 1 ] && curl -sf --max-time 2 "http://127.0.0.1:$NGINX_PORT/" >/dev/null; then ok=$((ok + 1)); else ok=0; fi
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
  curl http://127.0.0.1:$NGINX_PORT/tribune/upstreams     # the running config's upstream
  kill \$(cat $W/backend-1.pid)                            # stop a backend: it leaves the upstream
  curl -X PUT -d abc localhost:$HTTP_PORT/v1/kv/nginx/worker_connections   # rejected by nginx -t
  dig @127.0.0.1 -p $DNS_PORT web.service.consul SRV
Press Ctrl-C to stop everything.
TXT

# Sleep in the background so a signal runs the trap at once.
while true; do
  check_alive
  sleep 1 &
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
done
