//! Who is calling, and the proof that the gateway says so. The gateway
//! authenticates the client (JWT) and forwards the request to a service with
//! the caller's id and role in the headers below, after removing any such
//! header the client sent. It signs each forwarded request with the stack's
//! internal secret ([`InternalSecret`], `security.internal_secret` of every
//! service): a keyed BLAKE2b MAC over the method, the path with its query,
//! the user, the role, the request id and a timestamp ([`GatewayProof`]).
//! A service believes the identity headers only with a valid, fresh proof
//! ([`MAX_PROOF_AGE_SECONDS`]); anything else is 401, whatever it carries.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::secret::{Secret, hex, unhex};

pub const USER_ID_HEADER: &str = "x-bourse-user-id";
pub const ROLE_HEADER: &str = "x-bourse-user-role";
/// The gateway's own id for the request (never the client's).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// A request id the client chose: a correlation hint, never a cause.
pub const CLIENT_REQUEST_ID_HEADER: &str = "x-client-request-id";
/// When the gateway signed the request (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-bourse-timestamp";
/// The gateway's MAC of the request (hex).
pub const SIGNATURE_HEADER: &str = "x-bourse-signature";
/// How old (or how far in the future) a proof may be.
pub const MAX_PROOF_AGE_SECONDS: i64 = 60;

crate::named_enum! {
    /// A user's role.
    #[derive(utoipa::ToSchema)]
    pub enum Role {
        User = "user",
        Admin = "admin",
    }
}

/// The secret the gateway and every service behind it share: never printed
/// (a [`Secret`] of at least [`InternalSecret::MIN_LEN`] characters).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Secret", into = "Secret")]
pub struct InternalSecret(Secret);

impl TryFrom<Secret> for InternalSecret {
    type Error = String;

    fn try_from(secret: Secret) -> Result<Self, String> {
        Self::new(secret.expose())
    }
}

impl From<InternalSecret> for Secret {
    fn from(secret: InternalSecret) -> Secret {
        secret.0
    }
}

impl InternalSecret {
    /// The shortest secret accepted.
    pub const MIN_LEN: usize = 32;

    pub fn new(secret: impl Into<String>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < Self::MIN_LEN {
            return Err(format!("the internal secret needs at least {} characters", Self::MIN_LEN));
        }
        Ok(Self(Secret::new(secret)))
    }

    /// A fresh random secret (256 bits from the operating system).
    pub fn generate() -> Self {
        Self(Secret::random())
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The MAC of one forwarded request.
    fn mac(&self, fields: &ProofFields<'_>) -> Option<blake2::Blake2bMac512> {
        use blake2::digest::{KeyInit, Mac};
        use blake2::{Blake2b512, Digest};
        // Keyed BLAKE2b takes at most 64 key bytes: the key is the secret's hash.
        let key = Blake2b512::digest(self.expose().as_bytes());
        let mut mac = <blake2::Blake2bMac512 as KeyInit>::new_from_slice(&key).ok()?;
        for field in [
            fields.method,
            fields.path_and_query,
            fields.user,
            fields.role,
            fields.request_id,
            &fields.timestamp.to_string(),
        ] {
            // Length-prefixed, so that no two field lists give the same bytes.
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        Some(mac)
    }

    /// The MAC of `fields` (hex), as the gateway sends it.
    pub fn sign(&self, fields: &ProofFields<'_>) -> String {
        use blake2::digest::Mac;
        self.mac(fields).map(|m| hex(&m.finalize().into_bytes())).unwrap_or_default()
    }

    /// The headers of a request one service makes to another as an
    /// administrator (the audit reading chain-service's holdings): the nil
    /// user, the admin role, and the proof the gateway would give it.
    pub fn admin_headers(&self, method: &str, path_and_query: &str) -> Vec<(&'static str, String)> {
        let user = Uuid::nil().to_string();
        let request_id = Uuid::now_v7().to_string();
        let fields = ProofFields {
            method,
            path_and_query,
            user: &user,
            role: Role::Admin.as_str(),
            request_id: &request_id,
            timestamp: chrono::Utc::now().timestamp(),
        };
        let proof = GatewayProof::headers(self, &fields);
        let mut headers = vec![
            (USER_ID_HEADER, user.clone()),
            (ROLE_HEADER, Role::Admin.to_string()),
            (REQUEST_ID_HEADER, request_id.clone()),
        ];
        headers.extend(proof);
        headers
    }

    /// Whether `signature` is this secret's MAC of `fields` (constant time).
    pub fn verify(&self, fields: &ProofFields<'_>, signature: &str) -> bool {
        use blake2::digest::Mac;
        let Some(bytes) = unhex(signature) else { return false };
        self.mac(fields).is_some_and(|m| m.verify_slice(&bytes).is_ok())
    }
}

impl std::fmt::Debug for InternalSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalSecret(***)")
    }
}

/// What a proof covers.
#[derive(Debug, Clone, Copy)]
pub struct ProofFields<'a> {
    pub method: &'a str,
    /// The path with its query, as sent to the service (`/api/orders?page=2`).
    pub path_and_query: &'a str,
    pub user: &'a str,
    pub role: &'a str,
    pub request_id: &'a str,
    pub timestamp: i64,
}

/// The security settings every service reads (`[security]`, `<PREFIX>__SECURITY__*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The secret the gateway signs forwarded requests with and every service
    /// checks them against. A service behind the gateway, and the gateway,
    /// refuse to start without one; `bourse up` generates it per data folder.
    pub internal_secret: Option<InternalSecret>,
}

impl SecurityConfig {
    /// The internal secret, or why the service cannot start without one.
    pub fn require_internal_secret(&self, service: &str) -> anyhow::Result<&InternalSecret> {
        let secret = self.internal_secret.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "{service}: no internal secret: set security.internal_secret (e.g. `<PREFIX>__SECURITY__INTERNAL_SECRET`), \
                 the same in the gateway and every service; `bourse up` makes one in its data folder"
            )
        })?;
        InternalSecret::new(secret.expose()).map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
        Ok(secret)
    }
}

/// What a service checks a forwarded request's proof with (in its app data).
#[derive(Debug, Clone)]
pub struct GatewayProof {
    pub secret: InternalSecret,
}

impl GatewayProof {
    /// The headers that prove `fields` came from the gateway.
    pub fn headers(secret: &InternalSecret, fields: &ProofFields<'_>) -> [(&'static str, String); 2] {
        [(TIMESTAMP_HEADER, fields.timestamp.to_string()), (SIGNATURE_HEADER, secret.sign(fields))]
    }

    /// Whether `req` carries a valid proof made within [`MAX_PROOF_AGE_SECONDS`] of `now`.
    pub fn check(&self, req: &HttpRequest, now: i64) -> Result<(), &'static str> {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let timestamp: i64 = header(TIMESTAMP_HEADER)
            .and_then(|t| t.parse().ok())
            .ok_or("the request carries no gateway proof")?;
        if now.abs_diff(timestamp) > MAX_PROOF_AGE_SECONDS.unsigned_abs() {
            return Err("the gateway proof is stale");
        }
        let signature = header(SIGNATURE_HEADER).ok_or("the request carries no gateway proof")?;
        let path_and_query = req.uri().path_and_query().map_or(req.path(), |p| p.as_str());
        let fields = ProofFields {
            method: req.method().as_str(),
            path_and_query,
            user: header(USER_ID_HEADER).unwrap_or(""),
            role: header(ROLE_HEADER).unwrap_or(""),
            request_id: header(REQUEST_ID_HEADER).unwrap_or(""),
            timestamp,
        };
        if self.secret.verify(&fields, signature) { Ok(()) } else { Err("the gateway proof is invalid") }
    }
}

/// The authenticated caller of a service route; 401 without one, or without
/// the gateway's valid proof for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller is an administrator.
    pub fn require_admin(self) -> Result<Self, ApiError> {
        match self.role {
            Role::Admin => Ok(self),
            Role::User => Err(ApiError::forbidden("this route is for administrators")),
        }
    }

    /// The caller named by `req`'s identity headers, if the gateway's proof holds.
    pub fn from_gateway(req: &HttpRequest, now: i64) -> Result<Self, ApiError> {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let user_id = header(USER_ID_HEADER)
            .and_then(|v| Uuid::parse_str(v).ok())
            .ok_or_else(|| ApiError::unauthorized("a valid bearer token is required"))?;
        // Fail closed: no proof checker (no secret) believes nobody.
        let proof = req
            .app_data::<web::Data<GatewayProof>>()
            .ok_or_else(|| ApiError::unauthorized("this service accepts identities only from the gateway"))?;
        proof.check(req, now).map_err(|why| {
            tracing::warn!(path = %req.path(), why, "identity headers without a valid gateway proof");
            ApiError::unauthorized(why)
        })?;
        let role = match header(ROLE_HEADER) {
            None => Role::User,
            Some(role) => role.parse().map_err(|_| ApiError::unauthorized("unknown role"))?,
        };
        Ok(Caller { user_id, role })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Caller::from_gateway(req, chrono::Utc::now().timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(timestamp: i64) -> ProofFields<'static> {
        ProofFields {
            method: "GET",
            path_and_query: "/api/users/me/accounts",
            user: "0190c0de-0000-7000-8000-000000000001",
            role: "user",
            request_id: "r1",
            timestamp,
        }
    }

    #[test]
    fn a_proof_binds_every_field_and_the_secret() {
        let secret = InternalSecret::generate();
        let signature = secret.sign(&fields(100));
        assert!(secret.verify(&fields(100), &signature));
        assert!(!InternalSecret::generate().verify(&fields(100), &signature));
        assert!(!secret.verify(&fields(101), &signature));
        assert!(!secret.verify(&ProofFields { role: "admin", ..fields(100) }, &signature));
        assert!(
            !secret.verify(
                &ProofFields { path_and_query: "/api/users/me/accounts?x", ..fields(100) },
                &signature
            )
        );
        assert!(!secret.verify(&fields(100), "zz"));
        assert!(!secret.verify(&fields(100), ""));
    }

    #[test]
    fn secrets_are_never_printed_and_short_ones_refused() {
        let secret = InternalSecret::generate();
        assert_eq!(format!("{secret:?}"), "InternalSecret(***)");
        assert!(InternalSecret::new("short").is_err());
        assert!(SecurityConfig::default().require_internal_secret("order-service").is_err());
    }

    #[actix_web::test]
    async fn forged_or_stale_identities_are_refused() {
        use actix_web::test::TestRequest;
        let secret = InternalSecret::generate();
        let proof = web::Data::new(GatewayProof { secret: secret.clone() });
        let user = "0190c0de-0000-7000-8000-000000000001";
        let request = |timestamp: i64, signature: &str| {
            TestRequest::get()
                .uri("/api/users/me/accounts")
                .app_data(proof.clone())
                .insert_header((USER_ID_HEADER, user))
                .insert_header((ROLE_HEADER, "user"))
                .insert_header((REQUEST_ID_HEADER, "r1"))
                .insert_header((TIMESTAMP_HEADER, timestamp.to_string()))
                .insert_header((SIGNATURE_HEADER, signature))
                .to_http_request()
        };
        let good = secret.sign(&fields(1_000));
        assert!(Caller::from_gateway(&request(1_000, &good), 1_030).is_ok());
        assert_eq!(
            Caller::from_gateway(&request(1_000, &good), 1_061).unwrap_err().message,
            "the gateway proof is stale"
        );
        let forged = InternalSecret::generate().sign(&fields(1_000));
        assert_eq!(Caller::from_gateway(&request(1_000, &forged), 1_000).unwrap_err().status.as_u16(), 401);
        let bare = TestRequest::get().uri("/x").insert_header((USER_ID_HEADER, user)).to_http_request();
        assert_eq!(Caller::from_gateway(&bare, 1_000).unwrap_err().status.as_u16(), 401);
    }
}
