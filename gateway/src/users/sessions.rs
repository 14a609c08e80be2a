//! Which tokens are still valid: a token names the user's token version
//! when it was issued, and only the current version is accepted. A password
//! reset or a role change raises the version, revoking every older token.
//! Versions are cached for [`CACHE_TTL`] per gateway instance (the instance
//! that raised a version forgets it at once; other instances within the TTL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, web};
use bourse_common::auth::Caller;
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use uuid::Uuid;

use super::storage;
use crate::tokens::{Tokens, Verified};

pub const CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub struct Sessions {
    versions: Mutex<HashMap<Uuid, (i64, Instant)>>,
}

impl Sessions {
    /// The caller of a verified token whose version is the user's current one.
    pub async fn check(&self, db: &Db, verified: Verified) -> Result<Caller, ApiError> {
        let user = verified.caller.user_id;
        let now = Instant::now();
        let cached =
            self.lock().get(&user).filter(|(_, at)| now.duration_since(*at) < CACHE_TTL).map(|v| v.0);
        let current = match cached {
            Some(v) => Some(v),
            None => {
                let current =
                    db.read(move |c| storage::token_version(c, user).map_err(DbError::from)).await?;
                if let Some(v) = current {
                    let mut versions = self.lock();
                    if versions.len() >= CACHE_MAX {
                        versions.clear();
                    }
                    versions.insert(user, (v, now));
                }
                current
            }
        };
        if current == Some(verified.version) {
            Ok(verified.caller)
        } else {
            Err(ApiError::unauthorized("this token has been revoked: ask for a new one"))
        }
    }

    /// The user's version changed here: read it again next time.
    pub fn forget(&self, user: Uuid) {
        self.lock().remove(&user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (i64, Instant)>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bearer token of a request, if it sends one (malformed: 401).
pub fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| Some(t.trim()))
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))
}

/// The caller, if an administrator: 401 without a valid token, 403 for a user.
pub async fn admin(
    req: &HttpRequest,
    tokens: &Tokens,
    sessions: &Sessions,
    db: &Db,
) -> Result<Caller, ApiError> {
    caller(req, tokens, sessions, db)
        .await?
        .ok_or_else(|| ApiError::unauthorized("a valid bearer token is required"))?
        .require_admin()
}

/// An administrator calling a gateway route, as an extractor: 401 without a
/// valid token, 403 for a user.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Caller);

impl actix_web::FromRequest for Admin {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (Some(tokens), Some(sessions), Some(db)) = (
                req.app_data::<web::Data<Tokens>>(),
                req.app_data::<web::Data<Sessions>>(),
                req.app_data::<web::Data<Db>>(),
            ) else {
                return Err(ApiError::internal(
                    "the gateway's tokens, sessions or database are not configured",
                ));
            };
            admin(&req, tokens, sessions, db).await.map(Admin)
        })
    }
}

/// The caller of a request with a valid, unrevoked bearer token; `None` without one.
pub async fn caller(
    req: &HttpRequest,
    tokens: &Tokens,
    sessions: &Sessions,
    db: &Db,
) -> Result<Option<Caller>, ApiError> {
    let Some(token) = bearer(req)? else { return Ok(None) };
    let verified = tokens.verify(token)?;
    sessions.check(db, verified).await.map(Some)
}
