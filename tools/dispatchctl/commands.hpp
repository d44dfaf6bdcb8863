// Running a parsed command: send its request, print the reply, choose the exit code.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "protocol/messages.hpp"

namespace dispatch::ctl {

// Sends inv.request through `client` and reports on `out` / `err`. Returns the exit code.
int execute(const invocation& inv, admin_client& client, std::ostream& out, std::ostream& err);

// The printing half of execute, apart so it can be tested without a socket: shows `reply`
// as the answer to `request` (table or JSON). A dispatcher error, or a reply of the wrong
// kind, goes to `err` with exit_failure.
int print_reply(const protocol::request_body& request, bool json,
                const protocol::reply_body& reply, std::ostream& out, std::ostream& err);

// ---- tasks --all and report: many pages, printed as they arrive ----

// Sends inv.request (a `tasks` query) and every following page through `client`, printing the
// tasks page by page (--json: one array, the same text a single page of them all would give).
int print_all_pages(const invocation& inv, admin_client& client, std::ostream& out,
                    std::ostream& err);

// Runs "report": pages through inv.request (finished range, oldest first) and writes each task
// through a report_writer in inv.report's format.
int run_report(const invocation& inv, admin_client& client, std::ostream& out, std::ostream& err);

// The report's output, written as it goes: begin() the header (csv) or the opening (json),
// add() one finished task's row, finish() the totals, which add() keeps per project and per
// worker (memory: one entry per project and worker, whatever the number of tasks). The formats
// are described in 'dispatchctl report --help'.
class report_writer {
 public:
  report_writer(report_format format, std::ostream& out) : format_(format), out_(out) {}
  void begin();
  void add(const task& t);
  void finish();

  struct totals {
    std::uint64_t tasks = 0;
    std::array<std::uint64_t, task_status_count> by_status{};  // index = task_status
    std::int64_t run_ms_total = 0;
    std::uint64_t runs = 0;  // tasks with a run_ms
  };

 private:
  report_format format_;
  std::ostream& out_;
  std::uint64_t rows_ = 0;
  totals all_;
  std::map<std::string, totals> projects_;
  std::map<std::string, totals> workers_;  // "" for tasks no worker held
};

}  // namespace dispatch::ctl
