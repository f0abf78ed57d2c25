#!/usr/bin/env bash
# bench/run.sh: tribune against etcd 3.4 on the same machine, in the same run.
#
#   1. installs etcd-server, etcd-client, wrk, curl when their commands are missing;
#   2. builds tribune and tribune-bench (release);
#   3. starts etcd and a durable single tribune server (data in a temp dir, loopback only);
#   4. wrk: PUT at 64 connections, GET at 64 connections, PUT at 1 connection, each
#      against etcd and then tribune (scripts from $SCRIPTS);
#   5. stops etcd, then runs tribune-bench memory, wake and fanout against tribune;
#   6. prints a markdown table and writes it to bench/out/results.md. Raw outputs and
#      server logs are kept in bench/out/ too.
#
# Everything it starts is stopped on exit; the temp dir is removed.
# Knobs (environment): TRIBUNE_PORT ETCD_PORT WRK_DURATION WRK1_DURATION PARKED SAMPLES
# WATCHERS ROUNDS SCRIPTS OUT_DIR.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPTS=${SCRIPTS:-/work/shared/bench}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
TRIBUNE_PORT=${TRIBUNE_PORT:-18550}
ETCD_PORT=${ETCD_PORT:-2379} # peer = +1, metrics = +2
WRK_DURATION=${WRK_DURATION:-10s}
WRK1_DURATION=${WRK1_DURATION:-5s}
PARKED=${PARKED:-10000}
SAMPLES=${SAMPLES:-200}
WATCHERS=${WATCHERS:-1000}
ROUNDS=${ROUNDS:-20}
export RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0

TRIBUNE_URL=http://127.0.0.1:$TRIBUNE_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

# ---------------------------------------------------------------- tools
ensure_tools() {
    local pkgs=()
    command -v etcd >/dev/null || pkgs+=(etcd-server)
    command -v etcdctl >/dev/null || pkgs+=(etcd-client)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v curl >/dev/null || pkgs+=(curl)
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq || die "apt-get update"
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${pkgs[@]}" ||
            die "apt-get install ${pkgs[*]}"
    fi
    command -v cargo >/dev/null || die "cargo not found"
    local s
    for s in etcd_put etcd_get consul_put consul_get; do
        [[ -r $SCRIPTS/$s.lua ]] || die "missing wrk script $SCRIPTS/$s.lua"
    done
}

# ---------------------------------------------------------------- processes
PIDS=()
TMP=
cleanup() {
    local rc=$? pid _
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
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

stop() { # stop PID: TERM, wait up to 10 s, then KILL
    local pid=$1 _
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in {1..100}; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

etcd_probe() {
    curl -sf --max-time 2 -X POST "$ETCD_URL/v3/kv/range" -d '{"key":"cmVhZHk="}'
}
tribune_probe() {
    [[ $(curl -sf --max-time 2 -X PUT --data ok "$TRIBUNE_URL/v1/kv/bench/ready") == true ]]
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

# run_wrk NAME THREADS CONNS DURATION SCRIPT URL
run_wrk() {
    local name=$1 t=$2 c=$3 d=$4 script=$5 url=$6 out=$OUT_DIR/wrk-$1.txt
    log "wrk $name: -t$t -c$c -d$d -s $script $url"
    timeout 300 wrk -t"$t" -c"$c" -d"$d" --latency --timeout 10s -s "$SCRIPTS/$script" "$url" \
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

# run_bench NAME ARGS...: tribune-bench NAME ARGS, RESULT lines into R.
run_bench() {
    local name=$1 out=$OUT_DIR/bench-$1.txt
    shift
    log "tribune-bench $name $*"
    if ! timeout 600 "$ROOT/target/release/tribune-bench" "$name" "$@" 2>&1 | tee "$out" >&2; then
        die "tribune-bench $name failed (output in $out)"
    fi
    local k v
    while IFS='=' read -r k v; do R[$k]=$v; done < <(sed -n 's/^RESULT //p' "$out")
    kill -0 "$TRIBUNE_PID" 2>/dev/null ||
        die "tribune died during $name; last lines:"$'\n'"$(tail -n 20 "$OUT_DIR/tribune.log")"
}

# ---------------------------------------------------------------- run
main() {
    ensure_tools
    mkdir -p "$OUT_DIR"

    log "building (release)"
    (cd "$ROOT" && cargo build --release -p tribune -p tribune-bench) || die "cargo build"

    local need_fds=$((PARKED > WATCHERS ? PARKED + 1024 : WATCHERS + 1024))
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
        die "cannot raise the open-file limit"
    (($(ulimit -n) >= need_fds)) ||
        die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) below the $need_fds needed"
    log "open-file limit $(ulimit -n)"

    local p
    for p in "$TRIBUNE_PORT" "$ETCD_PORT" $((ETCD_PORT + 1)) $((ETCD_PORT + 2)); do
        port_in_use "$p" && die "127.0.0.1:$p is already in use"
    done
    IDLE_BUSY=$(cpu_busy_pct)
    log "CPU busy before start (2 s sample, nothing of ours running): $IDLE_BUSY%"
    awk -v b="$IDLE_BUSY" 'BEGIN { exit !(b > 10) }' &&
        log "WARNING: other work is using the cores; figures will be low and noisy"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/tribune-bench.XXXXXX")

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
    "$ROOT/target/release/tribune" agent -server -bootstrap-expect 1 -data-dir "$TMP/tribune" \
        -http-port "$TRIBUNE_PORT" -dns-port -1 -log-level warn >"$OUT_DIR/tribune.log" 2>&1 &
    TRIBUNE_PID=$!
    PIDS+=("$TRIBUNE_PID")
    wait_ready tribune "$TRIBUNE_PID" "$OUT_DIR/tribune.log" tribune_probe

    run_wrk etcd_put64 2 64 "$WRK_DURATION" etcd_put.lua "$ETCD_URL"
    run_wrk tribune_put64 2 64 "$WRK_DURATION" consul_put.lua "$TRIBUNE_URL"
    run_wrk etcd_get64 2 64 "$WRK_DURATION" etcd_get.lua "$ETCD_URL"
    run_wrk tribune_get64 2 64 "$WRK_DURATION" consul_get.lua "$TRIBUNE_URL"
    run_wrk etcd_put1 1 1 "$WRK1_DURATION" etcd_put.lua "$ETCD_URL"
    run_wrk tribune_put1 1 1 "$WRK1_DURATION" consul_put.lua "$TRIBUNE_URL"

    log "stopping etcd (the rest measures tribune alone)"
    stop "$ETCD_PID"

    local addr=127.0.0.1:$TRIBUNE_PORT
    # memory first: later runs leave freed-but-resident heap behind.
    run_bench memory --addr "$addr" --pid "$TRIBUNE_PID" --parked "$PARKED"
    run_bench wake --addr "$addr" --parked "$PARKED" --samples "$SAMPLES"
    run_bench fanout --addr "$addr" --watchers "$WATCHERS" --rounds "$ROUNDS"

    report >"$OUT_DIR/results.md"
    cat "$OUT_DIR/results.md"
    log "written to $OUT_DIR/results.md"
}

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'; } # µs -> ms
atleast() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "yes" : "**no**") }'; }
atmost() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "yes" : "**no**") }'; }
fmt_int() { printf "%'d" "$1"; }

report() {
    local put get rev
    put=$(awk -v a="${R[tribune_put64_rps]}" -v b="${R[etcd_put64_rps]}" 'BEGIN { print a / b }')
    get=$(awk -v a="${R[tribune_get64_rps]}" -v b="${R[etcd_get64_rps]}" 'BEGIN { print a / b }')
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- agent 2>/dev/null || rev+=" (agent/ modified)"
    cat <<EOF
# tribune vs etcd: $(date -u '+%Y-%m-%d %H:%M UTC')

$(nproc) cores, $(uname -r), data on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'); tribune $rev; $(etcd --version | head -n 1); wrk -t2 -c64 -d$WRK_DURATION (1 connection: -t1 -c1 -d$WRK1_DURATION) sharing the cores with the server under test. Both servers are single durable nodes (fsync before the answer). Ratios: tribune ÷ etcd for throughput, etcd ÷ tribune for latency (above 1 = tribune better).

| benchmark | tribune | etcd 3.4 | ratio | target | met |
|---|---:|---:|---:|---|---|
| PUT, 64 conns (req/s) | $(fmt_int "${R[tribune_put64_rps]}") | $(fmt_int "${R[etcd_put64_rps]}") | $(ratio "${R[tribune_put64_rps]}" "${R[etcd_put64_rps]}") | ≥ 2× etcd | $(atleast "$put" 2) |
| PUT, 64 conns, p50 / p99 (ms) | ${R[tribune_put64_p50_ms]} / ${R[tribune_put64_p99_ms]} | ${R[etcd_put64_p50_ms]} / ${R[etcd_put64_p99_ms]} | $(ratio "${R[etcd_put64_p50_ms]}" "${R[tribune_put64_p50_ms]}") | | |
| GET, 64 conns (req/s) | $(fmt_int "${R[tribune_get64_rps]}") | $(fmt_int "${R[etcd_get64_rps]}") | $(ratio "${R[tribune_get64_rps]}" "${R[etcd_get64_rps]}") | ≥ 8× etcd | $(atleast "$get" 8) |
| GET, 64 conns, p50 / p99 (ms) | ${R[tribune_get64_p50_ms]} / ${R[tribune_get64_p99_ms]} | ${R[etcd_get64_p50_ms]} / ${R[etcd_get64_p99_ms]} | $(ratio "${R[etcd_get64_p50_ms]}" "${R[tribune_get64_p50_ms]}") | | |
| PUT, 1 conn (req/s) | $(fmt_int "${R[tribune_put1_rps]}") | $(fmt_int "${R[etcd_put1_rps]}") | $(ratio "${R[tribune_put1_rps]}" "${R[etcd_put1_rps]}") | | |
| PUT, 1 conn, p50 / p99 (ms) | ${R[tribune_put1_p50_ms]} / ${R[tribune_put1_p99_ms]} | ${R[etcd_put1_p50_ms]} / ${R[etcd_put1_p99_ms]} | $(ratio "${R[etcd_put1_p50_ms]}" "${R[tribune_put1_p50_ms]}") | | |
| wake after PUT ack, $(fmt_int "${R[wake_parked]}") others parked, p50 / p90 / p99 (µs) | ${R[wake_p50_us]} / ${R[wake_p90_us]} / ${R[wake_p99_us]} | — | | p50 ≤ 1000 µs | $(atmost "${R[wake_p50_us]}" 1000) |
| wake after PUT sent, p50 / p90 / p99 (µs) | ${R[wake_from_sent_p50_us]} / ${R[wake_from_sent_p90_us]} / ${R[wake_from_sent_p99_us]} | ~2 ms (baselines.md) | | | |
| spurious wakes among the $(fmt_int "${R[wake_parked]}") parked | ${R[wake_spurious]} (+${R[wake_idle_errors]} errors) | — | | 0 | $(atmost "$((R[wake_spurious] + R[wake_idle_errors]))" 0) |
| fanout: all $(fmt_int "${R[fanout_watchers]}") watchers answered after PUT ack, p50 / max of ${R[fanout_rounds]} (ms) | $(ms "${R[fanout_all_p50_us]}") / $(ms "${R[fanout_all_max_us]}") | — | | ≤ 50 ms | $(atmost "${R[fanout_all_max_us]}" 50000) |
| fanout: all answered after PUT sent, p50 / max (ms) | $(ms "${R[fanout_all_from_sent_p50_us]}") / $(ms "${R[fanout_all_from_sent_max_us]}") | — | | | |
| server RSS per parked query (KiB) | ${R[memory_kib_per_parked]} | — | | ≤ 16 KiB | $(atmost "${R[memory_kib_per_parked]}" 16) |
| … of which: accepted connection / its first request / the parked query (KiB) | ${R[memory_kib_per_open_conn]} / ${R[memory_kib_per_first_request]} / ${R[memory_kib_per_parked_query]} | | | | |

Notes
- wrk errors (non-2xx + socket errors): PUT64 tribune ${R[tribune_put64_errors]}, etcd ${R[etcd_put64_errors]}; GET64 tribune ${R[tribune_get64_errors]}, etcd ${R[etcd_get64_errors]}; PUT1 tribune ${R[tribune_put1_errors]}, etcd ${R[etcd_put1_errors]}.
- wake: ${R[wake_samples]} samples; the watcher's answer arrived before the PUT's own answer in ${R[wake_watcher_before_ack]} of them (negative values). PUT round trip p50 ${R[wake_put_rtt_p50_us]} µs.
- fanout: the first watcher answered p50 ${R[fanout_first_p50_us]} µs after the PUT ack (negative = before it).
- memory: server VmRSS ${R[memory_rss_before_kib]} KiB before, ${R[memory_rss_opened_kib]} KiB with $(fmt_int "${R[memory_parked]}") connections open, ${R[memory_rss_read_kib]} KiB after one GET on each, ${R[memory_rss_parked_kib]} KiB with all parked.
- CPU busy just before the servers started (other work on the machine): $IDLE_BUSY%.
- etcd was stopped before the tribune-only benchmarks; raw outputs are in bench/out/.
EOF
}

main "$@"
