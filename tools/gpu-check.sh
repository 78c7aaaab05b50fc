#!/usr/bin/env bash
# The GPU lane, one command on a GPU machine (H200, sm_90):
#   1. unpacks the carried Debian packages (tools/fetch-gpu-deps.sh) into /opt/deps
#   2. configures for sm_90 and builds the GPU tests and benchmarks
#   3. runs the GPU tests with LLA_REQUIRE_GPU=1 (a skip is a failure)
#   4. runs them under compute-sanitizer (memcheck, racecheck, initcheck, synccheck)
#      with a reduced case count
#   5. runs the decode and training benchmarks and PyTorch SDPA (flash, cuDNN) on the
#      same shapes
#   6. prints a summary table last (with the kernels' bf16 max-norm errors); JSON and
#      logs go to $OUT (or build/gpu-check): status.json summary.txt tests.log
#      sanitizers.log decode.json sdpa.json train.json sdpa_train.json (8 files)
# usage: tools/gpu-check.sh [--quick] [--no-sanitizers] [--no-bench] [--build-only]
#   --build-only stops after step 2 (for profiling: build/gpu/benchmarks/bench_parallax_decode
#   --only SHAPE [--splits N] under ncu)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
quick=0; sanitize=1; bench=1; build_only=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --no-sanitizers) sanitize=0 ;;
    --no-bench) bench=0 ;;
    --build-only) build_only=1 ;;
    *) echo "usage: tools/gpu-check.sh [--quick] [--no-sanitizers] [--no-bench] [--build-only]"; exit 2 ;;
  esac
done
out=${OUT:-$root/build/gpu-check}
mkdir -p "$out"
status="$out/status.json"
declare -A st
save() { python3 - "$status" <<PY
import json, sys
json.dump({$(for k in "${!st[@]}"; do printf '"%s": "%s", ' "$k" "${st[$k]}"; done)}, open(sys.argv[1], "w"), indent=1)
PY
}

# 1. dependencies
if [[ ! -d .deps/debs ]]; then echo "gpu-check: .deps/debs missing: run tools/fetch-gpu-deps.sh on the CPU machine and carry .deps"; exit 2; fi
mkdir -p /opt/deps
for f in .deps/debs/*.deb; do dpkg -x "$f" /opt/deps; done
export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu:/opt/deps/usr/lib/x86_64-linux-gnu/hdf5/serial:${LD_LIBRARY_PATH:-}
# The training peer's optional wheels (fla Triton Parallax; pure Python): unpacked into a
# private folder that only the peer script's PYTHONPATH names.
peer_pythonpath=""
if compgen -G ".deps/wheels/*.whl" >/dev/null; then
  mkdir -p /opt/pydeps
  for w in .deps/wheels/*.whl; do python3 -m zipfile -e "$w" /opt/pydeps; done
  peer_pythonpath=/opt/pydeps
fi
st[device]=$(nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader 2>/dev/null | head -1)

# 2. build
if cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLA_GPU=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     -DCMAKE_PREFIX_PATH=/opt/deps/usr -DHDF5_ROOT=/opt/deps/usr \
     -DHDF5_C_LIBRARY_hdf5=/opt/deps/usr/lib/x86_64-linux-gnu/hdf5/serial/libhdf5.so >"$out/configure.log" 2>&1 &&
   cmake --build build/gpu -j "$(nproc)" --target test_gpu_device test_gpu_parallax_decode test_gpu_parallax_train test_gpu_wgmma \
     bench_parallax_decode bench_parallax_train \
     >"$out/build.log" 2>&1; then
  st[build]="ok"
else
  st[build]="FAILED (see build.log)"; save; tail -40 "$out/configure.log" "$out/build.log"; exit 1
fi
if [[ $build_only == 1 ]]; then echo "gpu-check: built (build/gpu); LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; exit 0; fi
st[sass]=$(cuobjdump --list-elf build/gpu/tests/test_gpu_parallax_decode 2>/dev/null | grep -Eo 'sm_[0-9a]+' | sort -u | tr '\n' ' ')
# The wgmma building blocks must assemble to HGMMA (not a fallback): count them in the SASS.
st[hgmma]="$(cuobjdump -sass build/gpu/tests/test_gpu_wgmma 2>/dev/null | grep -c HGMMA) HGMMA instructions in test_gpu_wgmma (sm_90a)"

# 3. tests, skips are failures; four processes at a time on the one GPU (independent binaries,
#    bitwise checks do not depend on what else runs; the largest case takes about 9 GB)
rc_cases=$([[ $quick == 1 ]] && echo 20 || echo 100)
rm -f "$out/accuracy.tmp"
if LLA_REQUIRE_GPU=1 LLA_ACCURACY_LOG="$out/accuracy.tmp" RC_PARAMS="max_success=$rc_cases" \
     ctest --test-dir build/gpu -L gpu -j 4 --output-on-failure >"$out/tests.log" 2>&1; then
  st[tests]="passed: $(grep -Eo '[0-9]+% tests passed.*' "$out/tests.log" | head -1)"
else
  st[tests]="FAILED: $(grep -Eo '[0-9]+% tests passed.*' "$out/tests.log" | head -1)"
fi
grep -E "tests passed|Failed|Skipped|device:" "$out/tests.log" | head -20
# The accuracy lines (max-norm error vs the fp64 oracle; ctest hides a passing test's output),
# which the tests appended to LLA_ACCURACY_LOG: grouped by kernel (the tests ran side by side).
{ echo "=== accuracy (max-norm relative error vs the fp64 oracle)"
  LC_ALL=C sort -s -k1,3 "$out/accuracy.tmp" 2>/dev/null; } >>"$out/tests.log"
rm -f "$out/accuracy.tmp"

# 4. compute-sanitizer, small case counts; the 2^31 test is excluded (its 8 GB under memcheck is too slow).
# The four tools run at the same time (one process each, the test binaries in turn): they
# share the GPU, and the lane's wall time is the slowest tool's rather than the sum.
sanitize_with() {  # tool -> $out/sanitizer.$tool.{log,verdict}
  local tool=$1 ok=1 tests_ok=1 t summary tmp="$out/sanitizer.$1.tmp"
  : >"$out/sanitizer.$tool.log"
  for t in test_gpu_device test_gpu_parallax_decode test_gpu_parallax_train test_gpu_wgmma; do
    RC_PARAMS="max_success=4" LLA_REQUIRE_GPU=1 timeout 600 compute-sanitizer --tool "$tool" --error-exitcode=1 \
      "build/gpu/tests/$t" --gtest_filter=-*SixtyFourBit* >"$tmp" 2>&1 || tests_ok=0
    # The exit code mixes the tool's findings with the tests' own failures: the tool's
    # verdict is its summary line (missing: it did not finish, which counts as errors).
    summary=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$tmp")
    if [[ -z "$summary" ]] ||
       grep -qvE "ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards displayed \(0 errors, 0 warnings\)" <<<"$summary"; then
      ok=0
    fi
    { echo "=== $tool $t"; grep -E "=========|PASSED|FAILED" "$tmp" | head -60; } >>"$out/sanitizer.$tool.log"
  done
  rm -f "$tmp"
  if [[ $ok == 0 ]]; then echo "ERRORS (see sanitizers.log)"
  elif [[ $tests_ok == 0 ]]; then echo "clean, but tests failed under it (see sanitizers.log)"
  else echo "clean"; fi >"$out/sanitizer.$tool.verdict"
}
if [[ $sanitize == 1 ]]; then
  tools=(memcheck racecheck initcheck synccheck)
  for tool in "${tools[@]}"; do sanitize_with "$tool" & done
  wait
  : >"$out/sanitizers.log"
  for tool in "${tools[@]}"; do
    cat "$out/sanitizer.$tool.log" >>"$out/sanitizers.log"
    st[$tool]=$(cat "$out/sanitizer.$tool.verdict" 2>/dev/null || echo "ERRORS (no verdict: the run did not finish)")
    rm -f "$out/sanitizer.$tool.log" "$out/sanitizer.$tool.verdict"
    echo "compute-sanitizer $tool: ${st[$tool]}"
  done
fi
save

# 5. benchmarks with the peer in the same run
if [[ $bench == 1 ]]; then
  q=$([[ $quick == 1 ]] && echo --quick || true)
  build/gpu/benchmarks/bench_parallax_decode --json "$out/decode.json" $q
  python3 benchmarks/sdpa_decode.py --json "$out/sdpa.json" $q
  build/gpu/benchmarks/bench_parallax_train --json "$out/train.json" $q
  PYTHONPATH="$peer_pythonpath${PYTHONPATH:+:$PYTHONPATH}" python3 benchmarks/sdpa_train.py --json "$out/sdpa_train.json" $q
fi

# 6. summary last (also saved as summary.txt); logs of a successful configure are dropped
[[ "${st[build]}" == ok ]] && rm -f "$out/configure.log" "$out/build.log"
python3 tools/gpu_summary.py "$out" | tee "$out/summary.txt"
[[ "${st[tests]}" == passed* && "${st[build]}" == ok ]]
