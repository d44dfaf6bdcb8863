#!/usr/bin/env bash
# Builds (installing what is missing) and runs every test: unit tests and integration tests that
# start real dispatcherd and worker-agent processes on free loopback ports, the fuzz runs, and
# then the same unit and integration tests again built with ASan+UBSan (scripts/test-sanitized.sh),
# which catch memory errors and undefined behaviour that pass unnoticed in the normal build.
#
# DISPATCH_SKIP_SANITIZERS=1 skips the sanitizer stage for a quick local run (it builds a second
# tree, build-asan/, and takes several times longer). CI (.ci/run) never skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A subshell, so that the next stage starts from the checkout again.
(cd build && ctest -j2 --output-on-failure --timeout 300)

if [ "${DISPATCH_SKIP_SANITIZERS:-0}" = 1 ]; then
  echo "test.sh: sanitizer stage skipped (DISPATCH_SKIP_SANITIZERS=1); CI runs it"
  exit 0
fi
scripts/test-sanitized.sh
