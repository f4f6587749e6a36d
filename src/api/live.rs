//! `GET /api/v1/videos/{id}/ws` (SPEC §4): `snapshot` first, then `status`, `progress`
//! (at most ~10/s) and one terminal message, then close 1000. Unknown or foreign ids are a
//! 404 before the upgrade. One actix-ws session task per connection, with a heartbeat.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::api::socket::{Socket, Upkeep};
use crate::context::Context;
use crate::platform::auth::Principal;
use crate::platform::error::ApiError;
use crate::videos::events::VideoEvent;
use crate::videos::model::VideoStatus;
use crate::videos::model::{VideoError, VideoView};
use crate::videos::store;

const HEARTBEAT: Duration = Duration::from_secs(5);

/// Releases a video's hub channels when the last session holding them ends.
struct Release(crate::videos::events::EventBus, Uuid);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

fn terminal_of(view: &VideoView) -> Option<VideoEvent> {
    match view.status {
        VideoStatus::Completed => Some(VideoEvent::Completed {
            video: Box::new(view.clone()),
        }),
        VideoStatus::Failed => Some(VideoEvent::Failed {
            error: view.error.clone().unwrap_or_else(|| VideoError {
                code: "failed".into(),
                message: String::new(),
            }),
        }),
        VideoStatus::Cancelled => Some(VideoEvent::Cancelled),
        _ => None,
    }
}

/// Live progress of one video
///
/// WebSocket. Text frames: `snapshot` (the Video under `video`) first, then `status`,
/// `progress`, and `completed` / `failed` / `cancelled`, after which the server closes with
/// 1000. Browsers that cannot send headers may pass the API key as `?access_token=`.
/// With `?preview=mse`, binary frames carry the video as fragmented MP4: the init segment
/// (announced by `mime` in the snapshot, or by a `preview` message with `mime` when the
/// video had not started yet), then `moof`+`mdat` fragments, each starting on a key frame.
#[utoipa::path(get, path = "/api/v1/videos/{id}/ws", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 101, description = "switching to WebSocket"),
        (status = 400, description = "a malformed WebSocket handshake", body = crate::platform::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::platform::error::Problem, content_type = "application/problem+json"),
        (status = 426, description = "a plain HTTP request: upgrade to WebSocket", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub async fn ws(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let preview = req.query_string().split('&').any(|kv| kv == "preview=mse");
    // 404 before anything is allocated for an unknown or foreign id.
    if store::get_video(&state.db, &who.tenant, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("video"));
    }
    // A plain GET (or a malformed handshake) is refused before anything is subscribed.
    crate::platform::error::verify_upgrade(&req)?;
    // Declared before the subscriptions, so it is dropped after them on every path (an early
    // return here, or the session's end): the hub then forgets channels nobody watches.
    let release = Release(state.events.clone(), id);
    // Subscribe before reading the snapshot, so nothing published in between is lost.
    let mut events = state.events.subscribe(id);
    let (mut init, mut fragments) = state.events.subscribe_live(id).await;
    let model = store::get_video(&state.db, &who.tenant, id)
        .await?
        .ok_or(ApiError::NotFound("video"))?;
    let position = store::queue_positions(&state.db, std::slice::from_ref(&model))
        .await?
        .pop()
        .flatten();
    let view = VideoView::from_model(model, position);
    let (response, mut socket) = Socket::upgrade(
        &req,
        body,
        state.shutdown.subscribe(),
        HEARTBEAT,
        CLIENT_TIMEOUT,
    )?;

    actix_web::rt::spawn(async move {
        let run = async move {
            let mut snapshot = json!({"type": "snapshot", "video": view});
            if let (true, Some((_, mime))) = (preview, &init) {
                snapshot["mime"] = json!(mime);
            }
            if !socket.text(snapshot.to_string()).await {
                return;
            }
            // Preview: the init segment first, then fragments as they are cut.
            let mut init_sent = false;
            if let (true, Some((data, _))) = (preview, init.take()) {
                if !socket.binary(data).await {
                    return;
                }
                init_sent = true;
            }
            let mut live_open = preview;
            if let Some(done) = terminal_of(&view) {
                let _ = socket
                    .text(serde_json::to_string(&done).unwrap_or_default())
                    .await;
                socket.close().await;
                return;
            }
            loop {
                tokio::select! {
                    frag = fragments.recv(), if live_open => match frag {
                        Ok(data) if init_sent => {
                            if !socket.binary(data).await {
                                return;
                            }
                        }
                        Ok(_) => {}
                        // A slow viewer skips ahead: every fragment starts on a key frame.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => live_open = false,
                    },
                    ev = events.recv() => match ev {
                        Ok(VideoEvent::Preview { mime, init: data }) => {
                            if preview && !init_sent {
                                let announce = json!({"type": "preview", "mime": mime});
                                if !socket.text(announce.to_string()).await || !socket.binary(data).await {
                                    return;
                                }
                                init_sent = true;
                            }
                        }
                        Ok(ev) => {
                            let terminal = ev.is_terminal();
                            if !socket.text(serde_json::to_string(&ev).unwrap_or_default()).await {
                                return;
                            }
                            if terminal {
                                break;
                            }
                        }
                        // Too slow: some progress messages were skipped; carry on from the newest.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                    upkeep = socket.upkeep() => if upkeep == Upkeep::Ended {
                        return;
                    },
                }
            }
            socket.close().await;
        };
        run.await;
        drop(release);
    });
    Ok(response)
}

/// The event socket's route, under `/api/v1`.
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(super::get("/videos/{id}/ws", ws));
}

/// The event socket's OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(paths(ws))]
pub struct Doc;
