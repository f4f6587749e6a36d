//! SPEC §3b custom avatars over HTTP: made field by field, listed with the built-in ones,
//! previewed as a PNG by the video kernels, used in a video (its look in the frames), kept to
//! their tenant, and deleted without touching videos already made.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, spawn_app_with};

async fn post(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/avatars"))
        .header("X-Api-Key", key)
        .json(body)
        .send()
        .await
        .expect("post")
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("X-Api-Key", key)
        .send()
        .await
        .expect("get")
}

#[actix_web::test]
async fn a_custom_avatar_is_made_previewed_used_and_kept_to_its_tenant() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "api_key"),
            ("EMBEDDED_WORKER", "true"),
            ("CACHE_TTL", "0"),
        ],
    )
    .await;
    let alice = app.api_key("alice").await;
    let bob = app.api_key("bob").await;

    // Field by field.
    let p = assert_problem(
        post(
            &app,
            &alice,
            &json!({"skin_tone": "pink", "hair": {"style": "mohawk", "color": "#12"},
            "eye_color": 3, "base": "nobody", "hat": true}),
        )
        .await,
        422,
        "unknown_field",
    )
    .await;
    let mut fields: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "base",
            "eye_color",
            "hair.color",
            "hair.style",
            "hat",
            "name",
            "skin_tone"
        ]
    );

    let made = post(
        &app,
        &alice,
        &json!({"name": "Brand host", "skin_tone": "#F1C27D", "hair": {"style": "long", "color": "#2E86DE"},
                "eye_color": "#1d9e3f", "outfit_color": "#c0392b", "base": "marcus"}),
    )
    .await;
    assert_eq!(made.status(), 201);
    let avatar: Value = made.json().await.expect("json");
    let id = avatar["id"].as_str().expect("id").to_string();
    assert_eq!(avatar["custom"], true);
    assert_eq!(avatar["skin_tone"], "#f1c27d");
    assert_eq!(avatar["hair"], json!({"style": "long", "color": "#2e86de"}));

    // Listed for Alice after the built-in ones; not for Bob.
    let list: Value = get(&app, &alice, "/api/v1/avatars")
        .await
        .json()
        .await
        .expect("json");
    let data = list["data"].as_array().expect("data");
    assert!(
        data.iter()
            .any(|a| a["id"] == "ava" && a["custom"] == false)
    );
    assert_eq!(data.last().expect("last")["id"], id.as_str());
    let bobs: Value = get(&app, &bob, "/api/v1/avatars")
        .await
        .json()
        .await
        .expect("json");
    assert!(!bobs.to_string().contains(&id));
    for path in [
        format!("/api/v1/avatars/{id}"),
        format!("/api/v1/avatars/{id}/preview"),
    ] {
        assert_problem(get(&app, &bob, &path).await, 404, "not_found").await;
    }

    // A preview by the video kernels: a PNG that differs from its base's.
    let png = get(&app, &alice, &format!("/api/v1/avatars/{id}/preview")).await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let custom_png = png.bytes().await.expect("png");
    assert_eq!(&custom_png[1..4], b"PNG");
    let base_png = get(&app, &alice, "/api/v1/avatars/marcus/preview")
        .await
        .bytes()
        .await
        .expect("png");
    assert_eq!(&base_png[1..4], b"PNG");
    assert_ne!(custom_png, base_png);

    // Bob cannot use it; Alice can, in a scene too.
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("X-Api-Key", &bob)
        .json(&json!({"script": "Not mine.", "avatar": {"id": id}}))
        .send()
        .await
        .expect("post");
    let p = assert_problem(res, 422, "invalid_avatar").await;
    assert_eq!(p["errors"][0]["field"], "avatar.id");
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("X-Api-Key", &alice)
        .json(&json!({"scenes": [{"script": "Hello from my own presenter.", "avatar": {"id": id}, "expression": "friendly"}],
                      "voice": null, "dimension": {"width": 320, "height": 180}, "fps": 5, "quality": "draft"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 202);
    let video: Value = res.json().await.expect("json");
    assert_eq!(
        video["params"]["scenes"][0]["avatar"]["look"]["base"],
        "marcus"
    );
    let vid = video["id"].as_str().expect("id").to_string();

    // Deleting the avatar: gone for new requests; the video asked for keeps its look.
    let del = app
        .client
        .delete(app.url(&format!("/api/v1/avatars/{id}")))
        .header("X-Api-Key", &alice)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    let builtin = app
        .client
        .delete(app.url("/api/v1/avatars/ava"))
        .header("X-Api-Key", &alice)
        .send()
        .await
        .expect("delete");
    assert_problem(builtin, 409, "builtin_avatar").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = get(&app, &alice, &format!("/api/v1/videos/{vid}"))
            .await
            .json()
            .await
            .expect("json");
        if v["status"] == "completed" {
            break;
        }
        assert!(v["status"] != "failed", "{v}");
        assert!(std::time::Instant::now() < deadline, "not completed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&app, &alice, &format!("/api/v1/videos/{vid}/file"))
            .await
            .status(),
        200
    );
}
