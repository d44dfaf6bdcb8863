#!/usr/bin/env bash
# Checks the monitoring configuration against itself and against what dispatcherd exports:
#   - configs/prometheus/prometheus.yml and alerts.yml are valid (promtool check config / rules),
#   - the alert rules behave as their unit tests say (promtool test rules alerts_test.yml),
#   - configs/grafana/dispatch.json is a well-formed dashboard whose queries are valid PromQL,
#   - every dispatch_* metric used by the dashboard or the rules is one the daemon exports, and
#     (with a scrape) every label they select or group by is one that metric carries.
#
# Usage: scripts/check-monitoring.sh [SCRAPE_FILE]
#   SCRAPE_FILE: the body of a GET /metrics from a dispatcherd that has seen some work (so that
#   its labelled families have series). It is also linted with `promtool check metrics`. Without
#   it, the metric names are taken from metrics/dispatcher_metrics.cpp and labels are not checked.
#
# Needs promtool (Debian package "prometheus") and python3 (standard library only).
# Exit status: 0 all good, 1 a check failed, 2 a tool or file is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
prom_dir="$root/configs/prometheus"
dashboard="$root/configs/grafana/dispatch.json"
source_file="$root/metrics/dispatcher_metrics.cpp"
scrape="${1:-}"

promtool="${PROMTOOL:-promtool}"
if ! command -v "$promtool" >/dev/null 2>&1; then
  echo "check-monitoring: promtool not found; install the Debian package 'prometheus'" \
       "(scripts/setup.sh does)" >&2
  exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "check-monitoring: python3 not found" >&2
  exit 2
fi
for f in "$prom_dir/prometheus.yml" "$prom_dir/alerts.yml" "$prom_dir/alerts_test.yml" \
         "$dashboard" "$source_file" ${scrape:+"$scrape"}; do
  if [[ ! -f "$f" ]]; then
    echo "check-monitoring: missing $f" >&2
    exit 2
  fi
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=0
step() {
  echo "== $1"
  shift
  if ! "$@"; then
    echo "FAILED: $*" >&2
    failed=1
  fi
}

step "prometheus.yml" "$promtool" check config "$prom_dir/prometheus.yml"
step "alerts.yml" "$promtool" check rules "$prom_dir/alerts.yml"
# promtool resolves rule_files relative to the test file.
step "alert rule tests" "$promtool" test rules "$prom_dir/alerts_test.yml"
if [[ -n "$scrape" ]]; then
  step "scrape lint" sh -c '"$1" check metrics < "$2"' _ "$promtool" "$scrape"
fi

# The dashboard's queries and the names used everywhere. The Python part writes the dashboard's
# queries as recording rules, so that promtool's PromQL parser checks them too.
echo "== dashboard and metric names"
if ! python3 - "$dashboard" "$prom_dir/alerts.yml" "$source_file" "$scrape" \
     "$scratch/dashboard_rules.yml" <<'PY'
import json
import re
import sys

dashboard_path, alerts_path, source_path, scrape_path, rules_out = sys.argv[1:6]
errors = []

NAME = re.compile(r"(?<![A-Za-z0-9_:])dispatch_[a-z0-9_]+")
# Labels every scraped series gets from Prometheus itself, plus the histogram bucket label.
IMPLICIT_LABELS = {"job", "instance", "le", "__name__"}

# ---- what the daemon exports: sample name -> set of label names seen on it
exported = {}
if scrape_path:
    types = {}
    with open(scrape_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
                suffixes = {"histogram": ["_bucket", "_sum", "_count"],
                            "summary": ["", "_sum", "_count"]}.get(kind, [""])
                for s in suffixes:
                    exported.setdefault(name + s, set())
            elif line and not line.startswith("#"):
                m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
                if m:
                    labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
                    exported.setdefault(m.group(1), set()).update(labels)
    source = "scrape " + scrape_path
else:
    text = open(source_path).read()
    for kind, name in re.findall(r'\b(counter|gauge|histogram)\(\s*\*registry,\s*"(dispatch_[a-z0-9_]+)"',
                                 text):
        for s in (["_bucket", "_sum", "_count"] if kind == "histogram" else [""]):
            exported[name + s] = None  # labels unknown without a scrape
    source = source_path
dispatch_exported = sorted(n for n in exported if n.startswith("dispatch_"))
if not dispatch_exported:
    errors.append(f"no dispatch_* metrics found in {source}")

# ---- the dashboard
try:
    dash = json.load(open(dashboard_path))
except ValueError as e:
    print(f"{dashboard_path}: not valid JSON: {e}")
    sys.exit(1)

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds_var = variables.get("DS_PROMETHEUS")
if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
    errors.append("dashboard: needs a templating variable DS_PROMETHEUS of type datasource "
                  "(query prometheus), so it imports on any Grafana as is")
for key in ("title", "uid", "schemaVersion", "panels"):
    if key not in dash:
        errors.append(f"dashboard: missing top-level '{key}'")

def panels_of(items):
    for p in items:
        yield p
        yield from panels_of(p.get("panels", []))  # panels inside collapsed rows

queries = []  # (where, expr, tag): tag names the dashboard query's recording rule
ids = set()
for p in panels_of(dash.get("panels", [])):
    where = f"dashboard panel '{p.get('title', '?')}'"
    if p.get("type") == "row":
        continue
    pid = p.get("id")
    if not isinstance(pid, int) or pid in ids:
        errors.append(f"{where}: id {pid!r} is missing or not unique")
    ids.add(pid)
    grid = p.get("gridPos", {})
    if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or \
            grid.get("x", 0) + grid.get("w", 0) > 24:
        errors.append(f"{where}: gridPos must have integer x, y, w, h within 24 columns")
    if not p.get("targets"):
        errors.append(f"{where}: no queries")
    for t in p.get("targets", []):
        ds = t.get("datasource") or p.get("datasource") or {}
        if ds.get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{where}: query {t.get('refId')} does not use ${{DS_PROMETHEUS}}")
        if not t.get("refId") or not t.get("expr"):
            errors.append(f"{where}: a query without refId or expr")
        else:
            queries.append((f"{where} query {t['refId']}", t["expr"], f"panel_{pid}_{t['refId']}"))
for v in variables.values():
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") == "query" and q:
        queries.append((f"dashboard variable '{v['name']}'", q, f"variable_{v['name']}"))

# Grafana expands its variables before Prometheus sees a query; stand-ins make it plain PromQL.
def promql(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?", ".*", expr)

with open(rules_out, "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for where, expr, tag in queries:
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL; its metric name is checked below
        # The rule name says which panel a parse error is about.
        out.write(f"      - record: dashboard:{re.sub(r'[^a-zA-Z0-9_]', '_', tag)}\n"
                  f"        expr: {json.dumps(promql(expr))}\n")

# ---- the alert rules: the value of each `expr:`, inline or as an indented block
with open(alerts_path) as f:
    lines = f.read().split("\n")
i = 0
while i < len(lines):
    m = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[i])
    i += 1
    line_number = i
    if not m:
        continue
    indent, value = len(m.group(1)), m.group(2).strip()
    if value[:1] in ("|", ">"):
        block = []
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        value = "\n".join(block)
    queries.append((f"alerts.yml line {line_number}", value, None))

# ---- every name used must be exported; with a scrape, every label used must exist on it
used = set()
for where, expr, _ in queries:
    names = set(NAME.findall(expr))
    used |= names
    for n in sorted(names):
        if n not in exported:
            hint = ""
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            if base + "_bucket" in exported and base != n:
                hint = " (a histogram exports _bucket, _sum and _count)"
            elif n + "_bucket" in exported:
                hint = " (a histogram: use its _bucket, _sum or _count series)"
            errors.append(f"{where}: {n} is not exported by the daemon{hint}")
    if not scrape_path or not names:
        continue
    carried = set(IMPLICIT_LABELS)
    for n in names:
        carried |= exported.get(n) or set()
    labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {l.strip() for l in group.split(",") if l.strip()}
    for l in re.findall(r"label_values\([^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", expr):
        labels.add(l)
    for l in sorted(labels - carried):
        errors.append(f"{where}: label '{l}' is on none of {', '.join(sorted(names))}")

unused = [n for n in dispatch_exported
          if n not in used and not (n.endswith(("_sum", "_count")) and
                                    re.sub(r"_(sum|count)$", "_bucket", n) in used)]
print(f"{len(queries)} expressions use {len(used)} dispatch metrics; "
      f"{len(dispatch_exported)} exported per {source}")
if unused:
    print("note: exported but on neither the dashboard nor the rules: " + ", ".join(unused))
for e in errors:
    print("error: " + e)
sys.exit(1 if errors else 0)
PY
then
  failed=1
fi
step "dashboard queries are PromQL" "$promtool" check rules "$scratch/dashboard_rules.yml"

if [[ "$failed" != 0 ]]; then
  echo "check-monitoring: FAILED" >&2
  exit 1
fi
echo "check-monitoring: OK"
