"""Checks of the deploy kit that no off-the-shelf linter makes (run by scripts/check-deploy.sh
with the Python of scripts/pytools.sh, which has PyYAML and jsonschema):

  dockerignore   the files deploy/Dockerfile and cargo need are not excluded by .dockerignore
  compose        docker-compose.yml: every service has a healthcheck, every depends_on waits
                 for service_healthy, published ports bind 127.0.0.1, 2 API replicas and
                 2 workers that wait for PostgreSQL, Redis and S3
  k8s FILE...    rendered manifests (kubectl kustomize): KEDA ScaledObjects against a schema
                 of the fields KEDA 2.x accepts, references (scale targets, HPA, PDB and
                 Service selectors), pod security, resources and probes on every container
  crosscheck FILE...
                 the kit against the source: every variable set for a reelgen container is a
                 setting (the settings! table of src/platform/config.rs) or in LIBRARY_ENV;
                 probe paths are routes of src/api/ops.rs; every port is the image's PORT; a
                 grace period outlasts SHUTDOWN_GRACE by 10 s

The deploy test (tests/api/deploy.rs) checks the same against the compiled binary and runs it.
Prints each problem and exits 1 if there is any.
"""

import fnmatch
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRACE_MARGIN_S = 10
problems = []


def problem(msg):
    problems.append(msg)
    print(f"  {msg}", file=sys.stderr)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


# ---- .dockerignore ---------------------------------------------------------------------

def ignored(path, patterns):
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    verdict = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.lstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            verdict = not neg
    return verdict


def check_dockerignore():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs", "assets/avatars.json",
              "shaders/avatar.wgsl", "entity/Cargo.toml", "migration/Cargo.toml",
              "bench/Cargo.toml", "static/index.html"]
    dockerfile = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8")
    for m in re.finditer(r"^COPY\s+(?!--from)(\S+)\s", dockerfile, re.M):
        if m.group(1) != ".":
            needed.append(m.group(1))
    for path in needed:
        if not (ROOT / path).exists():
            problem(f".dockerignore check: {path} does not exist")
        elif ignored(path, patterns):
            problem(f".dockerignore excludes {path}, which the image build needs")
    for path in ["target/release/reelgen", ".git/HEAD", "tests/golden"]:
        if not ignored(path, patterns):
            problem(f".dockerignore lets {path} into the build context")


# ---- docker-compose.yml ----------------------------------------------------------------

def reelgen_services(compose):
    return {
        name: svc for name, svc in compose["services"].items()
        if "build" in svc or "reelgen" in str(svc.get("image", ""))
    }


def check_compose():
    compose = load_all(ROOT / "deploy/docker-compose.yml")[0]
    services = compose["services"]
    for name, svc in services.items():
        if "healthcheck" not in svc:
            problem(f"compose: {name} has no healthcheck")
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            problem(f"compose: {name} depends_on without a condition")
            deps = {}
        for dep, how in deps.items():
            if dep not in services:
                problem(f"compose: {name} depends on unknown service {dep}")
            if how.get("condition") != "service_healthy":
                problem(f"compose: {name} starts before {dep} is healthy")
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problem(f"compose: {name} publishes {port} beyond 127.0.0.1")
    ours = reelgen_services(compose)
    roles = [tuple(svc.get("command", [])) for svc in ours.values()]
    if roles.count(("serve", "--no-worker")) != 2 or roles.count(("worker",)) != 2:
        problem(f"compose: expected 2 API replicas and 2 workers, found {roles}")
    for name, svc in ours.items():
        for dep in ("postgres", "redis", "s3"):
            if dep not in svc.get("depends_on", {}):
                problem(f"compose: {name} does not wait for {dep}")
    for want in ("prometheus", "grafana"):
        if want not in services:
            problem(f"compose: no {want} service")


# ---- Kubernetes ------------------------------------------------------------------------

INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
# The ScaledObject fields of KEDA 2.x (keda.sh/v1alpha1) that the kit may use, strict: a
# misspelt field is an error here, as it would be for the API server with KEDA's CRD.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {**INT32, "minimum": 1},
                "cooldownPeriod": INT32,
                "initialCooldownPeriod": INT32,
                "idleReplicaCount": INT32,
                "minReplicaCount": INT32,
                "maxReplicaCount": {**INT32, "minimum": 1},
                "fallback": {
                    "type": "object", "required": ["failureThreshold", "replicas"],
                    "properties": {"failureThreshold": INT32, "replicas": INT32,
                                   "behavior": {"enum": ["static", "currentReplicas",
                                                         "currentReplicasIfHigher",
                                                         "currentReplicasIfLower"]}},
                    "additionalProperties": False,
                },
                "advanced": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"name": {"type": "string"},
                                           "behavior": {"type": "object"}},
                        },
                    },
                },
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA's CRD: every metadata value is a string (a bare 2 is rejected).
                            "metadata": {"type": "object",
                                         "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "kind": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}
# Metadata of the triggers the kit may use: required keys and the known ones.
TRIGGERS = {
    "postgresql": ({"query", "targetQueryValue"},
                   {"query", "targetQueryValue", "activationTargetQueryValue",
                    "connectionFromEnv", "host", "port", "userName", "dbName", "sslmode",
                    "passwordFromEnv"}),
    "prometheus": ({"serverAddress", "query", "threshold"},
                   {"serverAddress", "query", "threshold", "activationThreshold",
                    "namespace", "ignoreNullValues", "unsafeSsl"}),
}


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_k8s(path):
    docs = load_all(path)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    where = Path(path).name
    for name, so in by_kind.get("ScaledObject", {}).items():
        for err in jsonschema.Draft202012Validator(SCALED_OBJECT).iter_errors(so):
            loc = "/".join(str(p) for p in err.absolute_path)
            problem(f"{where}: scaledobject/{name} {loc}: {err.message}")
        spec = so.get("spec", {})
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            problem(f"{where}: scaledobject/{name}: minReplicaCount > maxReplicaCount")
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            problem(f"{where}: scaledobject/{name} scales {target}, not a Deployment here")
        elif "replicas" in deployments[target]["spec"]:
            problem(f"{where}: deployment/{target} sets replicas, which KEDA owns")
        for t in spec.get("triggers", []):
            required, known = TRIGGERS.get(t.get("type"), (set(), None))
            meta = set(t.get("metadata", {}))
            if known is None:
                problem(f"{where}: scaledobject/{name}: unexpected trigger {t.get('type')}")
                continue
            if not required <= meta:
                problem(f"{where}: scaledobject/{name}: {t['type']} needs {sorted(required - meta)}")
            if meta - known:
                problem(f"{where}: scaledobject/{name}: unknown {t['type']} metadata {sorted(meta - known)}")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        if hpa["spec"]["scaleTargetRef"]["name"] not in deployments:
            problem(f"{where}: hpa/{name} targets a missing Deployment")
    pods = {n: d["spec"]["template"]["metadata"].get("labels", {}) for n, d in deployments.items()}
    for kind in ("PodDisruptionBudget", "Service"):
        for name, obj in by_kind.get(kind, {}).items():
            sel = obj["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            selected = [n for n, l in pods.items() if labels_match(sel, l)]
            if not selected:
                problem(f"{where}: {kind.lower()}/{name} selects no pods")
            for port in obj["spec"].get("ports", []) if kind == "Service" else []:
                target = port.get("targetPort", port.get("port"))
                served = any(
                    target in (p.get("name"), p.get("containerPort"))
                    for n in selected
                    for c in deployments[n]["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", []))
                if not served:
                    problem(f"{where}: service/{name} targets port {target}, which its pods do not serve")
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            problem(f"{where}: deployment/{name}: runAsNonRoot is not set")
        if pod.get("automountServiceAccountToken") is not False:
            problem(f"{where}: deployment/{name} mounts a service account token")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(f"{where}: {name}/{c['name']}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(f"{where}: {name}/{c['name']}: privilege escalation allowed")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problem(f"{where}: {name}/{c['name']}: capabilities not dropped")
            res = c.get("resources", {})
            for key in ("requests", "limits"):
                if "memory" not in res.get(key, {}):
                    problem(f"{where}: {name}/{c['name']}: no memory {key}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    problem(f"{where}: {name}/{c['name']}: no {probe}")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts or "/var/lib/reelgen" not in mounts:
                problem(f"{where}: {name}/{c['name']}: /tmp and /var/lib/reelgen must be writable volumes")


# ---- the kit against the source -----------------------------------------------------

def source_facts():
    config = (ROOT / "src/platform/config.rs").read_text(encoding="utf-8")
    table = config[config.index("settings! {"):]
    table = table[: table.index("\n}\n")]
    settings = set(re.findall(r'=>\s*"([A-Z0-9_]+)"\s*:', table))
    lib = config[config.index("pub const LIBRARY_ENV"):]
    lib = lib[: lib.index("];")]
    library = set(re.findall(r'\(\s*"([A-Z0-9_]+)"', lib))
    ops = (ROOT / "src/api/ops.rs").read_text(encoding="utf-8")
    paths = set(re.findall(r'_PATH: &str = "([^"]+)"', ops)) | {"/health"}
    dockerfile = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    env = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", "\n".join(
        l for l in dockerfile.splitlines() if l.lstrip().startswith("ENV "))))
    expose = [int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.M)]
    return settings, library, paths, env, expose


def known(name, settings, library):
    return name in settings or any(
        name.startswith(k) if k.endswith("_") else name == k for k in library)


def seconds(text):
    text = str(text)
    return float(text[:-1]) * 60 if text.endswith("m") else float(text.rstrip("s"))


def crosscheck(rendered):
    settings, library, paths, image_env, expose = source_facts()
    if len(settings) < 30:
        problem(f"crosscheck: read only {len(settings)} settings from config.rs")
    port = int(image_env.get("PORT", "8000"))
    if expose != [port]:
        problem(f"Dockerfile: EXPOSE {expose} but PORT={port}")

    def check_env(place, names, values):
        for n in names:
            if not known(n, settings, library):
                problem(f"{place}: {n} is not a setting of reelgen nor read by its libraries")
        grace = values.get("SHUTDOWN_GRACE")
        return float(grace) if grace is not None else 30.0

    for n in image_env:
        if not known(n, settings, library):
            problem(f"Dockerfile: ENV {n} is not a setting of reelgen")

    compose = load_all(ROOT / "deploy/docker-compose.yml")[0]
    for name, svc in reelgen_services(compose).items():
        env = {k: str(v) for k, v in svc.get("environment", {}).items()}
        grace = check_env(f"compose {name}", env, env)
        stop = seconds(svc.get("stop_grace_period", "10s"))
        if stop < grace + GRACE_MARGIN_S:
            problem(f"compose {name}: stop_grace_period {stop} s < SHUTDOWN_GRACE {grace} + {GRACE_MARGIN_S}")
        for p in svc.get("ports", []):
            if int(str(p).rsplit(":", 1)[1]) != port:
                problem(f"compose {name}: publishes container port {p}, reelgen listens on {port}")
        limit = str(svc.get("mem_limit", ""))
        if not limit.endswith("m") or env.get("MEMORY_LIMIT_MB") != limit[:-1]:
            problem(f"compose {name}: MEMORY_LIMIT_MB {env.get('MEMORY_LIMIT_MB')} is not mem_limit {limit}")
        test = svc.get("healthcheck", {}).get("test", [])
        if test[:3] not in (["CMD", "reelgen", "probe"],):
            problem(f"compose {name}: healthcheck {test} is not `reelgen probe`")
    prom = load_all(ROOT / "deploy/prometheus/prometheus.compose.yml")[0]
    ours = reelgen_services(compose)
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host, p = t.rsplit(":", 1)
                if host not in ours or int(p) != port:
                    problem(f"prometheus.compose.yml: target {t} is not a reelgen service on {port}")

    for path in rendered:
        docs = load_all(path)
        where = Path(path).name
        maps = {(d["kind"], d["metadata"]["name"]): d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        for s in load_all(ROOT / "deploy/k8s/base/secret.example.yaml"):
            maps[("Secret", s["metadata"]["name"])] = s.get("stringData", {})
        for d in docs:
            if d["kind"] != "Deployment":
                continue
            pod = d["spec"]["template"]
            for c in pod["spec"]["containers"]:
                if not c["image"].startswith("reelgen"):
                    continue
                place = f"{where}: deployment/{d['metadata']['name']}"
                values = {}
                for ref in c.get("envFrom", []):
                    kind, r = ("ConfigMap", ref["configMapRef"]) if "configMapRef" in ref else ("Secret", ref["secretRef"])
                    if (kind, r["name"]) not in maps:
                        problem(f"{place}: envFrom {kind} {r['name']} is not in the kit")
                    values.update(maps.get((kind, r["name"]), {}))
                values.update({e["name"]: e.get("value", "") for e in c.get("env", [])})
                grace = check_env(place, values, values)
                named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                for p in named.values():
                    if p != port:
                        problem(f"{place}: containerPort {p}, reelgen listens on {port}")
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    get = c.get(kind, {}).get("httpGet", {})
                    if get.get("path") not in paths:
                        problem(f"{place}: {kind} path {get.get('path')} is not one of {sorted(paths)}")
                    if named.get(get.get("port"), get.get("port")) != port:
                        problem(f"{place}: {kind} port {get.get('port')} is not {port}")
                ann = pod["metadata"].get("annotations", {})
                if ann.get("prometheus.io/port") not in (None, str(port)):
                    problem(f"{place}: scrape port {ann['prometheus.io/port']} is not {port}")
                tgps = pod["spec"].get("terminationGracePeriodSeconds", 30)
                if tgps < grace + GRACE_MARGIN_S:
                    problem(f"{place}: terminationGracePeriodSeconds {tgps} < SHUTDOWN_GRACE {grace} + {GRACE_MARGIN_S}")


def main():
    what, files = sys.argv[1], sys.argv[2:]
    {"dockerignore": lambda: check_dockerignore(),
     "compose": lambda: check_compose(),
     "k8s": lambda: [check_k8s(f) for f in files],
     "crosscheck": lambda: crosscheck(files)}[what]()
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
