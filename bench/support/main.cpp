#include "bench/support/main.hpp"

#include <cstdio>
#include <exception>

namespace dispatch::bench {

int guarded_main(const char* name, int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace dispatch::bench
