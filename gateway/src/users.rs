//! Users: registration, tokens and password reset. Passwords are argon2
//! hashes; reset tokens are stored hashed and used once.

use actix_web::{HttpResponse, web};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use bourse_common::auth::Role;
use bourse_common::catalog::{PasswordResetRequested, UserRegistered};
use bourse_common::db::{Db, DbConnection, DbError, is_unique_violation};
use bourse_common::error::ApiError;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tokens::Tokens;
use crate::{NAME, Settings};

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: i64,
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

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;

/// A plausible address: one `@`, a dotted domain, no spaces, at most 254 characters.
fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let invalid = || ApiError::unprocessable("invalid_email", format!("`{raw}` is not an e-mail address"));
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let ok = !local.is_empty()
        && email.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(invalid()) }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(ApiError::unprocessable(
            "weak_password",
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// Hashing is CPU-heavy: it runs off the async workers.
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        // 128 random bits from the OS (uuid v4 draws them with getrandom).
        let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())?;
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

fn find_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<UserRow>> {
    users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(conn).optional()
}

/// Inside the `/api` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/users", web::post().to(register))
        .route("/token", web::post().to(token))
        .route("/auth/password-reset", web::post().to(request_reset))
        .route("/auth/password-reset/confirm", web::post().to(confirm_reset));
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
    let email = normalize_email(&email)?;
    check_password(&password)?;
    let role = if settings.admin_emails.iter().any(|a| a.eq_ignore_ascii_case(&email)) {
        Role::Admin
    } else {
        Role::User
    };
    let row = UserRow {
        id: Uuid::now_v7().to_string(),
        email,
        password_hash: hash_password(password).await?,
        role: role.as_str().into(),
        created_at: now_micros(),
    };
    let user = User { id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?, email: row.email.clone() };
    let event = UserRegistered { user_id: user.id, email: user.email.clone() };
    let saved = db
        .write(move |c| {
            diesel::insert_into(users::table).values(&row).execute(c)?;
            let mut out = Emitter::new(NAME);
            out.send(&row.id, &event);
            out.flush(c)?;
            Ok::<_, DbError>(())
        })
        .await;
    match saved {
        Ok(()) => Ok(HttpResponse::Created().json(user)),
        Err(DbError::Query(e)) if is_unique_violation(&e) => Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "email_taken",
            "this e-mail is already registered",
        )),
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
    let email = normalize_email(&email).map_err(|_| wrong())?;
    let user = db.read(move |c| find_by_email(c, &email).map_err(DbError::from)).await?.ok_or_else(wrong)?;
    if !verify_password(password, user.password_hash.clone()).await {
        return Err(wrong());
    }
    let id = Uuid::parse_str(&user.id).map_err(ApiError::internal)?;
    let role = Role::parse(&user.role).unwrap_or(Role::User);
    let access_token = tokens.issue(id, role)?;
    Ok(HttpResponse::Ok().json(Token {
        access_token,
        token_type: "Bearer".into(),
        expires_in: tokens.ttl.as_secs(),
    }))
}

fn hash_token(token: &str) -> String {
    use std::fmt::Write;
    // A reset token is 256 random bits: a fast hash is enough to keep the
    // stored value useless to a reader of the database.
    let digest = blake2_256(token.as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn blake2_256(data: &[u8]) -> Vec<u8> {
    use blake2::{Blake2b512, Digest};
    Blake2b512::digest(data)[..32].to_vec()
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
    let email = normalize_email(&body.email)?;
    let ttl = settings.password_reset_ttl_seconds as i64;
    db.write(move |c| {
        let Some(user) = find_by_email(c, &email)? else { return Ok::<_, DbError>(()) };
        let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let now = now_micros();
        let expires_at = now + ttl * 1_000_000;
        diesel::insert_into(password_resets::table)
            .values((
                password_resets::token_hash.eq(hash_token(&token)),
                password_resets::user_id.eq(&user.id),
                password_resets::expires_at.eq(expires_at),
            ))
            .execute(c)?;
        let mut out = Emitter::new(NAME);
        out.send(
            &user.id,
            &PasswordResetRequested {
                user_id: Uuid::parse_str(&user.id).unwrap_or_default(),
                email: user.email.clone(),
                token,
                expires_at: bourse_common::micros_to_time(expires_at),
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
    check_password(&new_password)?;
    let hash = hash_password(new_password).await?;
    let token_hash = hash_token(&token);
    let changed = db
        .write(move |c| {
            let now = now_micros();
            let reset = password_resets::table
                .filter(password_resets::token_hash.eq(&token_hash))
                .filter(password_resets::used_at.is_null())
                .filter(password_resets::expires_at.gt(now))
                .select(password_resets::user_id)
                .first::<String>(c)
                .optional()?;
            // Marking it used only where it is still unused makes it one-time under races too.
            let used = diesel::update(
                password_resets::table
                    .filter(password_resets::token_hash.eq(&token_hash))
                    .filter(password_resets::used_at.is_null()),
            )
            .set(password_resets::used_at.eq(now))
            .execute(c)?;
            let used = reset.filter(|_| used == 1);
            let Some(user_id) = used else { return Ok::<_, DbError>(false) };
            diesel::update(users::table.find(user_id)).set(users::password_hash.eq(hash)).execute(c)?;
            Ok(true)
        })
        .await?;
    if changed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::bad_request("invalid_reset_token", "the reset token is invalid, used or expired"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_normalized() {
        assert_eq!(normalize_email(" Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in
            ["", "alice", "@example.com", "alice@example", "a b@example.com", "a@b@example.com", "a@.com"]
        {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
