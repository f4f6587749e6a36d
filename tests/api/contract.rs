//! The OpenAPI document tells the truth: schemathesis (PyPI, installed by
//! `scripts/pytools.sh`) generates requests from `/openapi.json` — valid ones, invalid ones
//! and sequences that follow the documented links — against a live server, and any finding
//! of these checks fails the test: no 5xx, only documented statuses and content types,
//! bodies that match their schemas, and every schema-violating request refused.

use std::time::Duration;

use crate::helpers::{Backend, spawn_app_with};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,negative_data_rejection";

#[actix_web::test]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let exe = crate::helpers::pytool("schemathesis");
    let app = spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_PER_MINUTE", "1000000000")]).await;
    let report = app.data_dir.join("schemathesis");
    let run = tokio::process::Command::new(&exe)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--checks", CHECKS])
        // A fixed seed: the same cases on every run, so a finding is reproducible and the
        // test cannot flake on a rare draw.
        .args([
            "--seed",
            "20261204",
            "--max-examples",
            "40",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "30", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis reported findings ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Its summary reads "N generated, N passed": N must be more than none.
    let generated: u64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" generated,")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        generated > 100,
        "schemathesis ran {generated} cases:\n{stdout}"
    );
}
