//! The deploy kit (SPEC §9, `deploy/`) held to the binary it deploys. No Docker daemon or
//! cluster runs here, so what could drift from the code is checked against the code:
//! - every variable that `deploy/Dockerfile`, `deploy/docker-compose.yml` and the Kubernetes
//!   manifests (each overlay as `kubectl kustomize` renders it) give a reelgen container is a
//!   setting of the binary or a variable one of its libraries reads;
//! - each container's settings load as the binary would load them (a worker's also meet the
//!   cluster's requirements), its ports and probe ports are the PORT those settings give, its
//!   grace period outlasts SHUTDOWN_GRACE by 10 s or more, and KEDA's target per worker is the
//!   worker's MAX_CONCURRENT_JOBS;
//! - the real binary, started with docker-compose.yml's arguments and settings for each role
//!   (on a database of the test's own, a private Redis, and SeaweedFS requiring the compose
//!   file's access key, as the compose file runs it), answers every probe path and health
//!   check command of the kit, renders a video into the compose file's bucket, and KEDA's
//!   backlog query counts that video while it is held and drops to zero once it completes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reelgen::platform::config::{Config, Sources, is_known_env};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

use crate::cli::reelgen;
use crate::cluster::{Node, RedisServer, S3Server};
use crate::helpers::{create_database, drop_database, poll_video, pytool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WAIT: Duration = Duration::from_secs(180);
/// How much longer than SHUTDOWN_GRACE a container must be given before it is killed: the
/// hand-back of unfinished renders and the last upload happen after the grace.
const GRACE_MARGIN_S: f64 = 10.0;

/// One reelgen container of the kit, everything resolved to plain values.
#[derive(Debug, Default, Clone)]
struct Container {
    /// Where it is defined, for messages.
    place: String,
    /// The arguments after `reelgen` (the image's entrypoint).
    args: Vec<String>,
    /// The image's ENV, then what the container adds (envFrom, env), later values winning.
    env: BTreeMap<String, String>,
    /// Container ports, published targets, Prometheus scrape ports.
    ports: Vec<u16>,
    /// Kubernetes httpGet probes: (kind, path, port).
    http_probes: Vec<(String, String, u16)>,
    /// Health-check commands (`reelgen …` argv).
    commands: Vec<Vec<String>>,
    /// Seconds between SIGTERM and SIGKILL.
    grace_s: Option<f64>,
}

impl Container {
    fn is_worker(&self) -> bool {
        self.args.first().map(String::as_str) == Some("worker")
    }

    fn is_api_replica(&self) -> bool {
        self.args == ["serve", "--no-worker"]
    }

    /// The configuration the binary would load in this container.
    fn config(&self) -> Config {
        let pairs = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut config = Config::load(&Sources::from_pairs(pairs))
            .unwrap_or_else(|e| panic!("{}: its settings do not load: {e}", self.place));
        if self.is_api_replica() {
            config.embedded_worker = false;
        }
        config
    }
}

/// A KEDA ScaledObject: the Deployment it scales and its triggers' metadata.
#[derive(Debug)]
struct Scaler {
    place: String,
    target: String,
    triggers: Vec<(String, BTreeMap<String, String>)>,
}

/// The kit, read and resolved.
struct Kit {
    dockerfile: Container,
    compose: Vec<Container>,
    compose_scrape_targets: Vec<String>,
    compose_services: BTreeMap<String, Container>,
    /// Per overlay: (overlay, deployment name → its reelgen container).
    k8s: Vec<(String, BTreeMap<String, Container>)>,
    scalers: Vec<Scaler>,
}

impl Kit {
    fn containers(&self) -> impl Iterator<Item = &Container> {
        std::iter::once(&self.dockerfile)
            .chain(self.compose.iter())
            .chain(self.k8s.iter().flat_map(|(_, d)| d.values()))
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// YAML (every document) as JSON values, `<<` merge keys applied.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    use serde::Deserialize;
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| {
            let mut v = yaml_serde::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
            // A merged mapping can bring `<<` of its own (an anchor built on another
            // anchor): merge until none is left.
            loop {
                let before = v.clone();
                v.apply_merge()
                    .unwrap_or_else(|e| panic!("{what}: merge keys: {e}"));
                if v == before {
                    break;
                }
            }
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A scalar as the string a container would see.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

/// `${NAME:-default}` → `default` (what compose uses when NAME is not set).
fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn seconds(duration: &str) -> f64 {
    let d = duration.trim();
    if let Some(m) = d.strip_suffix("m") {
        m.parse::<f64>().expect("minutes") * 60.0
    } else {
        d.trim_end_matches('s').parse().expect("seconds")
    }
}

/// A Kubernetes memory quantity in MiB.
fn mebibytes(q: &str) -> u64 {
    if let Some(n) = q.strip_suffix("Gi") {
        n.parse::<u64>().expect("Gi") * 1024
    } else if let Some(n) = q.strip_suffix("Mi") {
        n.parse().expect("Mi")
    } else {
        q.parse::<u64>().expect("bytes") / (1024 * 1024)
    }
}

/// The Dockerfile's runtime image: ENV, EXPOSE, CMD, HEALTHCHECK (logical lines, comments out).
fn dockerfile() -> Container {
    let text = read("deploy/Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(t);
            lines.push(std::mem::take(&mut current));
        }
    }
    let mut c = Container {
        place: "deploy/Dockerfile".into(),
        ..Container::default()
    };
    for line in lines {
        let (instr, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let json = |s: &str| -> Vec<String> {
            strings(&serde_json::from_str(s.trim()).expect("exec-form JSON array"))
        };
        match instr {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV key=value");
                    c.env.insert(k.into(), v.into());
                }
            }
            "EXPOSE" => c.ports.extend(
                rest.split_whitespace()
                    .map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("port")),
            ),
            "CMD" => c.args = json(rest),
            "HEALTHCHECK" => {
                let cmd = rest.split_once("CMD ").expect("HEALTHCHECK CMD").1;
                c.commands.push(json(cmd));
            }
            "ENTRYPOINT" => assert_eq!(
                json(rest).last().map(String::as_str),
                Some("reelgen"),
                "the entrypoint runs reelgen, so CMD and compose/k8s args are its arguments"
            ),
            _ => {}
        }
    }
    c
}

fn compose(image: &Container) -> (BTreeMap<String, Container>, Vec<String>) {
    let doc = yaml_docs(&read("deploy/docker-compose.yml"), "docker-compose.yml").remove(0);
    let mut out = BTreeMap::new();
    for (name, svc) in doc["services"].as_object().expect("services") {
        let is_reelgen = svc.get("build").is_some()
            || svc["image"].as_str().is_some_and(|i| i.contains("reelgen"));
        if !is_reelgen {
            continue;
        }
        let mut c = Container {
            place: format!("docker-compose.yml service {name}"),
            args: strings(&svc["command"]),
            env: image.env.clone(),
            commands: image.commands.clone(),
            ..Container::default()
        };
        if c.args.is_empty() {
            c.args = image.args.clone();
        }
        for (k, v) in svc["environment"].as_object().expect("environment map") {
            c.env.insert(k.clone(), compose_default(&scalar(v)));
        }
        for p in strings(&svc["ports"]) {
            let target = p.rsplit(':').next().expect("target port");
            c.ports.push(target.parse().expect("port"));
        }
        let test = strings(&svc["healthcheck"]["test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{}: healthcheck",
            c.place
        );
        c.commands = vec![test[1..].to_vec()];
        c.grace_s = svc["stop_grace_period"].as_str().map(seconds);
        // The memory alert's budget is the container's limit, as in Kubernetes.
        let limit = svc["mem_limit"].as_str().and_then(|m| m.strip_suffix('m'));
        assert_eq!(
            c.env.get("MEMORY_LIMIT_MB").map(String::as_str),
            limit,
            "{}: MEMORY_LIMIT_MB and mem_limit",
            c.place
        );
        out.insert(name.clone(), c);
    }
    let prom = yaml_docs(
        &read("deploy/prometheus/prometheus.compose.yml"),
        "prometheus.compose.yml",
    )
    .remove(0);
    let targets = prom["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|j| j["static_configs"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    (out, targets)
}

/// `kubectl kustomize DIR`: what `kubectl apply -k DIR` would apply.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new(pytool("kubectl"))
        .args([
            "kustomize",
            &Path::new(ROOT).join(dir).display().to_string(),
        ])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout), dir)
}

fn k8s(image: &Container, overlay: &str) -> (BTreeMap<String, Container>, Vec<Scaler>) {
    let docs = kustomize(overlay);
    let secret = yaml_docs(
        &read("deploy/k8s/base/secret.example.yaml"),
        "secret.example.yaml",
    )
    .remove(0);
    let mut maps: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let data = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
            .unwrap_or_default()
    };
    maps.insert(
        (
            "Secret".into(),
            secret["metadata"]["name"].as_str().expect("name").into(),
        ),
        data(&secret["stringData"]),
    );
    for d in &docs {
        if d["kind"] == "ConfigMap" {
            let name = d["metadata"]["name"].as_str().expect("name").to_string();
            maps.insert(("ConfigMap".into(), name), data(&d["data"]));
        }
    }
    let mut deployments = BTreeMap::new();
    let mut scalers = Vec::new();
    for d in &docs {
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match d["kind"].as_str() {
            Some("Deployment") => {
                let spec = &d["spec"]["template"];
                for ctr in spec["spec"]["containers"].as_array().expect("containers") {
                    if !ctr["image"]
                        .as_str()
                        .is_some_and(|i| i.starts_with("reelgen"))
                    {
                        continue;
                    }
                    let mut c = Container {
                        place: format!("{overlay}: deployment/{name}"),
                        args: strings(&ctr["args"]),
                        env: image.env.clone(),
                        grace_s: spec["spec"]["terminationGracePeriodSeconds"].as_f64(),
                        ..Container::default()
                    };
                    if c.args.is_empty() {
                        c.args = image.args.clone();
                    }
                    for from in ctr["envFrom"].as_array().cloned().unwrap_or_default() {
                        let (kind, r) = if from.get("configMapRef").is_some() {
                            ("ConfigMap", &from["configMapRef"])
                        } else {
                            ("Secret", &from["secretRef"])
                        };
                        let key = (kind.to_string(), r["name"].as_str().expect("name").into());
                        let vars = maps
                            .get(&key)
                            .unwrap_or_else(|| panic!("{}: no {key:?} in the kit", c.place));
                        c.env.extend(vars.clone());
                    }
                    let limits = &ctr["resources"]["limits"];
                    for e in ctr["env"].as_array().cloned().unwrap_or_default() {
                        let var = e["name"].as_str().expect("env name").to_string();
                        let value = if let Some(v) = e.get("value") {
                            scalar(v)
                        } else {
                            let field = &e["valueFrom"]["resourceFieldRef"];
                            assert_eq!(field["resource"], "limits.memory", "{}: {var}", c.place);
                            assert_eq!(field["divisor"], "1Mi", "{}: {var}", c.place);
                            let limit = limits["memory"].as_str().expect("a memory limit");
                            mebibytes(limit).to_string()
                        };
                        c.env.insert(var, value);
                    }
                    let mut named = BTreeMap::new();
                    for p in ctr["ports"].as_array().cloned().unwrap_or_default() {
                        let port = p["containerPort"].as_u64().expect("containerPort") as u16;
                        c.ports.push(port);
                        if let Some(n) = p["name"].as_str() {
                            named.insert(n.to_string(), port);
                        }
                    }
                    let resolve = |p: &Value| -> u16 {
                        p.as_u64()
                            .map(|n| n as u16)
                            .unwrap_or_else(|| named[p.as_str().expect("port name or number")])
                    };
                    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
                        let get = &ctr[kind]["httpGet"];
                        assert!(get.is_object(), "{}: {kind} is an httpGet probe", c.place);
                        c.http_probes.push((
                            kind.into(),
                            get["path"].as_str().expect("path").into(),
                            resolve(&get["port"]),
                        ));
                    }
                    if let Some(p) = spec["metadata"]["annotations"]["prometheus.io/port"].as_str()
                    {
                        c.ports.push(p.parse().expect("scrape port"));
                    }
                    deployments.insert(name.clone(), c);
                }
            }
            Some("ScaledObject") => scalers.push(Scaler {
                place: format!("{overlay}: scaledobject/{name}"),
                target: d["spec"]["scaleTargetRef"]["name"]
                    .as_str()
                    .expect("target")
                    .into(),
                triggers: d["spec"]["triggers"]
                    .as_array()
                    .expect("triggers")
                    .iter()
                    .map(|t| (scalar(&t["type"]), data(&t["metadata"])))
                    .collect(),
            }),
            _ => {}
        }
    }
    (deployments, scalers)
}

fn kit() -> Kit {
    let image = dockerfile();
    let (services, targets) = compose(&image);
    let mut k8s_all = Vec::new();
    let mut scalers = Vec::new();
    for overlay in ["deploy/k8s/base", "deploy/k8s/overlays/gpu"] {
        let (deployments, s) = k8s(&image, overlay);
        k8s_all.push((overlay.to_string(), deployments));
        scalers.extend(s);
    }
    Kit {
        dockerfile: image,
        compose: services.values().cloned().collect(),
        compose_scrape_targets: targets,
        compose_services: services,
        k8s: k8s_all,
        scalers,
    }
}

#[test]
fn every_variable_the_deploy_kit_sets_is_read_by_the_binary_and_its_settings_load() {
    let kit = kit();
    assert!(
        kit.compose.len() >= 4,
        "compose has 2 API replicas and 2 workers"
    );
    let mut checked = 0;
    for c in kit.containers() {
        for name in c.env.keys() {
            assert!(
                is_known_env(name),
                "{}: {name} is neither a setting of the binary (reelgen --help) nor a variable \
                 a library of it reads (config::LIBRARY_ENV)",
                c.place
            );
        }
        let config = c.config();
        if c.is_worker() {
            config
                .require_cluster()
                .unwrap_or_else(|e| panic!("{}: a worker needs {e}", c.place));
        }
        assert!(
            c.is_worker() || c.is_api_replica() || c.args == ["serve"],
            "{}: runs `reelgen {}`, not a role",
            c.place,
            c.args.join(" ")
        );
        checked += 1;
    }
    let api = kit.compose.iter().filter(|c| c.is_api_replica()).count();
    let workers = kit.compose.iter().filter(|c| c.is_worker()).count();
    assert_eq!((api, workers), (2, 2), "compose: 2 API replicas, 2 workers");
    for (overlay, deployments) in &kit.k8s {
        assert!(
            deployments.values().any(Container::is_api_replica)
                && deployments.values().any(Container::is_worker),
            "{overlay}: an API Deployment and a worker Deployment"
        );
    }
    assert!(checked >= 9, "checked {checked} containers");
}

#[test]
fn the_deploy_kits_ports_grace_periods_and_scaling_agree_with_the_settings() {
    let kit = kit();
    for c in kit.containers() {
        let config = c.config();
        assert!(
            !c.ports.is_empty() || c.place.contains("compose"),
            "{}: ports",
            c.place
        );
        for port in &c.ports {
            assert_eq!(
                *port, config.port,
                "{}: port {port} but PORT is {}",
                c.place, config.port
            );
        }
        for (kind, path, port) in &c.http_probes {
            assert_eq!(*port, config.port, "{}: {kind} on port {port}", c.place);
            assert!(path.starts_with("/health"), "{}: {kind} on {path}", c.place);
        }
        if let Some(grace) = c.grace_s {
            let needed = config.shutdown_grace.as_secs_f64() + GRACE_MARGIN_S;
            assert!(
                grace >= needed,
                "{}: {grace} s to stop, but SHUTDOWN_GRACE is {:?}: give it at least {needed} s",
                c.place,
                config.shutdown_grace
            );
        } else {
            assert_eq!(c.place, "deploy/Dockerfile", "{}: no grace period", c.place);
        }
    }
    // Prometheus in compose scrapes every reelgen service on its port.
    for target in &kit.compose_scrape_targets {
        let (host, port) = target.split_once(':').expect("host:port");
        let svc = kit.compose_services.get(host).unwrap_or_else(|| {
            panic!("prometheus.compose.yml scrapes {host}, not a reelgen service")
        });
        assert_eq!(
            port.parse::<u16>().expect("port"),
            svc.config().port,
            "{target}"
        );
    }
    assert_eq!(kit.compose_scrape_targets.len(), kit.compose_services.len());
    // KEDA: each ScaledObject scales a worker Deployment of its overlay, reads the database the
    // worker reads, and keeps MAX_CONCURRENT_JOBS videos per worker.
    assert_eq!(
        kit.scalers.len(),
        kit.k8s.len(),
        "one ScaledObject per overlay"
    );
    for s in &kit.scalers {
        let overlay = s.place.split(':').next().expect("overlay");
        let deployments = &kit
            .k8s
            .iter()
            .find(|(o, _)| o == overlay)
            .expect("overlay")
            .1;
        let worker = deployments.get(&s.target).unwrap_or_else(|| {
            panic!(
                "{}: scales {}, not a Deployment of the kit",
                s.place, s.target
            )
        });
        assert!(
            worker.is_worker(),
            "{}: scales {}, not a worker",
            s.place,
            worker.place
        );
        let config = worker.config();
        let (kind, meta) = &s.triggers[0];
        assert_eq!(kind, "postgresql", "{}", s.place);
        let from = &meta["connectionFromEnv"];
        assert_eq!(
            worker.env.get(from),
            Some(&config.database_url),
            "{}: {from}",
            s.place
        );
        let per_worker: f64 = meta["targetQueryValue"].parse().expect("a number");
        assert_eq!(
            per_worker, config.max_concurrent_jobs as f64,
            "{}: targetQueryValue must be the worker's MAX_CONCURRENT_JOBS",
            s.place
        );
    }
}

fn port_of(node: &Node) -> u16 {
    node.base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The container's settings for a process of this test: the kit's, with the test's database,
/// Redis, S3 endpoint and port (`Node` sets PORT and DATA_DIR), and the test hooks on. The
/// bucket, its prefix and the access key stay the kit's.
fn test_env(c: &Container, db: &str, redis: &str, s3: &S3Server) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = c
        .env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "PORT" | "HOST" | "DATA_DIR" | "XDG_CACHE_HOME"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", redis.to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", s3.port)),
        ("HOST", "127.0.0.1".into()),
        ("ENVIRONMENT", "test".into()),
        ("AUTH_MODE", "open".into()),
        ("STATIC_DIR", format!("{ROOT}/static")),
    ] {
        env.push((k.into(), v));
    }
    env
}

/// Runs a health-check command of the kit (`reelgen probe …`) against a process until it
/// exits 0 (a deadline, not a count: readiness comes when the first checks have run).
async fn command_passes(argv: &[String], node: &Node, place: &str) {
    assert_eq!(
        argv.first().map(String::as_str),
        Some("reelgen"),
        "{place}: {argv:?}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let out = reelgen(Path::new("/nonexistent"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port_of(node).to_string())
            .args(&argv[1..])
            .output()
            .expect("reelgen runs");
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{place}: `{}` kept failing: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn http_passes(client: &reqwest::Client, node: &Node, path: &str, place: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_ne!(
            status.as_ref().ok(),
            Some(&404),
            "{place}: {path} is not a route"
        );
        if status.as_ref().ok() == Some(&200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{place}: {path} answered {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn backlog(db: &sea_orm::DatabaseConnection, query: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), query))
        .await
        .expect("KEDA's query runs on the schema")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

#[actix_web::test]
async fn each_role_answers_the_kits_probes_and_keda_counts_its_backlog() {
    let kit = kit();
    let redis = RedisServer::start().await;
    let (db_url, db_name) = create_database().await;
    let client = reqwest::Client::new();

    let api_ctr = kit
        .compose
        .iter()
        .find(|c| c.is_api_replica())
        .expect("an API replica in compose");
    let worker_ctr = kit
        .compose
        .iter()
        .find(|c| c.is_worker())
        .expect("a worker in compose");
    // The compose file's bucket and access key, on a SeaweedFS of the test's own.
    let config = worker_ctr.config();
    let reelgen::platform::config::StorageUrl::S3 { bucket, prefix } = &config.storage else {
        panic!("{}: STORAGE_URL is not s3://", worker_ctr.place)
    };
    let s3 = S3Server::start_signed(
        bucket,
        &worker_ctr.env["AWS_ACCESS_KEY_ID"],
        &worker_ctr.env["AWS_SECRET_ACCESS_KEY"],
    )
    .await;
    fn args(c: &Container) -> Vec<&str> {
        c.args.iter().map(String::as_str).collect()
    }
    let api = Node::spawn_args(
        &args(api_ctr),
        &test_env(api_ctr, &db_url, &redis.url(), &s3),
    );
    let worker = Node::spawn_args(
        &args(worker_ctr),
        &test_env(worker_ctr, &db_url, &redis.url(), &s3),
    );
    worker.hold();

    // Every probe of the Kubernetes kit, on the role it belongs to.
    for deployments in kit.k8s.iter().map(|(_, d)| d) {
        for c in deployments.values() {
            let node = if c.is_worker() { &worker } else { &api };
            for (kind, path, _) in &c.http_probes {
                http_passes(&client, node, path, &format!("{} {kind}", c.place)).await;
            }
        }
    }
    // Every health-check command: the image's, and each compose service's on its role.
    for c in std::iter::once(&kit.dockerfile).chain(kit.compose.iter()) {
        let node = if c.is_worker() { &worker } else { &api };
        for argv in &c.commands {
            command_passes(argv, node, &c.place).await;
        }
    }

    // KEDA's backlog query, on the schema the binary migrated: a video counts while it is
    // queued and while it renders (held here), and stops counting once it is done.
    let query = kit.scalers[0].triggers[0].1["query"].clone();
    let conn = Database::connect(&db_url).await.expect("connect");
    assert_eq!(backlog(&conn, &query).await, 0, "nothing queued yet");
    let created: Value = client
        .post(format!("{}/api/v1/videos", api.base))
        .json(&json!({"script": "Scaling on the backlog.", "dimension": {"width": 320, "height": 180}, "fps": 24, "quality": "draft"}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a video is created: {created}"))
        .to_string();
    assert_eq!(backlog(&conn, &query).await, 1, "a queued video counts");
    poll_video(&client, &api.base, &id, WAIT, |v| {
        v["status"] == "rendering"
    })
    .await;
    assert_eq!(backlog(&conn, &query).await, 1, "a rendering video counts");
    worker.release();
    poll_video(&client, &api.base, &id, WAIT, |v| {
        v["status"] == "completed"
    })
    .await;
    assert_eq!(
        backlog(&conn, &query).await,
        0,
        "a completed video does not count"
    );

    // The MP4 went to the compose file's bucket under its prefix, through signed requests
    // (this server refuses others), and the API replica serves it from there.
    let key = object_store::path::Path::from(format!("{prefix}/{id}/video.mp4"));
    let stored = object_store::ObjectStoreExt::get(&s3.client(bucket), &key)
        .await
        .unwrap_or_else(|e| panic!("{key} is in bucket {bucket}: {e}"))
        .bytes()
        .await
        .expect("object bytes");
    let served = client
        .get(format!("{}/api/v1/videos/{id}/file", api.base))
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(served, stored, "the API serves the stored MP4");
    let anonymous = client
        .get(format!("http://127.0.0.1:{}/{bucket}/{key}", s3.port))
        .send()
        .await
        .expect("anonymous GET");
    assert_eq!(
        anonymous.status(),
        403,
        "the bucket refuses unsigned requests"
    );

    drop(conn);
    drop((api, worker));
    drop_database(db_name);
}
