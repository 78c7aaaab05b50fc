#!/usr/bin/env bash
# On the CPU machine: downloads the Debian packages the GPU machine needs (it reaches
# no package registry) into .deps/debs/, which git ignores and the GPU runs carry.
# tools/gpu-check.sh unpacks them into a private prefix there (never into /).
# Optional: the wheels of the fla Triton Parallax kernels (the training peer, PyPI,
# pure Python; pinned) into .deps/wheels/; without them the lane reports fla as n/a.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.deps/debs"
mkdir -p "$dest"
packages=(
  libeigen3-dev
  libhdf5-dev libhdf5-103-1 libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 libsz2 libaec0 libaec-dev hdf5-helpers
  libgtest-dev googletest librapidcheck-dev libbenchmark-dev libbenchmark1debian
  libmpfr-dev libmpfr6 libmpfrc++-dev libgmp-dev libgmp10 libgmpxx4ldbl
)
wheels_dest="$root/.deps/wheels"
wheels=(fla-core==0.6.0 einops==0.8.1)
fetch_wheels() {
  if [[ -n "$(ls -A "$wheels_dest" 2>/dev/null)" && "${1:-}" != "--refresh" ]]; then return 0; fi
  mkdir -p "$wheels_dest"
  rm -f "$wheels_dest"/*.whl
  if python3 -m pip download --no-deps --only-binary=:all: -d "$wheels_dest" "${wheels[@]}" >/dev/null 2>&1; then
    echo "fetch-gpu-deps: wheels $(ls "$wheels_dest" | tr '\n' ' ')in $wheels_dest"
  else
    echo "fetch-gpu-deps: could not download ${wheels[*]} (pip or network): the lane will report fla as n/a"
  fi
}
fetch_wheels "${1:-}"
if [[ -n "$(ls -A "$dest" 2>/dev/null)" && "${1:-}" != "--refresh" ]]; then
  echo "fetch-gpu-deps: $dest already holds $(ls "$dest" | wc -l) packages (--refresh to fetch again)"
  exit 0
fi
rm -f "$dest"/*.deb
apt-get update -qq
(cd "$dest" && apt-get download "${packages[@]}" >/dev/null 2>&1)
echo "fetch-gpu-deps: $(ls "$dest" | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
