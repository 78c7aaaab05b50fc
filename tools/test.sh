#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole suite with ctest.
# Exits non-zero on any failure. GPU tests skip (with the reason, printed below the
# summary) on machines without a GPU unless LLA_REQUIRE_GPU=1, which turns the skip
# into a failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tools/deps.sh"
"$root/tools/build.sh" release
cd "$root"
status=0
ctest --preset release "$@" || status=$?
log="$root/build/release/Testing/Temporary/LastTest.log"
if [[ -f "$log" ]] && grep -q "skipped: " "$log"; then
  echo
  echo "Skipped tests and why:"
  grep -h "skipped: " "$log" | sort | uniq -c | sed 's/^/  /'
fi
exit "$status"
