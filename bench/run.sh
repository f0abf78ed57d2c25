#!/usr/bin/env bash
# bench/run.sh: tribune's benchmarks, in sections that can run on their own.
#
#   bench/run.sh [kv|discovery|template|nginx|cluster|large|acl|tls|fanout|all]...  (default: all)
#
# Every run builds tribune, tribune-template and tribune-bench (release) once first
# (BUILD=0 skips that and uses the binaries in target/release), and installs the
# Debian packages a section needs when their commands are missing.
#
# kv        tribune against etcd 3.4 on the same machine, in the same run: starts
#           etcd and a durable single tribune server (data in a temp dir, loopback
#           only); wrk PUT at 64 connections, GET at 64 connections, PUT at 1
#           connection, each against etcd and then tribune (scripts from $SCRIPTS);
#           the same GET script against nginx answering `return 200` (the loopback
#           HTTP ceiling of this machine); stops etcd and nginx, then tribune-bench
#           memory, wake and fanout against tribune.
# discovery `tribune agent -dev` with 10 instances of "web": dig checks the SRV answer,
#           dnsperf measures SRV queries/s (without and with EDNS); then a fresh -dev
#           agent: tribune-bench catalog registers 10,000 services x 10 instances,
#           reads the agent's RSS, and times GET /v1/health/service/<name> under 64
#           readers.
# template  `tribune agent -dev`; tribune-bench template-latency (PUT -> file written,
#           PUT -> reload_cmd started) and template-cpu with 1 and with 1000 templates
#           (the runner's CPU time per change when 1 template depends on the key),
#           and the same for an nginx upstream template in Handlebars and in Go form
#           (template-cpu --form handlebars|go, 1 and 1000 templates).
# nginx     examples/nginx/run.sh (agent, two backends, tribune-template, nginx);
#           tribune-bench nginx: PUT nginx/worker_connections -> nginx serving it.
# cluster   issue 6: a 3-member tribune cluster (raft_multiplier 1) and a 3-member etcd
#           cluster side by side, member N of each on 127.0.0.N with default ports,
#           data dirs in the temp dir; wrk at 64 connections: PUT through each leader,
#           tribune GET on the leader and on a follower vs etcd linearizable range on
#           its leader (a follower's default read is served by read index: issue 21,
#           target 5x), tribune ?stale on the follower vs etcd serializable range,
#           tribune ?consistent on the follower for context; then
#           CL_RUNS failovers per system, interleaved: tribune-bench failover writes
#           sequentially through a surviving member, kill -9s the leader and times the
#           first acknowledged write; the killed member is restarted and the clusters
#           must be healthy again before the next run.
# large     issue 20: a durable tribune server and an etcd member side by side; GET at 64
#           connections with 1,000 keys, then LG_KEYS (1,000,000) keys written into each
#           (tribune-bench load) and a catalog of 10,000 nodes / 100,000 instances into
#           tribune; RSS, GET (hot and random keys), recurse of a 1,000-key prefix vs etcd
#           range with prefix, snapshot save and restore (tribune snapshot vs etcdctl),
#           start-up on the data dir, and a new server / member catching up.
# dc        issue 17: two federated datacenters (one durable server each): wrk GET at 64
#           connections on dc1, local keys against ?dc=dc2 (forwarded to dc2), alternating
#           DC_REPEAT (3) times; tribune-bench wake locally and across (watch on dc1 with
#           ?dc=dc2, PUT on dc2). Ports from DC_BASE (18800).
# acl       issue 15: a durable single server with ACLs off, then one with ACLs on
#           (default deny; a token whose policy has 20 key_prefix rules, the one for
#           bench/ granting write), one after the other on the same port; wrk PUT and
#           GET at 64 connections against each (the token in X-Consul-Token), in
#           ACL_ROUNDS (3) alternating rounds; memory per parked blocking query on
#           each, the token sent by the ACLs-on run (CONSUL_HTTP_TOKEN).
#           ACL_TRIBUNE names another tribune binary (e.g. a debug build).
# tls       issue 16: encryption on the wire. A durable single server with both HTTP and
#           HTTPS (a CA and certificate from `tribune tls`): wrk PUT and GET at 64
#           keep-alive connections over each. A 3-server cluster on 127.0.0.1 without,
#           then with mutual TLS on server RPC (verify_incoming, verify_outgoing,
#           verify_server_hostname): wrk PUT at 64 connections through the leader. Then
#           one server and TLS_GOSSIP_AGENTS-1 client agents, idle for TLS_IDLE_S, without
#           and with -encrypt: the CPU time of all of them (gossip, plus what idle agents do).
# fanout    issue 18: a durable tribune server on 127.0.0.1 and FO_AGENTS (10) client
#           agents on 127.0.0.2.., FO_WATCHERS (1,000) watchers on each client agent
#           parked on health/service/web?passing&index=N; tribune-bench fanout-agents
#           flips one instance's check FO_ROUNDS (20) times and times the last answer
#           after the flip's acknowledgement, the server's CPU per flip and the reads it
#           served per flip (consul.rpc.query); then the same number of watchers parked
#           on the server directly. The watchers are plain TCP streams read with
#           httparse (no HTTP client stack beside the agents on the same cores).
#
# Each section writes its markdown table (with the exact commands) to
# bench/out/results-<section>.md; bench/out/results.md is then rebuilt from the
# section files present, so it holds the latest run of every section. Raw outputs and
# server logs are kept in bench/out/ too. Everything a section starts is stopped at
# its end (and on exit); the temp dir is removed.
#
# Knobs (environment): BUILD SCRIPTS OUT_DIR;
#   kv: TRIBUNE_PORT ETCD_PORT WRK_DURATION WRK1_DURATION PARKED SAMPLES WATCHERS ROUNDS;
#   discovery: DISC_HTTP_PORT DISC_DNS_PORT CAT_HTTP_PORT DNS_DURATION CAT_SERVICES
#     CAT_INSTANCES CAT_NODES CAT_CONCURRENCY CAT_READERS CAT_READ_S;
#   template: TMPL_HTTP_PORT TMPL_CHANGES TMPL_TEMPLATES TMPL_GAP_MS;
#   nginx: NGX_HTTP_PORT NGX_DNS_PORT NGX_PORT NGX_BACKEND_PORTS NGX_CHANGES NGX_GAP_MS
#     NGX_POLL_US;
#   cluster: WRK_DURATION CL_SIZE CL_RUNS CL_WARMUP_MS CL_TIMEOUT_MS CL_RETRY_MS CL_SETTLE_S;
#   large: WRK_DURATION LG_HTTP_PORT LG_ETCD_PORT LG_KEYS LG_PREFIXES LG_SERVICES LG_INSTANCES
#     LG_NODES;
#   fanout: FO_HTTP_PORT FO_AGENTS FO_WATCHERS FO_ROUNDS.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPTS=${SCRIPTS:-/work/shared/bench}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
TRIBUNE_PORT=${TRIBUNE_PORT:-18550}
ETCD_PORT=${ETCD_PORT:-2379} # peer = +1, metrics = +2
CEIL_PORT=${CEIL_PORT:-18580} # nginx `return 200`, the kv section's ceiling row
WRK_DURATION=${WRK_DURATION:-10s}
WRK1_DURATION=${WRK1_DURATION:-5s}
PARKED=${PARKED:-10000}
ACL_ROUNDS=${ACL_ROUNDS:-3}
SAMPLES=${SAMPLES:-200}
WATCHERS=${WATCHERS:-1000}
ROUNDS=${ROUNDS:-20}
BUILD=${BUILD:-1}
DISC_HTTP_PORT=${DISC_HTTP_PORT:-18560}
DISC_DNS_PORT=${DISC_DNS_PORT:-18561}
CAT_HTTP_PORT=${CAT_HTTP_PORT:-18562}
DNS_DURATION=${DNS_DURATION:-10}
CAT_SERVICES=${CAT_SERVICES:-10000}
CAT_INSTANCES=${CAT_INSTANCES:-10}
CAT_NODES=${CAT_NODES:-1000}
CAT_CONCURRENCY=${CAT_CONCURRENCY:-64}
CAT_READERS=${CAT_READERS:-64}
CAT_READ_S=${CAT_READ_S:-10}
TMPL_HTTP_PORT=${TMPL_HTTP_PORT:-18570}
TMPL_CHANGES=${TMPL_CHANGES:-200}
TMPL_TEMPLATES=${TMPL_TEMPLATES:-1000}
TMPL_GAP_MS=${TMPL_GAP_MS:-150}
NGX_HTTP_PORT=${NGX_HTTP_PORT:-18580}
NGX_DNS_PORT=${NGX_DNS_PORT:-18581}
NGX_PORT=${NGX_PORT:-18582} # and +1 (the example's fallback server)
NGX_BACKEND_PORTS=${NGX_BACKEND_PORTS:-18584 18585}
NGX_CHANGES=${NGX_CHANGES:-50}
NGX_GAP_MS=${NGX_GAP_MS:-300}
NGX_POLL_US=${NGX_POLL_US:-500}
CL_SIZE=${CL_SIZE:-3}
CL_RUNS=${CL_RUNS:-10}
CL_WARMUP_MS=${CL_WARMUP_MS:-1000}
CL_TIMEOUT_MS=${CL_TIMEOUT_MS:-250}
CL_RETRY_MS=${CL_RETRY_MS:-10}
CL_SETTLE_S=${CL_SETTLE_S:-3}
LG_HTTP_PORT=${LG_HTTP_PORT:-18590} # and +1..+5: RPC, gossip; the second server's three
LG_ETCD_PORT=${LG_ETCD_PORT:-2479}  # peer +1; the second member +2, +3; metrics peer +100
LG_KEYS=${LG_KEYS:-1000000}
LG_PREFIXES=${LG_PREFIXES:-1000}
LG_SERVICES=${LG_SERVICES:-10000}
LG_INSTANCES=${LG_INSTANCES:-10}
LG_NODES=${LG_NODES:-10000}
TLS_BASE=${TLS_BASE:-18700} # server i: HTTP +10i, RPC +10i+1, gossip +10i+2, HTTPS +10i+3
TLS_GOSSIP_AGENTS=${TLS_GOSSIP_AGENTS:-6}
TLS_IDLE_S=${TLS_IDLE_S:-20}
TLS_REPEAT=${TLS_REPEAT:-4}
FO_HTTP_PORT=${FO_HTTP_PORT:-28600} # +1 server RPC, +2 gossip (each agent on its own address)
FO_AGENTS=${FO_AGENTS:-10}
FO_WATCHERS=${FO_WATCHERS:-1000}
FO_ROUNDS=${FO_ROUNDS:-20}
DC_BASE=${DC_BASE:-18800} # dc1's server: HTTP +0, RPC +1, LAN gossip +2, WAN gossip +3; dc2's at +10
DC_REPEAT=${DC_REPEAT:-3}
export RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0
SECTIONS=(kv discovery template nginx cluster large acl tls fanout dc)

TRIBUNE_URL=http://127.0.0.1:$TRIBUNE_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

# ---------------------------------------------------------------- tools
# need CMD:PACKAGE...: apt-get install the packages whose commands are missing.
need() {
    local pkgs=() spec
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || [[ -x /usr/sbin/${spec%%:*} ]] || pkgs+=("${spec#*:}")
    done
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq || die "apt-get update"
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${pkgs[@]}" ||
            die "apt-get install ${pkgs[*]}"
    fi
}

ensure_tools() {
    need etcd:etcd-server etcdctl:etcd-client wrk:wrk curl:curl
    local s
    for s in etcd_put etcd_get consul_put consul_get; do
        [[ -r $SCRIPTS/$s.lua ]] || die "missing wrk script $SCRIPTS/$s.lua"
    done
}

# ---------------------------------------------------------------- processes
PIDS=()
TMP=
NO_CONN_CAP=
cleanup() {
    local rc=$? pid _
    trap - EXIT INT TERM
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in {1..50}; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_busy_pct: share of all cores busy over 2 s, from /proc/stat.
cpu_busy_pct() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; idle = y[2] - x[2]
        printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready NAME PID LOG PROBE...: until PROBE succeeds (30 s at most), PID must live.
wait_ready() {
    local name=$1 pid=$2 logf=$3 _
    shift 3
    for _ in {1..120}; do
        kill -0 "$pid" 2>/dev/null ||
            die "$name exited during start-up; last lines of $logf:"$'\n'"$(tail -n 20 "$logf")"
        if "$@" >/dev/null 2>&1; then
            log "$name is ready"
            return 0
        fi
        sleep 0.25
    done
    die "$name not ready after 30 s; last lines of $logf:"$'\n'"$(tail -n 20 "$logf")"
}

stop() { # stop PID [SECONDS]: TERM, wait up to SECONDS (10), then KILL; forget PID
    local pid=$1 tenths=$((${2:-10} * 10)) k i keep=()
    for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((k = 0; k < tenths; k++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

etcd_probe() {
    curl -sf --max-time 2 -X POST "$ETCD_URL/v3/kv/range" -d '{"key":"cmVhZHk="}'
}
tribune_probe() { # [URL]
    [[ $(curl -sf --max-time 2 -X PUT --data ok "${1:-$TRIBUNE_URL}/v1/kv/bench/ready") == true ]]
}

# start_dev NAME HTTP_PORT DNS_PORT: `tribune agent -dev` in the background, ready;
# sets DEV_PID and DEV_LOG.
start_dev() {
    local name=$1 http=$2 dns=$3
    DEV_LOG=$OUT_DIR/$name.log
    log "starting $name: tribune agent -dev -http-port $http -dns-port $dns"
    "$ROOT/target/release/tribune" agent -dev -http-port "$http" -dns-port "$dns" \
        -config-file "$NO_CONN_CAP" -log-level warn >"$DEV_LOG" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    wait_ready "$name" "$DEV_PID" "$DEV_LOG" tribune_probe "http://127.0.0.1:$http"
}

# ports_free PORT...: die if any is taken.
ports_free() {
    local p
    for p in "$@"; do port_in_use "$p" && die "127.0.0.1:$p is already in use"; done
    return 0
}

# cmdline ARGS...: a command as it ran, for the tables (paths under the repository
# relative to it; run from the repository root).
cmdline() {
    local out
    out=$(printf '%q ' "$@")
    out=${out% }
    printf '%s' "${out//$ROOT\//}"
}

# proc_ticks: "pid comm utime+stime" of every process (comm with blanks as _).
proc_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk '{
        l = $0; i = index(l, "("); j = 0
        for (k = length(l); k > i; k--) if (substr(l, k, 1) == ")") { j = k; break }
        comm = substr(l, i + 1, j - i - 1); gsub(/[ \t]/, "_", comm)
        split(substr(l, j + 2), f, " "); print $1, comm, f[12] + f[13] }'
}

# top_ticks BEFORE AFTER SECONDS: the 4 processes that used the most CPU between two
# proc_ticks snapshots (those that ended in between are missed).
top_ticks() {
    awk -v s="$3" 'NR == FNR { t[$1] = $3; next }
        { d = $3 - ($1 in t ? t[$1] : 0); if (d > 0) print d, $2, $1 }' "$1" "$2" |
        sort -rn | head -n 4 |
        awk -v s="$3" '{ printf "%s%s[%s] %.0f%%", (NR > 1 ? ", " : ""), $2, $3, $1 / s }'
}

cpu_total() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }
busy_between() { # busy_between "BUSY IDLE" "BUSY IDLE": % of all cores busy
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; idle = y[2] - x[2]
        printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}

# load_begin NAME: CPU busy over 2 s before a section (nothing of ours running) and
# who used it, into R[NAME_busy] and R[NAME_top]; then starts the section's account.
load_begin() {
    local a b
    a=$(cpu_total)
    proc_ticks >"$TMP/ticks-$1-pre"
    sleep 2
    b=$(cpu_total)
    proc_ticks >"$TMP/ticks-$1-0"
    R[${1}_busy]=$(busy_between "$a" "$b")
    R[${1}_top]=$(top_ticks "$TMP/ticks-$1-pre" "$TMP/ticks-$1-0" 2)
    R[${1}_cpu0]=$b
    R[${1}_t0]=$EPOCHREALTIME
    log "CPU busy before $1 (2 s sample): ${R[${1}_busy]}% (top: ${R[${1}_top]:-none})"
    awk -v b="${R[${1}_busy]}" 'BEGIN { exit !(b > 10) }' &&
        log "WARNING: other work is using the cores; figures will be low and noisy"
    return 0
}

# load_end NAME: CPU busy during the section and its biggest users, R[NAME_during*].
load_end() {
    local secs
    proc_ticks >"$TMP/ticks-$1-1"
    secs=$(awk -v a="${R[${1}_t0]}" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    R[${1}_during_busy]=$(busy_between "${R[${1}_cpu0]}" "$(cpu_total)")
    R[${1}_during_top]=$(top_ticks "$TMP/ticks-$1-0" "$TMP/ticks-$1-1" "$secs")
    R[${1}_during_s]=$secs
    log "CPU busy during $1 ($secs s): ${R[${1}_during_busy]}% (top: ${R[${1}_during_top]})"
}

# load_note NAME: the line for the notes.
load_note() {
    printf -- '- Load: all cores %s%% busy in the 2 s before the section (busiest: %s); %s%% during its %s s (CPU share of one core, processes alive at its end: %s). %s cores in all.' \
        "${R[${1}_busy]}" "${R[${1}_top]:-none}" "${R[${1}_during_busy]}" "${R[${1}_during_s]}" \
        "${R[${1}_during_top]}" "$(nproc)"
}

# ---------------------------------------------------------------- results
declare -A R

# to_ms VALUE-WITH-UNIT (wrk prints 812.00us, 6.80ms, 1.02s, 2.00m)
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "nan" }'
}

# run_wrk NAME THREADS CONNS DURATION SCRIPT URL (SCRIPT: a name in $SCRIPTS, or a path)
run_wrk() {
    local name=$1 t=$2 c=$3 d=$4 script=$5 url=$6 out=$OUT_DIR/wrk-$1.txt
    [[ $script == */* ]] || script=$SCRIPTS/$script # a bare name: one of the shared scripts
    log "wrk $name: -t$t -c$c -d$d -s $script $url"
    local hdr=() # WRK_HEADER: one extra request header (the acl section's token)
    [[ -n ${WRK_HEADER:-} ]] && hdr=(-H "$WRK_HEADER")
    timeout 300 wrk -t"$t" -c"$c" -d"$d" --latency --timeout 10s "${hdr[@]}" -s "$script" "$url" \
        >"$out" 2>&1 || die "wrk $name failed:"$'\n'"$(tail -n 20 "$out")"
    local rps p50 p99 non2xx sockerr
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '/^ +50%/ {print $2}' "$out")
    p99=$(awk '/^ +99%/ {print $2}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sockerr=$(awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i }
        END { print s + 0 }' "$out")
    [[ -n $rps && -n $p50 && -n $p99 ]] || die "cannot parse wrk output $out:"$'\n'"$(cat "$out")"
    R[${name}_rps]=$(printf '%.0f' "$rps")
    R[${name}_p50_ms]=$(to_ms "$p50")
    R[${name}_p99_ms]=$(to_ms "$p99")
    R[${name}_errors]=$((${non2xx:-0} + ${sockerr:-0}))
    log "  -> ${R[${name}_rps]} req/s, p50 ${R[${name}_p50_ms]} ms, p99 ${R[${name}_p99_ms]} ms, errors ${R[${name}_errors]}"
    sleep 2 # let the servers settle between runs
}

# run_bench NAME ARGS...: tribune-bench NAME ARGS, RESULT lines into R, the command
# into R[cmd_NAME]. run_bench_as TAG NAME ARGS... names the output bench-TAG.txt.
# The server whose survival is checked afterwards: SERVER_PID, SERVER_LOG.
run_bench() { run_bench_as "$1" "$@"; }
run_bench_as() {
    local tag=$1 name=$2 out=$OUT_DIR/bench-$1.txt
    shift 2
    local cmd=("$ROOT/target/release/tribune-bench" "$name" "$@")
    R[cmd_$tag]=$(cmdline "${cmd[@]}")
    log "tribune-bench $name $*"
    if ! timeout "${BENCH_TIMEOUT:-600}" "${cmd[@]}" 2>&1 | tee "$out" >&2; then
        die "tribune-bench $name failed (output in $out)"
    fi
    local k v
    while IFS='=' read -r k v; do R[$k]=$v; done < <(sed -n 's/^RESULT //p' "$out")
    kill -0 "$SERVER_PID" 2>/dev/null ||
        die "server died during $name; last lines:"$'\n'"$(tail -n 20 "$SERVER_LOG")"
}

# start_kv_tribune NAME: a durable single server on $TMP/NAME, logging to
# $OUT_DIR/NAME.log; sets TRIBUNE_PID and the server being measured.
start_kv_tribune() {
    "$ROOT/target/release/tribune" agent -server -bootstrap-expect 1 -data-dir "$TMP/$1" \
        -http-port "$TRIBUNE_PORT" -dns-port -1 -config-file "$NO_CONN_CAP" -log-level warn \
        >"$OUT_DIR/$1.log" 2>&1 &
    TRIBUNE_PID=$!
    PIDS+=("$TRIBUNE_PID")
    wait_ready tribune "$TRIBUNE_PID" "$OUT_DIR/$1.log" tribune_probe
    SERVER_PID=$TRIBUNE_PID SERVER_LOG=$OUT_DIR/$1.log
}

# The ceiling row: nginx answering every request with `return 200` and a
# body the size of a bench value, two workers (one per core, as wrk's two
# threads), no access log. What this loopback can carry for one HTTP server.
start_ceiling_nginx() {
    need nginx:nginx-light
    export PATH=$PATH:/usr/sbin
    local d=$TMP/ceiling body
    mkdir -p "$d"
    body=$(printf 'v%.0s' {1..64})
    cat >"$d/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log $OUT_DIR/nginx-ceiling.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$CEIL_PORT;
        location / { return 200 "$body"; }
    }
}
EOF
    R[cmd_ceiling]="nginx -c \$TMP/ceiling/nginx.conf, with worker_processes 2, access_log off and \`listen 127.0.0.1:$CEIL_PORT; location / { return 200 \"<64 bytes>\"; }\`"
    nginx -c "$d/nginx.conf" >>"$OUT_DIR/nginx-ceiling.log" 2>&1 &
    CEIL_PID=$!
    PIDS+=("$CEIL_PID")
    local _
    for _ in {1..100}; do
        curl -fsS -o /dev/null "http://127.0.0.1:$CEIL_PORT/" 2>/dev/null && return 0
        kill -0 "$CEIL_PID" 2>/dev/null || die "nginx (ceiling) exited: $(tail -n 5 "$OUT_DIR/nginx-ceiling.log")"
        sleep 0.1
    done
    die "nginx (ceiling) not answering on 127.0.0.1:$CEIL_PORT"
}

# ---------------------------------------------------------------- run
section_kv() {
    ensure_tools

    local need_fds=$((PARKED > WATCHERS ? PARKED + 1024 : WATCHERS + 1024))
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
        die "cannot raise the open-file limit"
    (($(ulimit -n) >= need_fds)) ||
        die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) below the $need_fds needed"
    log "open-file limit $(ulimit -n)"

    local p
    for p in "$TRIBUNE_PORT" "$ETCD_PORT" $((ETCD_PORT + 1)) $((ETCD_PORT + 2)) "$CEIL_PORT"; do
        port_in_use "$p" && die "127.0.0.1:$p is already in use"
    done
    IDLE_BUSY=$(cpu_busy_pct)
    log "CPU busy before start (2 s sample, nothing of ours running): $IDLE_BUSY%"
    awk -v b="$IDLE_BUSY" 'BEGIN { exit !(b > 10) }' &&
        log "WARNING: other work is using the cores; figures will be low and noisy"

    log "starting etcd on $ETCD_URL"
    etcd --name p1 --data-dir "$TMP/etcd" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-cluster "p1=http://127.0.0.1:$((ETCD_PORT + 1))" \
        --listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT + 2))" \
        >"$OUT_DIR/etcd.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    wait_ready etcd "$ETCD_PID" "$OUT_DIR/etcd.log" etcd_probe

    log "starting tribune on $TRIBUNE_URL"
    start_kv_tribune tribune
    start_ceiling_nginx

    run_wrk etcd_put64 2 64 "$WRK_DURATION" etcd_put.lua "$ETCD_URL"
    run_wrk tribune_put64 2 64 "$WRK_DURATION" consul_put.lua "$TRIBUNE_URL"
    run_wrk etcd_get64 2 64 "$WRK_DURATION" etcd_get.lua "$ETCD_URL"
    run_wrk tribune_get64 2 64 "$WRK_DURATION" consul_get.lua "$TRIBUNE_URL"
    run_wrk nginx_get64 2 64 "$WRK_DURATION" consul_get.lua "http://127.0.0.1:$CEIL_PORT"
    stop "$CEIL_PID"
    run_wrk etcd_put1 1 1 "$WRK1_DURATION" etcd_put.lua "$ETCD_URL"
    run_wrk tribune_put1 1 1 "$WRK1_DURATION" consul_put.lua "$TRIBUNE_URL"

    log "stopping etcd (the rest measures tribune alone)"
    stop "$ETCD_PID"

    # Memory on a fresh agent: the wrk runs leave freed-but-resident heap
    # behind, which new connections would reuse and so look cheaper.
    log "restarting tribune on a fresh data dir for the memory figure"
    stop "$TRIBUNE_PID"
    start_kv_tribune tribune-fresh

    local addr=127.0.0.1:$TRIBUNE_PORT
    run_bench memory --addr "$addr" --pid "$TRIBUNE_PID" --parked "$PARKED"
    run_bench wake --addr "$addr" --parked "$PARKED" --samples "$SAMPLES"
    run_bench fanout --addr "$addr" --watchers "$WATCHERS" --rounds "$ROUNDS"
    stop "$TRIBUNE_PID"

    report >"$OUT_DIR/results-kv.md"
}

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'; } # µs -> ms
atleast() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "yes" : "**no**") }'; }
atmost() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "yes" : "**no**") }'; }
fmt_int() { printf "%'d" "$1"; }

report() { # the kv section
    local put get put1 ceil closed rev
    put=$(awk -v a="${R[tribune_put64_rps]}" -v b="${R[etcd_put64_rps]}" 'BEGIN { print a / b }')
    get=$(awk -v a="${R[tribune_get64_rps]}" -v b="${R[etcd_get64_rps]}" 'BEGIN { print a / b }')
    put1=$(awk -v a="${R[tribune_put1_rps]}" -v b="${R[etcd_put1_rps]}" 'BEGIN { print a / b }')
    ceil=$(awk -v a="${R[tribune_get64_rps]}" -v b="${R[nginx_get64_rps]}" 'BEGIN { print a / b }')
    closed=$(awk -v a="${R[memory_rss_closed_kib]}" -v b="${R[memory_rss_before_kib]}" 'BEGIN { print a / b }')
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- agent 2>/dev/null || rev+=" (agent/ modified)"
    cat <<EOF
# tribune vs etcd: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r), data on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'); tribune $rev; $(etcd --version | head -n 1); wrk -t2 -c64 -d$WRK_DURATION (1 connection: -t1 -c1 -d$WRK1_DURATION) sharing the cores with the server under test. Both servers are single durable nodes (fsync before the answer). Ratios: tribune ÷ etcd for throughput, etcd ÷ tribune for latency (above 1 = tribune better).

| benchmark | tribune | etcd 3.4 | ratio | target | met |
|---|---:|---:|---:|---|---|
| PUT, 64 conns (req/s) | $(fmt_int "${R[tribune_put64_rps]}") | $(fmt_int "${R[etcd_put64_rps]}") | $(ratio "${R[tribune_put64_rps]}" "${R[etcd_put64_rps]}") | ≥ 4× etcd (21) | $(atleast "$put" 4) |
| PUT, 64 conns, p50 / p99 (ms) | ${R[tribune_put64_p50_ms]} / ${R[tribune_put64_p99_ms]} | ${R[etcd_put64_p50_ms]} / ${R[etcd_put64_p99_ms]} | $(ratio "${R[etcd_put64_p50_ms]}" "${R[tribune_put64_p50_ms]}") | | |
| GET, 64 conns (req/s) | $(fmt_int "${R[tribune_get64_rps]}") | $(fmt_int "${R[etcd_get64_rps]}") | $(ratio "${R[tribune_get64_rps]}" "${R[etcd_get64_rps]}") | ≥ 10× etcd (21) | $(atleast "$get" 10) |
| GET, 64 conns, p50 / p99 (ms) | ${R[tribune_get64_p50_ms]} / ${R[tribune_get64_p99_ms]} | ${R[etcd_get64_p50_ms]} / ${R[etcd_get64_p99_ms]} | $(ratio "${R[etcd_get64_p50_ms]}" "${R[tribune_get64_p50_ms]}") | | |
| GET, 64 conns, against nginx \`return 200\` (the loopback ceiling; req/s) | $(fmt_int "${R[tribune_get64_rps]}") | nginx: $(fmt_int "${R[nginx_get64_rps]}") | $(awk -v c="$ceil" 'BEGIN { printf "%.0f%%", c * 100 }') of nginx | ≥ 80% of nginx (21) | $(atleast "$ceil" 0.8) |
| PUT, 1 conn (req/s) | $(fmt_int "${R[tribune_put1_rps]}") | $(fmt_int "${R[etcd_put1_rps]}") | $(ratio "${R[tribune_put1_rps]}" "${R[etcd_put1_rps]}") | ≥ 1.5× etcd (21) | $(atleast "$put1" 1.5) |
| PUT, 1 conn, p50 / p99 (ms) | ${R[tribune_put1_p50_ms]} / ${R[tribune_put1_p99_ms]} | ${R[etcd_put1_p50_ms]} / ${R[etcd_put1_p99_ms]} | $(ratio "${R[etcd_put1_p50_ms]}" "${R[tribune_put1_p50_ms]}") | | |
| wake after PUT ack, $(fmt_int "${R[wake_parked]}") others parked, p50 / p90 / p99 (µs) | ${R[wake_p50_us]} / ${R[wake_p90_us]} / ${R[wake_p99_us]} | — | | p50 ≤ 1000 µs | $(atmost "${R[wake_p50_us]}" 1000) |
| wake after PUT sent, p50 / p90 / p99 (µs) | ${R[wake_from_sent_p50_us]} / ${R[wake_from_sent_p90_us]} / ${R[wake_from_sent_p99_us]} | ~2 ms (baselines.md) | | | |
| spurious wakes among the $(fmt_int "${R[wake_parked]}") parked | ${R[wake_spurious]} (+${R[wake_idle_errors]} errors) | — | | 0 | $(atmost "$((R[wake_spurious] + R[wake_idle_errors]))" 0) |
| fanout: all $(fmt_int "${R[fanout_watchers]}") watchers answered after PUT ack, p50 / max of ${R[fanout_rounds]} (ms) | $(ms "${R[fanout_all_p50_us]}") / $(ms "${R[fanout_all_max_us]}") | — | | ≤ 50 ms | $(atmost "${R[fanout_all_max_us]}" 50000) |
| fanout: all answered after PUT sent, p50 / max (ms) | $(ms "${R[fanout_all_from_sent_p50_us]}") / $(ms "${R[fanout_all_from_sent_max_us]}") | — | | | |
| server RSS per parked query (KiB) | ${R[memory_kib_per_parked]} | — | | ≤ 8 KiB (21) | $(atmost "${R[memory_kib_per_parked]}" 8) |
| … of which: accepted connection / its first request / the parked query (KiB) | ${R[memory_kib_per_open_conn]} / ${R[memory_kib_per_first_request]} / ${R[memory_kib_per_parked_query]} | | | | |
| server RSS once all $(fmt_int "${R[memory_parked]}") connections closed ÷ before they opened | $(awk -v c="$closed" 'BEGIN { printf "%.2f", c }') (${R[memory_rss_closed_kib]} / ${R[memory_rss_before_kib]} KiB) | — | | ≤ 1.2 (21) | $(atmost "$closed" 1.2) |

Notes
- wrk errors (non-2xx + socket errors): PUT64 tribune ${R[tribune_put64_errors]}, etcd ${R[etcd_put64_errors]}; GET64 tribune ${R[tribune_get64_errors]}, etcd ${R[etcd_get64_errors]}, nginx ${R[nginx_get64_errors]}; PUT1 tribune ${R[tribune_put1_errors]}, etcd ${R[etcd_put1_errors]}.
- wake: ${R[wake_samples]} samples; the watcher's answer arrived before the PUT's own answer in ${R[wake_watcher_before_ack]} of them (negative values). PUT round trip p50 ${R[wake_put_rtt_p50_us]} µs.
- fanout: the first watcher answered p50 ${R[fanout_first_p50_us]} µs after the PUT ack (negative = before it).
- memory: server VmRSS ${R[memory_rss_before_kib]} KiB before, ${R[memory_rss_opened_kib]} KiB with $(fmt_int "${R[memory_parked]}") connections open, ${R[memory_rss_read_kib]} KiB after one GET on each, ${R[memory_rss_parked_kib]} KiB with all parked, ${R[memory_rss_closed_kib]} KiB once all closed.
- CPU busy just before the servers started (other work on the machine): $IDLE_BUSY%.
- The ceiling: ${R[cmd_ceiling]}, measured with the GET script (\`wrk -t2 -c64 -d$WRK_DURATION --latency -s consul_get.lua http://127.0.0.1:$CEIL_PORT\`) right after tribune's GET run.
- etcd was stopped before the tribune-only benchmarks, and tribune restarted on a fresh data dir for them (memory is measured first, on a heap no earlier load has grown); raw outputs are in bench/out/.
EOF
}

# ---------------------------------------------------------------- discovery
# dnsperf_parse TAG FILE: queries/s and latency into R[TAG_*].
dnsperf_parse() {
    local tag=$1 f=$2
    R[${tag}_qps]=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$f")
    R[${tag}_sent]=$(awk '/Queries sent:/ {print $3}' "$f")
    R[${tag}_lost]=$(awk '/Queries lost:/ {print $3}' "$f")
    R[${tag}_resp_bytes]=$(awk '/Average packet size:/ {print $NF}' "$f")
    R[${tag}_avg_ms]=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$f")
    R[${tag}_min_ms]=$(awk '/Average Latency/ {gsub(/[(,]/, ""); printf "%.3f", $6 * 1000}' "$f")
    R[${tag}_max_ms]=$(awk '/Average Latency/ {gsub(/[)]/, ""); printf "%.3f", $8 * 1000}' "$f")
    R[${tag}_sd_ms]=$(awk '/Latency StdDev/ {printf "%.3f", $4 * 1000}' "$f")
    R[${tag}_codes]=$(awk -F': +' '/Response codes:/ {print $2}' "$f")
    [[ -n ${R[${tag}_qps]} && -n ${R[${tag}_avg_ms]} ]] ||
        die "cannot parse dnsperf output $f:"$'\n'"$(cat "$f")"
}

# run_dnsperf TAG ARGS...: dnsperf ARGS, with the agent's CPU time per query.
run_dnsperf() {
    local tag=$1 out=$OUT_DIR/dnsperf-$1.txt
    shift
    local cmd=(dnsperf "$@")
    R[cmd_$tag]=$(cmdline "${cmd[@]}")
    log "${R[cmd_$tag]}"
    local t0 t1
    t0=$(awk '{print $14 + $15}' "/proc/$DEV_PID/stat")
    timeout 120 "${cmd[@]}" >"$out" 2>&1 || die "dnsperf failed:"$'\n'"$(tail -n 20 "$out")"
    t1=$(awk '{print $14 + $15}' "/proc/$DEV_PID/stat")
    dnsperf_parse "$tag" "$out"
    R[${tag}_agent_cpu_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 100 }')
    R[${tag}_agent_us_per_q]=$(awk -v a="$t0" -v b="$t1" -v n="${R[${tag}_sent]}" \
        'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 10000 / n : 0) }')
    log "  -> ${R[${tag}_qps]} q/s, avg ${R[${tag}_avg_ms]} ms, max ${R[${tag}_max_ms]} ms, lost ${R[${tag}_lost]}, agent CPU ${R[${tag}_agent_us_per_q]} µs/query"
    kill -0 "$DEV_PID" 2>/dev/null || die "agent died under dnsperf:"$'\n'"$(tail -n 20 "$DEV_LOG")"
    sleep 1
}

# dig_count TAG ARGS...: dig ARGS; SRV answers, additional A records, flags.
dig_count() {
    local tag=$1 out=$OUT_DIR/dig-$1.txt
    shift
    R[cmd_$tag]=$(cmdline dig "$@")
    timeout 10 dig "$@" >"$out" 2>&1 || die "dig failed:"$'\n'"$(cat "$out")"
    R[${tag}_srv]=$(awk '/^;; ANSWER SECTION:/ {a = 1; next} /^$/ {a = 0} a && $4 == "SRV" {n++} END {print n + 0}' "$out")
    R[${tag}_a]=$(awk '/^;; ADDITIONAL SECTION:/ {a = 1; next} /^$/ {a = 0} a && $4 == "A" {n++} END {print n + 0}' "$out")
    R[${tag}_flags]=$(sed -n 's/^;; flags: \([^;]*\);.*/\1/p' "$out")
    R[${tag}_opt]=$(grep -q 'OPT PSEUDOSECTION' "$out" && echo yes || echo no)
    R[${tag}_size]=$(awk '/MSG SIZE/ {print $NF}' "$out")
    log "  dig $*: ${R[${tag}_srv]} SRV, ${R[${tag}_a]} A, flags ${R[${tag}_flags]}, OPT ${R[${tag}_opt]}, ${R[${tag}_size]} bytes"
}

section_discovery() {
    need dnsperf:dnsperf dig:bind9-dnsutils curl:curl
    ports_free "$DISC_HTTP_PORT" "$DISC_DNS_PORT" "$CAT_HTTP_PORT"
    load_begin discovery
    local url=http://127.0.0.1:$DISC_HTTP_PORT i reg

    # -- DNS: 10 instances of web
    start_dev discovery-agent "$DISC_HTTP_PORT" "$DISC_DNS_PORT"
    R[cmd_disc_agent]=$(cmdline "$ROOT/target/release/tribune" agent -dev -http-port "$DISC_HTTP_PORT" -dns-port "$DISC_DNS_PORT" -config-file "$NO_CONN_CAP" -log-level warn)
    for i in {0..9}; do
        reg="{\"Node\": \"node-$i\", \"Address\": \"127.0.0.$((i + 1))\", \"Service\": {\"Service\": \"web\", \"ID\": \"web-$i\", \"Port\": $((8000 + i))}}"
        [[ $(curl -sf --max-time 5 -X PUT --data "$reg" "$url/v1/catalog/register") == true ]] ||
            die "registering web-$i failed"
    done
    R[cmd_disc_register]="curl -X PUT --data '{\"Node\": \"node-<i>\", \"Address\": \"127.0.0.<i+1>\", \"Service\": {\"Service\": \"web\", \"ID\": \"web-<i>\", \"Port\": <8000+i>}}' $url/v1/catalog/register # i = 0..9"
    dig_count dig_edns @127.0.0.1 -p "$DISC_DNS_PORT" web.service.consul SRV
    dig_count dig_noedns +noedns @127.0.0.1 -p "$DISC_DNS_PORT" web.service.consul SRV
    ((R[dig_edns_srv] == 10)) || die "dig: ${R[dig_edns_srv]} SRV records for web.service.consul, want 10 (see $OUT_DIR/dig-dig_edns.txt)"

    local qf=$TMP/dns-queries.txt
    echo "web.service.consul SRV" >"$qf"
    SERVER_PID=$DEV_PID SERVER_LOG=$DEV_LOG
    run_dnsperf dns -s 127.0.0.1 -p "$DISC_DNS_PORT" -d "$qf" -l "$DNS_DURATION" -c 8 -Q 200000
    run_dnsperf dns_edns -s 127.0.0.1 -p "$DISC_DNS_PORT" -d "$qf" -l "$DNS_DURATION" -c 8 -Q 200000 -e
    # For comparison: the smallest answer (one A record), what a query costs anyway.
    echo "node-0.node.consul A" >"$TMP/dns-queries-a.txt"
    run_dnsperf dns_a -s 127.0.0.1 -p "$DISC_DNS_PORT" -d "$TMP/dns-queries-a.txt" -l "$DNS_DURATION" -c 8 -Q 200000
    stop "$DEV_PID"

    # -- catalog of CAT_SERVICES x CAT_INSTANCES, on a fresh agent
    start_dev catalog-agent "$CAT_HTTP_PORT" -1
    R[cmd_cat_agent]=$(cmdline "$ROOT/target/release/tribune" agent -dev -http-port "$CAT_HTTP_PORT" -dns-port -1 -config-file "$NO_CONN_CAP" -log-level warn)
    SERVER_PID=$DEV_PID SERVER_LOG=$DEV_LOG
    BENCH_TIMEOUT=1000 run_bench catalog --addr "127.0.0.1:$CAT_HTTP_PORT" --pid "$DEV_PID" \
        --services "$CAT_SERVICES" --instances "$CAT_INSTANCES" --nodes "$CAT_NODES" \
        --concurrency "$CAT_CONCURRENCY" --readers "$CAT_READERS" --read-s "$CAT_READ_S" \
        --limit-s 900
    load_end discovery
    stop "$DEV_PID"

    report_discovery >"$OUT_DIR/results-discovery.md"
}

report_discovery() {
    local fdns=$((CAT_SERVICES * CAT_INSTANCES))
    cat <<EOT
# tribune service discovery: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r); tribune $(revision); $(dnsperf -h 2>&1 | awk '/^Version/ {print "dnsperf " $2}'), sharing the cores with the agent. \`tribune agent -dev\` (in memory); commands run from the repository root.

| benchmark | tribune | target | met | command |
|---|---:|---|---|---|
| dig: SRV answers for web.service.consul (EDNS / no EDNS), additional A | ${R[dig_edns_srv]} / ${R[dig_noedns_srv]}, A ${R[dig_edns_a]} / ${R[dig_noedns_a]} | 10 | $(atleast "${R[dig_edns_srv]}" 10) | \`${R[cmd_dig_edns]}\` |
| DNS SRV, 10 instances, UDP no EDNS (queries/s) | $(fmt_int "${R[dns_qps]}") | ≥ 50,000 | $(atleast "${R[dns_qps]}" 50000) | \`${R[cmd_dns]}\` |
| … latency avg / stddev / max (ms) | ${R[dns_avg_ms]} / ${R[dns_sd_ms]} / ${R[dns_max_ms]} | | | |
| DNS SRV with EDNS (10 SRV + 10 A) (queries/s) | $(fmt_int "${R[dns_edns_qps]}") | | | \`${R[cmd_dns_edns]}\` |
| … latency avg / stddev / max (ms) | ${R[dns_edns_avg_ms]} / ${R[dns_edns_sd_ms]} / ${R[dns_edns_max_ms]} | | | |
| for comparison: DNS A node-0.node.consul (1 record) (queries/s) | $(fmt_int "${R[dns_a_qps]}") | | | \`${R[cmd_dns_a]}\` |
| register $(fmt_int "$fdns") instances ($(fmt_int "$CAT_SERVICES") services × $CAT_INSTANCES), $CAT_CONCURRENCY conns: total (s) / rate (req/s) | ${R[catalog_register_s]} / $(fmt_int "${R[catalog_register_rps]}") | | | \`${R[cmd_catalog]}\` |
| … per request p50 / p99 / max (ms) | $(ms "${R[catalog_register_p50_us]}") / $(ms "${R[catalog_register_p99_us]}") / $(ms "${R[catalog_register_max_us]}") | | | |
| agent RSS with the catalog (MB) | ${R[catalog_rss_mb]} | ≤ 300 MB | $(atmost "${R[catalog_rss_mb]}" 300) | |
| GET /v1/health/service/svc-<random k>, $CAT_READERS conns (req/s) | $(fmt_int "${R[catalog_read_rps]}") | | | |
| … p50 / p99 / max (ms) | $(ms "${R[catalog_read_p50_us]}") / $(ms "${R[catalog_read_p99_us]}") / $(ms "${R[catalog_read_max_us]}") | | | |

Notes
- Agents: \`${R[cmd_disc_agent]}\` with \`${R[cmd_disc_register]}\`; then a fresh \`${R[cmd_cat_agent]}\` for the catalog.
- dig: EDNS answer ${R[dig_edns_size]} bytes (flags ${R[dig_edns_flags]}; OPT record in the answer: ${R[dig_edns_opt]}); without EDNS ${R[dig_noedns_size]} bytes (flags ${R[dig_noedns_flags]}), the additional A records are left out to stay within 512 bytes.
- dnsperf (no EDNS): ${R[dns_sent]} queries sent, ${R[dns_lost]} lost, response codes ${R[dns_codes]}, average response ${R[dns_resp_bytes]} bytes; the agent used ${R[dns_agent_cpu_s]} s of CPU (${R[dns_agent_us_per_q]} µs per query). With EDNS: ${R[dns_edns_sent]} sent, ${R[dns_edns_lost]} lost, ${R[dns_edns_resp_bytes]} bytes, ${R[dns_edns_agent_us_per_q]} µs of agent CPU per query. Node A query: avg ${R[dns_a_avg_ms]} ms, ${R[dns_a_agent_us_per_q]} µs of agent CPU per query. dnsperf reports no percentiles.
- catalog: instance j of svc-k on node-((k·$CAT_INSTANCES + j) mod $CAT_NODES) ($CAT_NODES nodes); the agent used ${R[catalog_register_cpu_us_per]} µs of CPU per registration. RSS ${R[catalog_rss_before_kib]} KiB before, ${R[catalog_rss_kib]} KiB with the catalog (≈ ${R[catalog_bytes_per_instance]} bytes per instance), ${R[catalog_rss_after_reads_kib]} KiB after the reads. /v1/catalog/services listed ${R[catalog_services_listed]} services. Reads: ${R[catalog_reads]} in ${CAT_READ_S} s, one answer in 64 parsed and checked for $CAT_INSTANCES entries (${R[catalog_read_wrong]} wrong).
$(load_note discovery)
EOT
}

# ---------------------------------------------------------------- template
section_template() {
    ports_free "$TMPL_HTTP_PORT"
    load_begin template
    start_dev template-agent "$TMPL_HTTP_PORT" -1
    R[cmd_tmpl_agent]=$(cmdline "$ROOT/target/release/tribune" agent -dev -http-port "$TMPL_HTTP_PORT" -dns-port -1 -config-file "$NO_CONN_CAP" -log-level warn)
    SERVER_PID=$DEV_PID SERVER_LOG=$DEV_LOG
    local addr=127.0.0.1:$TMPL_HTTP_PORT runner=$ROOT/target/release/tribune-template
    run_bench template-latency --addr "$addr" --runner "$runner" --dir "$TMP/template-latency" \
        --changes "$TMPL_CHANGES" --gap-ms "$TMPL_GAP_MS"
    cp "$TMP/template-latency/runner.log" "$OUT_DIR/template-latency-runner.log" 2>/dev/null || true
    local n
    for n in 1 "$TMPL_TEMPLATES"; do
        run_bench_as "template-cpu-$n" template-cpu --addr "$addr" --runner "$runner" \
            --dir "$TMP/template-cpu-$n" --templates "$n" --changes "$TMPL_CHANGES" \
            --gap-ms "$TMPL_GAP_MS" --agent-pid "$DEV_PID"
        cp "$TMP/template-cpu-$n/runner.log" "$OUT_DIR/template-cpu-$n-runner.log" 2>/dev/null || true
    done
    # The same nginx file in Handlebars and in Go syntax (issue 19's comparison):
    # rendered in-process, then through the runner with 1 and with N templates.
    run_bench template-render
    local f
    for n in 1 "$TMPL_TEMPLATES"; do
        for f in handlebars go; do
            run_bench_as "template-nginx-$f-$n" template-cpu --addr "$addr" --runner "$runner" \
                --dir "$TMP/template-nginx-$f-$n" --templates "$n" --changes "$TMPL_CHANGES" \
                --gap-ms "$TMPL_GAP_MS" --agent-pid "$DEV_PID" --form "$f"
            cp "$TMP/template-nginx-$f-$n/runner.log" "$OUT_DIR/template-nginx-$f-$n-runner.log" 2>/dev/null || true
        done
    done
    load_end template
    stop "$DEV_PID"
    report_template >"$OUT_DIR/results-template.md"
}

us() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1000 }'; }

# nginx_rows N: the nginx template in Handlebars and Go form, N templates.
nginx_rows() {
    local h=template_nginx_handlebars_$1 g=template_nginx_go_$1 cpu wr
    cpu=$(awk -v g="${R[${g}_net_us_per_change]}" -v h="${R[${h}_net_us_per_change]}" 'BEGIN { printf "%.2f", (h > 0 ? g / h : 0) }')
    wr=$(awk -v g="${R[${g}_written_p50_us]}" -v h="${R[${h}_written_p50_us]}" 'BEGIN { printf "%.2f", (h > 0 ? g / h : 0) }')
    cat <<EOT
| nginx template ($(fmt_int "$1") template(s), 10 \`web\` instances), Handlebars / Go: file written p50 (ms) | $(ms "${R[${h}_written_p50_us]}") / $(ms "${R[${g}_written_p50_us]}") (Go ${wr}×) | Go ≤ 1.5× | $(atmost "$wr" 1.5) | \`${R[cmd_template-nginx-go-$1]}\` |
| … runner CPU per change, net of idle (µs) | ${R[${h}_net_us_per_change]} / ${R[${g}_net_us_per_change]} (Go ${cpu}×) | Go ≤ 1.5× | $(atmost "$cpu" 1.5) | (\`--form handlebars\` for the other) |
EOT
}

report_template() {
    local a=template_cpu_1 b=template_cpu_$TMPL_TEMPLATES ratio est
    ratio=$(awk -v a="${R[${b}_net_us_per_change]}" -v b="${R[${a}_net_us_per_change]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    est=$(awk -v a="${R[template_reload_p50_us]}" -v b="${R[template_sh_to_fifo_p50_us]}" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
    cat <<EOT
# tribune-template: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r), files on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'); tribune $(revision). \`tribune agent -dev\`; tribune-template in watch mode (blocking queries), started by tribune-bench, no debounce (wait 0); it fsyncs the file and its directory. $TMPL_CHANGES changes, one every $TMPL_GAP_MS ms (the runner, like consul-template, re-queries a dependency at most every 100 ms). Times from the PUT's acknowledgement. Commands run from the repository root.

| benchmark | tribune-template | target | met | command |
|---|---:|---|---|---|
| file written (holds v=i), p50 / p90 / p99 / max (ms) | $(ms "${R[template_written_p50_us]}") / $(ms "${R[template_written_p90_us]}") / $(ms "${R[template_written_p99_us]}") / $(ms "${R[template_written_max_us]}") | p50 ≤ 1.5 ms | $(atmost "${R[template_written_p50_us]}" 1500) | \`${R[cmd_template-latency]}\` |
| reload_cmd started (its line on the FIFO), p50 / p90 / p99 / max (ms) | $(ms "${R[template_reload_p50_us]}") / $(ms "${R[template_reload_p90_us]}") / $(ms "${R[template_reload_p99_us]}") / $(ms "${R[template_reload_max_us]}") | p50 ≤ 3 ms | $(atmost "${R[template_reload_p50_us]}" 3000) | (same run) |
| … less the command's own start-up (sh → FIFO, p50 ${R[template_sh_to_fifo_p50_us]} µs): estimated start, p50 (ms) | $est | | | |
| reload line after file written, p50 / p99 (ms) | $(ms "${R[template_reload_after_write_p50_us]}") / $(ms "${R[template_reload_after_write_p99_us]}") | | | |
| file written / reload line from PUT *sent*, p50 (ms) | $(ms "${R[template_written_from_sent_p50_us]}") / $(ms "${R[template_reload_from_sent_p50_us]}") | | | |
| runner CPU per change, 1 template (µs; stat ticks / CPU clock, net of idle) | ${R[${a}_stat_us_per_change]} / ${R[${a}_net_us_per_change]} | | | \`${R[cmd_template-cpu-1]}\` |
| runner CPU per change, $(fmt_int "$TMPL_TEMPLATES") templates, 1 depends on the key (µs) | ${R[${b}_stat_us_per_change]} / ${R[${b}_net_us_per_change]} | | | \`${R[cmd_template-cpu-$TMPL_TEMPLATES]}\` |
| ratio $(fmt_int "$TMPL_TEMPLATES") ÷ 1 (CPU clock) | ${ratio}× | ≤ 2× | $(atmost "$ratio" 2) | |
| nginx template (10 \`web\` instances) rendered in-process, Handlebars / Go: time per render, best of ${R[template_render_rounds]} rounds (µs; CPU µs) | $(us "${R[template_render_handlebars_ns]}") / $(us "${R[template_render_go_ns]}") (Go ${R[template_render_go_vs_handlebars]}×; CPU $(us "${R[template_render_handlebars_cpu_ns]}") / $(us "${R[template_render_go_cpu_ns]}")) | Go ≤ 1.5× | $(atmost "${R[template_render_go_vs_handlebars]}" 1.5) | \`${R[cmd_template-render]}\` |
$(nginx_rows 1)
$(nginx_rows "$TMPL_TEMPLATES")

Notes
- Agent: \`${R[cmd_tmpl_agent]}\`. Runner: \`${R[template_runner_cmd]}\` (-confdir in the bench's temp dir); resources \`[template] src = "bench.tmpl" dest = "<dir>/out/bench.conf" keys = ["/bench"] reload_cmd = '${R[template_reload_cmd]}'\`, template \`v={{getv "/bench/key"}}\`.
- How the reload is timed: the reload command is run by \`sh -c\`; it reads the file with the shell's own \`read\` and writes that line to a FIFO the bench holds open, with no other process. The bench timestamps the line on its monotonic clock, the same clock as the PUT: no wall-clock comparison (\`date +%s%N\` would add an exec of date, ~1 ms, and compare clocks) and no file-timestamp granularity (a \`touch\`ed mtime comes from the kernel's coarse clock, one tick = several ms). What it measures is an upper bound on "started": fork+exec of sh and two builtins (the bench measured that start-up alone, spawning the same command the way the runner does: p50 ${R[template_sh_to_fifo_p50_us]} µs, p99 ${R[template_sh_to_fifo_p99_us]} µs). The file is seen with inotify (rename into place), before the runner's directory fsync returns.
- PUT round trip p50 ${R[template_put_rtt_p50_us]} µs; versions of the file skipped: ${R[template_stale_versions]}; reload lines for an older version: ${R[template_stale_reloads]}; runner log lines (warn and above): ${R[template_runner_log_lines]}.
- CPU: tribune-template's utime+stime from /proc/PID/stat (10 ms ticks: ${R[${a}_stat_ticks]} and ${R[${b}_stat_ticks]} ticks over the changes, so coarse) and its process CPU clock (ns; all threads), less its idle rate measured just before (${R[${a}_idle_us_per_s]} and ${R[${b}_idle_us_per_s]} µs/s); raw CPU clock per change ${R[${a}_us_per_change]} and ${R[${b}_us_per_change]} µs. The agent spent ${R[${a}_agent_net_us_per_change]} and ${R[${b}_agent_net_us_per_change]} µs per change (net of idle; includes the bench's PUT). File written p50 / p99 in the CPU runs: $(ms "${R[${a}_written_p50_us]}") / $(ms "${R[${a}_written_p99_us]}") ms and $(ms "${R[${b}_written_p50_us]}") / $(ms "${R[${b}_written_p99_us]}") ms. The runner with $(fmt_int "$TMPL_TEMPLATES") templates rendered all of them in ${R[${b}_startup_ms]} ms (${R[${b}_startup_cpu_ms]} ms CPU), RSS ${R[${b}_rss_kib]} KiB (1 template: ${R[${a}_rss_kib]} KiB); the measured window ended ${R[${b}_runner_uptime_s]} s after it started (before its 60 s blocking queries expire).
$(load_note template)
EOT
}

# ---------------------------------------------------------------- nginx
section_nginx() {
    need nginx:nginx-light python3:python3 curl:curl
    export PATH=$PATH:/usr/sbin
    local p
    for p in $NGX_BACKEND_PORTS; do ports_free "$p"; done
    ports_free "$NGX_HTTP_PORT" "$NGX_PORT" $((NGX_PORT + 1))
    load_begin nginx
    local logf=$OUT_DIR/nginx-example.log
    : >"$logf" # before it starts: the readiness line must come from this run
    log "starting examples/nginx/run.sh"
    HTTP_PORT=$NGX_HTTP_PORT DNS_PORT=$NGX_DNS_PORT NGINX_PORT=$NGX_PORT \
        BACKEND_PORTS=$NGX_BACKEND_PORTS TRIBUNE_BIN_DIR=$ROOT/target/release \
        "$ROOT/examples/nginx/run.sh" >"$logf" 2>&1 &
    local ex=$!
    PIDS+=("$ex")
    R[cmd_ngx_example]="HTTP_PORT=$NGX_HTTP_PORT DNS_PORT=$NGX_DNS_PORT NGINX_PORT=$NGX_PORT BACKEND_PORTS='$NGX_BACKEND_PORTS' TRIBUNE_BIN_DIR=target/release examples/nginx/run.sh"
    local w= _
    for _ in {1..240}; do
        kill -0 "$ex" 2>/dev/null || die "examples/nginx/run.sh exited:"$'\n'"$(tail -n 20 "$logf")"
        w=$(sed -n 's/.*Work dir: \([^ ]*\).*/\1/p' "$logf")
        [[ -n $w ]] && break
        sleep 0.25
    done
    [[ -n $w ]] || die "examples/nginx/run.sh not ready after 60 s:"$'\n'"$(tail -n 20 "$logf")"
    log "nginx example ready (work dir $w)"
    SERVER_PID=$ex SERVER_LOG=$logf
    run_bench nginx --addr "127.0.0.1:$NGX_HTTP_PORT" --nginx "127.0.0.1:$NGX_PORT" \
        --conf "$w/nginx.conf" --changes "$NGX_CHANGES" --gap-ms "$NGX_GAP_MS" \
        --poll-us "$NGX_POLL_US"
    for p in template.log error.log agent.log; do cp "$w/$p" "$OUT_DIR/nginx-$p" 2>/dev/null || true; done
    load_end nginx
    stop "$ex" 30
    report_nginx >"$OUT_DIR/results-nginx.md"
}

report_nginx() {
    cat <<EOT
# nginx example: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r); tribune $(revision); $(nginx -v 2>&1 | sed 's/^nginx version: //'). examples/nginx/run.sh in watch mode: tribune-template renders nginx.conf from KV nginx/* and the healthy "web" instances, checks it with \`nginx -t\` (check_cmd, before the rename) and runs \`nginx -s reload\`. $NGX_CHANGES changes of nginx/worker_connections (1000 + i), one every $NGX_GAP_MS ms; after each, \`GET /tribune/knobs\` on a fresh connection every $NGX_POLL_US µs. Times from the PUT's acknowledgement. Commands run from the repository root.

| benchmark | tribune + nginx | target | met | command |
|---|---:|---|---|---|
| nginx serves the new config (first answer with it), p50 / p90 / p99 / max (ms) | $(ms "${R[nginx_served_p50_us]}") / $(ms "${R[nginx_served_p90_us]}") / $(ms "${R[nginx_served_p99_us]}") / $(ms "${R[nginx_served_max_us]}") | — | | \`${R[cmd_nginx]}\` |
| … every answer has it (after the last old one, then 10 new in a row), p50 / p99 (ms) | $(ms "${R[nginx_served_all_p50_us]}") / $(ms "${R[nginx_served_all_p99_us]}") | | | |
| of which: nginx.conf replaced (render + nginx -t + rename), p50 / p99 (ms) | $(ms "${R[nginx_written_p50_us]}") / $(ms "${R[nginx_written_p99_us]}") | | | |
| of which: file replaced → first answer with it (reload), p50 / p99 (ms) | $(ms "${R[nginx_reload_p50_us]}") / $(ms "${R[nginx_reload_p99_us]}") | | | |

Notes
- Example: \`${R[cmd_ngx_example]}\`, stopped with SIGTERM afterwards; its logs are in bench/out/nginx-*.log.
- Polls: ${R[nginx_polls]} (${R[nginx_poll_failures]} failed to connect or answer); answers with the old value after the first new one: ${R[nginx_old_after_new]} (old workers keep accepting on the shared socket until they act on the graceful shutdown). PUT round trip p50 ${R[nginx_put_rtt_p50_us]} µs. From the PUT *sent*: p50 $(ms "${R[nginx_served_from_sent_p50_us]}") ms.
$(load_note nginx)
EOT
}

# ---------------------------------------------------------------- cluster
# Member N (1..CL_SIZE) of each cluster listens on 127.0.0.N with default ports, like
# separate hosts: tribune HTTP 8500, server RPC 8300, gossip 8301; etcd 2379/2380.
declare -A CL_PID

# tribune_member_args N: the agent's arguments for member N (N may be the letter N,
# for the table).
tribune_member_args() {
    local n=$1 i joins=()
    for ((i = 1; i <= CL_SIZE; i++)); do joins+=(-retry-join "127.0.0.$i"); done
    printf '%s\n' agent -server -bootstrap-expect "$CL_SIZE" -data-dir "$TMP/cluster/tribune-s$n" \
        -node "s$n" -bind "127.0.0.$n" -client "127.0.0.$n" -dns-port -1 "${joins[@]}" \
        -retry-interval 1s -config-file "$TMP/cluster/perf.json" -log-level info
}

etcd_initial_cluster() {
    local i out=
    for ((i = 1; i <= CL_SIZE; i++)); do out+=${out:+,}e$i=http://127.0.0.$i:2380; done
    printf '%s' "$out"
}

etcd_member_args() {
    local n=$1
    printf '%s\n' --name "e$n" --data-dir "$TMP/cluster/etcd-e$n" \
        --listen-client-urls "http://127.0.0.$n:2379" --advertise-client-urls "http://127.0.0.$n:2379" \
        --listen-peer-urls "http://127.0.0.$n:2380" --initial-advertise-peer-urls "http://127.0.0.$n:2380" \
        --initial-cluster "$(etcd_initial_cluster)" --initial-cluster-state new
}

# cl_start SYSTEM N: start member N of SYSTEM (tribune|etcd) in the background (logs
# appended: a restarted member keeps one log); CL_PID[SYSTEM-N].
cl_start() {
    local sys=$1 n=$2 args pid logf=$OUT_DIR/cluster-$1-$2.log
    if [[ $sys == tribune ]]; then
        mapfile -t args < <(tribune_member_args "$n")
        "$ROOT/target/release/tribune" "${args[@]}" >>"$logf" 2>&1 &
    else
        mapfile -t args < <(etcd_member_args "$n")
        etcd "${args[@]}" >>"$logf" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    CL_PID[$sys-$n]=$pid
    log "started $sys member $n on 127.0.0.$n (pid $pid)"
}

# forget PID: drop from PIDS (it was killed by someone else) and reap it.
forget() {
    local i keep=()
    for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
    wait "$1" 2>/dev/null || true
}

# cl_leader SYSTEM: N of the leader, when every member agrees on one; else fails.
cl_leader() {
    local sys=$1 i l= x id lead
    for ((i = 1; i <= CL_SIZE; i++)); do
        if [[ $sys == tribune ]]; then
            x=$(curl -sf --max-time 2 "http://127.0.0.$i:8500/v1/status/leader") || return 1
            x=${x//\"/}
            x=${x%:8300}
        else
            x=$(curl -sf --max-time 2 -X POST "http://127.0.0.$i:2379/v3/maintenance/status" -d '{}') ||
                return 1
            id=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$x")
            lead=$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$x")
            [[ -n $id && -n $lead ]] || return 1
            if [[ $id == "$lead" ]]; then x=127.0.0.$i; else x=; fi
        fi
        if [[ $sys == tribune ]]; then
            [[ $x =~ ^127\.0\.0\.[0-9]+$ ]] || return 1
            [[ -z $l || $l == "$x" ]] || return 1
            l=$x
        elif [[ -n $x ]]; then
            [[ -z $l ]] || return 1
            l=$x
        fi
    done
    [[ -n $l ]] || return 1
    printf '%s' "${l##*.}"
}

# cl_synced SYSTEM: one write through each member, then every member's local read
# (tribune ?stale, etcd serializable) returns the last one: all members are up, a
# leader commits, and every member has caught up.
cl_synced() {
    local sys=$1 i v=$RANDOM$RANDOM b64
    for ((i = 1; i <= CL_SIZE; i++)); do
        if [[ $sys == tribune ]]; then
            [[ $(curl -sf --max-time 3 -X PUT --data "$v-$i" "http://127.0.0.$i:8500/v1/kv/bench/sync") == true ]] ||
                return 1
        else
            b64=$(printf '%s' "$v-$i" | base64)
            curl -sf --max-time 3 -X POST "http://127.0.0.$i:2379/v3/kv/put" \
                -d "{\"key\":\"YmVuY2gvc3luYw==\",\"value\":\"$b64\"}" | grep -q '"header"' || return 1
        fi
    done
    for ((i = 1; i <= CL_SIZE; i++)); do
        if [[ $sys == tribune ]]; then
            [[ $(curl -sf --max-time 3 "http://127.0.0.$i:8500/v1/kv/bench/sync?stale&raw") == "$v-$CL_SIZE" ]] ||
                return 1
        else
            curl -sf --max-time 3 -X POST "http://127.0.0.$i:2379/v3/kv/range" \
                -d '{"key":"YmVuY2gvc3luYw==","serializable":true}' | grep -qF "\"$b64\"" || return 1
        fi
    done
}

# cl_wait_healthy SYSTEM: until a leader is agreed on and cl_synced passes (60 s).
cl_wait_healthy() {
    local sys=$1 k i
    for ((k = 0; k < 240; k++)); do
        for ((i = 1; i <= CL_SIZE; i++)); do
            kill -0 "${CL_PID[$sys-$i]}" 2>/dev/null ||
                die "$sys member $i exited; last lines of its log:"$'\n'"$(tail -n 20 "$OUT_DIR/cluster-$sys-$i.log")"
        done
        if cl_leader "$sys" >/dev/null 2>&1 && cl_synced "$sys" 2>/dev/null; then
            log "$sys cluster healthy, leader 127.0.0.$(cl_leader "$sys")"
            return 0
        fi
        sleep 0.25
    done
    die "$sys cluster not healthy after 60 s (logs: $OUT_DIR/cluster-$sys-*.log)"
}

# cl_failover SYSTEM RUN: kill -9 the leader under a sequential writer (tribune-bench
# failover), restart it, wait until healthy; results into R[cl_SYSTEM_fo_RUN_*].
cl_failover() {
    local sys=$1 run=$2 l i f=() eps pid k
    l=$(cl_leader "$sys") || die "$sys: no agreed leader before failover run $run"
    for ((i = 1; i <= CL_SIZE; i++)); do ((i == l)) || f+=("$i"); done
    if [[ $sys == tribune ]]; then
        eps=127.0.0.${f[0]}:8500 # a follower's HTTP API: it forwards to the leader
    else
        eps= # every member, followers first (a client given all endpoints)
        for i in "${f[@]}" "$l"; do eps+=${eps:+,}127.0.0.$i:2379; done
    fi
    pid=${CL_PID[$sys-$l]}
    SERVER_PID=${CL_PID[$sys-${f[0]}]} SERVER_LOG=$OUT_DIR/cluster-$sys-${f[0]}.log
    log "failover $sys run $run: leader 127.0.0.$l (pid $pid), writer through $eps"
    run_bench_as "failover-$sys-$run" failover --kind "$sys" --endpoints "$eps" --kill-pid "$pid" \
        --warmup-ms "$CL_WARMUP_MS" --timeout-ms "$CL_TIMEOUT_MS" --retry-ms "$CL_RETRY_MS"
    for k in ms attempts timeouts via failures warmup_p50_us acked_checked; do
        R[cl_${sys}_fo_${run}_$k]=${R[failover_$k]}
    done
    R[cl_${sys}_fo_${run}_leader]=127.0.0.$l
    R[cmd_cl_${sys}_failover]=${R[cmd_failover-$sys-$run]/--kill-pid $pid/--kill-pid LEADER_PID}
    forget "$pid"
    log "  -> $sys: first acknowledged write ${R[failover_ms]} ms after kill -9 of 127.0.0.$l; restarting it"
    cl_start "$sys" "$l"
    cl_wait_healthy "$sys"
    sleep "$CL_SETTLE_S"
}

# cl_idle_cpu SYSTEM: CPU its members use over 5 s idle, % of one core, into R.
cl_idle_cpu() {
    local sys=$1 i a=0 b=0
    for ((i = 1; i <= CL_SIZE; i++)); do a=$((a + $(awk '{print $14 + $15}' "/proc/${CL_PID[$sys-$i]}/stat"))); done
    sleep 5
    for ((i = 1; i <= CL_SIZE; i++)); do b=$((b + $(awk '{print $14 + $15}' "/proc/${CL_PID[$sys-$i]}/stat"))); done
    R[cl_${sys}_idle_pct]=$(awk -v t=$((b - a)) 'BEGIN { printf "%.1f", t / 5 }') # 100 ticks/s
}

# median/max of the failover runs of SYSTEM: R[cl_SYSTEM_fo_median] and _max.
cl_failover_stats() {
    local sys=$1 i vals=()
    for ((i = 1; i <= CL_RUNS; i++)); do vals+=("${R[cl_${sys}_fo_${i}_ms]}"); done
    R[cl_${sys}_fo_all]=$(printf '%s / ' "${vals[@]}")
    R[cl_${sys}_fo_all]=${R[cl_${sys}_fo_all]% / }
    R[cl_${sys}_fo_median]=$(printf '%s\n' "${vals[@]}" | sort -g | awk '{ v[NR] = $1 }
        END { printf "%.0f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    R[cl_${sys}_fo_max]=$(printf '%s\n' "${vals[@]}" | sort -g | tail -n 1 | awk '{ printf "%.0f", $1 }')
}

section_cluster() {
    ensure_tools
    local i p
    for ((i = 1; i <= CL_SIZE; i++)); do
        for p in 8500 8300 8301 2379 2380; do
            (exec 3<>"/dev/tcp/127.0.0.$i/$p") 2>/dev/null && die "127.0.0.$i:$p is already in use"
        done
    done
    load_begin cluster
    mkdir -p "$TMP/cluster"
    echo '{"performance":{"raft_multiplier":1}}' >"$TMP/cluster/perf.json"
    for ((i = 1; i <= CL_SIZE; i++)); do
        : >"$OUT_DIR/cluster-tribune-$i.log"
        : >"$OUT_DIR/cluster-etcd-$i.log"
    done
    for ((i = 1; i <= CL_SIZE; i++)); do cl_start etcd "$i"; done
    for ((i = 1; i <= CL_SIZE; i++)); do cl_start tribune "$i"; done
    cl_wait_healthy etcd
    cl_wait_healthy tribune
    local args
    mapfile -t args < <(tribune_member_args N)
    R[cmd_cl_tribune]="$(cmdline "$ROOT/target/release/tribune" "${args[@]}")"
    mapfile -t args < <(etcd_member_args N)
    R[cmd_cl_etcd]="$(cmdline etcd "${args[@]}")"
    R[cmd_cl_tribune]=${R[cmd_cl_tribune]//$TMP/\$TMP}
    R[cmd_cl_etcd]=${R[cmd_cl_etcd]//$TMP/\$TMP}
    cl_idle_cpu tribune
    cl_idle_cpu etcd
    log "idle clusters: tribune ${R[cl_tribune_idle_pct]}%, etcd ${R[cl_etcd_idle_pct]}% of one core"

    # -- throughput, 64 connections (keys written by the PUT runs are then read)
    local tl el tf
    tl=$(cl_leader tribune) || die "tribune: no agreed leader"
    el=$(cl_leader etcd) || die "etcd: no agreed leader"
    tf=$((tl % CL_SIZE + 1)) # a tribune follower
    R[cl_tribune_leader]=127.0.0.$tl R[cl_tribune_follower]=127.0.0.$tf R[cl_etcd_leader]=127.0.0.$el
    SERVER_PID=${CL_PID[tribune-$tl]} SERVER_LOG=$OUT_DIR/cluster-tribune-$tl.log
    local wl=$BENCH_DIR/wrk t0=$EPOCHREALTIME
    proc_ticks >"$TMP/ticks-cl-wrk-0"
    run_wrk cl_etcd_put 2 64 "$WRK_DURATION" etcd_put.lua "http://127.0.0.$el:2379"
    run_wrk cl_tribune_put 2 64 "$WRK_DURATION" consul_put.lua "http://127.0.0.$tl:8500"
    run_wrk cl_etcd_get 2 64 "$WRK_DURATION" etcd_get.lua "http://127.0.0.$el:2379"
    run_wrk cl_tribune_get 2 64 "$WRK_DURATION" consul_get.lua "http://127.0.0.$tl:8500"
    run_wrk cl_tribune_get_f 2 64 "$WRK_DURATION" consul_get.lua "http://127.0.0.$tf:8500"
    run_wrk cl_etcd_get_ser 2 64 "$WRK_DURATION" "$wl/etcd_get_serializable.lua" "http://127.0.0.$el:2379"
    run_wrk cl_tribune_stale_f 2 64 "$WRK_DURATION" "$wl/consul_get_stale.lua" "http://127.0.0.$tf:8500"
    run_wrk cl_tribune_cons_f 2 64 "$WRK_DURATION" "$wl/consul_get_consistent.lua" "http://127.0.0.$tf:8500"
    proc_ticks >"$TMP/ticks-cl-wrk-1"
    R[cl_wrk_top]=$(top_ticks "$TMP/ticks-cl-wrk-0" "$TMP/ticks-cl-wrk-1" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')")
    [[ $(cl_leader tribune) == "$tl" ]] || R[cl_leader_moved]+=" tribune"
    [[ $(cl_leader etcd) == "$el" ]] || R[cl_leader_moved]+=" etcd"

    # -- failover, runs interleaved
    cl_wait_healthy tribune
    cl_wait_healthy etcd
    t0=$EPOCHREALTIME
    proc_ticks >"$TMP/ticks-cl-fo-0"
    for ((i = 1; i <= CL_RUNS; i++)); do
        cl_failover tribune "$i"
        cl_failover etcd "$i"
    done
    proc_ticks >"$TMP/ticks-cl-fo-1"
    R[cl_fo_top]=$(top_ticks "$TMP/ticks-cl-fo-0" "$TMP/ticks-cl-fo-1" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')")
    cl_failover_stats tribune
    cl_failover_stats etcd

    load_end cluster
    for ((i = 1; i <= CL_SIZE; i++)); do
        stop "${CL_PID[tribune-$i]}"
        stop "${CL_PID[etcd-$i]}"
    done
    rm -rf "$TMP/cluster"
    report_cluster >"$OUT_DIR/results-cluster.md"
}

# cl_row LABEL TRIBUNE-NAME ETCD-NAME TARGET-RATIO: throughput and latency rows.
cl_row() {
    local t=$2 e=$3 want=$4 met=
    [[ -n $want ]] && met=$(atleast "$(awk -v a="${R[${t}_rps]}" -v b="${R[${e}_rps]}" 'BEGIN { print a / b }')" "$want")
    printf '| %s (req/s) | %s | %s | %s | %s | %s |\n' "$1" "$(fmt_int "${R[${t}_rps]}")" \
        "$(fmt_int "${R[${e}_rps]}")" "$(ratio "${R[${t}_rps]}" "${R[${e}_rps]}")" \
        "${want:+≥ ${want}× etcd}" "$met"
    printf '| … p50 / p99 (ms) | %s / %s | %s / %s | | | |\n' "${R[${t}_p50_ms]}" "${R[${t}_p99_ms]}" \
        "${R[${e}_p50_ms]}" "${R[${e}_p99_ms]}"
}

report_cluster() {
    local fo_t=${R[cl_tribune_fo_median]} fo_e=${R[cl_etcd_fo_median]} i notes_t= notes_e=
    for ((i = 1; i <= CL_RUNS; i++)); do
        notes_t+="${notes_t:+; }run $i: ${R[cl_tribune_fo_${i}_ms]} ms, leader ${R[cl_tribune_fo_${i}_leader]}, ${R[cl_tribune_fo_${i}_attempts]} attempts (${R[cl_tribune_fo_${i}_failures]:-none failed}), ${R[cl_tribune_fo_${i}_acked_checked]} acknowledged writes found after it"
        notes_e+="${notes_e:+; }run $i: ${R[cl_etcd_fo_${i}_ms]} ms, leader ${R[cl_etcd_fo_${i}_leader]}, ${R[cl_etcd_fo_${i}_attempts]} attempts, answered by ${R[cl_etcd_fo_${i}_via]} (${R[cl_etcd_fo_${i}_failures]:-none failed}), ${R[cl_etcd_fo_${i}_acked_checked]} acknowledged writes found after it"
    done
    cat <<EOT
# Cluster (issue 6): tribune vs etcd, 3 members each: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r), data on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}') (both clusters' data dirs in the same temp dir); tribune $(revision); $(etcd --version | head -n 1) (default timing: heartbeat 100 ms, election timeout 1000 ms). Member N of each cluster on 127.0.0.N (N = 1..$CL_SIZE) with default ports, both clusters up for the whole section (the one not measured idles). Both durable: every member fsyncs its log before acknowledging an append. wrk -t2 -c64 -d$WRK_DURATION, sharing the cores with all six servers. Ratios: tribune ÷ etcd for throughput, etcd ÷ tribune for time (above 1 = tribune better). Commands run from the repository root.

| benchmark | tribune | etcd 3.4 | ratio | target | met |
|---|---:|---:|---:|---|---|
$(cl_row "PUT through the leader, 64 conns" cl_tribune_put cl_etcd_put 3)
$(cl_row "default read on the leader (tribune GET) vs etcd linearizable range on the leader, 64 conns" cl_tribune_get cl_etcd_get 5)
$(cl_row "default read on a follower (read index: the leader's lease-checked index, answered locally) vs etcd linearizable range on the leader" cl_tribune_get_f cl_etcd_get 5)
$(cl_row "for context: tribune ?stale on a follower vs etcd serializable range on the leader" cl_tribune_stale_f cl_etcd_get_ser "")
$(cl_row "for context: tribune ?consistent on a follower (read index, quorum-confirmed) vs etcd linearizable range on the leader" cl_tribune_cons_f cl_etcd_get "")
| kill -9 of the leader → first acknowledged write, median / max of $CL_RUNS (ms) | $fo_t / ${R[cl_tribune_fo_max]} | $fo_e / ${R[cl_etcd_fo_max]} | $(ratio "$fo_e" "$fo_t") | median ≤ 1000 ms, max ≤ 1300 ms | median $(atmost "$fo_t" 1000), max $(atmost "${R[cl_tribune_fo_max]}" 1300) |
| … each run (ms) | ${R[cl_tribune_fo_all]} | ${R[cl_etcd_fo_all]} | | | |

Commands (\$TMP is the run's temp dir)
- tribune members: \`${R[cmd_cl_tribune]}\` for N = 1..$CL_SIZE, with \`{"performance":{"raft_multiplier":1}}\` in \$TMP/cluster/perf.json.
- etcd members: \`${R[cmd_cl_etcd]}\` for N = 1..$CL_SIZE (a restarted member reuses its data dir; the flags are then ignored).
- wrk (scripts \`consul_*.lua\`, \`etcd_put.lua\`, \`etcd_get.lua\` from $SCRIPTS, the others from bench/wrk/): \`wrk -t2 -c64 -d$WRK_DURATION --latency --timeout 10s -s SCRIPT URL\` with, in this order: etcd_put.lua and etcd_get.lua on the etcd leader (http://${R[cl_etcd_leader]}:2379); consul_put.lua and consul_get.lua on the tribune leader (http://${R[cl_tribune_leader]}:8500); consul_get.lua on a tribune follower (http://${R[cl_tribune_follower]}:8500); etcd_get_serializable.lua on the etcd leader; consul_get_stale.lua and consul_get_consistent.lua on the tribune follower. Keys bench/key00000..00999, 64-byte values.
- failover (tribune): \`${R[cmd_cl_tribune_failover]}\` (last run shown; each run kills the then leader); etcd: \`${R[cmd_cl_etcd_failover]}\`. The writer sends one write at a time; after ${CL_WARMUP_MS} ms of acknowledged writes it sends SIGKILL to the leader between two writes and times, from just before the kill, the first write acknowledged (every write after the kill was sent after it). A write failing or unanswered within ${CL_TIMEOUT_MS} ms is retried after ${CL_RETRY_MS} ms on a new connection, on the next endpoint of its list: tribune's writer has one follower's HTTP API (it holds a write while no leader is known, up to 7 s), etcd's has every member, followers first. After each run the killed member is restarted on its data dir and the next run waits until each member takes a write and serves it locally, then ${CL_SETTLE_S} s. Every write goes to a key of its own; after the first acknowledged write the writer lists the run's keys through the same endpoint (tribune: a default-consistency \`?keys\` read; etcd: a linearizable range) and fails the run if any acknowledged write is missing.

Notes
- Idle, before the runs (5 s, all 3 members): tribune used ${R[cl_tribune_idle_pct]}% of one core, etcd ${R[cl_etcd_idle_pct]}%.
- wrk errors (non-2xx + socket errors): PUT tribune ${R[cl_tribune_put_errors]}, etcd ${R[cl_etcd_put_errors]}; GET leader ${R[cl_tribune_get_errors]}, follower ${R[cl_tribune_get_f_errors]}, etcd range ${R[cl_etcd_get_errors]}; stale ${R[cl_tribune_stale_f_errors]}, consistent on the follower ${R[cl_tribune_cons_f_errors]}, serializable ${R[cl_etcd_get_ser_errors]}.${R[cl_leader_moved]:+ Leadership moved during the wrk runs:${R[cl_leader_moved]}.}
- failover, tribune: $notes_t.
- failover, etcd: $notes_e.
$(load_note cluster) Busiest processes during the wrk runs: ${R[cl_wrk_top]}; during the failover runs: ${R[cl_fo_top]} (other work shows up here under its own name).
EOT
}

# ---------------------------------------------------------------- large
# Issue 20: a million keys. tribune (durable single server) and etcd (single member)
# side by side, the same keys in the same run.
LG_URL=http://127.0.0.1:$LG_HTTP_PORT
LG_ETCD_URL=http://127.0.0.1:$LG_ETCD_PORT
LG_TB=

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# lg_wait_http URL SECONDS: until URL answers 200 (polled every 50 ms); dies after SECONDS.
lg_wait_http() {
    local url=$1 k
    for ((k = 0; k < $2 * 20; k++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url") == 200 ]] && return 0
        sleep 0.05
    done
    die "no answer from $url within $2 s"
}

# lg_etcd_range URL KEY: the value of KEY (serializable), empty when missing.
lg_etcd_range() {
    curl -s --max-time 2 -X POST "$1/v3/kv/range" \
        -d "{\"key\":\"$(printf '%s' "$2" | base64 -w0)\",\"serializable\":true}" |
        sed -n 's/.*"value":"\([^"]*\)".*/\1/p' | base64 -d 2>/dev/null
}

# lg_wait_etcd URL KEY SECONDS: until KEY can be read on URL (every 50 ms).
lg_wait_etcd() {
    local k
    for ((k = 0; k < $3 * 20; k++)); do
        [[ -n $(lg_etcd_range "$1" "$2") ]] && return 0
        sleep 0.05
    done
    die "etcd at $1 did not serve $2 within $3 s"
}

# lg_tribune NAME DATA HTTP SERVER SERF [ARGS...]: a durable server; sets LG_PID.
lg_tribune() {
    local name=$1 data=$2 http=$3 srv=$4 serf=$5
    shift 5
    "$ROOT/target/release/tribune" agent -server -data-dir "$data" -node "$name" \
        -http-port "$http" -server-port "$srv" -serf-lan-port "$serf" -serf-wan-port -1 -dns-port -1 \
        -log-level warn "$@" >>"$OUT_DIR/large-$name.log" 2>&1 &
    LG_PID=$!
    PIDS+=("$LG_PID")
}

# lg_etcd NAME DATA CLIENT PEER CLUSTER STATE: an etcd member; sets LG_PID.
lg_etcd() {
    etcd --name "$1" --data-dir "$2" \
        --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3" \
        --listen-peer-urls "http://127.0.0.1:$4" --initial-advertise-peer-urls "http://127.0.0.1:$4" \
        --initial-cluster "$5" --initial-cluster-state "$6" \
        --listen-metrics-urls "http://127.0.0.1:$(($4 + 100))" --quota-backend-bytes 8589934592 \
        >>"$OUT_DIR/large-etcd-$1.log" 2>&1 &
    LG_PID=$!
    PIDS+=("$LG_PID")
}

section_large() {
    ensure_tools
    ulimit -n 65536 2>/dev/null || true
    local d=$TMP/large wl=$BENCH_DIR/wrk last t0 e1=p1=http://127.0.0.1:$((LG_ETCD_PORT + 1))
    ports_free "$LG_HTTP_PORT" $((LG_HTTP_PORT + 1)) $((LG_HTTP_PORT + 2)) $((LG_HTTP_PORT + 3)) \
        $((LG_HTTP_PORT + 4)) $((LG_HTTP_PORT + 5)) "$LG_ETCD_PORT" $((LG_ETCD_PORT + 1)) \
        $((LG_ETCD_PORT + 2)) $((LG_ETCD_PORT + 3))
    mkdir -p "$d"
    : >"$OUT_DIR/large-s1.log"
    : >"$OUT_DIR/large-s2.log"
    : >"$OUT_DIR/large-etcd-p1.log"
    : >"$OUT_DIR/large-etcd-p2.log"
    load_begin large
    lg_etcd p1 "$d/etcd" "$LG_ETCD_PORT" $((LG_ETCD_PORT + 1)) "$e1" new
    local etcd_pid=$LG_PID
    lg_tribune s1 "$d/s1" "$LG_HTTP_PORT" $((LG_HTTP_PORT + 1)) $((LG_HTTP_PORT + 2)) -bootstrap-expect 1
    LG_TB=$LG_PID
    SERVER_PID=$LG_TB SERVER_LOG=$OUT_DIR/large-s1.log
    wait_ready etcd "$etcd_pid" "$OUT_DIR/large-etcd-p1.log" curl -sf --max-time 2 "$LG_ETCD_URL/health"
    wait_ready tribune "$LG_TB" "$SERVER_LOG" tribune_probe "$LG_URL"
    R[cmd_lg_tribune]=$(cmdline "$ROOT/target/release/tribune" agent -server -data-dir "$d/s1" -node s1 -http-port "$LG_HTTP_PORT" -server-port $((LG_HTTP_PORT + 1)) -serf-lan-port $((LG_HTTP_PORT + 2)) -serf-wan-port -1 -dns-port -1 -log-level warn -bootstrap-expect 1)
    R[cmd_lg_tribune]=${R[cmd_lg_tribune]//$TMP/\$TMP}

    # -- GET with 1,000 keys (the figure the million is compared with)
    run_wrk lg_t_put_warm 2 64 3s consul_put.lua "$LG_URL"
    run_wrk lg_e_put_warm 2 64 3s etcd_put.lua "$LG_ETCD_URL"
    run_wrk lg_t_get_small 2 64 "$WRK_DURATION" consul_get.lua "$LG_URL"
    run_wrk lg_e_get_small 2 64 "$WRK_DURATION" etcd_get.lua "$LG_ETCD_URL"

    # -- a million keys into each, then the catalog into tribune
    local args=(--keys "$LG_KEYS" --prefixes "$LG_PREFIXES" --value-bytes 100 --concurrency 64 --limit-s 3000)
    BENCH_TIMEOUT=3100 run_bench_as lg_load_t load --kind tribune --addr "127.0.0.1:$LG_HTTP_PORT" "${args[@]}"
    R[lg_t_load_s]=${R[load_s]} R[lg_t_load_rate]=${R[load_rate]}
    SERVER_PID=$etcd_pid SERVER_LOG=$OUT_DIR/large-etcd-p1.log
    BENCH_TIMEOUT=3100 run_bench_as lg_load_e load --kind etcd --addr "127.0.0.1:$LG_ETCD_PORT" "${args[@]}"
    R[lg_e_load_s]=${R[load_s]} R[lg_e_load_rate]=${R[load_rate]}
    last=${R[load_last_key]}
    SERVER_PID=$LG_TB SERVER_LOG=$OUT_DIR/large-s1.log
    BENCH_TIMEOUT=1000 run_bench_as lg_catalog catalog --addr "127.0.0.1:$LG_HTTP_PORT" --pid "$LG_TB" \
        --services "$LG_SERVICES" --instances "$LG_INSTANCES" --nodes "$LG_NODES" \
        --concurrency 64 --readers 64 --read-s 5 --limit-s 900
    sleep 5
    R[lg_t_rss]=$(rss_kib "$LG_TB") R[lg_e_rss]=$(rss_kib "$etcd_pid")
    log "RSS: tribune ${R[lg_t_rss]} KiB, etcd ${R[lg_e_rss]} KiB"

    # -- reads with the million in
    run_wrk lg_t_get 2 64 "$WRK_DURATION" consul_get.lua "$LG_URL"
    run_wrk lg_e_get 2 64 "$WRK_DURATION" etcd_get.lua "$LG_ETCD_URL"
    run_wrk lg_t_get_rand 2 64 "$WRK_DURATION" "$wl/consul_get_large.lua" "$LG_URL"
    run_wrk lg_e_get_rand 2 64 "$WRK_DURATION" "$wl/etcd_get_large.lua" "$LG_ETCD_URL"
    run_wrk lg_t_recurse 2 8 "$WRK_DURATION" "$wl/consul_recurse_large.lua" "$LG_URL"
    run_wrk lg_e_recurse 2 8 "$WRK_DURATION" "$wl/etcd_range_large.lua" "$LG_ETCD_URL"

    # -- snapshot save and restore
    t0=$EPOCHREALTIME
    "$ROOT/target/release/tribune" snapshot save -http-addr "127.0.0.1:$LG_HTTP_PORT" "$d/tribune.snap" \
        >"$OUT_DIR/large-save.txt" 2>&1 || die "tribune snapshot save: $(cat "$OUT_DIR/large-save.txt")"
    R[lg_t_save_s]=$(since "$t0") R[lg_t_snap_mb]=$(du -m "$d/tribune.snap" | cut -f1)
    t0=$EPOCHREALTIME
    etcdctl --endpoints "$LG_ETCD_URL" snapshot save "$d/etcd.db" >"$OUT_DIR/large-etcd-save.txt" 2>&1 ||
        die "etcdctl snapshot save: $(cat "$OUT_DIR/large-etcd-save.txt")"
    R[lg_e_save_s]=$(since "$t0") R[lg_e_snap_mb]=$(du -m "$d/etcd.db" | cut -f1)
    log "snapshot save: tribune ${R[lg_t_save_s]} s (${R[lg_t_snap_mb]} MB), etcd ${R[lg_e_save_s]} s (${R[lg_e_snap_mb]} MB)"
    run_wrk lg_t_put_mid 1 1 1s consul_put.lua "$LG_URL" # a write after the save, undone by the restore
    t0=$EPOCHREALTIME
    "$ROOT/target/release/tribune" snapshot restore -http-addr "127.0.0.1:$LG_HTTP_PORT" "$d/tribune.snap" \
        >"$OUT_DIR/large-restore.txt" 2>&1 || die "tribune snapshot restore: $(cat "$OUT_DIR/large-restore.txt")"
    R[lg_t_restore_s]=$(since "$t0")
    [[ $(curl -sf "$LG_URL/v1/kv/$last?raw") == value-* ]] || die "tribune lost $last in the restore"
    sleep 5 # the old tables are dropped and the log purged behind the restore meanwhile
    R[lg_t_rss_restored]=$(rss_kib "$LG_TB")
    t0=$EPOCHREALTIME
    ETCDCTL_API=3 etcdctl snapshot restore "$d/etcd.db" --data-dir "$d/etcd-restored" --name p1 \
        --initial-cluster "$e1" --initial-advertise-peer-urls "http://127.0.0.1:$((LG_ETCD_PORT + 1))" \
        >"$OUT_DIR/large-etcd-restore.txt" 2>&1 || die "etcdctl snapshot restore: $(cat "$OUT_DIR/large-etcd-restore.txt")"
    R[lg_e_restore_s]=$(since "$t0")
    log "snapshot restore: tribune ${R[lg_t_restore_s]} s (online, through raft), etcd ${R[lg_e_restore_s]} s (offline, to a new data dir)"

    # -- start-up with the million on disk
    stop "$LG_TB" 30
    stop "$etcd_pid" 30
    t0=$EPOCHREALTIME
    lg_tribune s1 "$d/s1" "$LG_HTTP_PORT" $((LG_HTTP_PORT + 1)) $((LG_HTTP_PORT + 2)) -bootstrap-expect 1
    LG_TB=$LG_PID
    lg_wait_http "$LG_URL/v1/kv/$last" 300
    R[lg_t_start_s]=$(since "$t0")
    sleep 3
    R[lg_t_rss_start]=$(rss_kib "$LG_TB")
    t0=$EPOCHREALTIME
    lg_etcd p1 "$d/etcd-restored" "$LG_ETCD_PORT" $((LG_ETCD_PORT + 1)) "$e1" new
    etcd_pid=$LG_PID
    lg_wait_etcd "$LG_ETCD_URL" "$last" 300
    R[lg_e_start_s]=$(since "$t0")
    sleep 3
    R[lg_e_rss_start]=$(rss_kib "$etcd_pid")
    log "start-up: tribune ${R[lg_t_start_s]} s (RSS ${R[lg_t_rss_start]} KiB), etcd on the restored dir ${R[lg_e_start_s]} s (RSS ${R[lg_e_rss_start]} KiB)"

    # -- a new server catches up
    t0=$EPOCHREALTIME
    lg_tribune s2 "$d/s2" $((LG_HTTP_PORT + 3)) $((LG_HTTP_PORT + 4)) $((LG_HTTP_PORT + 5)) \
        -retry-join "127.0.0.1:$((LG_HTTP_PORT + 2))" -retry-interval 1s
    local s2=$LG_PID
    lg_wait_http "http://127.0.0.1:$((LG_HTTP_PORT + 3))/v1/kv/$last?stale" 600
    R[lg_t_catchup_s]=$(since "$t0")
    R[lg_t_catchup_snap]=$(curl -s "http://127.0.0.1:$((LG_HTTP_PORT + 3))/v1/agent/self" |
        sed -n 's/.*"last_snapshot_index":"\([0-9]*\)".*/\1/p')
    t0=$EPOCHREALTIME
    etcdctl --endpoints "$LG_ETCD_URL" member add p2 --peer-urls "http://127.0.0.1:$((LG_ETCD_PORT + 3))" \
        >"$OUT_DIR/large-etcd-member-add.txt" 2>&1 || die "etcdctl member add: $(cat "$OUT_DIR/large-etcd-member-add.txt")"
    lg_etcd p2 "$d/etcd-p2" $((LG_ETCD_PORT + 2)) $((LG_ETCD_PORT + 3)) \
        "$e1,p2=http://127.0.0.1:$((LG_ETCD_PORT + 3))" existing
    local p2=$LG_PID
    lg_wait_etcd "http://127.0.0.1:$((LG_ETCD_PORT + 2))" "$last" 600
    R[lg_e_catchup_s]=$(since "$t0")
    log "catch-up: tribune ${R[lg_t_catchup_s]} s (snapshot index ${R[lg_t_catchup_snap]}), etcd ${R[lg_e_catchup_s]} s"
    load_end large
    stop "$s2" 30
    stop "$p2" 30
    stop "$LG_TB" 30
    stop "$etcd_pid" 30
    rm -rf "$d"
    report_large >"$OUT_DIR/results-large.md"
}

report_large() {
    local small=${R[lg_t_get_small_rps]} big=${R[lg_t_get_rps]} rss_ratio get_ratio
    rss_ratio=$(awk -v a="${R[lg_t_rss]}" -v b="${R[lg_e_rss]}" 'BEGIN { printf "%.2f", a / b }')
    get_ratio=$(awk -v a="$big" -v b="$small" 'BEGIN { printf "%.2f", a / b }')
    cat <<EOT
# A million keys (issue 20): tribune vs etcd: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r), data on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'); tribune $(revision); $(etcd --version | head -n 1). Both single durable nodes, up side by side for the whole section. $(fmt_int "$LG_KEYS") keys (large/pNNNN/kNNNN: $(fmt_int "$LG_PREFIXES") prefixes of $((LG_KEYS / LG_PREFIXES)) keys, 100-byte values) written into each one PUT per request over 64 connections; tribune also holds a catalog of $(fmt_int "$LG_NODES") nodes with $(fmt_int $((LG_SERVICES * LG_INSTANCES))) service instances ($(fmt_int "$LG_SERVICES") services), etcd holds only the keys. wrk -t2 -c64 -d$WRK_DURATION (recurse: -c8), sharing the cores with both servers.

| benchmark | tribune | etcd 3.4 | ratio | target | met |
|---|---:|---:|---:|---|---|
| writing the $(fmt_int "$LG_KEYS") keys, 64 conns (s) | ${R[lg_t_load_s]} ($(fmt_int "${R[lg_t_load_rate]}")/s) | ${R[lg_e_load_s]} ($(fmt_int "${R[lg_e_load_rate]}")/s) | $(ratio "${R[lg_e_load_s]}" "${R[lg_t_load_s]}") | | |
| RSS with everything in (MiB) | $((R[lg_t_rss] / 1024)) | $((R[lg_e_rss] / 1024)) | ${rss_ratio}× etcd | ≤ 2× etcd | $(atmost "$rss_ratio" 2) |
| … after a restart (MiB) | $((R[lg_t_rss_start] / 1024)) | $((R[lg_e_rss_start] / 1024)) | | | |
| start-up until the last key is served (s) | ${R[lg_t_start_s]} | ${R[lg_e_start_s]} | $(ratio "${R[lg_e_start_s]}" "${R[lg_t_start_s]}") | | |
| GET of 1,000 hot keys, 64 conns, with 1,000 keys in (req/s) | $(fmt_int "$small") | $(fmt_int "${R[lg_e_get_small_rps]}") | $(ratio "$small" "${R[lg_e_get_small_rps]}") | | |
| … with the million in (req/s) | $(fmt_int "$big") | $(fmt_int "${R[lg_e_get_rps]}") | $(ratio "$big" "${R[lg_e_get_rps]}") | within 10% of the line above | ${get_ratio}×: $(atleast "$get_ratio" 0.9) |
| … p50 / p99 (ms) | ${R[lg_t_get_p50_ms]} / ${R[lg_t_get_p99_ms]} | ${R[lg_e_get_p50_ms]} / ${R[lg_e_get_p99_ms]} | | | |
| GET of 10,000 random keys of the million, 64 conns (req/s) | $(fmt_int "${R[lg_t_get_rand_rps]}") | $(fmt_int "${R[lg_e_get_rand_rps]}") | $(ratio "${R[lg_t_get_rand_rps]}" "${R[lg_e_get_rand_rps]}") | | |
| recurse of one 1,000-key prefix (etcd: range with prefix), 8 conns (req/s) | $(fmt_int "${R[lg_t_recurse_rps]}") | $(fmt_int "${R[lg_e_recurse_rps]}") | $(ratio "${R[lg_t_recurse_rps]}" "${R[lg_e_recurse_rps]}") | | |
| … p50 / p99 (ms) | ${R[lg_t_recurse_p50_ms]} / ${R[lg_t_recurse_p99_ms]} | ${R[lg_e_recurse_p50_ms]} / ${R[lg_e_recurse_p99_ms]} | | | |
| snapshot save (s) | ${R[lg_t_save_s]} (${R[lg_t_snap_mb]} MB) | ${R[lg_e_save_s]} (${R[lg_e_snap_mb]} MB) | $(ratio "${R[lg_e_save_s]}" "${R[lg_t_save_s]}") | ≤ 5 s | $(atmost "${R[lg_t_save_s]}" 5) |
| snapshot restore (s) | ${R[lg_t_restore_s]} | ${R[lg_e_restore_s]} | $(ratio "${R[lg_e_restore_s]}" "${R[lg_t_restore_s]}") | ≤ 10 s | $(atmost "${R[lg_t_restore_s]}" 10) |
| a new server catches up: start → it serves the last key (s) | ${R[lg_t_catchup_s]} | ${R[lg_e_catchup_s]} | $(ratio "${R[lg_e_catchup_s]}" "${R[lg_t_catchup_s]}") | | |
| health of one service, 64 readers, p50 / p99 (ms) | ${R[catalog_read_p50_us]:+$(ms "${R[catalog_read_p50_us]}") / $(ms "${R[catalog_read_p99_us]}")} | — | | | |

Commands (from the repository root; \$TMP is the run's temp dir)
- tribune: \`${R[cmd_lg_tribune]}\`; etcd: \`etcd --name p1 --data-dir \$TMP/etcd --listen-client-urls $LG_ETCD_URL ... --quota-backend-bytes 8589934592\` (8 GiB: the default 2 GiB quota holds the million, with little room).
- keys: \`${R[cmd_lg_load_t]}\` and the same with \`--kind etcd --addr 127.0.0.1:$LG_ETCD_PORT\`; catalog: \`${R[cmd_lg_catalog]}\`.
- reads: wrk with consul_get.lua / etcd_get.lua ($SCRIPTS; the 1,000 keys bench/keyNNNNN, written by consul_put.lua / etcd_put.lua for 3 s first), bench/wrk/consul_get_large.lua / etcd_get_large.lua, bench/wrk/consul_recurse_large.lua / etcd_range_large.lua.
- save: \`tribune snapshot save FILE\` (CLI: GET /v1/snapshot, written to a temp file, fsynced, verified, renamed) vs \`etcdctl snapshot save FILE\`. Restore: \`tribune snapshot restore FILE\` on the running server (through raft: 1 MiB pieces, then the install) vs \`etcdctl snapshot restore FILE --data-dir DIR\` (offline, into a new data dir, no server involved).
- start-up: the server stopped (SIGTERM) and started on its data dir; the time until \`GET\` of the last key answers 200 (tribune: snapshot load + log replay; etcd: started on the restored data dir).
- catch-up: tribune: a second server \`-retry-join\`ing the first (autopilot adds it, raft sends the snapshot); etcd: \`etcdctl member add p2\` then the member started with \`--initial-cluster-state existing\`; the time until the new member serves the last key (tribune ?stale, etcd serializable).

Notes
- RSS: tribune ${R[lg_t_rss]} KiB with keys and catalog, ${R[lg_t_rss_restored]} KiB 5 s after the restore, ${R[lg_t_rss_start]} KiB after the restart; etcd ${R[lg_e_rss]} KiB, ${R[lg_e_rss_start]} KiB after its restart on the restored dir. Snapshot file: tribune ${R[lg_t_snap_mb]} MB, etcd ${R[lg_e_snap_mb]} MB.
- The new tribune server's last snapshot index once caught up: ${R[lg_t_catchup_snap]:-?} (non-zero: it was sent a snapshot).
- catalog: ${R[catalog_instances]:-?} instances registered in ${R[catalog_register_s]:-?} s.
- wrk errors: GET ${R[lg_t_get_errors]} / ${R[lg_e_get_errors]}, random GET ${R[lg_t_get_rand_errors]} / ${R[lg_e_get_rand_errors]}, recurse ${R[lg_t_recurse_errors]} / ${R[lg_e_recurse_errors]} (tribune / etcd).
$(load_note large)
EOT
}

# ---------------------------------------------------------------- fanout (issue 18)
# fo_start NAME IP [CLIENT]: a server (127.0.0.1) or a client agent on IP, ready.
fo_start() {
    local name=$1 ip=$2 args=(agent -node "$1" -data-dir "$TMP/fanout/$1" -bind "$2" -client "$2"
        -http-port "$FO_HTTP_PORT" -server-port $((FO_HTTP_PORT + 1))
        -serf-lan-port $((FO_HTTP_PORT + 2)) -serf-wan-port -1 -dns-port -1 -log-level warn
        -config-file "$NO_CONN_CAP" -config-file "$TMP/fanout/conf.json")
    if [[ ${3:-} == client ]]; then
        args+=(-retry-join "127.0.0.1:$((FO_HTTP_PORT + 2))" -retry-interval 1s)
    else
        args+=(-server -bootstrap-expect 1)
    fi
    "$ROOT/target/release/tribune" "${args[@]}" >"$OUT_DIR/fanout-$name.log" 2>&1 &
    FO_PID[$name]=$!
    PIDS+=("$!")
    [[ $name == s0 ]] && R[cmd_fo_server]=$(cmdline "$ROOT/target/release/tribune" "${args[@]}")
    [[ $name == c1 ]] && R[cmd_fo_client]=$(cmdline "$ROOT/target/release/tribune" "${args[@]}")
    wait_ready "$name" "$!" "$OUT_DIR/fanout-$name.log" tribune_probe "http://$ip:$FO_HTTP_PORT"
}

section_fanout() {
    local i ip p agents=()
    declare -gA FO_PID=()
    for ((i = 1; i <= FO_AGENTS + 1; i++)); do
        for p in "$FO_HTTP_PORT" $((FO_HTTP_PORT + 2)); do
            (exec 3<>"/dev/tcp/127.0.0.$i/$p") 2>/dev/null && die "127.0.0.$i:$p is already in use"
        done
    done
    # The driver holds FO_AGENTS x FO_WATCHERS connections, and the server as many
    # in the direct run.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    log "open-file limit $(ulimit -n)"
    load_begin fanout
    mkdir -p "$TMP/fanout"
    echo '{"performance":{"raft_multiplier":1},"telemetry":{"prometheus_retention_time":"60s","disable_hostname":true}}' \
        >"$TMP/fanout/conf.json"
    fo_start s0 127.0.0.1
    SERVER_PID=${FO_PID[s0]} SERVER_LOG=$OUT_DIR/fanout-s0.log
    for ((i = 1; i <= FO_AGENTS; i++)); do
        ip=127.0.0.$((i + 1))
        fo_start "c$i" "$ip" client
        agents+=("$ip:$FO_HTTP_PORT")
    done
    local list
    list=$(IFS=,; echo "${agents[*]}")
    BENCH_TIMEOUT=900 run_bench_as fo_agents fanout-agents --addr "127.0.0.1:$FO_HTTP_PORT" \
        --server-pid "$SERVER_PID" --agents "$list" --watchers "$FO_WATCHERS" \
        --rounds "$FO_ROUNDS" --name agents --limit-s 840
    BENCH_TIMEOUT=900 run_bench_as fo_direct fanout-agents --addr "127.0.0.1:$FO_HTTP_PORT" \
        --server-pid "$SERVER_PID" --agents "127.0.0.1:$FO_HTTP_PORT" \
        --watchers $((FO_AGENTS * FO_WATCHERS)) --rounds "$FO_ROUNDS" --name direct --limit-s 840
    R[cmd_fo_agents]=${R[cmd_fo_agents]//$TMP/\$TMP}
    R[cmd_fo_server]=${R[cmd_fo_server]//$TMP/\$TMP}
    R[cmd_fo_client]=${R[cmd_fo_client]//$TMP/\$TMP}
    load_end fanout
    for i in "${!FO_PID[@]}"; do stop "${FO_PID[$i]}"; done
    rm -rf "$TMP/fanout"
    report_fanout >"$OUT_DIR/results-fanout.md"
}

report_fanout() {
    cat <<EOT
## Fan-out through client agents (issue 18): $(date -u '+%Y-%m-%d %H:%M UTC')

Revision $(revision). 1 durable server, ${FO_AGENTS} client agents, $(fmt_int "${R[agents_watchers]}") watchers on \`health/service/web?passing&index=N\` in all; ${R[agents_rounds]} check flips.

| | through ${FO_AGENTS} client agents | on the server directly | target | met |
|---|---|---|---|---|
| all watchers answered after the flip's ack, p50 / max (ms) | $(ms "${R[agents_all_p50_us]}") / $(ms "${R[agents_all_max_us]}") | $(ms "${R[direct_all_p50_us]}") / $(ms "${R[direct_all_max_us]}") | ≤ 100 ms (agents) | $(atmost "${R[agents_all_max_us]}" 100000) |
| server CPU per flip, p50 / max (ms) | $(ms "${R[agents_server_cpu_p50_us]}") / $(ms "${R[agents_server_cpu_max_us]}") | $(ms "${R[direct_server_cpu_p50_us]}") / $(ms "${R[direct_server_cpu_max_us]}") | | |
| reads the server served per flip (consul.rpc.query), p50 / max | ${R[agents_served_p50]} / ${R[agents_served_max]} | ${R[direct_served_p50]} / ${R[direct_served_max]} | ≤ 20 (agents) | $(atmost "${R[agents_served_max]}" 20) |

Commands (from the repository root; \$TMP is the run's temp dir)
- server: \`${R[cmd_fo_server]}\`; client agent 1 (the others on 127.0.0.3..): \`${R[cmd_fo_client]}\`.
- \`${R[cmd_fo_agents]}\`, then \`${R[cmd_fo_direct]}\`.

Notes
- A flip is a PUT /v1/catalog/register of web1 with its check passing or critical; the time runs from its answer to the last watcher's. Server CPU is its process CPU clock from just before the flip to the last answer. "Reads served" counts consul.rpc.query from one round's start to the next, the first round (the watchers' first parking) left out; it includes the driver's own GET of the index each round.
- The watchers are plain TCP connections whose answers tribune-bench reads with httparse (bench/src/watcher.rs), not hyper's client: the driver shares the two cores with the agents, and hyper's per-watcher tasks took CPU the agents then did not get (until 2026-12-04 the driver was hyper's client).
$(load_note fanout)
EOT
}

# ---------------------------------------------------------------- run
revision() {
    local rev
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- agent template-runner 2>/dev/null ||
        rev+=" (agent/ or template-runner/ modified)"
    rev+=", binaries built $(date -u -r "$ROOT/target/release/tribune" '+%H:%M UTC')"
    printf '%s' "$rev"
}

# ---------------------------------------------------------------- tls (issue 16)
# tls_agent NAME I SERVER(0|1) EXTRA...: agent I (ports from TLS_BASE) in the background,
# data in $TMP/tls/NAME; sets TLS_PID. Servers expect 3 (or TLS_EXPECT).
tls_agent() {
    local name=$1 i=$2 server=$3 base=$((TLS_BASE + 10 * $2))
    shift 3
    local args=(agent -node "$name" -data-dir "$TMP/tls/$name" -http-port "$base" -dns-port -1
        -server-port $((base + 1)) -serf-lan-port $((base + 2)) -serf-wan-port -1 -retry-join "127.0.0.1:$((TLS_BASE + 2))"
        -retry-interval 1s -config-file "$NO_CONN_CAP" -config-file "$TMP/tls/perf.json" -log-level warn)
    ((server)) && args+=(-server -bootstrap-expect "${TLS_EXPECT:-3}")
    "$ROOT/target/release/tribune" "${args[@]}" "$@" >"$OUT_DIR/tls-$name.log" 2>&1 &
    TLS_PID=$!
    PIDS+=("$TLS_PID")
}

# tls_conf NAME CERT: a config file with mutual TLS on RPC and HTTPS on, CERT's files.
tls_conf() {
    local d=$TMP/tls/pki
    cat >"$TMP/tls/$1.json" <<EOC
{"ports": {"https": $3},
 "tls": {"defaults": {"ca_file": "$d/consul-agent-ca.pem", "cert_file": "$d/$2.pem",
                      "key_file": "$d/$2-key.pem", "verify_incoming": true, "verify_outgoing": true},
         "https": {"verify_incoming": false},
         "internal_rpc": {"verify_server_hostname": true}}}
EOC
}

# tls_cluster TAG MTLS(0|1): 3 servers, wrk PUT through the leader, stopped again.
tls_cluster() {
    local tag=$1 mtls=$2 i pids=() leader= extra=()
    for i in 0 1 2; do
        extra=()
        if ((mtls)); then
            tls_conf "s$i" "dc1-server-consul-$i" -1
            extra=(-config-file "$TMP/tls/s$i.json")
        fi
        rm -rf "$TMP/tls/s$i"
        tls_agent "s$i" "$i" 1 "${extra[@]}"
        pids+=("$TLS_PID")
    done
    for _ in {1..160}; do
        leader=$(curl -sf --max-time 1 "http://127.0.0.1:$TLS_BASE/v1/status/leader" | tr -d '"') || true
        [[ -n $leader ]] && tribune_probe "http://127.0.0.1:$TLS_BASE" && break
        sleep 0.25
    done
    [[ -n $leader ]] || die "tls cluster $tag: no leader; $(tail -n 5 "$OUT_DIR/tls-s0.log")"
    # the leader's HTTP port: RPC port - 1
    local lport=$((${leader##*:} - 1))
    tribune_probe "http://127.0.0.1:$lport" || die "tls cluster $tag: leader not writable"
    R[tls_${tag}_leader]=127.0.0.1:$lport
    run_wrk "tls_${tag}_put" 2 64 "$WRK_DURATION" consul_put.lua "http://127.0.0.1:$lport"
    for i in "${pids[@]}"; do stop "$i"; done
}

# tls_mean NAME: NAME_{rps,p50_ms,p99_ms,errors} from NAME_1..NAME_$TLS_REPEAT (means;
# errors summed); NAME_all lists each run's req/s.
tls_mean() {
    local n=$1 r k all=
    for k in rps p50_ms p99_ms errors; do
        local vals=()
        for ((r = 1; r <= TLS_REPEAT; r++)); do vals+=("${R[${n}_${r}_$k]}"); done
        R[${n}_$k]=$(printf '%s\n' "${vals[@]}" | awk -v k="$k" '{ s += $1 } END {
            if (k == "errors") print s; else if (k == "rps") printf "%.0f", s / NR; else printf "%.3f", s / NR }')
    done
    for ((r = 1; r <= TLS_REPEAT; r++)); do all+="${all:+, }${R[${n}_${r}_rps]}"; done
    R[${n}_all]=$all
}

# tls_ticks PID...: utime + stime of the processes, summed (clock ticks).
tls_ticks() {
    local p
    for p in "$@"; do cat "/proc/$p/stat"; done | awk '{ l = $0; sub(/^.*\) /, "", l); split(l, f, " "); t += f[12] + f[13] } END { print t }'
}

# tls_idle TAG EXTRA...: TLS_GOSSIP_AGENTS agents (1 server) joined, idle; their CPU.
tls_idle() {
    local tag=$1 i pids=() t0 t1
    shift
    rm -rf "$TMP/tls/g"*
    TLS_EXPECT=1 tls_agent g0 0 1 "$@"
    pids+=("$TLS_PID")
    for ((i = 1; i < TLS_GOSSIP_AGENTS; i++)); do
        tls_agent "g$i" "$i" 0 "$@"
        pids+=("$TLS_PID")
    done
    local alive=0
    for _ in {1..120}; do
        alive=$(curl -sf --max-time 1 "http://127.0.0.1:$TLS_BASE/v1/agent/members" | grep -o '"Status":1' | wc -l) || true
        ((alive == TLS_GOSSIP_AGENTS)) && break
        sleep 0.25
    done
    ((alive == TLS_GOSSIP_AGENTS)) || die "tls idle $tag: $alive of $TLS_GOSSIP_AGENTS members alive"
    sleep 3
    t0=$(tls_ticks "${pids[@]}")
    sleep "$TLS_IDLE_S"
    t1=$(tls_ticks "${pids[@]}")
    # clock ticks -> ms of CPU per second, all agents together
    R[tls_idle_${tag}]=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v s="$TLS_IDLE_S" \
        'BEGIN { printf "%.1f", (b - a) * 1000 / hz / s }')
    log "  idle $tag: ${R[tls_idle_${tag}]} ms CPU/s over $TLS_GOSSIP_AGENTS agents"
    for i in "${pids[@]}"; do stop "$i"; done
}

section_tls() {
    local i
    need wrk:wrk curl:curl
    local s
    for s in consul_put consul_get; do
        [[ -r $SCRIPTS/$s.lua ]] || die "missing wrk script $SCRIPTS/$s.lua"
    done
    for i in 0 1 2 3 4 5; do ports_free $((TLS_BASE + 10 * i)) $((TLS_BASE + 10 * i + 1)) $((TLS_BASE + 10 * i + 3)); done
    mkdir -p "$TMP/tls/pki"
    echo '{"performance":{"raft_multiplier":1}}' >"$TMP/tls/perf.json"
    (cd "$TMP/tls/pki" && "$ROOT/target/release/tribune" tls ca create >/dev/null &&
        for i in 0 1 2; do "$ROOT/target/release/tribune" tls cert create -server -dc dc1 >/dev/null; done) ||
        die "tribune tls"
    load_begin tls
    # HTTP and HTTPS on one durable server
    tls_conf single dc1-server-consul-0 $((TLS_BASE + 3))
    TLS_EXPECT=1 tls_agent single 0 1 -config-file "$TMP/tls/single.json"
    SERVER_PID=$TLS_PID SERVER_LOG=$OUT_DIR/tls-single.log
    wait_ready tribune "$TLS_PID" "$SERVER_LOG" tribune_probe "http://127.0.0.1:$TLS_BASE"
    local http=http://127.0.0.1:$TLS_BASE https=https://127.0.0.1:$((TLS_BASE + 3))
    curl -sf --cacert "$TMP/tls/pki/consul-agent-ca.pem" "$https/v1/status/leader" >/dev/null ||
        die "HTTPS not answering"
    # Plain and TLS alternate (A B B A ...), so drifting load from other work
    # falls on both alike; the figures are the means of TLS_REPEAT runs each.
    local r op mode order
    for op in put get; do
        for ((r = 1; r <= TLS_REPEAT; r++)); do
            order="http https"
            ((r % 2)) || order="https http"
            for mode in $order; do
                local url=$http
                [[ $mode == https ]] && url=$https
                run_wrk "tls_${mode}_${op}_$r" 2 64 "$WRK_DURATION" "consul_$op.lua" "$url"
            done
        done
        for mode in http https; do tls_mean "tls_${mode}_${op}"; done
    done
    stop "$TLS_PID"
    tls_cluster plain 0
    tls_cluster mtls 1
    local key
    key=$("$ROOT/target/release/tribune" keygen)
    tls_idle plain
    tls_idle enc -encrypt "$key"
    load_end tls
    report_tls >"$OUT_DIR/results-tls.md"
}

report_tls() {
    cat <<EOT
# Encryption on the wire (issue 16): $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r); tribune $(revision). One-server figures: means of $TLS_REPEAT runs each, plain and TLS alternating (A B B A ...). wrk -t2 -c64 -d$WRK_DURATION (keep-alive: each connection does its TLS handshake once), sharing the cores with the servers. Certificates from \`tribune tls ca create\` / \`tls cert create -server\` (ECDSA P-256); rustls picks TLS 1.3 with wrk's OpenSSL. Durable servers (fsync before the answer), \`raft_multiplier 1\`.

| benchmark | plain | encrypted | encrypted ÷ plain | target | met |
|---|---:|---:|---:|---|---|
| GET at 64 conns, HTTP vs HTTPS, one server (req/s) | ${R[tls_http_get_rps]} | ${R[tls_https_get_rps]} | $(ratio "${R[tls_https_get_rps]}" "${R[tls_http_get_rps]}") | ≥ 0.80 | $(atleast "$(awk -v a="${R[tls_https_get_rps]}" -v b="${R[tls_http_get_rps]}" 'BEGIN{print a/b}')" 0.80) |
| … p50 / p99 (ms), means | ${R[tls_http_get_p50_ms]} / ${R[tls_http_get_p99_ms]} | ${R[tls_https_get_p50_ms]} / ${R[tls_https_get_p99_ms]} | | | |
| … each run (req/s) | ${R[tls_http_get_all]} | ${R[tls_https_get_all]} | | | |
| PUT at 64 conns, HTTP vs HTTPS, one server (req/s) | ${R[tls_http_put_rps]} | ${R[tls_https_put_rps]} | $(ratio "${R[tls_https_put_rps]}" "${R[tls_http_put_rps]}") | | |
| … each run (req/s) | ${R[tls_http_put_all]} | ${R[tls_https_put_all]} | | | |
| PUT at 64 conns through the leader of 3 servers, server RPC plain vs mutual TLS (req/s) | ${R[tls_plain_put_rps]} | ${R[tls_mtls_put_rps]} | $(ratio "${R[tls_mtls_put_rps]}" "${R[tls_plain_put_rps]}") | ≥ 0.85 | $(atleast "$(awk -v a="${R[tls_mtls_put_rps]}" -v b="${R[tls_plain_put_rps]}" 'BEGIN{print a/b}')" 0.85) |
| … p50 / p99 (ms) | ${R[tls_plain_put_p50_ms]} / ${R[tls_plain_put_p99_ms]} | ${R[tls_mtls_put_p50_ms]} / ${R[tls_mtls_put_p99_ms]} | | | |
| idle CPU of $TLS_GOSSIP_AGENTS agents (1 server, $((TLS_GOSSIP_AGENTS - 1)) clients) over ${TLS_IDLE_S} s, gossip plain vs -encrypt (ms of CPU per second, all agents) | ${R[tls_idle_plain]} | ${R[tls_idle_enc]} | $(ratio "${R[tls_idle_enc]}" "${R[tls_idle_plain]}") | | |

Commands (\$TMP is the run's temp dir; ports from TLS_BASE=$TLS_BASE: agent i has HTTP +10i, RPC +10i+1, gossip +10i+2, HTTPS +10i+3)
- PKI: \`tribune tls ca create\`, then \`tribune tls cert create -server -dc dc1\` three times, in \$TMP/tls/pki.
- one server: \`tribune agent -server -bootstrap-expect 1 -data-dir \$TMP/tls/single -http-port $TLS_BASE -config-file \$TMP/tls/single.json ...\` where single.json sets \`ports.https\` and \`tls.defaults\` (verify_incoming/outgoing on, \`tls.https.verify_incoming = false\`: wrk has no client certificate); wrk \`-s consul_put.lua\` / \`consul_get.lua\` ($SCRIPTS) on http://127.0.0.1:$TLS_BASE and https://127.0.0.1:$((TLS_BASE + 3)), PUT runs then GET runs.
- cluster: three \`tribune agent -server -bootstrap-expect 3\` on 127.0.0.1, first without a tls block, then with \`-config-file \$TMP/tls/sN.json\` (mutual TLS on RPC, verify_server_hostname); wrk \`-s consul_put.lua\` on the leader's HTTP API (${R[tls_mtls_leader]} in the mTLS run).
- idle: one server and $((TLS_GOSSIP_AGENTS - 1)) client agents joined by \`-retry-join\`, then $TLS_IDLE_S s with nothing to do; utime+stime of every agent from /proc/PID/stat, before and after. The second run adds \`-encrypt \$(tribune keygen)\`.

Notes
- wrk errors (non-2xx + socket errors, summed over the runs): HTTP PUT ${R[tls_http_put_errors]}, HTTPS PUT ${R[tls_https_put_errors]}, HTTP GET ${R[tls_http_get_errors]}, HTTPS GET ${R[tls_https_get_errors]}; cluster PUT plain ${R[tls_plain_put_errors]}, mTLS ${R[tls_mtls_put_errors]}.
- Idle CPU includes everything an idle agent does (anti-entropy, raft heartbeats on the server, the gossip probes of every member once a second and their sealing); the gossip share alone is smaller than these totals.
$(load_note tls)
EOT
}

# ---------------------------------------------------------------- dc
# dc_agent DC BASE OTHER_BASE: a durable single server of DC, joining the
# WAN pool of the server at OTHER_BASE; sets DC_PID.
dc_agent() {
    "$ROOT/target/release/tribune" agent -server -bootstrap-expect 1 -datacenter "$1" -node "s-$1" \
        -data-dir "$TMP/dc-$1" -http-port "$2" -server-port $(($2 + 1)) -serf-lan-port $(($2 + 2)) \
        -serf-wan-port $(($2 + 3)) -retry-join-wan "127.0.0.1:$(($3 + 3))" -retry-interval-wan 1s \
        -dns-port -1 -config-file "$NO_CONN_CAP" -config-file "$TMP/dc-perf.json" -log-level warn \
        >"$OUT_DIR/dc-$1.log" 2>&1 &
    DC_PID=$!
    PIDS+=("$DC_PID")
}

dc_federated() { curl -sf "http://127.0.0.1:$DC_BASE/v1/catalog/datacenters" | grep -q '"dc2"'; }

# dc_keep NAME: the wake figures of the run just made, as NAME_*.
dc_keep() {
    local k
    for k in p50 p90 p99; do R[${1}_${k}_us]=${R[wake_${k}_us]}; done
}

section_dc() {
    need wrk:wrk curl:curl
    local d1=$DC_BASE d2=$((DC_BASE + 10)) i
    for i in 0 1 2 3; do ports_free $((d1 + i)) $((d2 + i)); done
    echo '{"performance":{"raft_multiplier":1}}' >"$TMP/dc-perf.json"
    load_begin dc
    dc_agent dc1 "$d1" "$d2"
    local p1=$DC_PID
    dc_agent dc2 "$d2" "$d1"
    local p2=$DC_PID
    wait_ready "dc1 and dc2 federated" "$p1" "$OUT_DIR/dc-dc1.log" dc_federated
    SERVER_PID=$p1 SERVER_LOG=$OUT_DIR/dc-dc1.log
    # The 1,000 keys of consul_get.lua in each datacenter.
    run_wrk dc_seed_dc1 2 16 3s consul_put.lua "http://127.0.0.1:$d1"
    run_wrk dc_seed_dc2 2 16 3s consul_put.lua "http://127.0.0.1:$d2"
    local lua=$TMP/consul_get_dc2.lua
    sed "s|'/v1/kv/bench/key%05d'|'/v1/kv/bench/key%05d?dc=dc2'|" "$SCRIPTS/consul_get.lua" >"$lua"
    grep -q 'dc=dc2' "$lua" || die "could not make the ?dc=dc2 variant of consul_get.lua"
    # Local and cross-DC alternate (A B B A ...); the figures are the means.
    local r mode order
    for ((r = 1; r <= DC_REPEAT; r++)); do
        order="local cross"
        ((r % 2)) || order="cross local"
        for mode in $order; do
            local script=consul_get.lua
            [[ $mode == cross ]] && script=$lua
            run_wrk "dc_${mode}_get64_$r" 2 64 "$WRK_DURATION" "$script" "http://127.0.0.1:$d1"
        done
    done
    TLS_REPEAT=$DC_REPEAT tls_mean dc_local_get64
    TLS_REPEAT=$DC_REPEAT tls_mean dc_cross_get64
    run_bench_as dc_wake_local wake --addr "127.0.0.1:$d1" --parked 100 --samples "$SAMPLES"
    dc_keep dc_wake_local
    run_bench_as dc_wake_cross wake --addr "127.0.0.1:$d2" --watch-addr "127.0.0.1:$d1" --dc dc2 \
        --parked 100 --samples "$SAMPLES"
    dc_keep dc_wake_cross
    stop "$p2"
    stop "$p1"
    load_end dc
    report_dc >"$OUT_DIR/results-dc.md"
}

report_dc() {
    local ratio delta
    ratio=$(awk -v a="${R[dc_cross_get64_rps]}" -v b="${R[dc_local_get64_rps]}" 'BEGIN { printf "%.2f", a / b }')
    delta=$(awk -v a="${R[dc_wake_cross_p50_us]}" -v b="${R[dc_wake_local_p50_us]}" 'BEGIN { printf "%.0f", a - b }')
    cat <<EOT
## Across datacenters (issue 17): $(date -u '+%Y-%m-%d %H:%M UTC')

Revision $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null). Two datacenters of one durable server each on loopback (dc1 on 127.0.0.1:$DC_BASE, dc2 on :$((DC_BASE + 10))), federated over the WAN pool. Every request is sent to dc1's server; \`?dc=dc2\` ones are forwarded by it to dc2's server over server RPC and answered there.

| 64 connections, GET | local (dc1) | through dc1 to dc2 (\`?dc=dc2\`) | cross / local |
|---|---|---|---|
| req/s (mean of $DC_REPEAT) | $(fmt_int "${R[dc_local_get64_rps]}") | $(fmt_int "${R[dc_cross_get64_rps]}") | ${ratio}× |
| p50 / p99 (ms) | ${R[dc_local_get64_p50_ms]} / ${R[dc_local_get64_p99_ms]} | ${R[dc_cross_get64_p50_ms]} / ${R[dc_cross_get64_p99_ms]} | |

| blocking wake-up after a PUT ($SAMPLES samples) | local | across (watch on dc1 with \`?dc=dc2\`, PUT on dc2) | target |
|---|---|---|---|
| p50 / p90 / p99 (µs, from the PUT's answer) | ${R[dc_wake_local_p50_us]} / ${R[dc_wake_local_p90_us]} / ${R[dc_wake_local_p99_us]} | ${R[dc_wake_cross_p50_us]} / ${R[dc_wake_cross_p90_us]} / ${R[dc_wake_cross_p99_us]} | p50 within 2 ms of local: $(atmost "$delta" 2000) (${delta} µs) |

- Servers: \`$(cmdline "$ROOT/target/release/tribune" agent -server -bootstrap-expect 1 -datacenter dc1 -serf-wan-port $((DC_BASE + 3)) -retry-join-wan 127.0.0.1:$((DC_BASE + 13)) ...)\` and its dc2 twin; \`performance.raft_multiplier = 1\`.
- GET: wrk \`-t2 -c64 -d$WRK_DURATION\` with consul_get.lua ($SCRIPTS) and the same script with \`?dc=dc2\` appended, alternating (rounds' req/s: local ${R[dc_local_get64_all]}; cross ${R[dc_cross_get64_all]}); keys bench/key00000..00999 written in each DC by consul_put.lua for 3 s.
- Wake: \`${R[cmd_dc_wake_local]}\` and \`${R[cmd_dc_wake_cross]}\` (100 other queries parked on dc2's server / dc1's).
- wrk errors: local ${R[dc_local_get64_errors]}, cross ${R[dc_cross_get64_errors]}.
$(load_note dc)
EOT
}

main() {
    local want=() s
    (($#)) || set -- all
    for s in "$@"; do
        case $s in
        all) want+=("${SECTIONS[@]}") ;;
        kv | discovery | template | nginx | cluster | large | acl | tls | fanout | dc) want+=("$s") ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d'
            return 0
            ;;
        *) die "unknown section $s (kv, discovery, template, nginx, cluster, large, acl, tls, fanout, dc, all)" ;;
        esac
    done
    command -v cargo >/dev/null || [[ $BUILD == 0 ]] || die "cargo not found"
    need curl:curl
    mkdir -p "$OUT_DIR"
    if [[ $BUILD != 0 ]]; then
        log "building (release)"
        (cd "$ROOT" && cargo build --release -p tribune -p tribune-template -p tribune-bench) ||
            die "cargo build"
    fi
    local b
    for b in tribune tribune-template tribune-bench; do
        # The acl section alone runs any tribune binary (ACL_TRIBUNE).
        [[ ${want[*]} == acl && -n ${ACL_TRIBUNE:-} ]] && break
        # Only template and nginx run tribune-template.
        [[ $b == tribune-template && ! " ${want[*]} " =~ \ (template|nginx)\  ]] && continue
        [[ -x $ROOT/target/release/$b ]] || die "missing $ROOT/target/release/$b (run with BUILD=1)"
    done
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/tribune-bench.XXXXXX")
    # One load generator on one address opens up to 10,000 connections (parked
    # queries, 1,000 template watches): lift the per-client cap (default 200).
    NO_CONN_CAP=$TMP/no-conn-cap.json
    echo '{"limits":{"http_max_conns_per_client":0}}' >"$NO_CONN_CAP"
    for s in "${want[@]}"; do
        log "==== section $s"
        "section_$s"
    done

    # results.md: the latest run of every section.
    local first=1
    for s in "${SECTIONS[@]}"; do
        [[ -f $OUT_DIR/results-$s.md ]] || continue
        ((first)) || echo
        first=0
        cat "$OUT_DIR/results-$s.md"
    done >"$OUT_DIR/results.md"
    for s in "${want[@]}"; do cat "$OUT_DIR/results-$s.md"; done
    log "written to $OUT_DIR/results.md (sections run now: ${want[*]})"
}

# ---------------------------------------------------------------- acl
acl_probe() { # URL TOKEN
    [[ $(curl -sf --max-time 2 -X PUT -H "X-Consul-Token: $2" --data ok "$1/v1/kv/bench/ready") == true ]]
}

# start_acl_tribune NAME CONFIG TOKEN: a durable single server with CONFIG.
start_acl_tribune() {
    "$ACL_BIN" agent -server -bootstrap-expect 1 -data-dir "$TMP/$1" \
        -http-port "$TRIBUNE_PORT" -dns-port -1 -config-file "$2" -log-level warn \
        >"$OUT_DIR/$1.log" 2>&1 &
    TRIBUNE_PID=$!
    PIDS+=("$TRIBUNE_PID")
    SERVER_PID=$TRIBUNE_PID SERVER_LOG=$OUT_DIR/$1.log
    wait_ready "$1" "$TRIBUNE_PID" "$OUT_DIR/$1.log" acl_probe "$TRIBUNE_URL" "$3"
}

section_acl() {
    need wrk:wrk curl:curl
    ACL_BIN=${ACL_TRIBUNE:-$ROOT/target/release/tribune}
    ports_free "$TRIBUNE_PORT"
    ulimit -n 65536 2>/dev/null || true
    R[acl_busy]=$(cpu_busy_pct)
    local off=$TMP/acl-off.json on=$TMP/acl-on.json root
    root=$(cat /proc/sys/kernel/random/uuid)
    echo '{"limits":{"http_max_conns_per_client":0}}' >"$off"
    printf '{"limits":{"http_max_conns_per_client":0},"acl":{"enabled":true,"default_policy":"deny","tokens":{"initial_management":"%s"}}}' \
        "$root" >"$on"

    # Rounds alternate off and on, so drift on the machine (page cache,
    # other load) falls on both; the report takes each side's median.
    local r
    for r in $(seq 1 "$ACL_ROUNDS"); do
        log "ACLs off (round $r of $ACL_ROUNDS)"
        start_acl_tribune "acl-off-$r" "$off" ""
        local addr=127.0.0.1:$TRIBUNE_PORT
        if [[ $r == 1 ]]; then
            # Memory first, on the fresh server (wrk leaves reusable heap behind).
            run_bench memory --addr "$addr" --pid "$TRIBUNE_PID" --parked "$PARKED"
            acl_memory_as off
        fi
        run_wrk "acl_off_put64_$r" 2 64 "$WRK_DURATION" consul_put.lua "$TRIBUNE_URL"
        run_wrk "acl_off_get64_$r" 2 64 "$WRK_DURATION" consul_get.lua "$TRIBUNE_URL"
        stop "$TRIBUNE_PID"

        log "ACLs on: default deny, a token with 20 key_prefix rules (round $r of $ACL_ROUNDS)"
        start_acl_tribune "acl-on-$r" "$on" "$root"
        local tok
        tok=$(acl_bench_token "$root") && [[ -n $tok ]] || die "no bench token"
        if [[ $r == 1 ]]; then
            CONSUL_HTTP_TOKEN=$tok run_bench memory --addr "$addr" --pid "$TRIBUNE_PID" --parked "$PARKED"
            acl_memory_as on
        fi
        WRK_HEADER="X-Consul-Token: $tok" run_wrk "acl_on_put64_$r" 2 64 "$WRK_DURATION" consul_put.lua "$TRIBUNE_URL"
        WRK_HEADER="X-Consul-Token: $tok" run_wrk "acl_on_get64_$r" 2 64 "$WRK_DURATION" consul_get.lua "$TRIBUNE_URL"
        stop "$TRIBUNE_PID"
    done
    local side op
    for side in off on; do
        for op in put64 get64; do acl_median "acl_${side}_$op"; done
    done
    report_acl >"$OUT_DIR/results-acl.md"
}

# acl_bench_token ROOT: a policy of 20 key_prefix rules (19 read, bench/
# write) and a token holding it, on the server under test; prints the secret.
acl_bench_token() {
    local rules='' i pid tok
    for i in $(seq 1 19); do rules+="key_prefix \\\"other$i/\\\" { policy = \\\"read\\\" }\\n"; done
    rules+='key_prefix \"bench/\" { policy = \"write\" }'
    pid=$(curl -sf -X PUT -H "X-Consul-Token: $1" "$TRIBUNE_URL/v1/acl/policy" \
        -d "{\"Name\":\"bench\",\"Rules\":\"$rules\"}" | sed -n 's/.*"ID":"\([^"]*\)".*/\1/p')
    [[ -n $pid ]] || die "creating the bench policy failed"
    tok=$(curl -sf -X PUT -H "X-Consul-Token: $1" "$TRIBUNE_URL/v1/acl/token" \
        -d "{\"Policies\":[{\"ID\":\"$pid\"}]}" | sed -n 's/.*"SecretID":"\([^"]*\)".*/\1/p')
    [[ -n $tok ]] || die "creating the bench token failed"
    [[ $(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "X-Consul-Token: $tok" \
        "$TRIBUNE_URL/v1/kv/other1/x" -d 1) == 403 ]] || die "the bench token may write outside bench/"
    printf '%s' "$tok"
}

# acl_median NAME: NAME's rps, p99 and errors from the round whose rps is
# the median (rounds NAME_1 .. NAME_$ACL_ROUNDS); the rounds' rps listed too.
acl_median() {
    local r list='' pick
    for r in $(seq 1 "$ACL_ROUNDS"); do list+="${R[${1}_${r}_rps]} $r"$'\n'; done
    pick=$(printf '%s' "$list" | sort -n | awk -v n="$ACL_ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')
    R[${1}_rps]=${R[${1}_${pick}_rps]}
    R[${1}_p99_ms]=${R[${1}_${pick}_p99_ms]}
    R[${1}_errors]=0
    for r in $(seq 1 "$ACL_ROUNDS"); do R[${1}_errors]=$((R[${1}_errors] + R[${1}_${r}_errors])); done
    R[${1}_rounds]=$(for r in $(seq 1 "$ACL_ROUNDS"); do printf '%s ' "${R[${1}_${r}_rps]}"; done)
}

# acl_memory_as off|on: keep the memory figures of the run just made.
acl_memory_as() {
    local k
    for k in memory_kib_per_parked memory_kib_per_parked_query memory_parked; do
        R[acl_${1}_$k]=${R[$k]}
    done
}

report_acl() {
    local slower_put slower_get
    slower_put=$(awk -v a="${R[acl_on_put64_rps]}" -v b="${R[acl_off_put64_rps]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
    slower_get=$(awk -v a="${R[acl_on_get64_rps]}" -v b="${R[acl_off_get64_rps]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
    cat <<EOT
## ACLs on vs off (issue 15): $(date -u '+%Y-%m-%d %H:%M UTC')

Binary: \`$(cmdline "$ACL_BIN")\`; revision $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null).

| 64 connections | ACLs off req/s | ACLs on req/s | slower by | p99 off / on (ms) | target ≤ 10% |
|---|---|---|---|---|---|
| PUT | $(fmt_int "${R[acl_off_put64_rps]}") | $(fmt_int "${R[acl_on_put64_rps]}") | ${slower_put}% | ${R[acl_off_put64_p99_ms]} / ${R[acl_on_put64_p99_ms]} | $(atmost "$slower_put" 10) |
| GET | $(fmt_int "${R[acl_off_get64_rps]}") | $(fmt_int "${R[acl_on_get64_rps]}") | ${slower_get}% | ${R[acl_off_get64_p99_ms]} / ${R[acl_on_get64_p99_ms]} | $(atmost "$slower_get" 10) |

| $(fmt_int "${R[acl_on_memory_parked]}") parked blocking queries | ACLs off | ACLs on, with the token | target |
|---|---|---|---|
| server RSS per parked query (KiB) | ${R[acl_off_memory_kib_per_parked]} | ${R[acl_on_memory_kib_per_parked]} | ≤ 16 KiB, unchanged: $(atmost "${R[acl_on_memory_kib_per_parked]}" 16) |
| … of which the parked query itself (KiB) | ${R[acl_off_memory_kib_per_parked_query]} | ${R[acl_on_memory_kib_per_parked_query]} | |

- ACLs on: \`acl { enabled = true, default_policy = "deny" }\`, a token whose one policy has 20 \`key_prefix\` rules (19 \`otherN/\` read, \`bench/\` write), sent as \`X-Consul-Token\`; wrk scripts \`consul_put.lua\` / \`consul_get.lua\` from \`$SCRIPTS\`, $WRK_DURATION each, 2 threads.
- Memory: \`tribune-bench memory\` on each fresh server before the wrk runs (KV blocking queries on distinct keys under \`bench/mem/\`, inside the token's \`bench/\` write rule; \`CONSUL_HTTP_TOKEN\` sends it as \`X-Consul-Token\`).
- Both servers durable single servers (\`-server -bootstrap-expect 1 -data-dir ...\`), one after the other on 127.0.0.1:$TRIBUNE_PORT, in $ACL_ROUNDS alternating rounds (off, on, off, on, ...), each on a fresh data dir; the table shows each side's median round. Rounds' req/s: PUT off ${R[acl_off_put64_rounds]}/ on ${R[acl_on_put64_rounds]}; GET off ${R[acl_off_get64_rounds]}/ on ${R[acl_on_get64_rounds]}.
- wrk errors: PUT ${R[acl_off_put64_errors]} / ${R[acl_on_put64_errors]}, GET ${R[acl_off_get64_errors]} / ${R[acl_on_get64_errors]} (off / on). CPU busy before: ${R[acl_busy]}% of $(nproc) cores.
EOT
}

main "$@"
