#!/usr/bin/env bash
# Installs what is missing (Debian bookworm packages) and builds everything into ./build.
# Safe to run again: it installs nothing that is there and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make ccache pkg-config
  libcaf-dev cppzmq-dev libzmq3-dev libsodium-dev librocksdb-dev libmsgpack-cxx-dev prometheus-cpp-dev
  catch2 libspdlog-dev nlohmann-json3-dev libcli11-dev libtcmalloc-minimal4 prometheus python3
  clang libclang-rt-14-dev
  beanstalkd  # the benchmark's peer: bench_smoke_test runs the comparison against it
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2
