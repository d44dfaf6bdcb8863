// The --json output of every command. Key names and nesting are a public interface that
// scripts rely on; change them only together with the documentation in the --help text.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/messages.hpp"

namespace dispatch::ctl {

// ordered_json keeps keys in the documented order, which makes the output easier to read.
using json = nlohmann::ordered_json;

// {"id","project","type","priority","status","worker","attempts","max_attempts","timeout_ms",
//  "tags","idempotency_key","created_at","assigned_at","finished_at","run_at","deadline",
//  "overdue","lease_expires_at","error","title","description","payload","result"}.
// "worker" is null when no worker ever held the task, "idempotency_key" when the task has
// none; the *_at times, "run_at" and "deadline" are RFC 3339 or null; "overdue" is a bool.
// "payload" / "result" hold the bytes as a string when they are valid UTF-8; otherwise they
// are null and "payload_base64" / "result_base64" carry the bytes in base64.
json task_json(const task& t);
json tasks_json(const std::vector<task>& tasks);

// {"id","pool","state","capacity","running","completed","failed","types","tags"}
json worker_json(const protocol::worker_info& w);
json workers_json(const std::vector<protocol::worker_info>& workers);

// {"name","paused","max_inflight","weight"} plus one count per task status (every status, 0
// when the dispatcher reported none).
json project_json(const protocol::project_info& p);
json projects_json(const std::vector<protocol::project_info>& projects);

// {"tasks": {status: count for every status}, "workers": [...], "projects": [...],
//  "reserve": {"engagements","releases"}}
json stats_json(const protocol::stats& s);

// Serialised for output. Names from the dispatcher are not guaranteed to be UTF-8; invalid
// sequences become U+FFFD instead of aborting the whole output.
std::string dump_json(const json& j);

}  // namespace dispatch::ctl
