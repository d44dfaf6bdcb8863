// Data layout, chosen so that one decision costs O(log n) and a queued task a few bytes:
//  * names are interned once on entry; everything below works on small integer ids;
//  * queued tasks live in lanes (project, type, tag set), each a lane_queue of bare ids;
//  * one ordered index holds the head of every dispatchable lane, keyed by urgency, so the next
//    task is index.begin(); after a dispatch only the lanes of that project move;
//  * per task type, ordered sets hold the workers that can take a task right now (open offer,
//    free capacity), least loaded first, one set for active and one for engaged reserve workers.
#include "dispatcher/policy/scheduler.hpp"

#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "dispatcher/policy/interner.hpp"
#include "dispatcher/policy/lane_queue.hpp"
#include "dispatcher/policy/ordering.hpp"

namespace dispatch::policy {
namespace {

using detail::lane_key;
using detail::load_key;

// Interned names, sorted and unique, so that set inclusion is one linear merge.
using id_list = std::vector<std::uint32_t>;

bool carries(const id_list& have, const id_list& need) {
  return std::includes(have.begin(), have.end(), need.begin(), need.end());
}

void sort_unique(id_list& ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
}

struct id_list_hash {
  std::size_t operator()(const id_list& ids) const {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (std::uint32_t id : ids) h = (h ^ id) * 0x100000001b3ULL;
    return static_cast<std::size_t>(h);
  }
};

// Which candidate set a worker is in: only workers with an open offer and free capacity are, so
// that picking one never skips over busy or silent workers.
enum class listing : std::uint8_t { none, active, engaged };

}  // namespace

struct scheduler::impl {
  using lane_index = std::set<lane_key>;
  using load_set = std::set<load_key>;
  using standby_set = std::set<std::pair<std::uint64_t, std::uint32_t>>;  // (order, worker)
  using idle_set = std::set<std::tuple<clock_ms, std::uint64_t, std::uint32_t>>;

  struct project_rec {
    project_settings settings;
    std::uint64_t pass = 0;
    std::uint32_t inflight = 0;
    std::size_t queued = 0;
    bool dispatchable = true;          // not paused and below max_inflight
    std::vector<std::uint32_t> lanes;  // the non-empty ones, to re-key after a dispatch
  };

  // What a worker must offer to take a lane's tasks: the type and every tag.
  struct task_class {
    std::uint32_t type = 0;
    id_list tags;
  };

  struct lane_rec {
    std::uint32_t project = 0;
    std::uint32_t cls = 0;
    detail::lane_queue tasks;
    lane_index::iterator slot{};  // valid while indexed
    bool indexed = false;
    std::uint32_t position = 0;  // in project_rec::lanes while non-empty
  };

  struct worker_rec {
    std::string id;
    id_list types;
    id_list tags;
    std::uint32_t capacity = 1;
    std::uint32_t running = 0;
    std::uint32_t offered = 0;
    worker_pool pool = worker_pool::active;
    worker_state state = worker_state::active;
    std::uint64_t registered = 0;
    std::uint64_t last_assigned = 0;
    listing listed = listing::none;
    std::vector<load_set::iterator> entries;  // one per type while listed
    standby_set::iterator standby_slot{};     // valid in standby
    idle_set::iterator idle_slot{};           // valid while engaged with nothing running
    bool idle = false;
  };

  struct type_sets {
    load_set active;
    load_set engaged;
    load_set& operator[](listing l) { return l == listing::active ? active : engaged; }
  };

  struct running_rec {
    std::uint32_t worker = 0;
    std::uint32_t project = 0;
  };

  explicit impl(scheduler_config c) : cfg(c) {}

  scheduler_config cfg;

  // ---- names ----
  detail::interner project_names;
  detail::interner type_names;
  detail::interner tag_names;

  // ---- tasks ----
  std::vector<project_rec> projects;
  std::vector<task_class> classes;
  std::unordered_map<id_list, std::uint32_t, id_list_hash> class_ids;  // {type, tags...}
  std::vector<lane_rec> lanes;
  std::unordered_map<std::uint64_t, std::uint32_t> lane_ids;  // project << 32 | class
  lane_index index;  // exactly the non-empty lanes of dispatchable projects (outside dispatch())
  // Virtual time: the pass the last dispatched project had before its stride was added, i.e.
  // where the competition currently is; a project coming back starts no lower.
  std::uint64_t global_pass = 0;
  std::size_t total_queued = 0;
  std::unordered_map<task_id, running_rec> running;

  // ---- workers ----
  std::vector<std::unique_ptr<worker_rec>> workers;  // by slot; null when free
  std::vector<std::uint32_t> free_slots;
  std::unordered_map<std::string_view, std::uint32_t> worker_ids;  // views into worker_rec::id
  std::vector<type_sets> candidates;             // by type
  std::vector<std::vector<std::uint32_t>> serving;  // by type: every worker of it, for tick()
  std::size_t listed_workers = 0;
  standby_set standby;
  idle_set idle_engaged;
  std::uint64_t sequence = 0;         // registration and standby order
  std::uint64_t assign_sequence = 0;  // recency of assignments
  clock_ms last_now = 0;              // for the rare event that comes without a time

  // ---- reserve ----
  std::uint64_t engagements = 0;
  std::uint64_t releases = 0;
  std::optional<clock_ms> last_engagement;
  std::optional<clock_ms> last_release;

  // ---- scratch, kept to avoid allocating on every call ----
  id_list scratch_ids;
  id_list class_key;
  std::vector<std::uint32_t> parked;
  std::vector<std::uint32_t> needy;
  std::vector<std::uint64_t> class_seen;
  std::uint64_t seen_epoch = 0;

  // ======== names ========

  std::uint32_t project_of(std::string_view name) {
    const std::uint32_t id = project_names.intern(name);
    if (id >= projects.size()) projects.resize(id + 1);
    return id;
  }

  std::uint32_t type_of(std::string_view name) {
    const std::uint32_t id = type_names.intern(name);
    if (id >= candidates.size()) {
      candidates.resize(id + 1);
      serving.resize(id + 1);
    }
    return id;
  }

  // Fills scratch_ids with the sorted tag ids; without `create`, false if a tag is unknown.
  bool tag_ids(const std::vector<std::string>& tags, bool create) {
    scratch_ids.clear();
    for (const std::string& tag : tags) {
      if (create) {
        scratch_ids.push_back(tag_names.intern(tag));
      } else if (auto id = tag_names.find(tag)) {
        scratch_ids.push_back(*id);
      } else {
        return false;
      }
    }
    sort_unique(scratch_ids);
    return true;
  }

  std::optional<std::uint32_t> find_class(std::uint32_t type, const id_list& tags) {
    class_key.assign(1, type);
    class_key.insert(class_key.end(), tags.begin(), tags.end());
    if (auto it = class_ids.find(class_key); it != class_ids.end()) return it->second;
    return std::nullopt;
  }

  std::uint32_t class_of(std::uint32_t type, const id_list& tags) {
    if (auto id = find_class(type, tags)) return *id;
    const auto id = static_cast<std::uint32_t>(classes.size());
    classes.push_back(task_class{type, tags});
    class_ids.emplace(class_key, id);
    return id;
  }

  static std::uint64_t lane_code(std::uint32_t project, std::uint32_t cls) {
    return std::uint64_t{project} << 32 | cls;
  }

  std::uint32_t lane_of(std::uint32_t project, std::uint32_t cls) {
    const auto [it, added] =
        lane_ids.try_emplace(lane_code(project, cls), static_cast<std::uint32_t>(lanes.size()));
    if (added) {
      lane_rec& lane = lanes.emplace_back();
      lane.project = project;
      lane.cls = cls;
    }
    return it->second;
  }

  // The lane a cancelled task would be in, without registering anything.
  std::optional<std::uint32_t> find_lane(const queued_task& t) {
    const auto project = project_names.find(t.project);
    const auto type = type_names.find(t.type);
    if (!project || !type || !tag_ids(t.tags, false)) return std::nullopt;
    const auto cls = find_class(*type, scratch_ids);
    if (!cls) return std::nullopt;
    if (auto it = lane_ids.find(lane_code(*project, *cls)); it != lane_ids.end()) return it->second;
    return std::nullopt;
  }

  // ======== lanes and fair share ========

  static bool open(const project_rec& p) {
    return !p.settings.paused &&
           (p.settings.max_inflight == 0 || p.inflight < p.settings.max_inflight);
  }

  lane_key key_of(std::uint32_t l) const {
    const lane_rec& lane = lanes[l];
    const auto head = lane.tasks.head();
    return {head.priority, projects[lane.project].pass, head.id, l};
  }

  void index_lane(std::uint32_t l) {
    lanes[l].slot = index.insert(key_of(l)).first;
    lanes[l].indexed = true;
  }

  void unindex_lane(std::uint32_t l) {
    index.erase(lanes[l].slot);
    lanes[l].slot = {};  // lanes are moved when the vector grows; never copy a dangling iterator
    lanes[l].indexed = false;
  }

  // Reuses the node, so a dispatch allocates nothing for the index.
  void rekey_lane(std::uint32_t l) {
    auto node = index.extract(lanes[l].slot);
    node.value() = key_of(l);
    lanes[l].slot = index.insert(std::move(node)).position;
  }

  bool head_moved(std::uint32_t l) const {
    const auto head = lanes[l].tasks.head();
    return lanes[l].slot->priority != head.priority || lanes[l].slot->head != head.id;
  }

  void lane_filled(std::uint32_t l) {
    project_rec& p = projects[lanes[l].project];
    lanes[l].position = static_cast<std::uint32_t>(p.lanes.size());
    p.lanes.push_back(l);
  }

  void lane_drained(std::uint32_t l) {
    lane_rec& lane = lanes[l];
    project_rec& p = projects[lane.project];
    const std::uint32_t last = p.lanes.back();
    p.lanes[lane.position] = last;
    lanes[last].position = lane.position;
    p.lanes.pop_back();
    if (lane.indexed) unindex_lane(l);
  }

  // A project that comes back (work again, resumed, below its cap) competes from the current
  // pass on: whatever it did not use while away is not banked against the others.
  void catch_up(project_rec& p) const { p.pass = std::max(p.pass, global_pass); }

  // Puts a project's lanes in or out of the index when its pause or cap state changes.
  void refresh(std::uint32_t pid) {
    project_rec& p = projects[pid];
    const bool now_open = open(p);
    if (now_open == p.dispatchable) return;
    p.dispatchable = now_open;
    if (now_open) {
      catch_up(p);
      for (std::uint32_t l : p.lanes) index_lane(l);
    } else {
      for (std::uint32_t l : p.lanes)
        if (lanes[l].indexed) unindex_lane(l);
    }
  }

  // Passes only grow; long before they could overflow, everything shifts down by the current
  // global pass, which keeps every difference that still matters.
  void renormalize() {
    const std::uint64_t base = global_pass;
    for (project_rec& p : projects) p.pass = p.pass > base ? p.pass - base : 0;
    global_pass = 0;
    index.clear();
    for (std::uint32_t l = 0; l < lanes.size(); ++l)
      if (lanes[l].indexed) index_lane(l);
  }

  // ======== workers ========

  worker_rec& worker_at(std::uint32_t wi) { return *workers[wi]; }

  std::optional<std::uint32_t> find_worker(std::string_view id) const {
    if (auto it = worker_ids.find(id); it != worker_ids.end()) return it->second;
    return std::nullopt;
  }

  static listing wanted(const worker_rec& w) {
    if (w.offered == 0 || w.running >= w.capacity || w.types.empty()) return listing::none;
    switch (w.state) {
      case worker_state::active: return listing::active;
      case worker_state::engaged: return listing::engaged;
      case worker_state::standby: return listing::none;
    }
    return listing::none;
  }

  // Brings the worker's entries in the per-type candidate sets in line with its state.
  void relist(std::uint32_t wi) {
    worker_rec& w = worker_at(wi);
    const listing want = wanted(w);
    if (want == w.listed) {
      if (want == listing::none || w.types.empty()) return;
      const load_key& current = *w.entries.front();
      if (current.running == w.running && current.last_assigned == w.last_assigned) return;
    }
    const load_key key{w.running, w.capacity, w.last_assigned, w.registered, wi};
    for (std::size_t i = 0; i < w.types.size(); ++i) {
      type_sets& sets = candidates[w.types[i]];
      if (w.listed == listing::none) {
        w.entries[i] = sets[want].insert(key).first;
        continue;
      }
      auto node = sets[w.listed].extract(w.entries[i]);
      if (want != listing::none) {
        node.value() = key;
        w.entries[i] = sets[want].insert(std::move(node)).position;
      }
    }
    if (w.listed == listing::none)
      ++listed_workers;
    else if (want == listing::none)
      --listed_workers;
    w.listed = want;
  }

  // Least loaded eligible worker: active ones first, engaged reserve ones only if none fits.
  std::optional<std::uint32_t> pick(const task_class& c) {
    type_sets& sets = candidates[c.type];
    for (const load_set* set : {&sets.active, &sets.engaged}) {
      if (c.tags.empty()) {
        if (!set->empty()) return set->begin()->worker;
        continue;
      }
      for (const load_key& k : *set)
        if (carries(worker_at(k.worker).tags, c.tags)) return k.worker;
    }
    return std::nullopt;
  }

  void enter_standby(std::uint32_t wi) {
    worker_rec& w = worker_at(wi);
    w.state = worker_state::standby;
    w.standby_slot = standby.emplace(++sequence, wi).first;
  }

  void leave_idle(worker_rec& w) {
    if (!w.idle) return;
    idle_engaged.erase(w.idle_slot);
    w.idle = false;
  }

  void enter_idle(std::uint32_t wi, clock_ms since) {
    worker_rec& w = worker_at(wi);
    w.idle_slot = idle_engaged.emplace(since, w.registered, wi).first;
    w.idle = true;
  }

  void running_up(std::uint32_t wi) {
    worker_rec& w = worker_at(wi);
    ++w.running;
    if (w.state == worker_state::engaged) leave_idle(w);
  }

  void running_down(std::uint32_t wi, clock_ms now) {
    worker_rec& w = worker_at(wi);
    if (w.running > 0) --w.running;
    if (w.state == worker_state::engaged && w.running == 0 && !w.idle) enter_idle(wi, now);
  }

  // A running task leaves its worker and its project.
  void release(const running_rec& r, clock_ms now) {
    running_down(r.worker, now);
    relist(r.worker);
    project_rec& p = projects[r.project];
    if (p.inflight > 0) --p.inflight;
    refresh(r.project);
  }

  void forget_worker(std::uint32_t wi) {
    worker_rec& w = worker_at(wi);
    w.offered = 0;
    relist(wi);
    if (w.state == worker_state::standby) standby.erase(w.standby_slot);
    leave_idle(w);
    for (std::uint32_t type : w.types) {
      auto& list = serving[type];
      list.erase(std::find(list.begin(), list.end(), wi));
    }
    worker_ids.erase(w.id);
    workers[wi].reset();
    free_slots.push_back(wi);
  }

  // ======== dispatch ========

  void assign(std::uint32_t l, std::uint32_t wi, std::vector<assignment>& out) {
    lane_rec& lane = lanes[l];
    const std::uint32_t pid = lane.project;
    project_rec& p = projects[pid];
    worker_rec& w = worker_at(wi);

    const task_id id = lane.tasks.pop();
    --p.queued;
    --total_queued;
    if (lane.tasks.empty()) lane_drained(l);

    --w.offered;
    w.last_assigned = ++assign_sequence;
    running_up(wi);
    relist(wi);
    running.insert_or_assign(id, running_rec{wi, pid});
    out.push_back(assignment{id, w.id});

    ++p.inflight;
    global_pass = p.pass;
    p.pass += detail::stride_of(p.settings.weight);
    if (p.pass >= detail::pass_limit) renormalize();
    refresh(pid);
    if (p.dispatchable)
      for (std::uint32_t other : p.lanes)
        if (lanes[other].indexed) rekey_lane(other);
  }

  void dispatch(std::vector<assignment>& out) {
    parked.clear();
    while (listed_workers > 0 && !index.empty()) {
      const std::uint32_t l = index.begin()->lane;
      if (const auto wi = pick(classes[lanes[l].cls])) {
        assign(l, *wi, out);
      } else {
        // Nothing frees up during one call, so probing this lane again would find no one.
        unindex_lane(l);
        parked.push_back(l);
      }
    }
    for (std::uint32_t l : parked) {
      const lane_rec& lane = lanes[l];
      if (!lane.indexed && !lane.tasks.empty() && projects[lane.project].dispatchable)
        index_lane(l);
    }
    parked.clear();
  }

  // ======== reserve ========

  bool spare_active(const task_class& c) const {
    for (std::uint32_t wi : serving[c.type]) {
      const worker_rec& w = *workers[wi];
      if (w.state == worker_state::active && w.running < w.capacity && carries(w.tags, c.tags))
        return true;
    }
    return false;
  }

  static bool eligible(const worker_rec& w, const task_class& c) {
    return std::binary_search(w.types.begin(), w.types.end(), c.type) && carries(w.tags, c.tags);
  }

  void maybe_release(clock_ms now, std::vector<reserve_event>& out) {
    if (idle_engaged.empty()) return;
    if (last_release && now - *last_release < cfg.scale_interval) return;
    const auto [since, registered, wi] = *idle_engaged.begin();
    if (now - since < cfg.reserve_cooldown) return;
    worker_rec& w = worker_at(wi);
    leave_idle(w);
    enter_standby(wi);
    relist(wi);
    ++releases;
    last_release = now;
    out.push_back(reserve_event{reserve_event::kind::released, w.id, now});
  }

  void maybe_engage(clock_ms now, std::vector<reserve_event>& out) {
    if (standby.empty() || index.empty()) return;
    if (last_engagement && now - *last_engagement < cfg.scale_interval) return;

    // The classes with dispatchable work, each once however many projects share it.
    ++seen_epoch;
    class_seen.resize(classes.size(), 0);
    needy.clear();
    for (const lane_key& key : index) {
      const std::uint32_t cls = lanes[key.lane].cls;
      if (class_seen[cls] == seen_epoch) continue;
      class_seen[cls] = seen_epoch;
      if (spare_active(classes[cls])) return;  // an active worker can still take work
      needy.push_back(cls);
    }

    for (const auto& entry : standby) {
      const std::uint32_t wi = entry.second;  // copied: engaging erases the entry
      const bool useful = std::any_of(needy.begin(), needy.end(), [&](std::uint32_t cls) {
        return eligible(*workers[wi], classes[cls]);
      });
      if (useful) {
        engage(wi, now, out);
        return;
      }
    }
  }

  void engage(std::uint32_t wi, clock_ms now, std::vector<reserve_event>& out) {
    worker_rec& w = worker_at(wi);
    standby.erase(w.standby_slot);
    w.state = worker_state::engaged;
    if (w.running == 0) enter_idle(wi, now);  // never ran anything: idle since engagement
    relist(wi);
    ++engagements;
    last_engagement = now;
    out.push_back(reserve_event{reserve_event::kind::engaged, w.id, now});
  }

  static worker_view view_of(const worker_rec& w) {
    return worker_view{w.id, w.pool, w.state, w.capacity, w.running, w.offered};
  }
};

scheduler::scheduler(scheduler_config cfg) : impl_(std::make_unique<impl>(cfg)) {}
scheduler::~scheduler() = default;

// ---- workers ----

void scheduler::add_worker(const worker_spec& spec, clock_ms now) {
  impl& s = *impl_;
  s.last_now = now;
  remove_worker(spec.id);

  auto w = std::make_unique<impl::worker_rec>();
  w->id = spec.id;
  for (const std::string& type : spec.types) w->types.push_back(s.type_of(type));
  sort_unique(w->types);
  s.tag_ids(spec.tags, true);
  w->tags = s.scratch_ids;
  w->capacity = spec.capacity;
  w->pool = spec.pool;
  w->registered = ++s.sequence;
  w->entries.resize(w->types.size());

  std::uint32_t wi = 0;
  if (s.free_slots.empty()) {
    wi = static_cast<std::uint32_t>(s.workers.size());
    s.workers.push_back(nullptr);
  } else {
    wi = s.free_slots.back();
    s.free_slots.pop_back();
  }
  s.workers[wi] = std::move(w);
  const impl::worker_rec& added = *s.workers[wi];
  s.worker_ids.emplace(added.id, wi);
  for (std::uint32_t type : added.types) s.serving[type].push_back(wi);
  if (spec.pool == worker_pool::reserve) s.enter_standby(wi);
}

std::vector<task_id> scheduler::remove_worker(std::string_view worker) {
  impl& s = *impl_;
  const auto wi = s.find_worker(worker);
  if (!wi) return {};
  // A scan of the running tasks: removal is rare, and a per-worker list would cost memory and
  // work on every assignment.
  std::vector<task_id> held;
  for (auto it = s.running.begin(); it != s.running.end();) {
    if (it->second.worker != *wi) {
      ++it;
      continue;
    }
    held.push_back(it->first);
    const std::uint32_t pid = it->second.project;
    it = s.running.erase(it);
    impl::project_rec& p = s.projects[pid];
    if (p.inflight > 0) --p.inflight;
    s.refresh(pid);
  }
  std::sort(held.begin(), held.end());
  s.forget_worker(*wi);
  return held;
}

void scheduler::offer(std::string_view worker, std::uint32_t slots) {
  impl& s = *impl_;
  if (const auto wi = s.find_worker(worker)) {
    s.worker_at(*wi).offered = slots;
    s.relist(*wi);
  }
}

void scheduler::withdraw(std::string_view worker) { offer(worker, 0); }

void scheduler::set_pool(std::string_view worker, worker_pool pool, clock_ms now) {
  impl& s = *impl_;
  s.last_now = now;
  const auto wi = s.find_worker(worker);
  if (!wi) return;
  impl::worker_rec& w = s.worker_at(*wi);
  if (w.pool == pool) return;
  w.pool = pool;
  if (pool == worker_pool::active) {
    if (w.state == worker_state::standby) s.standby.erase(w.standby_slot);
    s.leave_idle(w);
    w.state = worker_state::active;
  } else {
    s.enter_standby(*wi);
  }
  s.relist(*wi);
}

// ---- projects ----

void scheduler::configure_project(std::string_view project, const project_settings& settings) {
  impl& s = *impl_;
  const std::uint32_t pid = s.project_of(project);
  s.projects[pid].settings = settings;
  s.refresh(pid);
}

project_settings scheduler::settings(std::string_view project) const {
  if (const auto pid = impl_->project_names.find(project)) return impl_->projects[*pid].settings;
  return {};
}

// ---- tasks ----

void scheduler::enqueue(const queued_task& t) {
  impl& s = *impl_;
  const std::uint32_t pid = s.project_of(t.project);
  const std::uint32_t type = s.type_of(t.type);
  s.tag_ids(t.tags, true);
  const std::uint32_t l = s.lane_of(pid, s.class_of(type, s.scratch_ids));
  impl::lane_rec& lane = s.lanes[l];
  impl::project_rec& p = s.projects[pid];

  if (p.queued == 0 && p.dispatchable) s.catch_up(p);
  const bool was_empty = lane.tasks.empty();
  lane.tasks.push(t.priority, t.id);
  ++p.queued;
  ++s.total_queued;
  if (was_empty) s.lane_filled(l);

  if (!p.dispatchable) return;
  if (!lane.indexed)
    s.index_lane(l);
  else if (s.head_moved(l))
    s.rekey_lane(l);
}

bool scheduler::cancel(const queued_task& t) {
  impl& s = *impl_;
  const auto l = s.find_lane(t);
  if (!l) return false;
  impl::lane_rec& lane = s.lanes[*l];
  if (!lane.tasks.erase(t.priority, t.id)) return false;
  --s.projects[lane.project].queued;
  --s.total_queued;
  if (lane.tasks.empty())
    s.lane_drained(*l);
  else if (lane.indexed && s.head_moved(*l))
    s.rekey_lane(*l);
  return true;
}

bool scheduler::adopt(const queued_task& t, std::string_view worker) {
  impl& s = *impl_;
  const auto wi = s.find_worker(worker);
  if (!wi) return false;
  const std::uint32_t pid = s.project_of(t.project);
  const auto [it, added] = s.running.try_emplace(t.id, impl::running_rec{*wi, pid});
  if (!added) {
    if (it->second.worker == *wi && it->second.project == pid) return true;  // reported twice
    const impl::running_rec previous = it->second;
    it->second = impl::running_rec{*wi, pid};
    s.release(previous, s.last_now);
  }
  s.running_up(*wi);
  s.relist(*wi);
  ++s.projects[pid].inflight;
  s.refresh(pid);
  return true;
}

void scheduler::finish(task_id id, clock_ms now) {
  impl& s = *impl_;
  s.last_now = now;
  const auto it = s.running.find(id);
  if (it == s.running.end()) return;
  const impl::running_rec r = it->second;
  s.running.erase(it);
  s.release(r, now);
}

// ---- decisions ----

void scheduler::dispatch(clock_ms now, std::vector<assignment>& out) {
  impl_->last_now = now;
  impl_->dispatch(out);
}

void scheduler::tick(clock_ms now, std::vector<reserve_event>& out) {
  impl_->last_now = now;
  impl_->maybe_release(now, out);
  impl_->maybe_engage(now, out);
}

// ---- views ----

void scheduler::upcoming(std::size_t per_lane, std::size_t limit, std::vector<task_id>& out) const {
  const std::size_t end = out.size() + limit;
  for (auto it = impl_->index.begin(); it != impl_->index.end() && out.size() < end; ++it)
    impl_->lanes[it->lane].tasks.peek(std::min(per_lane, end - out.size()), out);
}

std::size_t scheduler::queued() const { return impl_->total_queued; }

std::size_t scheduler::queued(std::string_view project) const {
  if (const auto pid = impl_->project_names.find(project)) return impl_->projects[*pid].queued;
  return 0;
}

std::size_t scheduler::running() const { return impl_->running.size(); }

std::optional<worker_view> scheduler::worker(std::string_view id) const {
  if (const auto wi = impl_->find_worker(id)) return impl::view_of(*impl_->workers[*wi]);
  return std::nullopt;
}

std::vector<worker_view> scheduler::workers() const {
  std::vector<worker_view> views;
  views.reserve(impl_->worker_ids.size());
  for (const auto& w : impl_->workers)
    if (w) views.push_back(impl::view_of(*w));
  std::sort(views.begin(), views.end(),
            [](const worker_view& a, const worker_view& b) { return a.id < b.id; });
  return views;
}

std::uint64_t scheduler::engagements() const { return impl_->engagements; }
std::uint64_t scheduler::releases() const { return impl_->releases; }

}  // namespace dispatch::policy
