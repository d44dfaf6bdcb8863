#!/usr/bin/env bash
# The unit and integration tests built with AddressSanitizer and UndefinedBehaviorSanitizer
# (build-asan/); the second stage of scripts/test.sh, so CI runs it. Any report fails the run:
# UBSan is made fatal, ASan stops at the first error, LeakSanitizer checks every process at exit.
#
# Environment: DISPATCH_TEST_TIME_SCALE (default 2) stretches the waits, reply timeouts and
# heartbeats of the timing-heavy integration tests (tests/support/time_scale.hpp), since the
# instrumented binaries run 2-3x slower and share two cores with a second test. ASAN_OPTIONS /
# UBSAN_OPTIONS are appended to ours, so a local run can add options (later ones win).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null  # installs what is missing (and builds the normal tree)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1" \
  -DDISPATCH_WARNING_OVERRIDES=-Wno-maybe-uninitialized -DDISPATCH_TCMALLOC=OFF >/dev/null
# (GCC 12 reports a false -Wmaybe-uninitialized inside libstdc++'s <regex> at -O1 with ASan.)
cmake --build build-asan -j2

# One known report is not ours: CAF 0.17's intrusive queues (caf/intrusive/task_queue.hpp,
# promote()) static_cast the queue's own sentinel node to the element type. UBSan's vptr check
# flags that wherever our code instantiates those headers, e.g. self->mailbox().size() in the
# dispatcher actor's tick, and being fatal it killed dispatcherd at random under load (tests then
# failed with "no reply"). Only that check, only for CAF's intrusive types, is suppressed.
# (UBSan matches the mangled type name, "N3caf9intrusive10task_queue...", hence the globs.)
suppressions="$PWD/build-asan/ubsan.supp"
printf '%s\n' 'vptr_check:caf*intrusive*' >"$suppressions"

# ASan reports (LeakSanitizer's too) of every process, tests and the dispatcherd, worker-agent and
# dispatchctl processes they start, go to files here (asan.<pid>): those children log into
# scratch directories that the tests delete, so a leak at exit would otherwise go unseen. Empty
# after a clean run. (GCC's UBSan ignores log_path when ASan is linked too; its reports go to the
# process's stderr, and being fatal they also end the process, which fails the test.)
reports="$PWD/build-asan/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export DISPATCH_TEST_TIME_SCALE="${DISPATCH_TEST_TIME_SCALE:-2}"
export ASAN_OPTIONS="abort_on_error=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:suppressions=$suppressions${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

status=0
# The fuzz tests build their own sanitized binaries with clang; they already ran in the normal
# suite. A subshell, so that the report check below runs from the checkout.
(cd build-asan && ctest -j2 --output-on-failure --timeout 600 -LE fuzz) || status=$?

if [ -n "$(ls -A "$reports")" ]; then
  echo "test-sanitized.sh: ASan reports (one file per process):" >&2
  for f in "$reports"/*; do
    echo "==== $f" >&2
    cat "$f" >&2
  done
  status=1
fi
exit "$status"
