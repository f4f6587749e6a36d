//! The `deploy/` kit against a real Prometheus (Debian's `prometheus` package): it scrapes a
//! running reelgen that served traffic and rendered a job, evaluates `rules.yml`, and every
//! query of the Grafana dashboard returns data — no empty panel — while every metric the
//! rules name exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};

struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_prometheus(target_port: u16) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("reelgen-prom-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = repo().join("deploy/prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: reelgen\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n",
        rules.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prometheus binary (scripts/bootstrap.sh installs Debian's package)");
    Prometheus {
        child,
        dir,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Every PromQL expression of the dashboard, with Grafana's interval variables filled in.
fn dashboard_queries(path: &Path) -> Vec<String> {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) {
                out.push(
                    expr.replace("$__rate_interval", "1m")
                        .replace("$__interval", "15s"),
                );
            }
        }
    }
    out
}

/// The `expr:` lines of the rules file (one line each, by the file's own convention).
fn rule_queries(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("rules")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

/// Metric names an expression reads (not recording-rule names, label names or functions).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_braces = false;
    let mut token = String::new();
    let flush = |token: &mut String, names: &mut BTreeSet<String>| {
        if ["reelgen_", "http_", "process_"]
            .iter()
            .any(|p| token.starts_with(p))
        {
            names.insert(std::mem::take(token));
        }
        token.clear();
    };
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => {
                flush(&mut token, &mut names);
                in_braces = true;
            }
            '}' => in_braces = false,
            c if !in_braces && (c.is_ascii_alphanumeric() || c == '_' || c == ':') => token.push(c),
            _ => flush(&mut token, &mut names),
        }
    }
    flush(&mut token, &mut names);
    names.retain(|n| !n.contains(':'));
    names
}

async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Value {
    let res = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .expect("prometheus answers");
    res.json().await.expect("json")
}

#[actix_web::test]
async fn every_dashboard_query_and_rule_metric_has_data_in_a_real_prometheus() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("EMBEDDED_WORKER", "true"), ("CACHE_TTL", "0")],
    )
    .await;
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let prom = start_prometheus(port);
    let client = reqwest::Client::new();

    // Traffic and one real job (with a cache hit/miss mix and an error).
    let v = app
        .create_video(json!({"script": "Metrics for the dashboard.", "dimension": {"width": 640, "height": 360}, "fps": 24, "quality": "draft"}))
        .await;
    let id = v["id"].as_str().expect("id").to_string();
    for _ in 0..20 {
        app.get("/api/v1/videos").await;
        app.get("/api/v1/avatars").await;
    }
    app.get("/api/v1/videos/not-a-uuid").await;
    app.wait_for(&id, Duration::from_secs(120), |v| {
        v["status"] == "completed"
    })
    .await;
    for _ in 0..10 {
        app.get(&format!("/api/v1/videos/{id}")).await;
    }

    // Let Prometheus scrape a few times after the job (rates need two samples).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = query(
            &client,
            &prom.url,
            "count_over_time(reelgen_jobs_total{status=\"completed\"}[1m])",
        )
        .await;
        let completed_seen = query(
            &client,
            &prom.url,
            "max_over_time(reelgen_jobs_total{status=\"completed\"}[1m])",
        )
        .await;
        let samples = r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        let completed = completed_seen["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if samples >= 5.0 && completed >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape reelgen: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A series first written as the job completes (the MP4's storage write) needs two
    // scrapes before a rate over it has data: wait for every query to have some, however
    // slow the machine, rather than assume the scrapes above were enough.
    let dashboard = dashboard_queries(&repo().join("deploy/grafana/dashboards/reelgen.json"));
    assert!(dashboard.len() >= 20, "{} queries", dashboard.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut empty = Vec::new();
        for expr in &dashboard {
            let r = query(&client, &prom.url, expr).await;
            assert_eq!(r["status"], "success", "{expr}: {r}");
            if r["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
                empty.push(expr.clone());
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without data: {empty:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let rules = rule_queries(&repo().join("deploy/prometheus/rules.yml"));
    assert!(rules.len() >= 8, "{} rule expressions", rules.len());
    let mut names = BTreeSet::new();
    for expr in &rules {
        let r = query(&client, &prom.url, expr).await;
        assert_eq!(r["status"], "success", "{expr}: {r}");
        names.extend(metric_names(expr));
    }
    for expr in &dashboard {
        names.extend(metric_names(expr));
    }
    let mut missing = Vec::new();
    for name in &names {
        let r = query(
            &client,
            &prom.url,
            &format!("count({{__name__=\"{name}\"}})"),
        )
        .await;
        if r["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the kit names but reelgen does not export: {missing:?}"
    );
    assert!(names.len() >= 15, "{names:?}");

    // Prometheus loaded and evaluates every alerting rule of the kit without errors.
    let r: Value = client
        .get(format!("{}/api/v1/rules", prom.url))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let groups = r["data"]["groups"].as_array().expect("groups");
    let alerting: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["type"] == "alerting")
        .collect();
    for name in [
        "high_latency_p95",
        "high_error_rate",
        "queue_backlog",
        "queue_not_draining",
        "low_render_fps",
        "memory_high",
        "disk_low",
        "not_ready",
    ] {
        let rule = alerting
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(rule["health"], "ok", "{rule}");
    }
}
