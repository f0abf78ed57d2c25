#!/usr/bin/env bash
# Runs every hostile check against the built binaries, each bounded in time,
# and fails if any of them reports a DEFECT (or does not finish).
#
#   tests/hostile/run.sh [script ...]      # default: all of them
#
# Binaries: TRIBUNE_BIN / TRIBUNE_TEMPLATE_BIN, else $TRIBUNE_BIN_DIR/tribune,
# else target/release. Rounds are kept small unless HOSTILE_ROUNDS /
# HOSTILE_KILLS say otherwise, so the suite fits CI's time budget.
set -uo pipefail
cd "$(dirname "$0")/../.."
here=tests/hostile
dir="${TRIBUNE_BIN_DIR:-target/release}"
export TRIBUNE_BIN="${TRIBUNE_BIN:-$dir/tribune}"
export TRIBUNE_TEMPLATE_BIN="${TRIBUNE_TEMPLATE_BIN:-$dir/tribune-template}"
export HOSTILE_ROUNDS="${HOSTILE_ROUNDS:-4}"
export HOSTILE_KILLS="${HOSTILE_KILLS:-3}"

scripts=("$@")
[ "${#scripts[@]}" -gt 0 ] || scripts=(http_fuzz dns_fuzz durability diskfull cluster stale_read template_safety)

failed=()
for s in "${scripts[@]}"; do
  start=$(date +%s)
  echo "=== hostile: $s"
  # The scripts clean up after themselves on SIGTERM; 10 minutes is far
  # above any one's normal run, so a timeout is itself a finding.
  timeout -k 20 600 python3 "$here/$s.py"
  rc=$?
  echo "=== hostile: $s exit $rc in $(( $(date +%s) - start ))s"
  [ "$rc" -eq 0 ] || failed+=("$s")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "hostile: failed: ${failed[*]}"
  exit 1
fi
echo "hostile: all ${#scripts[@]} passed"
