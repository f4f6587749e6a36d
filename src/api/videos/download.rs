//! Serving a video's objects from the blob store: `ETag` and `If-None-Match` (304),
//! `Last-Modified`, a single `Range` (206, parsed by actix-files' `HttpRange` against the
//! object's size; anything unsatisfiable or malformed is 416 with `Content-Range: bytes */N`),
//! `HEAD`, and the body streamed from the store with its exact length. Responses are never
//! compressed (`Content-Encoding: identity`): ranges count bytes of the object itself.

use std::time::SystemTime;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, ContentEncoding, HttpDate};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::platform::error::ApiError;
use crate::platform::storage::{BlobStore, Object};

pub(super) async fn serve(
    blobs: &BlobStore,
    req: &HttpRequest,
    id: Uuid,
    object: Object,
    content_type: &'static str,
) -> Result<HttpResponse, ApiError> {
    let meta = blobs
        .stat(id, object)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("file"))?;
    let size = meta.size;
    let etag = match meta.e_tag {
        Some(tag) if tag.starts_with('"') => tag,
        Some(tag) => format!("\"{tag}\""),
        None => format!("\"{size:x}-{:x}\"", meta.last_modified.timestamp_micros()),
    };
    if if_none_match(req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    let range = match req.headers().get(header::RANGE) {
        None => None,
        Some(value) => {
            let parsed = value
                .to_str()
                .ok()
                .and_then(|v| actix_files::HttpRange::parse(v, size).ok());
            match parsed.as_deref() {
                Some([first, ..]) => Some((first.start, first.length)),
                _ => {
                    return Ok(HttpResponse::RangeNotSatisfiable()
                        .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                        .finish());
                }
            }
        }
    };
    let (start, length) = range.unwrap_or((0, size));
    let mut res = if range.is_some() {
        let mut b = HttpResponse::PartialContent();
        b.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + length - 1),
        ));
        b
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag))
        .insert_header((
            header::LAST_MODIFIED,
            HttpDate::from(SystemTime::from(meta.last_modified)),
        ))
        .insert_header(ContentEncoding::Identity);
    let got = blobs
        .get(id, object, range.map(|(s, l)| s..s + l))
        .await
        .map_err(ApiError::internal)?;
    let stream = got
        .into_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    Ok(res.body(SizedStream::new(length, stream)))
}

/// Whether `If-None-Match` lists this ETag (or `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}
