//! HTTP plumbing shared by every route: the one middleware and the body/ETag helpers.
//!
//! [`Edge`] wraps the whole app and is the one place every request enters and every response
//! leaves through: admission (`MAX_CONCURRENT_REQUESTS`, else 503), catching a panicking
//! handler (500, the worker and the process go on), under `/api/v1` and `/performance`
//! authentication into a [`Principal`] and the GCRA rate limit with `RateLimit-*` headers on
//! every response (429 + `Retry-After` when exhausted), rewriting any error that is not
//! problem+json yet (routing 404/405, payload errors, errors raised by middleware) into one,
//! CORS (`CORS_ALLOWED_ORIGINS`: preflights answered before authentication, only listed
//! origins echoed), the browser-facing headers on every response (`nosniff`, frame and
//! referrer policy, the app's Content-Security-Policy), and the request's one measurement,
//! labelled by route *pattern*, into its worker's shard of the request log
//! (`platform::analytics::requests`).
//!
//! Two shortcuts keep what a request costs close to what actix itself costs. A GET this worker
//! answered before from the response cache is answered again from the worker's own copy
//! ([`WorkerCache`]) once authentication and the rate limit have passed, without routing or a
//! handler; the copies follow the cache's invalidations and TTL, and keep their body in each
//! encoding a client negotiated, made once rather than compressed again per request. When
//! neither authentication nor the rate limit needs I/O, that answer is made synchronously in
//! `call` ([`Worker::front`]), with no future boxed for it. And
//! actix's `Compress` sits behind the edge on the way of requests that sent `Accept-Encoding`
//! only: a response nobody asked to encode is not passed through an encoder.
//!
//! It is one hand-written middleware rather than two `from_fn` layers because it runs on every
//! request: per worker it holds the context, its shard and a cache of route labels, so a
//! request costs at most one boxed future and no shared lock (the `reelgen-bench http` figures in
//! README.md are what it is measured by).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, AcceptEncoding, ContentEncoding, Encoding, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Compress;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures_util::future::{Either, LocalBoxFuture, Ready, ready};
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;

use crate::context::Context;
use crate::platform::analytics::requests::ShardHandle;
use crate::platform::auth::{self, Principal};
use crate::platform::cache::{Cached, Head, Replayable, WorkerCache, WorkerCopy};
use crate::platform::error::{ApiError, PROBLEM_JSON, problem_for_status};
use crate::platform::limiter::Decision;

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn is_problem(res: &HttpResponse<impl MessageBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// The app-wide middleware (see the module doc), built in the app factory so that each HTTP
/// worker has its own: its request-log shard (a lock no other worker takes) and its cache of
/// route labels, with the context cloned once per worker rather than once per request.
pub struct Edge {
    worker: Rc<Worker>,
}

impl Edge {
    pub fn new(ctx: &web::Data<Context>) -> Self {
        Self {
            worker: Rc::new(Worker {
                shard: ctx.recorder.analytics().requests_log().shard(),
                ctx: ctx.clone(),
                routes: RefCell::default(),
                copies: WorkerCache::default(),
                remaining: LastValue::default(),
                reset: LastValue::default(),
                limit: LastValue::default(),
            }),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Edge
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = EdgeService<S>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let plain = Rc::new(service);
        let worker = self.worker.clone();
        Box::pin(async move {
            let compressed = Compress::default()
                .new_transform(Shared(plain.clone()))
                .await?;
            Ok(EdgeService {
                inner: Rc::new(Downstream { plain, compressed }),
                worker,
            })
        })
    }
}

pub struct EdgeService<S>
where
    Compress: Transform<Shared<S>, ServiceRequest>,
{
    inner: Rc<Downstream<S>>,
    worker: Rc<Worker>,
}

impl<S, B> Service<ServiceRequest> for EdgeService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Either<
        Ready<Result<Self::Response, Self::Error>>,
        LocalBoxFuture<'static, Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.plain.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let admitted = match self.worker.front(&req, started) {
            Front::Answered(res) => {
                return Either::Left(ready(Ok(self.worker.answered(req, res, started))));
            }
            Front::Admitted(principal, decision) => Some((principal, decision)),
            Front::Undecided => None,
        };
        let inner = self.inner.clone();
        let worker = self.worker.clone();
        Either::Right(Box::pin(async move {
            worker.handle(req, &inner, started, admitted).await
        }))
    }
}

/// The app behind the edge, shared by its two ways in.
pub struct Shared<S>(Rc<S>);

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.0.call(req)
    }
}

/// The app, reached through actix's `Compress` when the client sent `Accept-Encoding` and
/// directly when it did not: a response no client asked to encode is not handed through an
/// encoder (nor its `Content-Type` parsed to decide that) on its way out.
pub struct Downstream<S>
where
    Compress: Transform<Shared<S>, ServiceRequest>,
{
    plain: Rc<S>,
    compressed: Compressed<S>,
}

/// actix's compressing service around the app (its type is not exported by name).
type Compressed<S> = <Compress as Transform<Shared<S>, ServiceRequest>>::Transform;

impl<S, B> Downstream<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    async fn call(
        &self,
        req: ServiceRequest,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        if wants_encoding(&req) {
            Ok(self.compressed.call(req).await?.map_into_boxed_body())
        } else {
            Ok(self.plain.call(req).await?.map_into_boxed_body())
        }
    }
}

fn wants_encoding(req: &ServiceRequest) -> bool {
    req.headers().contains_key(header::ACCEPT_ENCODING)
}

/// Paths under these prefixes are authenticated and rate limited.
const GUARDED: [&str; 2] = ["/api/v1", "/performance"];

fn is_guarded(path: &str) -> bool {
    GUARDED.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Paths whose route label a worker remembers, at most (then it starts again); longer paths
/// are matched each time.
const ROUTE_CACHE: usize = 512;
const ROUTE_CACHE_PATH: usize = 256;

struct Worker {
    ctx: web::Data<Context>,
    shard: ShardHandle,
    /// Request path → its route pattern: matching a path against every pattern again for
    /// each request's label is the costliest thing the edge did.
    routes: RefCell<foldhash::HashMap<Box<str>, Rc<str>>>,
    /// This worker's copies of cached GET responses, answered before routing.
    copies: WorkerCache,
    /// The `RateLimit-*` values last sent: under a steady load they repeat.
    remaining: LastValue<u32>,
    reset: LastValue<u64>,
    limit: LastValue<u32>,
}

/// What the synchronous start of a request ([`Worker::front`]) decided.
enum Front {
    /// Answered from the worker's copy.
    Answered(HttpResponse),
    /// A guarded request, authenticated and through the rate limit (allowed or not).
    Admitted(Principal, Decision),
    /// Nothing yet: the asynchronous path does it all.
    Undecided,
}

/// A header value for the number last given, made again only when the number changes.
struct LastValue<T>(RefCell<Option<(T, HeaderValue)>>);

impl<T> Default for LastValue<T> {
    fn default() -> Self {
        Self(RefCell::new(None))
    }
}

impl<T: Copy + PartialEq> LastValue<T>
where
    HeaderValue: From<T>,
{
    fn of(&self, n: T) -> HeaderValue {
        let mut last = self.0.borrow_mut();
        match &*last {
            Some((m, value)) if *m == n => value.clone(),
            _ => {
                let value = HeaderValue::from(n);
                *last = Some((n, value.clone()));
                value
            }
        }
    }
}

impl Worker {
    /// The route pattern a path matches (`unmatched` when none): the metrics' bounded label.
    fn route(&self, req: &ServiceRequest) -> Rc<str> {
        let path = req.path();
        if let Some(route) = self.routes.borrow().get(path) {
            return route.clone();
        }
        let route: Rc<str> = match req.match_pattern() {
            Some(pattern) => {
                // Paths with ids share one label: reuse it rather than copy it per path.
                let routes = self.routes.borrow();
                routes
                    .values()
                    .find(|known| ***known == *pattern)
                    .cloned()
                    .unwrap_or_else(|| pattern.into())
            }
            None => "unmatched".into(),
        };
        if path.len() <= ROUTE_CACHE_PATH {
            let mut routes = self.routes.borrow_mut();
            if routes.len() >= ROUTE_CACHE {
                routes.clear();
            }
            routes.insert(path.into(), route.clone());
        }
        route
    }

    /// Admission, panic catching, problem+json, headers, metrics — and, under [`GUARDED`],
    /// authentication and the rate limit.
    async fn handle<S, B>(
        &self,
        req: ServiceRequest,
        service: &Downstream<S>,
        started: Instant,
        admitted: Option<(Principal, Decision)>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>
            + 'static,
        B: MessageBody + 'static,
    {
        let ctx = &*self.ctx;
        let method = method_label(req.method());
        let route = self.route(&req);
        let observe = |status: u16| self.observe(method, &route, status, started);

        let (in_flight, _counted) = ctx.recorder.analytics().requests_log().begin();
        let cors = cors_origin(&req, &ctx.config.cors_allowed_origins);
        let page = page_kind(req.path());
        if is_preflight(&req) {
            // Answered before authentication: a browser sends no credentials on a preflight.
            let mut res = HttpResponse::NoContent().finish();
            preflight_headers(res.headers_mut(), &cors);
            decorate(res.headers_mut(), &cors, page);
            observe(204);
            return Ok(req.into_response(res));
        }

        let res: ServiceResponse<BoxBody> = if in_flight > ctx.config.max_concurrent_requests {
            req.into_response(ApiError::Overloaded.error_response())
        } else {
            let outcome = match AssertUnwindSafe(self.guard(req, service, started, admitted))
                .catch_unwind()
                .await
            {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(ApiError::internal(format!("handler panicked: {what}")).into())
                }
            };
            match outcome {
                Ok(res) => res,
                // An error raised by a middleware (or a panic) has no request left to answer
                // with: render it here, decorated like any response, and hand the finished
                // response to the server inside the error.
                Err(err) => {
                    let mut res = problem_of(err.as_response_error());
                    decorate(res.headers_mut(), &cors, page);
                    observe(res.status().as_u16());
                    let cause = err.to_string();
                    return Err(actix_web::error::InternalError::from_response(cause, res).into());
                }
            }
        };

        let mut res = if res.status().as_u16() >= 400 && !is_problem(res.response()) {
            let status = res.status();
            let mut problem = problem_for_status(status).error_response();
            // Keep headers such as Allow and Retry-After that the original response carried.
            copy_headers(res.response(), &mut problem);
            if status == StatusCode::METHOD_NOT_ALLOWED
                && !problem.headers().contains_key(header::ALLOW)
                && let Some(allow) = allowed_methods(res.request())
            {
                problem.headers_mut().insert(header::ALLOW, allow);
            }
            res.into_response(problem)
        } else {
            res
        };
        decorate(res.headers_mut(), &cors, page);

        observe(res.status().as_u16());
        Ok(res)
    }

    /// Under [`GUARDED`]: authentication into a [`Principal`] and the GCRA rate limit, with
    /// `RateLimit-*` headers on every response (429 + `Retry-After` when exhausted); then a
    /// GET this worker has a valid copy of a cached response for is answered from it, without
    /// routing, and a GET answered by a [`Replayable`] response leaves one.
    async fn guard<S, B>(
        &self,
        req: ServiceRequest,
        service: &Downstream<S>,
        now: Instant,
        admitted: Option<(Principal, Decision)>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>
            + 'static,
        B: MessageBody + 'static,
    {
        if !is_guarded(req.path()) {
            return service.call(req).await;
        }
        let ctx = &*self.ctx;
        let (principal, decision) = match admitted {
            Some(admitted) => admitted,
            None => {
                let principal = match ctx.auth.authenticate(req.request()).await {
                    Ok(p) => p,
                    Err(e) => return Ok(req.into_response(e.error_response())),
                };
                let decision = ctx.limiter.check(&principal.rate_key).await;
                (principal, decision)
            }
        };
        if !decision.allowed {
            ctx.metrics.rate_limited_total.inc();
            let mut res = ApiError::RateLimited {
                retry_after_s: decision.retry_after_s,
            }
            .error_response();
            self.rate_headers(res.headers_mut(), &decision);
            return Ok(req.into_response(res));
        }
        let mut copy_at = None;
        if let Some((epoch, copy)) = self.copy_for(&req, &principal.tenant, now) {
            if let Some(copy) = copy
                && let Some(mut res) = answer_from_copy(req.request(), &copy).await
            {
                ctx.cache.count_hit();
                self.rate_headers(res.headers_mut(), &decision);
                return Ok(req.into_response(res));
            }
            copy_at = Some((epoch, principal.tenant.clone()));
        }
        auth::attach(req.request(), principal);
        let mut res = service.call(req).await?;
        if let Some((epoch, tenant)) = copy_at
            && res.status() == StatusCode::OK
        {
            let copy = res.response().extensions().get::<Replayable>().cloned();
            if let Some(copy) = copy {
                self.copies
                    .put(epoch, &tenant, uri_of(res.request()), &copy, copy_head);
            }
        }
        self.rate_headers(res.headers_mut(), &decision);
        Ok(res)
    }

    /// The synchronous start of a guarded GET, for what needs no I/O: authentication from
    /// what is at hand, this process's rate limit, and an answer from the worker's copy —
    /// so that a repeated read is answered without a boxed future or the app behind. Whatever
    /// it cannot decide (a key to look up, Redis's budget, no copy, a body to encode, the
    /// admission limit reached) is left to [`Worker::handle`], with what it did decide.
    fn front(&self, req: &ServiceRequest, now: Instant) -> Front {
        let ctx = &*self.ctx;
        if req.method() != Method::GET
            || !is_guarded(req.path())
            || ctx.recorder.analytics().requests_log().in_flight()
                >= ctx.config.max_concurrent_requests
        {
            return Front::Undecided;
        }
        let Some(Ok(principal)) = ctx.auth.authenticate_now(req.request()) else {
            return Front::Undecided;
        };
        let Some(decision) = ctx.limiter.check_now(&principal.rate_key) else {
            return Front::Undecided;
        };
        if decision.allowed
            && let Some((_, Some(copy))) = self.copy_for(req, &principal.tenant, now)
            && let CopyAnswer::Ready(mut res) = copy_answer(req.request(), &copy)
        {
            ctx.cache.count_hit();
            self.rate_headers(res.headers_mut(), &decision);
            return Front::Answered(res);
        }
        Front::Admitted(principal, decision)
    }

    /// For a GET while this process keeps a response cache: the cache's epoch, and this
    /// worker's copy of the response when it holds a valid one.
    fn copy_for(
        &self,
        req: &ServiceRequest,
        tenant: &str,
        now: Instant,
    ) -> Option<(u64, Option<Rc<WorkerCopy>>)> {
        let cache = &self.ctx.cache;
        if req.method() != Method::GET {
            return None;
        }
        let epoch = cache.local_epoch()?;
        let copy = self
            .copies
            .get(cache, epoch, now, tenant, uri_of(req.request()));
        Some((epoch, copy))
    }

    /// A response [`Worker::front`] made, finished as [`Worker::handle`] finishes any: the
    /// browser-facing headers its copy's head does not carry, and the request's measurement.
    fn answered(
        &self,
        req: ServiceRequest,
        mut res: HttpResponse,
        started: Instant,
    ) -> ServiceResponse<BoxBody> {
        let allowed = &self.ctx.config.cors_allowed_origins;
        if !allowed.is_empty() || res.status() != StatusCode::OK {
            decorate(res.headers_mut(), &cors_origin(&req, allowed), Page::Other);
        }
        let route = self.route(&req);
        self.observe(
            method_label(req.method()),
            &route,
            res.status().as_u16(),
            started,
        );
        req.into_response(res)
    }

    /// The request's one measurement (and its trace line when `ENABLE_TRACING` is on).
    fn observe(&self, method: &'static str, route: &Rc<str>, status: u16, started: Instant) {
        let took = self.shard.record_since(method, route, status, started);
        if self.ctx.config.enable_tracing {
            tracing::info!(
                method,
                route = &**route,
                status,
                elapsed_ms = took.as_secs_f64() * 1e3,
                "request"
            );
        }
    }

    /// `RateLimit-Limit`, `-Remaining` and `-Reset` from the verdict.
    fn rate_headers(&self, h: &mut header::HeaderMap, d: &Decision) {
        h.insert(RATELIMIT_LIMIT, self.limit.of(d.limit));
        h.insert(RATELIMIT_REMAINING, self.remaining.of(d.remaining));
        h.insert(RATELIMIT_RESET, self.reset.of(d.reset_s));
    }
}

const RATELIMIT_LIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: header::HeaderName =
    header::HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: header::HeaderName = header::HeaderName::from_static("ratelimit-reset");

/// The encodings actix's `Compress` offers, in its order of preference.
const ENCODINGS: [Encoding; 5] = [
    Encoding::identity(),
    Encoding::brotli(),
    Encoding::gzip(),
    Encoding::deflate(),
    Encoding::zstd(),
];

/// The encoding a client is answered in, negotiated from `Accept-Encoding` as `Compress`
/// does (no header, or one it cannot parse: identity); `None` when none of ours is
/// acceptable, which the compressor answers (406).
fn negotiated(req: &HttpRequest) -> Option<ContentEncoding> {
    if !req.headers().contains_key(header::ACCEPT_ENCODING) {
        return Some(ContentEncoding::Identity);
    }
    let Some(accept) = req.get_header::<AcceptEncoding>() else {
        return Some(ContentEncoding::Identity);
    };
    match accept.negotiate(ENCODINGS.iter())? {
        Encoding::Known(encoding) => Some(encoding),
        Encoding::Unknown(_) => None,
    }
}

/// What a worker's copy gives a request without encoding anything.
enum CopyAnswer {
    /// The response, as the handler and `Compress` would have given it (but `RateLimit-*`).
    Ready(HttpResponse),
    /// The body must first be made in this encoding.
    Encode(ContentEncoding),
    /// No encoding of ours is acceptable: the compressor answers (406).
    Refused,
}

/// 304 when `If-None-Match` matches, else the copy's head and its body in the negotiated
/// encoding when that has been made.
fn copy_answer(req: &HttpRequest, copy: &WorkerCopy) -> CopyAnswer {
    let Some(encoding) = negotiated(req) else {
        return CopyAnswer::Refused;
    };
    if if_none_match(req, copy.cached.etag.to_str().unwrap_or_default()) {
        return CopyAnswer::Ready(with_etag(req, copy.content_type, &copy.cached));
    }
    let encoded = if encoding == ContentEncoding::Identity {
        None
    } else {
        match copy.encoded(encoding) {
            Some(body) => body.map(|body| (encoding, body)),
            None => return CopyAnswer::Encode(encoding),
        }
    };
    let body = encoded
        .as_ref()
        .map_or_else(|| copy.cached.body.clone(), |(_, body)| body.clone());
    let mut res = HttpResponse::with_body(StatusCode::OK, body);
    let h = res.headers_mut();
    for (name, value) in &copy.head {
        h.insert(name.clone(), value.clone());
    }
    if let Some((encoding, _)) = encoded {
        h.insert(header::CONTENT_ENCODING, encoding.to_header_value());
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    CopyAnswer::Ready(res.map_into_boxed_body())
}

/// The response a worker's copy gives this request ([`copy_answer`]), its body encoded first
/// when this is the copy's first request in that encoding (once per copy, with actix's own
/// encoder); `None` when the compressor must answer instead.
async fn answer_from_copy(req: &HttpRequest, copy: &WorkerCopy) -> Option<HttpResponse> {
    match copy_answer(req, copy) {
        CopyAnswer::Ready(res) => Some(res),
        CopyAnswer::Refused => None,
        CopyAnswer::Encode(encoding) => {
            let body = encode(copy.cached.body.clone(), encoding).await;
            copy.keep_encoded(encoding, body);
            match copy_answer(req, copy) {
                CopyAnswer::Ready(res) => Some(res),
                _ => None,
            }
        }
    }
}

/// The head every answer from a copy of a `content_type` response carries: what
/// [`with_etag`] and [`decorate`] (for an API path, no CORS origin) put on it, made once.
fn copy_head(cached: &Cached, content_type: &'static str) -> Head {
    let mut h = header::HeaderMap::new();
    etag_headers(&mut h, content_type, cached);
    let cors = Cors {
        enabled: false,
        origin: None,
    };
    decorate(&mut h, &cors, Page::Other);
    h.iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// `body` in `encoding` by actix's encoder (what `Compress` streams), or `None` when it does
/// not encode it.
async fn encode(body: Bytes, encoding: ContentEncoding) -> Option<Bytes> {
    let mut head = actix_http::ResponseHead::new(StatusCode::OK);
    let encoder = actix_http::encoding::Encoder::response(encoding, &mut head, body);
    if !head.headers().contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    actix_web::body::to_bytes(encoder).await.ok()
}

/// A request's path and query, as sent: what a worker's copies are found by.
fn uri_of(req: &HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.path(), |pq| pq.as_str())
}

/// Headers of a response being replaced by a problem (all values of each, but its body's own).
fn copy_headers<B>(from: &HttpResponse<B>, to: &mut HttpResponse) {
    for name in from.headers().keys() {
        // The problem's body is its own: not the replaced body's type, length or encoding.
        if name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name == header::CONTENT_ENCODING
        {
            continue;
        }
        to.headers_mut().remove(name);
        for value in from.headers().get_all(name) {
            to.headers_mut().append(name.clone(), value.clone());
        }
    }
}

/// The problem+json rendering of any error: ours as they are, anything else by its status.
fn problem_of(err: &dyn ResponseError) -> HttpResponse {
    let res = err.error_response();
    if is_problem(&res) {
        return res;
    }
    let mut problem = problem_for_status(err.status_code()).error_response();
    copy_headers(&res, &mut problem);
    problem
}

// ---- browser-facing headers --------------------------------------------------------------

/// Which security policy a path's responses carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    /// The browser app (`/`): a strict policy the app satisfies (no inline script or style).
    App,
    /// Swagger UI under `/docs/`: its bundled page, framing still refused.
    Docs,
    /// JSON, media and everything else: nothing may be loaded or framed.
    Other,
}

fn page_kind(path: &str) -> Page {
    if path == "/" {
        Page::App
    } else if path == "/docs" || path.starts_with("/docs/") {
        Page::Docs
    } else {
        Page::Other
    }
}

/// The browser app's policy: its own scripts, styles, images (and the `data:` favicon),
/// the live preview's `blob:` media source, and fetches/WebSockets to this origin only.
pub const APP_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const DOCS_CSP: &str = "frame-ancestors 'none'";
const OTHER_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Headers the browser may read on a cross-origin response.
const EXPOSED: &str = "Location, ETag, Retry-After, RateLimit-Limit, RateLimit-Remaining, \
RateLimit-Reset, Idempotent-Replayed, Content-Range, Accept-Ranges, Content-Length";
const ALLOWED_METHODS: &str = "GET, HEAD, POST, DELETE, OPTIONS";
const ALLOWED_HEADERS: &str =
    "Content-Type, Authorization, X-Api-Key, Idempotency-Key, Range, If-None-Match";

/// CORS for one request: whether any origin is configured, and the request's `Origin`
/// when it is one of them.
struct Cors {
    enabled: bool,
    origin: Option<HeaderValue>,
}

fn cors_origin(req: &ServiceRequest, allowed: &[String]) -> Cors {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|s| allowed.iter().any(|a| a.eq_ignore_ascii_case(s)))
        })
        .cloned();
    Cors {
        enabled: !allowed.is_empty(),
        origin,
    }
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight_headers(h: &mut header::HeaderMap, cors: &Cors) {
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    if cors.origin.is_some() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600));
    }
}

/// Every response: `nosniff`, no framing, no referrer, the page's CSP, and CORS for a
/// listed origin (`Vary: Origin` whenever CORS is configured, so caches keep them apart).
fn decorate(h: &mut header::HeaderMap, cors: &Cors, page: Page) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = match page {
        Page::App => APP_CSP,
        Page::Docs => DOCS_CSP,
        Page::Other => OTHER_CSP,
    };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if let Some(origin) = &cors.origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    if cors.enabled {
        append_vary(h, "Origin");
    }
}

fn append_vary(h: &mut header::HeaderMap, value: &'static str) {
    // All of its values, one line or several (the compressor appends its own): kept in one.
    let existing: Vec<&str> = h
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok())
        .collect();
    if existing
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(value))
    {
        return;
    }
    let joined = if existing.is_empty() {
        HeaderValue::from_static(value)
    } else {
        match HeaderValue::from_str(&format!("{}, {value}", existing.join(", "))) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    h.insert(header::VARY, joined);
}

/// The `Allow` header of a route, from the OpenAPI document.
fn allowed_methods(req: &HttpRequest) -> Option<HeaderValue> {
    crate::api::allowed(&req.match_pattern()?)
}

/// The body's declared `Content-Length`, or 413 before a byte is read when it is over `limit`.
pub fn declared_length(req: &HttpRequest, limit: usize) -> Result<Option<usize>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(declared)
}

/// Content-Type check, size limit and JSON parse of a request body. Returns the value and
/// the raw bytes (for idempotency hashing).
pub async fn json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<(Value, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = declared_length(req, limit)?;
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::MalformedJson(format!("body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok((value, body))
}

fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// A JSON response with ETag, answering 304 when `If-None-Match` matches, from the response
/// cache: [`Replayable`], so the worker keeps a copy to answer the same GET with (which
/// `cached` must depend on no more than its tenant, path and query).
pub fn json_with_etag(req: &HttpRequest, cached: &Arc<Cached>) -> HttpResponse {
    let mut res = with_etag(req, "application/json", cached);
    res.extensions_mut().insert(Replayable {
        cached: cached.clone(),
        content_type: "application/json",
    });
    res
}

/// A response of `content_type` with ETag, answering 304 when `If-None-Match` matches.
pub fn with_etag(req: &HttpRequest, content_type: &'static str, cached: &Cached) -> HttpResponse {
    // Static values and the ETag's value shared with the cache entry: nothing is parsed or
    // allocated per response (this is the hot path of every cached read).
    if if_none_match(req, cached.etag.to_str().unwrap_or_default()) {
        let mut res = HttpResponse::NotModified().finish();
        validator_headers(res.headers_mut(), cached);
        return res;
    }
    let mut res = HttpResponse::Ok().body(cached.body.clone());
    etag_headers(res.headers_mut(), content_type, cached);
    res
}

/// A cached 200's headers: its type, what it varies by, and its validators.
fn etag_headers(h: &mut header::HeaderMap, content_type: &'static str, cached: &Cached) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::VARY,
        HeaderValue::from_static("X-Api-Key, Authorization"),
    );
    validator_headers(h, cached);
}

/// `ETag` and `Cache-Control` (stored privately, revalidated before each use).
fn validator_headers(h: &mut header::HeaderMap, cached: &Cached) {
    h.insert(header::ETAG, cached.etag.clone());
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}

/// Serialises a value into a cacheable response body with its ETag.
pub fn to_cached(value: &impl serde::Serialize) -> Result<Arc<Cached>, ApiError> {
    let body = Bytes::from(serde_json::to_vec(value).map_err(ApiError::internal)?);
    Ok(Arc::new(Cached::new(body)))
}
