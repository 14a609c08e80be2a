//! The HTTP edge of users, under `/api`: parse the body, apply the
//! [rules](super::domain), load and store through [storage](super::storage),
//! write the event to the outbox in the same transaction. Input refused by
//! the rules becomes an error response here, in one place.
//!
//! The anonymous routes give nothing away: registration answers 201 alike
//! for a new and a taken address (the owner of a taken one is e-mailed);
//! a token request costs one argon2 check whether the address is known or
//! not; a reset request answers 202 whatever happens.

use actix_web::{HttpRequest, HttpResponse, web};
use bourse_common::auth::Role;
use bourse_common::catalog::{PasswordResetRequested, RegistrationAttempted, UserRegistered};
use bourse_common::db::{Db, DbError, is_unique_violation};
use bourse_common::error::ApiError;
use bourse_common::outbox::Emitter;
use bourse_common::registry;
use bourse_common::secret::Secret;
use bourse_common::{micros_to_time, now_micros};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admin::{self, GrantedBy, Target};
use super::domain::{self, Email, Invalid, Password};
use super::limits::{AuthLimits, Hashing};
use super::sessions::{self, Sessions};
use super::storage::{self, StoredUser};
use crate::settings::Settings;
use crate::tokens::Tokens;

/// The producer of the gateway's messages.
const PRODUCER: &str = registry::GATEWAY.name;

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::unprocessable(invalid.code(), invalid.to_string())
    }
}

/// `{email, password}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// A registered user.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
}

/// A bearer token.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Token {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the e-mail.
    pub token: String,
    pub new_password: String,
}

/// `{role}`: the role to give a user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

/// A user and their role.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRole {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

/// The secret that seals reset tokens for notify-service.
#[derive(Debug, Clone)]
pub struct ResetKey(pub Secret);

/// Inside the `/api` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/users", web::post().to(register))
        .route("/token", web::post().to(token))
        .route("/auth/password-reset", web::post().to(request_reset))
        .route("/auth/password-reset/confirm", web::post().to(confirm_reset))
        .route("/admin/users/{id}/role", web::post().to(set_role));
}

fn client(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// Registers a user; payment-service opens their accounts. A taken address
/// gets the same answer (with an id that names nobody), and its owner an
/// e-mail saying someone tried.
#[utoipa::path(
    post,
    path = "/api/auth/users",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, body = User),
        (status = 422, description = "invalid e-mail or weak password"),
        (status = 429, description = "too many attempts from this address or for this e-mail"),
    )
)]
pub async fn register(
    req: HttpRequest,
    body: web::Json<Credentials>,
    db: web::Data<Db>,
    limits: web::Data<AuthLimits>,
    hashing: web::Data<Hashing>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    limits.take(client(&req), Some(&email))?;
    let email = Email::parse(&email)?;
    let password = Password::parse(password)?;
    let user = StoredUser {
        id: Uuid::now_v7(),
        email: email.clone().into(),
        password_hash: hashing.hash(password).await?,
        role: Role::User,
        token_version: 0,
    };
    let answer = User { id: user.id, email: user.email.clone() };
    let event = UserRegistered { user_id: user.id, email: user.email.clone() };
    let saved = db
        .write(move |c| {
            storage::insert_user(c, &user, now_micros())?;
            let mut out = Emitter::new(PRODUCER);
            out.send(&user.id.to_string(), &event);
            out.flush(c)?;
            Ok::<_, DbError>(())
        })
        .await;
    match saved {
        Ok(()) => {}
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            db.write(move |c| {
                let Some(owner) = storage::find_by_email(c, &email)? else { return Ok::<_, DbError>(()) };
                let mut out = Emitter::new(PRODUCER);
                out.send(
                    &owner.id.to_string(),
                    &RegistrationAttempted { user_id: owner.id, email: owner.email },
                );
                out.flush(c)?;
                Ok(())
            })
            .await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(HttpResponse::Created().json(answer))
}

/// Exchanges an e-mail and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/token",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, body = Token),
        (status = 401, description = "wrong e-mail or password"),
        (status = 429, description = "too many attempts from this address or for this e-mail"),
    )
)]
pub async fn token(
    req: HttpRequest,
    body: web::Json<Credentials>,
    db: web::Data<Db>,
    tokens: web::Data<Tokens>,
    limits: web::Data<AuthLimits>,
    hashing: web::Data<Hashing>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    limits.take(client(&req), Some(&email))?;
    let wrong = || ApiError::unauthorized("wrong e-mail or password");
    let user = match Email::parse(&email) {
        Ok(email) => db.read(move |c| storage::find_by_email(c, &email).map_err(DbError::from)).await?,
        Err(_) => None,
    };
    // An unknown address is checked against a dummy hash: the same cost, the same time.
    if !hashing.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await {
        return Err(wrong());
    }
    let user = user.ok_or_else(wrong)?;
    let access_token = tokens.issue(user.id, user.role, user.token_version)?;
    Ok(HttpResponse::Ok().json(Token {
        access_token,
        token_type: "Bearer".into(),
        expires_in: tokens.ttl.as_secs(),
    }))
}

/// Sends a one-time reset token by e-mail (always 202: whether an address is
/// registered is nobody's business). At most `password_resets_per_hour`
/// e-mails per address; a new token ends the older ones.
#[utoipa::path(
    post,
    path = "/api/auth/password-reset",
    tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "if the address is registered, a token is on its way"),
        (status = 429, description = "too many attempts from this address or for this e-mail"),
    )
)]
pub async fn request_reset(
    req: HttpRequest,
    body: web::Json<ResetRequest>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    limits: web::Data<AuthLimits>,
    key: web::Data<ResetKey>,
) -> Result<HttpResponse, ApiError> {
    limits.take(client(&req), Some(&body.email))?;
    let email = Email::parse(&body.email)?;
    let ttl = settings.password_reset_ttl_seconds;
    let per_hour = i64::from(settings.password_resets_per_hour);
    // Drawn before looking the address up: the same work for any address.
    let token = domain::new_reset_token();
    let sealed_token =
        key.0.seal(&token).ok_or_else(|| ApiError::internal("no randomness to seal a token"))?;
    db.write(move |c| {
        let Some(user) = storage::find_by_email(c, &email)? else { return Ok::<_, DbError>(()) };
        let now = now_micros();
        if storage::resets_since(c, user.id, now - 3_600_000_000)? >= per_hour {
            tracing::info!(user_id = %user.id, "password reset refused: the hourly allowance is spent");
            return Ok(());
        }
        let expires_at = domain::reset_expires_at(now, ttl);
        storage::insert_reset(c, &domain::hash_reset_token(&token), user.id, expires_at, now)?;
        let mut out = Emitter::new(PRODUCER);
        out.send(
            &user.id.to_string(),
            &PasswordResetRequested {
                user_id: user.id,
                email: user.email,
                sealed_token,
                expires_at: micros_to_time(expires_at),
            },
        );
        out.flush(c)?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "requested"})))
}

/// Sets a new password with a reset token (once, before it expires); every
/// access token issued before stops working.
#[utoipa::path(
    post,
    path = "/api/auth/password-reset/confirm",
    tag = "auth",
    request_body = ResetConfirm,
    responses(
        (status = 204, description = "password changed"),
        (status = 400, description = "invalid or expired token"),
        (status = 429, description = "too many attempts from this address"),
    )
)]
pub async fn confirm_reset(
    req: HttpRequest,
    body: web::Json<ResetConfirm>,
    db: web::Data<Db>,
    limits: web::Data<AuthLimits>,
    hashing: web::Data<Hashing>,
    sessions: web::Data<Sessions>,
) -> Result<HttpResponse, ApiError> {
    limits.take(client(&req), None)?;
    let ResetConfirm { token, new_password } = body.into_inner();
    let password_hash = hashing.hash(Password::parse(new_password)?).await?;
    let token_hash = domain::hash_reset_token(&token);
    let changed = db
        .write(move |c| {
            let Some(user_id) = storage::use_reset(c, &token_hash, now_micros())? else {
                return Ok::<_, DbError>(None);
            };
            storage::set_password_hash(c, user_id, &password_hash)?;
            Ok(Some(user_id))
        })
        .await?;
    match changed {
        Some(user_id) => {
            sessions.forget(user_id);
            Ok(HttpResponse::NoContent().finish())
        }
        None => {
            Err(ApiError::bad_request("invalid_reset_token", "the reset token is invalid, used or expired"))
        }
    }
}

/// Gives a user a role (administrators only); audited as `user.role-granted`.
/// The user's older tokens stop working: they carry the old role.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/role",
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the user")),
    request_body = RoleChange,
    responses(
        (status = 200, body = UserRole),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no such user"),
    )
)]
pub async fn set_role(
    sessions::Admin(caller): sessions::Admin,
    path: web::Path<Uuid>,
    body: web::Json<RoleChange>,
    db: web::Data<Db>,
    sessions: web::Data<Sessions>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let user = admin::grant(&db, Target::Id(id), body.role, GrantedBy::Admin(caller.user_id))
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_user", format!("no user {id}")))?;
    sessions.forget(user.id);
    Ok(HttpResponse::Ok().json(UserRole { id: user.id, email: user.email, role: user.role }))
}
