//! Live avatar sessions (SPEC §10) end to end on a real server: the REST lifecycle, the idle
//! stream, speak → `speaking_started` / `word` / `speaking_ended`, interrupt on the next frame
//! with the queue dropped, the limits, the idle timeout, the MSE fallback over the WebSocket,
//! and a real WebRTC peer (aiortc, from the test tools' virtualenv) decoding the video and
//! audio. Every wait is on an event with a generous deadline; a session "still speaking" is
//! made so by a long text.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Backend, TestApp, assert_problem, problem_body, pytool, spawn_app, spawn_app_with,
};

const WAIT: Duration = Duration::from_secs(60);

/// Long by construction: over half a minute of speech.
const LONG: &str = "This sentence is long on purpose, so that the avatar is still speaking \
    when the test interrupts it. It goes on and on about nothing in particular, describing \
    the weather, the colour of the sky, the sound of the sea, the smell of fresh bread in \
    the morning, and a great many other things that take a long while to say aloud, one \
    word after another, until the listener has quite forgotten how it began.";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(app: &TestApp, body: Value) -> Value {
    let res = app.post_json("/api/v1/sessions", &body).await;
    assert_eq!(res.status(), 201, "create: {:?}", res.text().await);
    res.json().await.expect("json")
}

async fn events(app: &TestApp, id: &str, query: &str) -> Ws {
    let url = app
        .url(&format!("/api/v1/sessions/{id}/ws{query}"))
        .replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let hello = next_text(&mut ws).await;
    assert_eq!(hello["type"], "session");
    assert_eq!(hello["session"]["id"], id);
    ws
}

/// The next text message, skipping binary ones.
async fn next_text(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("json"),
            Ok(Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// Reads events until one matches; returns all read.
async fn until(ws: &mut Ws, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let e = next_text(ws).await;
        let stop = done(&e);
        seen.push(e);
        if stop {
            return seen;
        }
    }
}

/// The socket hears `closed` with `reason`; the session is gone and no longer counted.
async fn assert_closed(app: &TestApp, ws: &mut Ws, id: &str, reason: &str) {
    let seen = until(ws, |e| e["type"] == "closed").await;
    assert_eq!(seen.last().expect("closed")["reason"], reason);
    assert_problem(
        app.get(&format!("/api/v1/sessions/{id}")).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(app.metric("reelgen_sessions_open").await, Some(0.0));
}

async fn speak(app: &TestApp, id: &str, text: &str) -> String {
    let res = app
        .post_json(
            &format!("/api/v1/sessions/{id}/speak"),
            &json!({ "text": text }),
        )
        .await;
    assert_eq!(res.status(), 202, "speak: {:?}", res.text().await);
    let body: Value = res.json().await.expect("json");
    assert!(body["duration_s"].as_f64().expect("duration") > 0.0);
    body["utterance_id"]
        .as_str()
        .expect("utterance id")
        .to_string()
}

#[actix_web::test]
async fn a_session_idles_speaks_every_word_in_order_and_closes_when_deleted() {
    let app = spawn_app().await;
    let s = open(&app, json!({"avatar": {"id": "marcus"}, "fps": 25})).await;
    let id = s["id"].as_str().expect("id");
    assert_eq!(s["status"], "idle");
    assert_eq!(s["dimension"], json!({"width": 640, "height": 360}));
    assert_eq!(
        s["links"]["webrtc"],
        format!("/api/v1/sessions/{id}/webrtc")
    );
    let listed = app.get_json("/api/v1/sessions").await;
    assert_eq!(listed["sessions"][0]["id"], id);
    assert_eq!(app.metric("reelgen_sessions_open").await, Some(1.0));

    // The idle stream flows: frames keep coming with nothing said.
    let mut frames = 0;
    for _ in 0..600 {
        frames = app.get_json(&format!("/api/v1/sessions/{id}")).await["frames"]
            .as_u64()
            .expect("frames");
        if frames >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(frames >= 30, "the idle stream stalled at {frames} frames");

    let mut ws = events(&app, id, "").await;
    let uid = speak(&app, id, "Hello there, my friend. I am live!").await;
    let seen = until(&mut ws, |e| e["type"] == "speaking_ended").await;
    let started = seen
        .iter()
        .find(|e| e["type"] == "speaking_started")
        .expect("speaking_started");
    assert_eq!(started["utterance_id"], uid.as_str());
    assert!(started["latency_ms"].as_f64().expect("latency") >= 0.0);
    let words: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "word")
        .map(|e| e["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        words,
        ["Hello", "there,", "my", "friend.", "I", "am", "live!"]
    );
    let frames_of: Vec<u64> = seen
        .iter()
        .filter(|e| e["type"] == "word")
        .map(|e| e["frame"].as_u64().expect("frame"))
        .collect();
    assert!(frames_of.windows(2).all(|w| w[0] <= w[1]), "{frames_of:?}");
    let ended = seen.last().expect("ended");
    assert_eq!(ended["utterance_id"], uid.as_str());
    assert_eq!(ended["interrupted"], false);
    assert!(
        app.metric("reelgen_session_speak_latency_seconds_count")
            .await
            >= Some(1.0)
    );

    let res = app
        .client
        .delete(app.url(&format!("/api/v1/sessions/{id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    assert_closed(&app, &mut ws, id, "deleted").await;
}

#[actix_web::test]
async fn an_interrupt_ends_speech_on_the_next_frame_and_drops_the_queue() {
    let app = spawn_app().await;
    let s = open(&app, json!({})).await;
    let id = s["id"].as_str().expect("id");
    let mut ws = events(&app, id, "").await;
    let long = speak(&app, id, LONG).await;
    let queued = speak(&app, id, "You will never hear this.").await;
    until(&mut ws, |e| {
        e["type"] == "word" && e["utterance_id"] == long.as_str()
    })
    .await;

    let res = app
        .post_json(&format!("/api/v1/sessions/{id}/interrupt"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let cut: Value = res.json().await.expect("json");
    assert_eq!(cut["stopped"], long.as_str());
    assert_eq!(cut["dropped"], json!([queued]));
    let seen = until(&mut ws, |e| e["type"] == "speaking_ended").await;
    let ended = seen.last().expect("ended");
    assert_eq!(ended["utterance_id"], long.as_str());
    assert_eq!(ended["interrupted"], true);
    // Cut on the very frame the interrupt named: the next one after it arrived.
    assert_eq!(ended["frame"], cut["frame"]);

    // The dropped one is never said: the next utterance to start is a new one.
    let next = speak(&app, id, "Back again.").await;
    let seen = until(&mut ws, |e| e["type"] == "speaking_started").await;
    assert_eq!(seen.last().expect("started")["utterance_id"], next.as_str());
    assert!(seen.iter().all(|e| e["utterance_id"] != queued.as_str()));

    // An interrupt with nothing said stops nothing.
    until(&mut ws, |e| e["type"] == "speaking_ended").await;
    let res = app
        .post_json(&format!("/api/v1/sessions/{id}/interrupt"), &json!({}))
        .await;
    let idle: Value = res.json().await.expect("json");
    assert_eq!(idle["stopped"], Value::Null);
    assert_eq!(idle["dropped"], json!([]));
}

#[actix_web::test]
async fn bad_requests_and_limits_are_problems_never_crashes() {
    let app = spawn_app_with(Backend::Sqlite, &[("MAX_SESSIONS", "1")]).await;
    for (body, field) in [
        (
            json!({"dimension": {"width": 1920, "height": 1080}}),
            "dimension",
        ),
        (json!({"fps": 60}), "fps"),
        (json!({"avatar": {"id": "nobody"}}), "avatar.id"),
        (json!({"voice": {"id": "no-such-voice"}}), "voice.id"),
        (json!({"script": "hello"}), "script"),
    ] {
        let res = app.post_json("/api/v1/sessions", &body).await;
        let p = problem_body(res, 422).await;
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().expect("field"))
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {fields:?}"
        );
    }

    let s = open(&app, json!({})).await;
    let id = s["id"].as_str().expect("id");
    // MAX_SESSIONS=1: the next one is refused.
    let res = app.post_json("/api/v1/sessions", &json!({})).await;
    assert_problem(res, 429, "too_many_sessions").await;

    let speak_path = format!("/api/v1/sessions/{id}/speak");
    for body in [
        json!({}),
        json!({"text": ""}),
        json!({"text": "   "}),
        json!({"text": 5}),
        json!({"text": "x".repeat(1001)}),
        json!({"text": "hi", "voice": "other"}),
        json!({"text": "an <unknown/> tag"}),
    ] {
        let res = app.post_json(&speak_path, &body).await;
        problem_body(res, 422).await;
    }
    // The queue holds at most 4000 characters waiting to be said.
    let thousand = format!("{} ", "word ".repeat(199)).trim_end().to_string() + ".";
    let mut full = None;
    for _ in 0..5 {
        let res = app
            .post_json(&speak_path, &json!({ "text": thousand }))
            .await;
        if res.status() != 202 {
            full = Some(res);
            break;
        }
    }
    assert_problem(full.expect("the fifth is refused"), 409, "speak_queue_full").await;
    app.post_json(&format!("/api/v1/sessions/{id}/interrupt"), &json!({}))
        .await;

    // More than 10 speaks at once (5 a second, burst 10) are rate limited.
    let requests = (0..60).map(|_| {
        app.client
            .post(app.url(&speak_path))
            .json(&json!({"text": "Hi."}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("response").status().as_u16())
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [202, 409, 429].contains(s)),
        "{statuses:?}"
    );

    let offer_path = format!("/api/v1/sessions/{id}/webrtc");
    for body in [
        json!({"type": "answer", "sdp": "v=0"}),
        json!({"type": "offer"}),
        json!({"type": "offer", "sdp": "this is not sdp"}),
        json!({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n"}),
    ] {
        let res = app.post_json(&offer_path, &body).await;
        assert_problem(res, 400, "invalid_offer").await;
    }
    let unknown = "/api/v1/sessions/0190c7a6-0000-7000-8000-000000000000";
    assert_problem(app.get(unknown).await, 404, "not_found").await;
    let res = app
        .post_json(&format!("{unknown}/speak"), &json!({"text": "hi"}))
        .await;
    assert_problem(res, 404, "not_found").await;
}

#[actix_web::test]
async fn sessions_belong_to_their_tenant() {
    let app = spawn_app_with(Backend::Sqlite, &[("AUTH_MODE", "api_key")]).await;
    let (a, b) = (app.api_key("acme").await, app.api_key("other").await);
    let res = app
        .client
        .post(app.url("/api/v1/sessions"))
        .header("X-Api-Key", &a)
        .json(&json!({}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    for (method, path) in [
        ("GET", format!("/api/v1/sessions/{id}")),
        ("POST", format!("/api/v1/sessions/{id}/speak")),
        ("POST", format!("/api/v1/sessions/{id}/interrupt")),
        ("DELETE", format!("/api/v1/sessions/{id}")),
    ] {
        let res = app
            .client
            .request(method.parse().expect("method"), app.url(&path))
            .header("X-Api-Key", &b)
            .json(&json!({"text": "hi"}))
            .send()
            .await
            .expect("request");
        assert_problem(res, 404, "not_found").await;
    }
    let theirs = app
        .client
        .get(app.url("/api/v1/sessions"))
        .header("X-Api-Key", &b)
        .send()
        .await
        .expect("list")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(theirs["sessions"], json!([]));
}

#[actix_web::test]
async fn a_session_nobody_speaks_to_closes_after_the_idle_timeout() {
    let app = spawn_app_with(Backend::Sqlite, &[("SESSION_IDLE_TIMEOUT", "1")]).await;
    let s = open(&app, json!({})).await;
    let id = s["id"].as_str().expect("id");
    let mut ws = events(&app, id, "").await;
    assert_closed(&app, &mut ws, id, "idle_timeout").await;
}

#[actix_web::test]
async fn the_websocket_fallback_streams_fragmented_mp4_as_the_avatar_speaks() {
    let app = spawn_app().await;
    let s = open(&app, json!({"dimension": {"width": 320, "height": 180}})).await;
    let id = s["id"].as_str().expect("id");
    let mut ws = events(&app, id, "?media=mse").await;
    speak(&app, id, "Streaming to a browser without WebRTC.").await;
    let (mut mime, mut init, mut fragments, mut ended) = (None, None, 0, false);
    while !(ended && fragments >= 4) {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let e: Value = serde_json::from_str(&t).expect("json");
                if e["type"] == "media" {
                    mime = e["mime"].as_str().map(String::from);
                }
                ended |= e["type"] == "speaking_ended";
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                if init.is_none() {
                    assert_eq!(&b[4..8], b"ftyp", "the init segment comes first");
                    init = Some(b.to_vec());
                } else {
                    assert_eq!(&b[4..8], b"moof", "then fragments");
                    fragments += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the stream ended early: {other:?}"),
        }
    }
    let mime = mime.expect("the stream is announced");
    assert!(mime.starts_with("video/mp4; codecs=\"avc1."), "{mime}");
    assert!(mime.contains("mp4a.40.2"), "{mime}");
}

/// Runs the aiortc peer (`tests/sessions/peer.py --mode check`) against a new session;
/// returns its JSON report.
async fn webrtc_peer(app: &TestApp, extra: &[&str]) -> Value {
    let s = open(app, json!({})).await;
    let id = s["id"].as_str().expect("id").to_string();
    let python = pytool("python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sessions/peer.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(["--base", &app.address, "--session", &id, "--mode", "check"])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the peer finished")
        .expect("the peer ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "peer failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("peer json");
    assert_eq!(r["size"], json!([640, 360]), "{r}");
    assert!(r["video_frames"].as_u64() >= Some(100), "{r}");
    assert!(r["audio_frames"].as_u64() >= Some(50), "{r}");
    assert!(r["audio_frames_with_sound"].as_u64() >= Some(1), "{r}");
    let kinds = r["events"].as_array().expect("events");
    for k in ["speaking_started", "word", "speaking_ended"] {
        assert!(
            kinds.iter().any(|e| e == k),
            "no {k} over the data channel: {r}"
        );
    }
    assert_eq!(r["words"][0], "Hello", "{r}");
    // The mouth visibly moved in the decoded pictures after the timed speak.
    assert_eq!(r["latencies_ms"].as_array().map(Vec::len), Some(1), "{r}");
    r
}

#[actix_web::test]
async fn a_real_webrtc_peer_decodes_the_avatar_and_its_voice_and_hears_the_events() {
    let app = spawn_app().await;
    let r = webrtc_peer(&app, &[]).await;
    assert_eq!(r["codec"], "H264", "H.264 is chosen when offered: {r}");
}

#[actix_web::test]
async fn a_peer_without_h264_gets_vp8() {
    let app = spawn_app().await;
    let r = webrtc_peer(&app, &["--codec", "vp8"]).await;
    assert_eq!(r["codec"], "VP8", "{r}");
}
