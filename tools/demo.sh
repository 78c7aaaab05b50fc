#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the fp64 oracle on a
# representative problem set, printing a short summary (see `lla demo --help`);
# then the small `lla compare` preset: how far LLA's bf16 solver and Parallax land
# from the oracle as the ridge lambda shrinks (docs/compare.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tools/deps.sh"
"$root/tools/build.sh" release >/dev/null
lla="$root/build/release/tools/lla/lla"
status=0
"$lla" demo "$@" || status=$?
echo
echo "lla compare --preset demo (the solver against the projector; full report in build/compare-demo/report.md):"
echo
"$lla" compare --preset demo --out "$root/build/compare-demo" --quiet || status=$?
exit "$status"
