#!/usr/bin/env bash
# Builds (installing what is missing) and runs every test: unit tests and integration tests that
# start real dispatcherd and worker-agent processes on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest -j2 --output-on-failure --timeout 300
