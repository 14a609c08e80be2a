//! Bearer tokens: HS256 JWTs carrying the user id, role and token version,
//! with an expiry. A token is valid only while its version is the user's
//! current one ([`crate::users::sessions`]): a password reset or a role
//! change raises it, which revokes every token issued before.

use std::time::Duration;

use bourse_common::auth::{Caller, Role};
use bourse_common::error::ApiError;
use bourse_common::secret::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iat: u64,
    exp: u64,
    /// The user's token version when it was issued.
    #[serde(default)]
    ver: i64,
}

/// A token whose signature and expiry are good; its version is still to be
/// checked against the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub caller: Caller,
    pub version: i64,
    /// When it expires (seconds since the epoch): private WebSocket channels close then.
    pub expires_at: u64,
}

/// Issues and checks tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Tokens {
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid, role: Role, version: i64) -> Result<String, ApiError> {
        let iat = unix_now();
        let claims = Claims { sub: user_id, role, iat, exp: iat + self.ttl.as_secs(), ver: version };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The caller of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| Verified {
                caller: Caller { user_id: data.claims.sub, role: data.claims.role },
                version: data.claims.ver,
                expires_at: data.claims.exp,
            })
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_and_a_forged_or_expired_one_is_refused() {
        let secret = Secret::random();
        let tokens = Tokens::new(&secret, Duration::from_secs(60));
        let user = Uuid::now_v7();
        let token = tokens.issue(user, Role::Admin, 3).unwrap();
        let verified = tokens.verify(&token).unwrap();
        assert_eq!(verified.caller, Caller { user_id: user, role: Role::Admin });
        assert_eq!(verified.version, 3);
        assert!(Tokens::new(&Secret::random(), Duration::from_secs(60)).verify(&token).is_err());
        let expired = Tokens::new(&secret, Duration::ZERO).issue(user, Role::User, 0).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(tokens.verify(&expired).is_err());
    }
}
