#!/usr/bin/env bash
# Installs what the tests need (Debian packages, PyPI packages), then runs
# every test: formatting, lints, unit tests and the integration tests that
# spawn the real binaries and drive them with real clients.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_pkgs=()
command -v python3 >/dev/null || apt_pkgs+=(python3 python3-pip)
command -v curl >/dev/null || apt_pkgs+=(curl)
command -v dig >/dev/null || apt_pkgs+=(dnsutils)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_pkgs+=(nginx-light)
# network namespaces for the partition test; `ip` for the container entrypoint test
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || apt_pkgs+=(iproute2)
# systemd-analyze verify of examples/systemd/ (Debian ships it in systemd)
command -v systemd-analyze >/dev/null || apt_pkgs+=(systemd)
# the UI test: Debian's chromium, driven from node by playwright-core
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
command -v node >/dev/null || apt_pkgs+=(nodejs npm)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_pkgs[@]}"
  # Debian starts the system nginx on install; the tests run their own.
  as_root systemctl stop nginx >/dev/null 2>&1 || as_root service nginx stop >/dev/null 2>&1 || true
fi
export PATH="$PATH:/usr/sbin"

# python-consul: the real third-party client the API tests drive.
if ! python3 -c 'import consul' 2>/dev/null; then
  python3 -m pip install -q python-consul 2>/dev/null \
    || python3 -m pip install -q --break-system-packages python-consul 2>/dev/null \
    || { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-consul; }
fi

# py-consul 1.5.1 (tests/acl.rs): it shares python-consul's module name, so
# it lives in a directory of its own, on the test's PYTHONPATH only.
if [ ! -d target/py-consul-1.5.1/consul ]; then
  python3 -m pip install -q --no-deps --target target/py-consul-1.5.1 py-consul==1.5.1 2>/dev/null \
    || python3 -m pip install -q --break-system-packages --no-deps --target target/py-consul-1.5.1 py-consul==1.5.1
fi

# prometheus_client: its text parser reads the metrics endpoints' output.
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  python3 -m pip install -q prometheus_client 2>/dev/null \
    || python3 -m pip install -q --break-system-packages prometheus_client 2>/dev/null \
    || { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-prometheus-client; }
fi

# playwright-core for the UI test (it never downloads a browser; the test
# runs Debian's). Reinstalled only when missing or the lockfile changed.
ui_modules=tests/ui/node_modules
if [ ! -f "$ui_modules/playwright-core/package.json" ] || [ tests/ui/package-lock.json -nt "$ui_modules/.package-lock.json" ]; then
  (cd tests/ui && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The API docs build (the workspace lints deny rustdoc's warnings too).
cargo doc --workspace --no-deps --quiet
# Build the binaries once; the integration tests and the hostile checks run
# exactly these (profile ci: optimized, with debug assertions).
cargo build --profile ci --workspace --bins
export TRIBUNE_BIN_DIR="$PWD/target/ci"
log="$(mktemp)"
status=0
# Into a file, streamed by tail: a process some test left behind, still
# holding the output open, must not hang the run (as a pipe to tee would).
cargo test --workspace --no-fail-fast >"$log" 2>&1 &
tests_pid=$!
tail -n +1 -f --pid="$tests_pid" "$log" &
tail_pid=$!
wait "$tests_pid" || status=$?
wait "$tail_pid" || true
# One closing line for the whole run (cargo prints one per test binary).
summary="$(awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed", p, f }' "$log")"
# What failed, kept for the end of the run (CI shows its tail): each
# failing test's output, and any test binary that died without a verdict.
failures="$(awk '/^failures:$/ { on = 1 } on { print } /^test result:/ { on = 0 }
  /overflowed its stack|^fatal runtime error/ { print }
  /^error: test failed|process didn.t exit successfully|^error: [0-9]+ targets? failed/ { print; getline; print }' "$log" | tail -n 150)"
rm -f "$log"
echo "$summary"
# The hostile checks (tests/hostile): fuzzing, kill -9, full disk, leader
# kills, template failures, each bounded in time; any DEFECT fails the run.
tests/hostile/run.sh || status=1
if [ -n "$failures" ]; then
  echo "=== failed tests (the last 150 lines of their output)"
  echo "$failures"
fi
echo "$summary"
exit "$status"
