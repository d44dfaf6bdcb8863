#!/usr/bin/env bash
# Builds one of the libFuzzer targets in tests/fuzz with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs it for a bounded time over its committed seed corpus:
#   protocol  the wire decoder (tests/fuzz/protocol_decode_fuzz.cpp, seeds in corpus/)
#   admin     dispatchctl's command line parser and time spellings
#             (tests/fuzz/admin_parser_fuzz.cpp, seeds in admin_corpus/)
# Exit status is non-zero when it finds a crash, a leak, undefined behaviour or a broken
# invariant; the input that did it is left in the build directory as TARGET-crash-* / -leak-*.
#
# Usage: scripts/fuzz.sh [TARGET] [SECONDS]   (TARGET protocol by default, SECONDS 30;
#        a lone number is SECONDS for protocol, as before; FUZZ_BUILD_DIR overrides build/fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

target=protocol
if [ $# -gt 0 ] && ! [[ "$1" =~ ^[0-9]+$ ]]; then
  target="$1"
  shift
fi
seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ $# -gt 1 ]; then
  echo "usage: scripts/fuzz.sh [protocol|admin] [SECONDS]" >&2
  exit 2
fi

out="${FUZZ_BUILD_DIR:-build/fuzz}"
case "$target" in
  protocol)
    name=protocol_decode_fuzz
    sources=(tests/fuzz/protocol_decode_fuzz.cpp protocol/*.cpp)
    headers=(protocol/*.hpp)
    seeds=tests/fuzz/corpus
    scratch="$out/corpus"  # the name it always had, so an existing scratch corpus is kept
    extra=()
    ;;
  admin)
    name=admin_parser_fuzz
    # Only what parse_args needs: the parser, the time spellings and the protocol (for the
    # encode / decode check). CLI11 is header-only; nothing here logs, so no spdlog.
    sources=(tests/fuzz/admin_parser_fuzz.cpp tools/dispatchctl/cli.cpp
             tools/dispatchctl/time_format.cpp protocol/*.cpp)
    headers=(tools/dispatchctl/*.hpp protocol/*.hpp)
    seeds=tests/fuzz/admin_corpus
    scratch="$out/admin_corpus"
    # The dictionary steers mutations to real option names; 8 KiB lets --description reach its
    # 4096-byte bound.
    extra=(-dict=tests/fuzz/admin.dict -max_len=8192)
    ;;
  *)
    echo "scripts/fuzz.sh: unknown target '$target' (expected protocol or admin)" >&2
    exit 2
    ;;
esac
mkdir -p "$scratch"
bin="$out/$name"

# clang builds this one binary: libFuzzer is clang's, while the rest of the project uses g++.
# Rebuilt when a source, a header or this script (the flags) changed.
if [ ! -x "$bin" ] || [ -n "$(find "${sources[@]}" "${headers[@]}" scripts/fuzz.sh -newer "$bin" | head -1)" ]
then
  echo "fuzz.sh: building $bin"
  # Into a temporary name first: an interrupted build must not leave a binary that looks current.
  clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DMSGPACK_NO_BOOST -I. -Itools "${sources[@]}" -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

# New interesting inputs go to a scratch corpus; the committed seeds are only read. The full
# output is kept in a log: on success its summary is enough, on failure the stack matters.
log="$out/$name.log"
status=0
"$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/$target-" "${extra[@]}" "$scratch" "$seeds" >"$log" 2>&1 || status=$?
if [ "$status" -eq 0 ]; then
  grep -E '^(INFO: seed corpus|Done |stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$log"
else
  tail -n 80 "$log"
  echo "fuzz.sh: $name failed (exit $status); full output in $log" >&2
fi
exit "$status"
