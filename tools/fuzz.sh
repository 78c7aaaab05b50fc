#!/usr/bin/env bash
# Fuzzes the fixture reader for a bounded time: builds the libFuzzer target with
# clang, AddressSanitizer and UBSan in build/fuzz, seeds a corpus with the small
# golden fixtures and runs with a fixed seed. Any crash, sanitizer report or
# exception other than FixtureError fails (libFuzzer exits non-zero and writes the
# input to build/fuzz/crash-*). Exit 77 (skipped, with the reason) without clang.
#   usage: tools/fuzz.sh [seconds]   (default 30)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "SKIPPED: clang++ with libFuzzer (clang, libclang-rt-14-dev) is not installed"
  exit 77
fi
build="$root/build/fuzz"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLLA_GPU=OFF -DLLA_BUILD_FUZZERS=ON \
  -DLLA_BUILD_TESTS=OFF -DLLA_BUILD_BENCHMARKS=OFF -DLLA_BUILD_TOOLS=OFF >/dev/null
if ! cmake --build "$build" --target fuzz_fixture_reader >"$build/build.log" 2>&1; then
  tail -30 "$build/build.log"
  echo "fuzz: building the fuzz target failed"
  exit 1
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# Seeds: the golden fixtures under 128 KiB (mutating megabyte inputs is slow).
find "$root/fixtures/golden" -name '*.h5' -size -128k -exec cp {} "$corpus" \;
cd "$build"
rm -rf artifacts && mkdir artifacts
log="$build/fuzz.log"
# Fork mode keeps fuzzing past crashes, so crashes inside libhdf5 (a known class of
# HDF5 1.10 defects on corrupt files, which lla contains by parsing untrusted files
# in a child process) do not hide defects of our own. Each crash is triaged below.
status=0
LSAN_OPTIONS="suppressions=$root/tools/lsan-hdf5.supp:print_suppressions=0" \
  ./fixtures/fuzz_fixture_reader -seed=1 -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
  -fork=1 -ignore_crashes=1 -ignore_ooms=0 -ignore_timeouts=0 -artifact_prefix=artifacts/ \
  "$corpus" >"$log" 2>&1 || status=$?
grep -E "^(INFO: seed corpus|#[0-9]+: cov|INFO: fuzzed|INFO: exiting|INFO: log)" "$log" | tail -4 || true

ours=0
hdf5=0
for a in artifacts/*; do
  [[ -e "$a" ]] || continue
  report=$(LSAN_OPTIONS="suppressions=$root/tools/lsan-hdf5.supp" ./fixtures/fuzz_fixture_reader "$a" 2>&1 || true)
  # The first stack frame outside the sanitizer runtime, libc and libstdc++ says
  # whose code failed.
  frame=$(printf '%s\n' "$report" | grep -E '^ +#[0-9]+ ' \
    | grep -vE '__asan|__sanitizer|__ubsan|__lsan| in (malloc|free|calloc|realloc|operator delete|operator new)\b|libc\.so|libstdc\+\+|libgcc' \
    | head -1)
  if [[ -z "$report" || "$report" != *ERROR* && "$report" != *"fuzz:"* && "$report" != *"deadly signal"* ]]; then
    continue  # does not reproduce
  fi
  if [[ "$frame" == *libhdf5* ]]; then
    hdf5=$((hdf5 + 1))
    echo "fuzz: $a crashes inside libhdf5 (HDF5 defect, contained by the sandboxed parse): ${frame##* in }"
  else
    ours=$((ours + 1))
    echo "fuzz: $a fails in lla-oracle code: $frame"
    printf '%s\n' "$report" | grep -E 'ERROR|SUMMARY|fuzz:|^ +#[0-9]+ ' | head -20
  fi
done
if [[ $ours -ne 0 ]]; then
  echo "fuzz: $ours input(s) break the fixture reader; reproducers in $build/artifacts/"
  exit 1
fi
if [[ $status -ne 0 && $hdf5 -eq 0 ]]; then
  tail -30 "$log"
  echo "fuzz: libFuzzer exited with $status"
  exit 1
fi
echo "fuzz: ${seconds}s on the fixture reader: no failure in lla-oracle code ($hdf5 crash(es) inside libhdf5 itself)"
