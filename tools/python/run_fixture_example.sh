#!/usr/bin/env bash
# Test: the Python access path of docs/fixtures.md, end to end. Reads golden cases
# with h5py, computes them with a small numpy Parallax, writes float32 candidates,
# and runs `lla verify` on them. Exits 77 (skipped, with the reason) when python3
# lacks numpy or h5py.
set -euo pipefail
lla=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c "import numpy, h5py" 2>/dev/null; then python=$p; break; fi
done
if [[ -z "$python" ]]; then
  echo "SKIPPED: no python3 with numpy and h5py (tools/deps.sh installs python3-numpy python3-h5py)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cases="parallax_causal_b2_l37_h4_d60 parallax_gqa4to2_lq16_lk48_d32_bf16 parallax_window7_l33_d16 parallax_empty_rows_lq24_lk8_d8 softmax_causal_l29_d24"
"$python" "$root/tools/python/parallax_candidate.py" "$root/fixtures/golden" "$out" $cases
"$lla" verify --fixtures "$root/fixtures/golden" --candidate "$out" --tensors o \
  --filter '^(parallax_causal_b2|parallax_gqa4to2|parallax_window7|parallax_empty_rows|softmax_causal)'
