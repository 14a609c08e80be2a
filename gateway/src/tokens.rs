//! Bearer tokens: HS256 JWTs carrying the user id and role, with an expiry.

use std::time::Duration;

use bourse_common::auth::{Caller, Role};
use bourse_common::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iat: u64,
    exp: u64,
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
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> Result<String, ApiError> {
        let iat = unix_now();
        let claims = Claims { sub: user_id, role, iat, exp: iat + self.ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The caller of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| Caller { user_id: data.claims.sub, role: data.claims.role })
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_and_a_forged_or_expired_one_is_refused() {
        let tokens = Tokens::new("secret", Duration::from_secs(60));
        let user = Uuid::now_v7();
        let token = tokens.issue(user, Role::Admin).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), Caller { user_id: user, role: Role::Admin });
        assert!(Tokens::new("other", Duration::from_secs(60)).verify(&token).is_err());
        let expired = Tokens::new("secret", Duration::ZERO).issue(user, Role::User).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(tokens.verify(&expired).is_err());
    }
}
