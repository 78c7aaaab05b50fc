#!/usr/bin/env bash
# Installs what lla-oracle needs to build and test on Debian 12 (run as root).
# Idempotent and quick when everything is present: it checks with dpkg before it
# touches apt, so repeated calls from test.sh / demo.sh cost well under a second.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev          # the oracle's linear algebra
  libhdf5-dev            # golden fixtures
  libgtest-dev googletest
  librapidcheck-dev      # property-based tests
  libbenchmark-dev       # Google Benchmark
  libmpfr-dev libmpfrc++-dev   # multiprecision error bars for the oracle
  python3-numpy python3-h5py   # the Python access test of the fixtures (docs/fixtures.md)
  clang libclang-rt-14-dev     # the libFuzzer target of the fixture reader
  gnuplot-nox                  # the plots of `lla compare` (docs/compare.md)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done"
