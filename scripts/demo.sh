#!/usr/bin/env bash
# The main job: builds (scripts/setup.sh), starts a dispatcher with two active worker agents and
# one reserve worker agent, runs dispatch-demo against them (a mixed batch of a few thousand
# tasks, progress, summary) and stops everything it started, whatever happens.
#
# The store and the logs of the run go to ./data/demo, emptied first so that every run starts
# clean. Uses the default ports 5555 (work) and 5556 (admin).
#
# Environment, for development: BUILD_DIR (default build) picks the binaries, SKIP_SETUP=1 skips
# scripts/setup.sh. Arguments are passed on to dispatch-demo (e.g. --tasks 5000).
# shellcheck disable=SC2317  # stop_pids and cleanup run from the EXIT trap, not unreachable
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
bin=$build_dir/bin
demo_dir=./data/demo
log_dir=$demo_dir/logs
work_endpoint=tcp://127.0.0.1:5555
admin_endpoint=tcp://127.0.0.1:5556

say() { echo "demo.sh: $*"; }
die() {
  echo "demo.sh: $*" >&2
  exit 1
}

# ---- processes we started, stopped on every exit ----

demo_pid=
dispatcher_pid=
worker_pids=()

# SIGTERM, then up to 5 s for a clean stop, then SIGKILL for what is left.
stop_pids() {
  local pid deadline
  [ $# -gt 0 ] || return 0
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + 5))
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo.sh: pid $pid did not stop after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$demo_pid" ]; then stop_pids "$demo_pid"; fi
  # Workers first, so that their goodbye still reaches the dispatcher.
  if [ ${#worker_pids[@]} -gt 0 ]; then stop_pids "${worker_pids[@]}"; fi
  if [ -n "$dispatcher_pid" ]; then stop_pids "$dispatcher_pid"; fi
  if [ -n "$dispatcher_pid" ]; then say "stopped; logs in $log_dir"; fi
  exit "$status"
}
trap cleanup EXIT
# Exiting from the signal traps runs cleanup through the EXIT trap, with the usual status.
trap 'exit 130' INT
trap 'exit 143' TERM

# Something accepting connections on host:port (bash's /dev/tcp, so no extra tool is needed).
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- build ----

if [ "${SKIP_SETUP:-0}" != 1 ]; then scripts/setup.sh; fi
for b in dispatcherd worker-agent dispatchctl dispatch-demo; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing; did the build (scripts/setup.sh) succeed?"
done

for port in 5555 5556; do
  if port_busy "$port"; then
    die "port $port is in use (another dispatcherd?); the demo needs 5555 and 5556 free"
  fi
done

# ---- dispatcher ----

rm -rf ./data/demo
mkdir -p "$log_dir"

config_args=()
# The config file spells out the defaults; without it the built-in defaults are the same.
if [ -f configs/dispatcher.conf ]; then config_args=(--config configs/dispatcher.conf); fi
# Options after --config win over the file: the demo's own store and endpoints.
"$bin/dispatcherd" "${config_args[@]}" --data-dir "$demo_dir/db" \
  --work-endpoint "$work_endpoint" --admin-endpoint "$admin_endpoint" \
  >"$log_dir/dispatcherd.log" 2>&1 &
dispatcher_pid=$!
say "dispatcherd started (pid $dispatcher_pid, store $demo_dir/db)"

# Made by dispatcherd on its first start: one token per role (see docs/SECURITY.md).
credentials="$demo_dir/db/credentials"
ctl() { "$bin/dispatchctl" --endpoint "$admin_endpoint" --token-file "$credentials" --timeout 500ms "$@"; }

# Bounded: 60 tries of at most ~0.7 s each.
ready=0
for _ in $(seq 60); do
  if ! kill -0 "$dispatcher_pid" 2>/dev/null; then
    tail -n 20 "$log_dir/dispatcherd.log" >&2 || true
    dispatcher_pid=
    die "dispatcherd exited during startup (log above: $log_dir/dispatcherd.log)"
  fi
  if ctl stats >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  die "dispatcherd did not answer on $admin_endpoint in time (see $log_dir/dispatcherd.log)"
fi

# ---- workers ----

start_worker() {
  local id=$1
  shift
  "$bin/worker-agent" --endpoint "$work_endpoint" --token-file "$credentials" --id "$id" "$@" \
    >"$log_dir/$id.log" 2>&1 &
  worker_pids+=($!)
  say "worker-agent $id started (pid $!, $*)"
}
start_worker active-1 --capacity 4
start_worker active-2 --capacity 4
start_worker reserve-1 --pool reserve --capacity 4

# The demo is clearer when every worker is there before the first task: wait (bounded) until all
# three are registered.
registered=0
for _ in $(seq 50); do
  listing=$(ctl workers 2>/dev/null || true)
  registered=0
  for id in active-1 active-2 reserve-1; do
    if grep -qw -- "$id" <<<"$listing"; then registered=$((registered + 1)); fi
  done
  [ "$registered" = 3 ] && break
  sleep 0.2
done
[ "$registered" = 3 ] || die "only $registered of 3 workers registered in time (see $log_dir)"

# ---- the demo ----

# In the background with `wait`: bash runs a signal trap only after the foreground command ends,
# while `wait` returns at once, so a SIGTERM to this script stops everything promptly.
"$bin/dispatch-demo" --work-endpoint "$work_endpoint" --admin-endpoint "$admin_endpoint" \
  --token-file "$credentials" "$@" &
demo_pid=$!
status=0
wait "$demo_pid" || status=$?
demo_pid=
if [ "$status" != 0 ]; then
  say "dispatch-demo failed (exit $status); logs in $log_dir"
fi
exit "$status"
