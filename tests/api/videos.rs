//! SPEC §3 behaviour, on SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::helpers::{Backend, assert_problem, clients_on_own_connections, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    create_answers_202_with_location_and_normalised_params,
    list_is_newest_first_with_cursor_pages_and_status_filter,
    cancel_moves_to_cancelled_then_answers_409,
    delete_removes_the_video_and_moves_the_queue,
    file_and_thumbnail_are_409_until_completed,
    batch_is_all_or_nothing,
    idempotency_key_replays_and_conflicts,
    etag_gives_304_until_something_changes,
    a_repeated_get_is_answered_alike_and_a_write_reaches_every_worker,
    an_expired_idempotency_key_can_be_used_again,
);

async fn create_answers_202_with_location_and_normalised_params(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let res = app
        .post_json(
            "/api/v1/videos",
            &json!({"script": "  Hello! Welcome to our product tour.  ", "fps": 24, "seed": 42,
                    "dimension": {"width": 640, "height": 360}, "avatar": {"id": "lena", "expression": "friendly"}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let v: Value = res.json().await.expect("json");
    assert_eq!(
        location,
        format!("/api/v1/videos/{}", v["id"].as_str().expect("id"))
    );
    assert_eq!(v["status"], "queued");
    assert_eq!(v["progress"], 0.0);
    assert_eq!(v["queue_position"], 1);
    assert_eq!(v["params"]["script"], "Hello! Welcome to our product tour.");
    assert_eq!(v["params"]["fps"], 24);
    assert_eq!(v["params"]["quality"], "standard");
    assert_eq!(v["params"]["voice"]["id"], "en-us-1");
    assert_eq!(v["params"]["avatar"]["expression"], "friendly");
    assert_eq!(v["params"]["seed"], 42);
    let frames = v["frames_total"].as_f64().expect("frames");
    let expected = v["duration_s"].as_f64().expect("duration") * 24.0;
    assert!((frames - expected).abs() <= 1.0, "{frames} vs {expected}");
    assert_eq!(v["links"]["events"], format!("{location}/ws"));
    // The same video comes back from GET.
    let got: Value = app.get(&location).await.json().await.expect("json");
    assert_eq!(got["id"], v["id"]);
    assert_eq!(got["params"], v["params"]);
    let second = app.create_script("Second in line.").await;
    assert_eq!(second["queue_position"], 2);
}

async fn list_is_newest_first_with_cursor_pages_and_status_filter(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_script(&format!("Video number {i}.")).await["id"].clone());
    }
    ids.reverse();
    let cancel = app
        .client
        .post(app.url(&format!(
            "/api/v1/videos/{}/cancel",
            ids[1].as_str().expect("id")
        )))
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), 200);

    let mut seen = Vec::new();
    let mut url = "/api/v1/videos?limit=2".to_string();
    loop {
        let page: Value = app.get(&url).await.json().await.expect("json");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|v| v["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/videos?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "all videos, newest first, no duplicates");

    let queued: Value = app
        .get("/api/v1/videos?status=queued")
        .await
        .json()
        .await
        .expect("json");
    let queued_ids: Vec<Value> = queued["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v["id"].clone())
        .collect();
    assert_eq!(
        queued_ids,
        [
            ids[0].clone(),
            ids[2].clone(),
            ids[3].clone(),
            ids[4].clone()
        ]
    );
    let positions: Vec<Value> = queued["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v["queue_position"].clone())
        .collect();
    assert_eq!(positions, [json!(4), json!(3), json!(2), json!(1)]);
    let cancelled: Value = app
        .get("/api/v1/videos?status=cancelled")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["data"][0]["id"], ids[1]);
    assert_eq!(cancelled["data"][0]["queue_position"], Value::Null);
}

async fn cancel_moves_to_cancelled_then_answers_409(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let id = app.create_script("Cancel me.").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let url = app.url(&format!("/api/v1/videos/{id}/cancel"));
    let res = app.client.post(&url).send().await.expect("cancel");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["status"], "cancelled");
    assert!(v["completed_at"].is_string());
    let again = app.client.post(&url).send().await.expect("cancel");
    assert_problem(again, 409, "video_finished").await;
    let got: Value = app
        .get(&format!("/api/v1/videos/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(got["status"], "cancelled");
}

async fn delete_removes_the_video_and_moves_the_queue(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let first = app.create_script("First.").await;
    let second = app.create_script("Second.").await;
    assert_eq!(second["queue_position"], 2);
    let second_url = format!("/api/v1/videos/{}", second["id"].as_str().expect("id"));
    // Warm the cache with the old position, then delete the first video.
    assert_eq!(
        app.get(&second_url)
            .await
            .json::<Value>()
            .await
            .expect("json")["queue_position"],
        2
    );
    let url = app.url(&format!(
        "/api/v1/videos/{}",
        first["id"].as_str().expect("id")
    ));
    assert_eq!(
        app.client
            .delete(&url)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_problem(
        app.client.get(&url).send().await.expect("get"),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.client.delete(&url).send().await.expect("delete"),
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        app.get(&second_url)
            .await
            .json::<Value>()
            .await
            .expect("json")["queue_position"],
        1
    );
}

async fn file_and_thumbnail_are_409_until_completed(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let id = app.create_script("Not yet.").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_problem(
        app.get(&format!("/api/v1/videos/{id}/file")).await,
        409,
        "video_not_ready",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/videos/{id}/thumbnail")).await,
        409,
        "thumbnail_not_ready",
    )
    .await;
    let head = app
        .client
        .head(app.url(&format!("/api/v1/videos/{id}/file")))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 409);
    let missing = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/api/v1/videos/{missing}/file")).await,
        404,
        "not_found",
    )
    .await;
}

async fn batch_is_all_or_nothing(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let bad = json!({"videos": [{"script": "ok"}, {"script": "ok", "fps": 0}, {"script": ""}]});
    let p = assert_problem(
        app.post_json("/api/v1/videos/batch", &bad).await,
        422,
        "invalid_fps",
    )
    .await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["videos[1].fps", "videos[2].script"]);
    let list: Value = app.get("/api/v1/videos").await.json().await.expect("json");
    assert_eq!(
        list["data"].as_array().expect("data").len(),
        0,
        "nothing accepted"
    );

    let good = json!({"videos": (0..10).map(|i| json!({"script": format!("Batch {i}.")})).collect::<Vec<_>>()});
    let res = app.post_json("/api/v1/videos/batch", &good).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.expect("json");
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 10);
    assert_eq!(data[9]["queue_position"], 10);
    let too_many = json!({"videos": (0..51).map(|_| json!({"script": "x"})).collect::<Vec<_>>()});
    assert_problem(
        app.post_json("/api/v1/videos/batch", &too_many).await,
        422,
        "invalid_batch",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/videos/batch", &json!({"videos": []}))
            .await,
        422,
        "invalid_batch",
    )
    .await;
}

async fn idempotency_key_replays_and_conflicts(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let body = json!({"script": "Exactly once."});
    let send = |key: &'static str, body: Value| {
        let req = app
            .client
            .post(app.url("/api/v1/videos"))
            .header("Idempotency-Key", key)
            .json(&body);
        async move { req.send().await.expect("request") }
    };
    let first = send("k-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    let loc = first.headers()["location"].clone();
    let first: Value = first.json().await.expect("json");
    let replay = send("k-1", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["location"], loc);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["id"], first["id"]);
    assert_problem(
        send("k-1", json!({"script": "Something else."})).await,
        409,
        "idempotency_key_reused",
    )
    .await;
    // Concurrent retries with a fresh key still create one video.
    let (a, c) = futures_util::join!(send("k-2", body.clone()), send("k-2", body.clone()));
    let (a, c): (Value, Value) = (a.json().await.expect("json"), c.json().await.expect("json"));
    assert_eq!(a["id"], c["id"]);
    let list: Value = app.get("/api/v1/videos").await.json().await.expect("json");
    assert_eq!(list["data"].as_array().expect("data").len(), 2);
}

async fn etag_gives_304_until_something_changes(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    for list in [false, true] {
        let id = app.create_script("Cache me.").await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let path = if list {
            "/api/v1/videos".to_string()
        } else {
            format!("/api/v1/videos/{id}")
        };
        let res = app.get(&path).await;
        let etag = res.headers()["etag"].to_str().expect("ascii").to_string();
        let again = app
            .client
            .get(app.url(&path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status(), 304, "{path}");
        // A write that changes the answer changes the ETag.
        app.client
            .post(app.url(&format!("/api/v1/videos/{id}/cancel")))
            .send()
            .await
            .expect("cancel");
        let after = app
            .client
            .get(app.url(&path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("get");
        assert_eq!(after.status(), 200, "{path}");
        assert_ne!(after.headers()["etag"].to_str().expect("ascii"), etag);
        let v: Value = after.json().await.expect("json");
        let status = if list {
            &v["data"][0]["status"]
        } else {
            &v["status"]
        };
        assert_eq!(status, "cancelled");
    }
}

async fn an_expired_idempotency_key_can_be_used_again(b: Backend) {
    use sea_orm::{ActiveModelTrait, Set};
    let app = spawn_app_with(b, &[]).await;
    entity::idempotency::ActiveModel {
        tenant: Set("public".into()),
        key: Set("old-key".into()),
        request_hash: Set("0".repeat(64)),
        status_code: Set(202),
        location: Set(None),
        body: Set("{}".into()),
        created_at: Set(chrono::Utc::now() - chrono::Duration::hours(25)),
    }
    .insert(&app.state.db)
    .await
    .expect("old record");
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Idempotency-Key", "old-key")
        .json(&json!({"script": "A new request with a recycled key."}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["params"]["script"], "A new request with a recycled key.");
}

/// Headers a repeated GET answers alike (the date and the rate budget move on).
fn stable_headers(res: &reqwest::Response) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "date" | "ratelimit-remaining" | "ratelimit-reset"
            )
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    h.sort();
    h
}

async fn a_repeated_get_is_answered_alike_and_a_write_reaches_every_worker(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let id = app.create_script("Copy me.").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    // One connection per client: the server spreads them over its two workers, and each
    // worker keeps its own copy of what it answered.
    let clients = clients_on_own_connections(6);
    for path in ["/api/v1/videos", &format!("/api/v1/videos/{id}")] {
        let first = clients[0].get(app.url(path)).send().await.expect("get");
        assert_eq!(first.status(), 200);
        let headers = stable_headers(&first);
        assert!(
            headers.iter().any(|(k, _)| k == "ratelimit-limit"),
            "{headers:?}"
        );
        let body = first.bytes().await.expect("body");
        for client in &clients {
            for _ in 0..3 {
                let again = client.get(app.url(path)).send().await.expect("get");
                assert_eq!(again.status(), 200, "{path}");
                assert_eq!(stable_headers(&again), headers, "{path}");
                assert!(again.headers().contains_key("ratelimit-remaining"));
                assert_eq!(again.bytes().await.expect("body"), body, "{path}");
            }
        }
    }
    // A write through one connection is seen through every other at once.
    let cancel = clients[0]
        .post(app.url(&format!("/api/v1/videos/{id}/cancel")))
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), 200);
    for client in &clients {
        let list: Value = client
            .get(app.url("/api/v1/videos"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(list["data"][0]["status"], "cancelled", "{list}");
        let one: Value = client
            .get(app.url(&format!("/api/v1/videos/{id}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(one["status"], "cancelled", "{one}");
    }
}
