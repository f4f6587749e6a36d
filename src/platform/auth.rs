//! Who is calling: API keys (create, hash, look up) and the [`Principal`] a request acts as.
//!
//! Keys look like `rg_` + 48 hex characters. Only the SHA-256 of a key is stored. Look-ups are
//! cached for `QUERY_CACHE_TTL` (negative answers too), so a revoked key stops working within
//! that time even when it was revoked by another process (`reelgen apikey revoke`).

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::platform::config::{AuthMode, Config, OPEN_TENANT};
use crate::platform::error::ApiError;
use entity::api_key;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::platform::db::{Db, StoreError, now};

/// The caller a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Owner of the videos this caller may see.
    pub tenant: Arc<str>,
    /// Key of the rate-limit bucket: the API key id, or the client IP in open mode.
    pub rate_key: Arc<str>,
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or(ApiError::Unauthorized),
        )
    }
}

/// A freshly created key: `plain` is shown once and never stored.
pub struct NewKey {
    pub plain: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate_key() -> NewKey {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let plain = format!("rg_{}", hex::encode(raw));
    NewKey {
        hash: hash_key(&plain),
        prefix: plain[..10].to_string(),
        plain,
    }
}

pub fn hash_key(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

/// Resolves credentials to a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    db: Db,
    cache: moka::sync::Cache<String, Option<Arc<Principal>>>,
}

impl Authenticator {
    pub fn new(config: &Config, db: Db) -> Self {
        Self {
            mode: config.auth_mode,
            db,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(
                    config
                        .query_cache_ttl
                        .max(std::time::Duration::from_millis(1)),
                )
                .build(),
        }
    }

    /// The key from `X-Api-Key` or `Authorization: Bearer`.
    fn presented_key(req: &HttpRequest) -> Option<&str> {
        let headers = req.headers();
        if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return Some(v.trim());
        }
        if let Some(auth) = headers
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let (scheme, token) = auth.trim().split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
        }
        // Browsers cannot set headers on a WebSocket: the live route also takes `?access_token=`.
        if req.path().ends_with("/ws") || req.path().ends_with("/performance/alerts") {
            return req
                .query_string()
                .split('&')
                .find_map(|kv| kv.strip_prefix("access_token="));
        }
        None
    }

    /// The caller when that needs no I/O (open mode, or a key whose row is cached); `None`
    /// when [`Auth::authenticate`] must read the key's row.
    pub fn authenticate_now(&self, req: &HttpRequest) -> Option<Result<Principal, ApiError>> {
        match self.mode {
            AuthMode::Open => Some(Ok(open_principal(req.peer_addr().map(|a| a.ip())))),
            AuthMode::ApiKey => {
                let Some(key) = Self::presented_key(req) else {
                    return Some(Err(ApiError::Unauthorized));
                };
                if key.is_empty() || key.len() > 256 {
                    return Some(Err(ApiError::Unauthorized));
                }
                let hit = self.cache.get(&hash_key(key))?;
                Some(hit.map(|p| (*p).clone()).ok_or(ApiError::Unauthorized))
            }
        }
    }

    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        if let Some(known) = self.authenticate_now(req) {
            return known;
        }
        // A key of a valid length was presented and its row is not cached.
        let hash = hash_key(Self::presented_key(req).ok_or(ApiError::Unauthorized)?);
        // Boxed: the query's state would otherwise ride in every request's future.
        let found = Box::pin(find_active_key(&self.db, &hash))
            .await
            .map_err(|e: StoreError| ApiError::Unavailable(e.to_string()))?
            .map(|k| {
                Arc::new(Principal {
                    tenant: k.tenant.into(),
                    rate_key: k.id.to_string().into(),
                })
            });
        self.cache.insert(hash, found.clone());
        found.map(|p| (*p).clone()).ok_or(ApiError::Unauthorized)
    }
}

/// Client addresses whose rate keys a thread remembers, at most (then it starts again).
const OPEN_PEERS: usize = 1024;

/// The open mode's principal for a client address: the open tenant, keyed by the address.
/// Each HTTP worker thread keeps its own tenant and the keys of the addresses it has seen, so
/// a request formats no address and touches no reference count another worker also touches.
fn open_principal(peer: Option<std::net::IpAddr>) -> Principal {
    use std::cell::RefCell;
    thread_local! {
        static TENANT: Arc<str> = OPEN_TENANT.into();
        static UNKNOWN: Arc<str> = "unknown".into();
        static PEERS: RefCell<foldhash::HashMap<std::net::IpAddr, Arc<str>>> = RefCell::default();
    }
    let rate_key = match peer {
        None => UNKNOWN.with(Arc::clone),
        Some(ip) => PEERS.with_borrow_mut(|peers| {
            if let Some(key) = peers.get(&ip) {
                return key.clone();
            }
            if peers.len() >= OPEN_PEERS {
                peers.clear();
            }
            peers
                .entry(ip)
                .or_insert_with(|| ip.to_string().into())
                .clone()
        }),
    };
    Principal {
        tenant: TENANT.with(Arc::clone),
        rate_key,
    }
}

/// Stores the principal for the handlers.
pub fn attach(req: &HttpRequest, principal: Principal) {
    req.extensions_mut().insert(principal);
}

// ---- the keys' rows --------------------------------------------------------------------------

pub async fn create_api_key(db: &Db, model: api_key::Model) -> Result<(), StoreError> {
    api_key::ActiveModel::from(model).insert(db).await?;
    Ok(())
}

pub async fn list_api_keys(db: &Db) -> Result<Vec<api_key::Model>, StoreError> {
    Ok(api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Marks a key revoked; `false` when no active key has that id.
pub async fn revoke_api_key(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let res = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(Some(now())))
        .filter(api_key::Column::Id.eq(id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

pub async fn find_active_key(
    db: &Db,
    key_hash: &str,
) -> Result<Option<api_key::Model>, StoreError> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(key_hash))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.plain, b.plain);
        assert!(a.plain.starts_with("rg_") && a.plain.len() == 51);
        assert_eq!(a.hash, hash_key(&a.plain));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.plain[3..]));
    }

    mod properties {
        use super::*;
        use actix_web::test::TestRequest;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever a client puts in the credential headers is read without a panic,
            /// and a presented key is exactly what was sent, trimmed.
            #[test]
            fn any_credential_header_is_read_safely(
                key in "[ -~]{0,300}",
                scheme in prop_oneof![Just("Bearer".to_string()), Just("bearer".to_string()), "[A-Za-z]{0,10}"],
            ) {
                let req = TestRequest::default().insert_header(("X-Api-Key", key.as_str())).to_http_request();
                prop_assert_eq!(Authenticator::presented_key(&req), Some(key.trim()));
                let bearer = format!("{scheme} {key}");
                let req = TestRequest::default()
                    .insert_header((actix_web::http::header::AUTHORIZATION, bearer.as_str()))
                    .to_http_request();
                let got = Authenticator::presented_key(&req);
                if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() {
                    prop_assert_eq!(got, Some(key.trim()));
                } else {
                    prop_assert_eq!(got, None);
                }
                let _ = hash_key(&key);
            }

            /// Query-string keys on the WebSocket routes, any bytes at all.
            #[test]
            fn any_access_token_query_is_read_safely(qs in "[!-~]{0,200}") {
                let uri = format!("/api/v1/videos/x/ws?{qs}");
                if let Ok(req) = std::panic::catch_unwind(|| TestRequest::get().uri(&uri).to_http_request()) {
                    let _ = Authenticator::presented_key(&req);
                }
            }
        }

        #[test]
        fn a_generated_key_hashes_to_its_stored_hash_every_time() {
            for _ in 0..64 {
                let k = generate_key();
                assert_eq!(hash_key(&k.plain), k.hash);
                assert!(k.plain.starts_with(&k.prefix));
            }
        }
    }
}
