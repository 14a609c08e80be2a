//! The HTTP edge of users, under `/api`: parse the body, apply the
//! [rules](super::domain), load and store through [storage](super::storage),
//! write the event to the outbox in the same transaction. Input refused by
//! the rules becomes an error response here, in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bourse_common::catalog::{PasswordResetRequested, UserRegistered};
use bourse_common::db::{Db, DbError, is_unique_violation};
use bourse_common::error::ApiError;
use bourse_common::outbox::Emitter;
use bourse_common::registry;
use bourse_common::{micros_to_time, now_micros};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain::{self, Email, Invalid, Password};
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

/// Inside the `/api` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/users", web::post().to(register))
        .route("/token", web::post().to(token))
        .route("/auth/password-reset", web::post().to(request_reset))
        .route("/auth/password-reset/confirm", web::post().to(confirm_reset));
}

/// Hashing is CPU-heavy: it runs off the async workers.
async fn hash(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password.hash())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || domain::verify_password(&password, &hash)).await.unwrap_or(false)
}

/// Registers a user; payment-service opens their accounts.
#[utoipa::path(
    post,
    path = "/api/auth/users",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, body = User),
        (status = 409, description = "e-mail already registered"),
        (status = 422, description = "invalid e-mail or weak password"),
    )
)]
pub async fn register(
    body: web::Json<Credentials>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let email = Email::parse(&email)?;
    let password = Password::parse(password)?;
    let role = domain::role_for(&email, &settings.admin_emails);
    let user =
        StoredUser { id: Uuid::now_v7(), email: email.into(), password_hash: hash(password).await?, role };
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
        Ok(()) => Ok(HttpResponse::Created().json(answer)),
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            Err(ApiError::new(StatusCode::CONFLICT, "email_taken", "this e-mail is already registered"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Exchanges an e-mail and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/token",
    tag = "auth",
    request_body = Credentials,
    responses((status = 200, body = Token), (status = 401, description = "wrong e-mail or password"))
)]
pub async fn token(
    body: web::Json<Credentials>,
    db: web::Data<Db>,
    tokens: web::Data<Tokens>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let wrong = || ApiError::unauthorized("wrong e-mail or password");
    let email = Email::parse(&email).map_err(|_| wrong())?;
    let user = db
        .read(move |c| storage::find_by_email(c, &email).map_err(DbError::from))
        .await?
        .ok_or_else(wrong)?;
    if !verify(password, user.password_hash).await {
        return Err(wrong());
    }
    let access_token = tokens.issue(user.id, user.role)?;
    Ok(HttpResponse::Ok().json(Token {
        access_token,
        token_type: "Bearer".into(),
        expires_in: tokens.ttl.as_secs(),
    }))
}

/// Sends a one-time reset token by e-mail (always 202: whether an address is
/// registered is nobody's business).
#[utoipa::path(
    post,
    path = "/api/auth/password-reset",
    tag = "auth",
    request_body = ResetRequest,
    responses((status = 202, description = "if the address is registered, a token is on its way"))
)]
pub async fn request_reset(
    body: web::Json<ResetRequest>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email)?;
    let ttl = settings.password_reset_ttl_seconds;
    db.write(move |c| {
        let Some(user) = storage::find_by_email(c, &email)? else { return Ok::<_, DbError>(()) };
        let token = domain::new_reset_token();
        let expires_at = domain::reset_expires_at(now_micros(), ttl);
        storage::insert_reset(c, &domain::hash_reset_token(&token), user.id, expires_at)?;
        let mut out = Emitter::new(PRODUCER);
        out.send(
            &user.id.to_string(),
            &PasswordResetRequested {
                user_id: user.id,
                email: user.email,
                token,
                expires_at: micros_to_time(expires_at),
            },
        );
        out.flush(c)?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "requested"})))
}

/// Sets a new password with a reset token (once, before it expires).
#[utoipa::path(
    post,
    path = "/api/auth/password-reset/confirm",
    tag = "auth",
    request_body = ResetConfirm,
    responses((status = 204, description = "password changed"), (status = 400, description = "invalid or expired token"))
)]
pub async fn confirm_reset(
    body: web::Json<ResetConfirm>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let ResetConfirm { token, new_password } = body.into_inner();
    let password_hash = hash(Password::parse(new_password)?).await?;
    let token_hash = domain::hash_reset_token(&token);
    let changed = db
        .write(move |c| {
            let Some(user_id) = storage::use_reset(c, &token_hash, now_micros())? else {
                return Ok::<_, DbError>(false);
            };
            storage::set_password_hash(c, user_id, &password_hash)?;
            Ok(true)
        })
        .await?;
    if changed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::bad_request("invalid_reset_token", "the reset token is invalid, used or expired"))
    }
}
