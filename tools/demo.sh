#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the fp64 oracle on a
# representative problem set, printing a short summary (see `lla demo --help`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tools/deps.sh"
"$root/tools/build.sh" release >/dev/null
exec "$root/build/release/tools/lla/lla" demo "$@"
