//! A client's `Idempotency-Key`: a request sent again with the same key and
//! body returns what the first one made (an order, a withdrawal), never a
//! second one.

use actix_web::HttpRequest;

use crate::error::ApiError;

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// A client's `Idempotency-Key`: 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// An `Idempotency-Key` that is empty or too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 200 characters")]
pub struct InvalidIdempotencyKey;

impl InvalidIdempotencyKey {
    pub fn code(&self) -> &'static str {
        "invalid_idempotency_key"
    }
}

impl From<InvalidIdempotencyKey> for ApiError {
    fn from(e: InvalidIdempotencyKey) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 200;

    /// The request's key, if it sent one (400 when it is empty or too long).
    pub fn of(req: &HttpRequest) -> Result<Option<Self>, InvalidIdempotencyKey> {
        req.headers()
            .get(HEADER)
            .map(|v| {
                v.to_str().map_err(|_| InvalidIdempotencyKey).and_then(|k| Self::try_from(k.to_string()))
            })
            .transpose()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;

    fn try_from(key: String) -> Result<Self, InvalidIdempotencyKey> {
        // Header values that reach here are ASCII: characters and bytes agree.
        if (1..=Self::MAX_CHARS).contains(&key.chars().count()) {
            Ok(Self(key))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_has_1_to_200_characters() {
        assert_eq!(IdempotencyKey::try_from("k".to_string()).unwrap().as_str(), "k");
        assert!(IdempotencyKey::try_from("k".repeat(200)).is_ok());
        for bad in [String::new(), "k".repeat(201)] {
            let err = IdempotencyKey::try_from(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_idempotency_key");
            assert_eq!(err.to_string(), "Idempotency-Key must be 1 to 200 characters");
        }
    }
}
