#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/).
# Any report fails the run: UBSan is made fatal, ASan stops at the first error. Not yet part of
# .ci/run: under the sanitizers the timing-heavy integration tests need more slack (see the notes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null  # installs what is missing (and builds the normal tree)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1" \
  -DDISPATCH_WARNING_OVERRIDES=-Wno-maybe-uninitialized >/dev/null
# (GCC 12 reports a false -Wmaybe-uninitialized inside libstdc++'s <regex> at -O1 with ASan.)
cmake --build build-asan -j2
cd build-asan
# The fuzz test builds its own sanitized binary with clang; it already ran in the normal suite.
ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
  ctest -j2 --output-on-failure --timeout 600 -LE fuzz
