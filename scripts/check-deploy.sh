#!/usr/bin/env bash
# Checks the deploy kit under deploy/ offline (no Docker daemon or cluster needed; run by
# scripts/test.sh). The tools come from PyPI through scripts/pytools.sh.
#   - hadolint on deploy/Dockerfile at the warning threshold (.hadolint.yaml says why each
#     ignored rule is ignored); .dockerignore keeps out what the build must not read and in
#     what it needs
#   - both docker-compose files against the Compose specification's schema (check-jsonschema's
#     vendored compose-spec), and docker-compose.yml's healthchecks and depends_on conditions
#   - every Kubernetes overlay rendered by `kubectl kustomize` and validated with
#     `kubernetes-validate --strict` for the oldest and newest Kubernetes the kit supports
#     ($KUBE_VERSIONS); KEDA's ScaledObject (a CRD those schemas lack) against a schema of the
#     fields KEDA accepts; references, pod security, resources and probes
#   - the kit against the source: variables, probe paths, ports, grace periods
#     (scripts/check-deploy-kit.py; tests/api/deploy.rs checks the same against the binary)
# and the monitoring kit:
#   - promtool check config on the three Prometheus configs (this also checks rules.yml)
#   - promtool check rules, and the rule unit tests (rules.test.yml)
#   - every alert of the server's built-in rules is in rules.yml with its severity,
#     and every expr: in rules.yml is on one line
#   - the Grafana dashboard JSON: uid reelgen, unique panel ids, every panel and
#     target on the datasource uid "prometheus", at least one non-empty expr per
#     panel, only $__rate_interval / $__interval as variables
#   - the Grafana provisioning files and docker-compose.yml parse as YAML (if
#     python3 has PyYAML)
#   - if PROM_URL is set (e.g. PROM_URL=http://127.0.0.1:9090), every dashboard
#     expr ($__rate_interval -> 1m, $__interval -> 15s) is run as an instant
#     query against it and must return a non-empty result.
# Exits non-zero, after printing every failure, if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PROMTOOL=${PROMTOOL:-promtool}
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.30 1.37"}
DASHBOARD=deploy/grafana/dashboards/reelgen.json
RULES=deploy/prometheus/rules.yml
failures=()

fail() {
    echo "FAIL: $*" >&2
    failures+=("$*")
}

run() {
    local what=$1
    shift
    echo "== $what"
    if ! "$@"; then
        fail "$what"
    fi
}

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "FAIL: promtool not found (apt-get install prometheus, or set PROMTOOL=/path/to/promtool)" >&2
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "FAIL: python3 not found" >&2
    exit 1
fi

run "promtool check config deploy/prometheus/prometheus.yml" \
    "$PROMTOOL" check config deploy/prometheus/prometheus.yml
run "promtool check config deploy/prometheus/prometheus.docker.yml" \
    "$PROMTOOL" check config deploy/prometheus/prometheus.docker.yml
run "promtool check config deploy/prometheus/prometheus.compose.yml" \
    "$PROMTOOL" check config deploy/prometheus/prometheus.compose.yml
run "promtool check rules $RULES" "$PROMTOOL" check rules "$RULES"
run "promtool test rules deploy/prometheus/rules.test.yml" \
    "$PROMTOOL" test rules deploy/prometheus/rules.test.yml

# ---- the container image, compose and Kubernetes ------------------------------------
PYTOOLS_BIN=${REELGEN_PYTOOLS_BIN:-$(bash scripts/pytools.sh)}
PY="$PYTOOLS_BIN/python"
KIT=scripts/check-deploy-kit.py
RENDERED=$(mktemp -d)
trap 'rm -rf "$RENDERED"' EXIT

run "hadolint deploy/Dockerfile (threshold and ignores: .hadolint.yaml)" \
    "$PYTOOLS_BIN/hadolint" --config .hadolint.yaml deploy/Dockerfile
run ".dockerignore" "$PY" "$KIT" dockerignore
run "compose files against the Compose specification" \
    "$PYTOOLS_BIN/check-jsonschema" --builtin-schema vendor.compose-spec \
    deploy/docker-compose.yml deploy/docker-compose.monitoring.yml
run "docker-compose.yml healthchecks and start order" "$PY" "$KIT" compose

overlays=()
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
    dir=${dir%/}
    out="$RENDERED/$(echo "$dir" | tr / _).yaml"
    if "$PYTOOLS_BIN/kubectl" kustomize "$dir" >"$out"; then
        echo "== kubectl kustomize $dir: $(grep -c '^kind:' "$out") objects"
        overlays+=("$out")
    else
        fail "kubectl kustomize $dir"
    fi
done
for version in $KUBE_VERSIONS; do
    # --quiet prints only problems; the one warning expected is KEDA's ScaledObject, whose
    # schema Kubernetes lacks: check-deploy-kit.py checks it below.
    run "kubernetes-validate --strict -k $version (every overlay, secret.example.yaml)" \
        "$PYTOOLS_BIN/kubernetes-validate" --strict --quiet -k "$version" \
        "${overlays[@]}" deploy/k8s/base/secret.example.yaml
done
run "Kubernetes: ScaledObject schema, references, pod security, resources, probes" \
    "$PY" "$KIT" k8s "${overlays[@]}"
run "the kit against the source: variables, probe paths, ports, grace periods" \
    "$PY" "$KIT" crosscheck "${overlays[@]}"

echo "== rules.yml mirrors the built-in alert rules"
if ! python3 - "$RULES" <<'EOF'; then
import re
import sys

# name -> severity, as in src/platform/alert_rules.rs default_rules()
builtin = {
    "high_latency_p95": "warning",
    "high_error_rate": "critical",
    "queue_backlog": "warning",
    "queue_not_draining": "warning",
    "low_render_fps": "warning",
    "memory_high": "critical",
    "disk_low": "critical",
    "not_ready": "critical",
}
path = sys.argv[1]
lines = open(path, encoding="utf-8").read().splitlines()
errors = []
alerts = {}
current = None
for n, line in enumerate(lines, 1):
    s = line.strip()
    m = re.match(r"-\s*alert:\s*(\S+)$", s)
    if m:
        current = m.group(1)
        alerts[current] = None
        continue
    if re.match(r"-\s*record:", s):
        current = None
        continue
    m = re.match(r"(?:-\s*)?expr:\s*(.*)$", s)
    if m:
        v = m.group(1).strip()
        if not v or v[0] in "|>":
            errors.append(f"{path}:{n}: expr must be written on one line")
    m = re.match(r"severity:\s*(\S+)$", s)
    if m and current:
        alerts[current] = m.group(1).strip("'\"")
for name, sev in builtin.items():
    if name not in alerts:
        errors.append(f"{path}: alert {name} is missing")
    elif alerts[name] != sev:
        errors.append(f"{path}: alert {name} has severity {alerts[name]}, the server says {sev}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
    fail "rules.yml does not mirror the built-in rules"
fi

echo "== dashboard $DASHBOARD"
EXPRS=$(mktemp)
trap 'rm -rf "$EXPRS" "$RENDERED"' EXIT
if ! python3 - "$DASHBOARD" "$EXPRS" <<'EOF'; then
import json
import re
import sys

path, out = sys.argv[1], sys.argv[2]
errors = []
try:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
except (OSError, ValueError) as e:
    print(f"  {path}: not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)

if dash.get("uid") != "reelgen":
    errors.append(f"dashboard uid is {dash.get('uid')!r}, expected 'reelgen'")
if "${DS_PROMETHEUS}" in json.dumps(dash) or "__inputs" in dash:
    errors.append("dashboard uses ${DS_PROMETHEUS} / __inputs; refer to the datasource uid 'prometheus'")


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def is_prom(ds):
    return isinstance(ds, dict) and ds.get("uid") == "prometheus" and ds.get("type", "prometheus") == "prometheus"


panels = list(all_panels(dash.get("panels", [])))
if not panels:
    errors.append("dashboard has no panels")
ids = {}
exprs = []
for p in panels:
    title = p.get("title") or f"panel id {p.get('id')}"
    pid = p.get("id")
    if not isinstance(pid, int):
        errors.append(f"{title!r}: id {pid!r} is not an integer")
    elif pid in ids:
        errors.append(f"{title!r}: id {pid} already used by {ids[pid]!r}")
    else:
        ids[pid] = title
    if p.get("type") == "row":
        continue
    if not is_prom(p.get("datasource")):
        errors.append(f"{title!r}: datasource is {p.get('datasource')!r}, expected uid 'prometheus'")
    targets = p.get("targets") or []
    with_expr = 0
    for t in targets:
        if "datasource" in t and not is_prom(t["datasource"]):
            errors.append(f"{title!r} target {t.get('refId')}: datasource is {t['datasource']!r}")
        expr = (t.get("expr") or "").strip()
        if not expr:
            continue
        with_expr += 1
        for var in re.findall(r"\$\{?\w+\}?", expr):
            if var.strip("${}") not in ("__rate_interval", "__interval"):
                errors.append(f"{title!r} target {t.get('refId')}: uses variable {var}")
        expr = expr.replace("${__rate_interval}", "1m").replace("$__rate_interval", "1m")
        expr = expr.replace("${__interval}", "15s").replace("$__interval", "15s")
        exprs.append((title, t.get("refId", "?"), expr))
    if with_expr == 0:
        errors.append(f"{title!r}: no target with a non-empty expr")

with open(out, "w", encoding="utf-8") as f:
    for title, ref, expr in exprs:
        if "\t" in title or "\n" in expr:
            errors.append(f"{title!r}: tab or newline in title/expr")
        f.write(f"{title}\t{ref}\t{expr}\n")
print(f"  {len(panels)} panels, {len(exprs)} queries")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
    fail "dashboard $DASHBOARD"
fi

# PromQL syntax of the dashboard queries: promtool parses them as recording rules.
echo "== PromQL syntax of the dashboard queries"
EXPR_RULES=$(mktemp --suffix=.yml)
trap 'rm -rf "$EXPRS" "$EXPR_RULES" "$RENDERED"' EXIT
python3 - "$EXPRS" "$EXPR_RULES" <<'EOF'
import json
import sys

src, out = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
    o.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, line in enumerate(f):
        title, ref, expr = line.rstrip("\n").split("\t", 2)
        o.write(f"      # {title} [{ref}]\n")
        o.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
EOF
if ! out=$("$PROMTOOL" check rules "$EXPR_RULES" 2>&1); then
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    fail "dashboard queries: PromQL syntax"
else
    printf '%s\n' "$out" | grep -i success | sed 's/^ */  /'
fi

if python3 -c 'import yaml' 2>/dev/null; then
    echo "== YAML syntax of the Grafana provisioning and docker-compose files"
    if ! python3 - <<'EOF'; then
import sys
import yaml

errors = []
checks = {
    "deploy/grafana/provisioning/datasources/prometheus.yml":
        lambda d: any(ds.get("uid") == "prometheus" and ds.get("type") == "prometheus"
                      for ds in d.get("datasources", [])),
    "deploy/grafana/provisioning/dashboards/reelgen.yml":
        lambda d: any(p.get("type") == "file" and p.get("options", {}).get("path") == "/var/lib/grafana/dashboards"
                      for p in d.get("providers", [])),
    "deploy/docker-compose.yml":
        lambda d: {"prometheus", "grafana"} <= set(d.get("services", {})),
    "deploy/docker-compose.monitoring.yml":
        lambda d: {"prometheus", "grafana"} <= set(d.get("services", {})),
}
for path, ok in checks.items():
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        errors.append(f"{path}: {e}")
        continue
    if not isinstance(data, dict) or not ok(data):
        errors.append(f"{path}: unexpected content")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
        fail "provisioning / compose YAML"
    fi
else
    echo "== (PyYAML not installed: skipping the provisioning / compose YAML check)"
fi

if [[ -n "${PROM_URL:-}" ]]; then
    echo "== dashboard queries against $PROM_URL"
    if ! command -v curl >/dev/null 2>&1; then
        fail "PROM_URL is set but curl is not installed"
    else
        while IFS=$'\t' read -r title ref expr; do
            if ! body=$(curl -fsS --max-time 15 "${PROM_URL%/}/api/v1/query" --data-urlencode "query=$expr"); then
                fail "$title [$ref]: query failed: $expr"
                continue
            fi
            if ! verdict=$(printf '%s' "$body" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if d.get("status") != "success":
    print("error: " + str(d.get("error"))); sys.exit(1)
r = d["data"]["result"]
if d["data"]["resultType"] in ("vector", "matrix") and not r:
    print("empty result"); sys.exit(1)
print("%d series" % len(r) if d["data"]["resultType"] in ("vector", "matrix") else d["data"]["resultType"])
'); then
                fail "$title [$ref]: $verdict: $expr"
            else
                echo "  ok  $title [$ref]: $verdict"
            fi
        done <"$EXPRS"
    fi
else
    echo "== (PROM_URL not set: not running the dashboard queries against a Prometheus)"
fi

if ((${#failures[@]})); then
    echo >&2
    echo "check-deploy: ${#failures[@]} check(s) failed:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "check-deploy: all checks passed"
