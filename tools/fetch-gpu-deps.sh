#!/usr/bin/env bash
# On the CPU machine: downloads the Debian packages the GPU machine needs (it reaches
# no package registry) into .deps/debs/, which git ignores and the GPU runs carry.
# tools/gpu-check.sh unpacks them into a private prefix there (never into /).
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
if [[ -n "$(ls -A "$dest" 2>/dev/null)" && "${1:-}" != "--refresh" ]]; then
  echo "fetch-gpu-deps: $dest already holds $(ls "$dest" | wc -l) packages (--refresh to fetch again)"
  exit 0
fi
rm -f "$dest"/*.deb
apt-get update -qq
(cd "$dest" && apt-get download "${packages[@]}" >/dev/null 2>&1)
echo "fetch-gpu-deps: $(ls "$dest" | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
