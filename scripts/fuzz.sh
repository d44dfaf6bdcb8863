#!/usr/bin/env bash
# Builds the protocol decoder fuzzer (tests/fuzz) with clang's libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs it for a bounded time over the committed seed corpus.
# Exit status is non-zero when it finds a crash, a leak, undefined behaviour or an unstable
# encoding; the input that did it is left in the build directory as crash-* / leak-*.
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 30; FUZZ_BUILD_DIR overrides build/fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
out="${FUZZ_BUILD_DIR:-build/fuzz}"
mkdir -p "$out/corpus"
bin="$out/protocol_decode_fuzz"
sources=(tests/fuzz/protocol_decode_fuzz.cpp protocol/*.cpp)

# clang builds this one binary: libFuzzer is clang's, while the rest of the project uses g++.
if [ ! -x "$bin" ] || [ -n "$(find "${sources[@]}" protocol/*.hpp -newer "$bin" | head -1)" ]; then
  clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DMSGPACK_NO_BOOST -I. "${sources[@]}" -o "$bin"
fi

# New interesting inputs go to a scratch corpus; the committed seeds are only read.
"$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" tests/fuzz/corpus 2>&1 | tail -15
exit "${PIPESTATUS[0]}"
