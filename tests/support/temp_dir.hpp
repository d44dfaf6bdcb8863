// A fresh directory under the system temp dir, removed with everything in it at scope exit. Shared
// by every test that needs a scratch data directory.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace dispatch::testing {

class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix = "dispatch-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("cannot create a temporary directory from " + pattern);
    path_ = std::move(pattern);
  }
  ~temp_dir() {
    std::error_code ec;  // best effort: a leftover directory must not fail the test
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace dispatch::testing
