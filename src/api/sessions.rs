//! Live avatar sessions over HTTP (SPEC §10): create, read, list and delete a session, send it
//! text (`speak`: the voice speaks it here, then it queues on the session thread), cut it
//! short (`interrupt`), watch it over WebRTC (`webrtc`: offer in, answer out) or over a
//! WebSocket (`ws`: events as JSON, and with `?media=mse` the fMP4 stream as binary frames).
//! What a session is and does belongs to [`crate::sessions`]; this is its HTTP edge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::api::edge::json_body;
use crate::api::socket::{Socket, Upkeep};
use crate::context::Context;
use crate::platform::auth::Principal;
use crate::platform::error::{ApiError, FieldError, Problem};
use crate::render::media::LiveChunk;
use crate::render::media::live::Fmp4Stream;
use crate::render::media::webrtc::{WebRtcError, WebRtcPeer};
use crate::render::timeline::live;
use crate::sessions::{self, Command, Interrupted, OpenError, SessionEvent, Shared};

const HEARTBEAT: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A session: `{"id", "status", "avatar", "voice", "background", "dimension", "fps",
/// "frames", "viewers", "queued_chars", "created_at", "ice_servers", "links"}`.
fn view(s: &Shared) -> Value {
    let p = &s.params;
    let base = format!("/api/v1/sessions/{}", s.id);
    json!({
        "id": s.id,
        "status": s.status(),
        "avatar": p.avatar,
        "voice": p.voice,
        "background": p.background,
        "dimension": p.dimension,
        "fps": p.fps,
        "frames": s.frames.load(Ordering::Relaxed),
        "viewers": s.viewers.load(Ordering::Relaxed),
        "queued_chars": s.queued_chars(),
        "created_at": s.created_at,
        "links": {
            "self": base,
            "webrtc": format!("{base}/webrtc"),
            "ws": format!("{base}/ws"),
            "speak": format!("{base}/speak"),
            "interrupt": format!("{base}/interrupt"),
        },
    })
}

fn session(state: &Context, who: &Principal, id: Uuid) -> Result<Arc<Shared>, ApiError> {
    state
        .sessions
        .get(&who.tenant, id)
        .ok_or(ApiError::NotFound("session"))
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Full(_) => ApiError::AtLimit {
                code: "too_many_sessions",
                detail: e.to_string(),
            },
            OpenError::Device(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Start a live session
///
/// `{"avatar", "voice", "background", "dimension" (≤ 1280×720, default 640×360), "fps"
/// (5–30, default 25)}`, each as in a video request (a custom avatar too). The avatar idles
/// until it is sent text. At most `MAX_SESSIONS` run at once (429 `too_many_sessions`); one
/// nobody speaks to for `SESSION_IDLE_TIMEOUT` closes.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 201, description = "the Session", body = Object),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (value, _) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let params = sessions::parse_request(&value, &state.catalog).map_err(ApiError::Validation)?;
    let mut one = [(String::new(), params)];
    crate::videos::avatars::resolve(&state.db, &who.tenant, &state.catalog, &mut one)
        .await?
        .map_err(ApiError::Validation)?;
    let [(_, params)] = one;
    let (all, tenant) = (state.sessions.clone(), who.tenant.clone());
    let shared = web::block(move || all.open(&tenant, params))
        .await
        .map_err(ApiError::internal)??;
    let mut body = view(&shared);
    body["ice_servers"] = json!(state.sessions.ice().browser_urls());
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/sessions/{}", shared.id)))
        .json(body))
}

/// The caller's open sessions
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, description = "`{\"sessions\": [Session]}`", body = Object)))]
pub async fn list(state: web::Data<Context>, who: Principal) -> Result<HttpResponse, ApiError> {
    let all: Vec<Value> = state
        .sessions
        .list(&who.tenant)
        .iter()
        .map(|s| view(s))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sessions": all })))
}

/// One session
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the Session", body = Object),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let s = session(&state, &who, id.into_inner())?;
    Ok(HttpResponse::Ok().json(view(&s)))
}

/// Close a session
///
/// Its streams end and its event sockets get `closed` (`reason: "deleted"`).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "closed"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let s = session(&state, &who, id.into_inner())?;
    state.sessions.close(s.id, "deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Say something
///
/// `{"text"}` (at most 1000 characters; `<break time="500ms"/>` pauses as in scripts) is
/// spoken after what is already queued; 202 `{"utterance_id", "duration_s"}` once it is
/// queued. The session's events tell when it starts, each word, and when it ends. At most
/// 4000 characters wait per session (409 `speak_queue_full`) and 5 speaks a second (burst
/// 10; 429 `rate_limited`).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/speak", tag = "sessions",
    params(("id" = Uuid, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, description = "`{\"utterance_id\", \"duration_s\"}`", body = Object),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn speak(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let received = Instant::now();
    let s = session(&state, &who, id.into_inner())?;
    let (value, _) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let text = match value.get("text") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "text",
                "invalid_text",
                "is required: the text to say",
            )]));
        }
    };
    if let Some(extra) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "text"))
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            extra.clone(),
            "unknown_field",
            "unknown field; allowed: text",
        )]));
    }
    sessions::check_text(&text).map_err(|e| ApiError::Validation(vec![e]))?;
    if !s.may_speak() {
        return Err(ApiError::RateLimited { retry_after_s: 1 });
    }
    // One speak prepared at a time per session: utterances queue in the order they came.
    let _turn = s.speak_order.lock().await;
    let epoch = s.epoch.load(Ordering::Relaxed);
    let voice = s
        .params
        .voice
        .clone()
        .ok_or_else(|| ApiError::internal("no voice"))?;
    let tts = s.voices.clone();
    let utterance = web::block(move || live::utterance(&text, &voice, tts.as_ref(), received))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            crate::render::timeline::script::TimelineError::Voice(v) => {
                ApiError::Unavailable(format!("the voice could not speak: {v}"))
            }
            other => ApiError::Validation(vec![FieldError::new(
                "text",
                "invalid_text",
                other.to_string(),
            )]),
        })?;
    let (uid, chars) = (utterance.id, utterance.text.chars().count());
    let duration_s = utterance.duration_s();
    if !s.reserve(uid, chars) {
        return Err(ApiError::conflict(
            "speak_queue_full",
            format!(
                "at most {} characters may wait to be said; {} are waiting",
                sessions::QUEUE_MAX_CHARS,
                s.queued_chars()
            ),
        ));
    }
    if !s.send(Command::Speak {
        utterance: Box::new(utterance),
        epoch,
    }) {
        s.release(uid);
        return Err(ApiError::NotFound("session"));
    }
    Ok(HttpResponse::Accepted().json(json!({"utterance_id": uid, "duration_s": duration_s})))
}

/// Stop talking
///
/// Cuts the utterance being said on the next frame (its sound stops there; the mouth closes
/// smoothly) and drops everything queued. 200 `{"stopped", "dropped", "frame"}`: `frame` is
/// the one `speaking_ended` (`interrupted: true`) is published on.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/interrupt", tag = "sessions",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Interrupted),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn interrupt(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let s = session(&state, &who, id.into_inner())?;
    let epoch = s.epoch.fetch_add(1, Ordering::Relaxed) + 1;
    let (reply, done) = tokio::sync::oneshot::channel();
    if !s.send(Command::Interrupt { epoch, reply }) {
        return Err(ApiError::NotFound("session"));
    }
    let outcome = done.await.map_err(|_| ApiError::NotFound("session"))?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// Watch over WebRTC
///
/// The body is the client's SDP offer, `{"type": "offer", "sdp"}` (non-trickle: gather
/// candidates first); the answer `{"type": "answer", "sdp"}` carries the server's. Video is
/// H.264 when offered (constrained baseline, packetization-mode 1), else VP8; audio is
/// Opus. A data channel the client opens carries the session's events. An offer that is
/// not one is 400 `invalid_offer`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/webrtc", tag = "sessions",
    params(("id" = Uuid, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "`{\"type\": \"answer\", \"sdp\"}`", body = Object),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn webrtc(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let s = session(&state, &who, id.into_inner())?;
    let (value, _) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let bad = |detail: String| ApiError::BadRequest {
        code: "invalid_offer",
        detail,
    };
    if value.get("type").and_then(Value::as_str) != Some("offer") {
        return Err(bad(
            "the body must be {\"type\": \"offer\", \"sdp\": \"…\"}".into(),
        ));
    }
    let sdp = value
        .get("sdp")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("the offer has no sdp".into()))?
        .to_string();
    let (format, ice) = (s.format(), state.sessions.ice().clone());
    let (peer, answer) = web::block(move || WebRtcPeer::answer(&sdp, format, &ice))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            WebRtcError::BadOffer(why) => bad(format!("the offer cannot be answered: {why}")),
            WebRtcError::Media(m) => ApiError::Unavailable(format!("WebRTC: {m}")),
        })?;
    if !s.send(Command::Attach(Box::new(peer))) {
        return Err(ApiError::NotFound("session"));
    }
    Ok(HttpResponse::Ok().json(json!({"type": "answer", "sdp": answer})))
}

/// A session's events (and its stream, for clients without WebRTC)
///
/// WebSocket. Text frames: `{"type": "session", "session"}` first, then `speaking_started`,
/// `word`, `speaking_ended` and finally `closed`, after which the server closes with 1000.
/// With `?media=mse`, a `{"type": "media", "mime"}` message announces the stream, then
/// binary frames carry it as fragmented MP4 (H.264 + AAC): the init segment, then `moof` +
/// `mdat` fragments, one per key frame, at most 0.5 s apart. Browsers may pass the API key
/// as `?access_token=`.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/ws", tag = "sessions",
    params(("id" = Uuid, Path)),
    responses((status = 101, description = "switching to WebSocket"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 426, description = "a plain HTTP request: upgrade to WebSocket", body = Problem, content_type = "application/problem+json")))]
pub async fn ws(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let s = session(&state, &who, id.into_inner())?;
    crate::platform::error::verify_upgrade(&req)?;
    let mse = req.query_string().split('&').any(|kv| kv == "media=mse");
    let mut events = s.subscribe();
    let mut media = if mse {
        let (format, encoder) = (s.format(), s.encoder.clone());
        let (stream, rx) = web::block(move || Fmp4Stream::start(format, &encoder))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::Unavailable(format!("the stream could not start: {e}")))?;
        if !s.send(Command::Attach(Box::new(stream))) {
            return Err(ApiError::NotFound("session"));
        }
        Some(rx)
    } else {
        None
    };
    let (response, mut socket) = Socket::upgrade(
        &req,
        body,
        state.shutdown.subscribe(),
        HEARTBEAT,
        CLIENT_TIMEOUT,
    )?;
    let hello = json!({"type": "session", "session": view(&s)}).to_string();
    actix_web::rt::spawn(async move {
        if !socket.text(hello).await {
            return;
        }
        loop {
            tokio::select! {
                chunk = async { media.as_mut()?.recv().await }, if media.is_some() => match chunk {
                    Some(LiveChunk::Init { data, mime }) => {
                        let announce = json!({"type": "media", "mime": mime}).to_string();
                        if !socket.text(announce).await || !socket.binary(data.into()).await {
                            return;
                        }
                    }
                    Some(LiveChunk::Fragment(data)) => {
                        if !socket.binary(data.into()).await {
                            return;
                        }
                    }
                    None => media = None,
                },
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let closed = matches!(ev, SessionEvent::Closed { .. });
                        if !socket.text(serde_json::to_string(&ev).unwrap_or_default()).await {
                            return;
                        }
                        if closed {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
                upkeep = socket.upkeep() => if upkeep == Upkeep::Ended {
                    return;
                },
            }
        }
        socket.close().await;
    });
    Ok(response)
}

/// The sessions' routes, under `/api/v1`.
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(super::get("/sessions", list).route(web::post().to(create)))
        .service(super::get("/sessions/{id}", get).route(web::delete().to(delete)))
        .service(web::resource("/sessions/{id}/speak").route(web::post().to(speak)))
        .service(web::resource("/sessions/{id}/interrupt").route(web::post().to(interrupt)))
        .service(web::resource("/sessions/{id}/webrtc").route(web::post().to(webrtc)))
        .service(super::get("/sessions/{id}/ws", ws));
}

/// The sessions' OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, get, delete, speak, interrupt, webrtc, ws),
    components(schemas(Interrupted, SessionEvent))
)]
pub struct Doc;
