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
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_pkgs[@]}"
fi

# python-consul: the real third-party client the API tests drive.
if ! python3 -c 'import consul' 2>/dev/null; then
  python3 -m pip install -q python-consul 2>/dev/null \
    || python3 -m pip install -q --break-system-packages python-consul 2>/dev/null \
    || { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-consul; }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace
