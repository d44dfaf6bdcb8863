// What every benchmark binary does around its work: report an exception as a one-line error and
// exit 1, so that scripts/bench.sh stops on a broken section instead of printing half a table.
#pragma once

namespace dispatch::bench {

// Runs body(argc, argv) and returns its exit code, or 1 after printing "<name>: <what>".
int guarded_main(const char* name, int (*body)(int, char**), int argc, char** argv);

}  // namespace dispatch::bench
