#!/usr/bin/env bash
# The benchmark suite (bench/README.md): builds the bench targets into ./build, runs every
# section, prints their tables and writes bench/results/<section>.json.
#
#   scripts/bench.sh            full run (N = 200,000, 3 repetitions; 6-7 minutes here + build)
#   scripts/bench.sh --quick    smoke run (N = 20,000, 1 repetition; a few minutes)
#   scripts/bench.sh --only lifecycle,floor   some sections only (policy lifecycle latency floor scale)
#
# Runs scripts/setup.sh first if a package is missing (beanstalkd too, for the comparison in the
# lifecycle section). The floor section compares with lifecycle.json, so run lifecycle before it.
# BENCH_BUILD_DIR=dir builds and runs from another build directory (default ./build);
# BENCH_RESULTS=dir writes the JSON files there instead of bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
sections=(policy lifecycle latency floor scale)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --only)
      [ $# -ge 2 ] || { echo "bench.sh: --only needs a list of sections" >&2; exit 2; }
      IFS=, read -r -a sections <<<"$2"
      shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in "${sections[@]}"; do
  case "$s" in policy|lifecycle|latency|floor|scale) ;;
    *) echo "bench.sh: unknown section '$s'" >&2; exit 2 ;;
  esac
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# The build needs the project's packages, and the lifecycle section beanstalkd; setup.sh installs
# them (and builds everything) once.
if ! installed librocksdb-dev || ! installed libcaf-dev || ! installed cppzmq-dev ||
   ! installed beanstalkd; then
  scripts/setup.sh
fi

targets=(dispatcherd)
for s in "${sections[@]}"; do targets+=("${s}_bench"); done
build=${BENCH_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}"

# With 2 CPUs or more the daemon's store threads get the last one (dispatcherd --storage-cpus),
# as on the 2-core machine the published figures come from; the request path may use them all.
# BENCH_STORAGE_CPUS names other CPUs; set it empty to leave the daemon unpinned.
default_storage=""
if [ "$(nproc)" -ge 2 ]; then  # the last CPU this process may use (a cpuset may skip some)
  default_storage=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status |
    tr ',-' '\n\n' | tail -1)
fi
storage_cpus=${BENCH_STORAGE_CPUS-$default_storage}

results=${BENCH_RESULTS:-bench/results}
mkdir -p "$results"
start=$(date +%s)
for s in "${sections[@]}"; do
  echo
  echo "=== $s ==="
  daemon=()
  if [ -n "$storage_cpus" ] && [[ $s =~ ^(lifecycle|latency|scale)$ ]]; then
    daemon=(--storage-cpus "$storage_cpus")
  fi
  "$build/bin/${s}_bench" "${quick[@]}" "${daemon[@]}" --out "$results"
done
echo
echo "bench: done in $(( $(date +%s) - start )) s; results in $results/:"
for s in "${sections[@]}"; do echo "  $results/$s.json"; done
