#!/usr/bin/env bash
# Configures and builds the project with the given CMake preset (default: release).
# Shared by test.sh and demo.sh so both build exactly the same way.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
preset=${1:-release}
cd "$root"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
