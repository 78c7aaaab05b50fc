#!/usr/bin/env bash
# Regenerates the committed golden suite (fixtures/golden/) from the current oracle.
# The files record the current git commit; commit the result together with the
# change that caused it. The test GoldenFixtures.RegeneratingGivesIdenticalBytes
# regenerates with the commit recorded in the committed files and compares bytes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tools/deps.sh"
"$root/tools/build.sh" release >/dev/null
exec "$root/build/release/tools/lla/lla" fixtures generate --suite golden --out "$root/fixtures/golden" --force "$@"
