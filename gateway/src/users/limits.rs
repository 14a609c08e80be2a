//! What bounds the work an anonymous client can cause: a stricter rate limit
//! on `/api/token`, registration and password reset, per client address and
//! per target e-mail address; and a semaphore around argon2 (each hash takes
//! ~19 MiB and tens of milliseconds), so that a burst queues instead of
//! exhausting memory. An unknown address is hashed against a dummy, so that
//! it costs (and takes) what a known one does.

use std::net::IpAddr;
use std::time::Instant;

use bourse_common::error::ApiError;
use tokio::sync::Semaphore;

use super::domain::{self, Email, Password};
use crate::ratelimit::{RateLimiter, too_many};
use crate::settings::Settings;

#[derive(Debug)]
pub struct AuthLimits {
    by_address: RateLimiter,
    by_email: RateLimiter,
}

impl AuthLimits {
    pub fn new(settings: &Settings) -> Self {
        let per_second = f64::from(settings.auth_rate_limit_per_minute) / 60.0;
        let limiter =
            || RateLimiter::new(per_second, settings.auth_rate_limit_burst, settings.rate_limit_max_clients);
        Self { by_address: limiter(), by_email: limiter() }
    }

    /// Takes one attempt for the client's address and, when the body names
    /// one, the target address; 429 when either is spent.
    pub fn take(&self, client: Option<IpAddr>, email: Option<&str>) -> Result<(), ApiError> {
        let now = Instant::now();
        let address = client.map(|ip| ip.to_string()).unwrap_or_default();
        self.by_address.take(&address, now).map_err(too_many)?;
        if let Some(email) = email {
            let key = Email::parse(email).map(String::from).unwrap_or_else(|_| email.to_lowercase());
            self.by_email.take(&key, now).map_err(too_many)?;
        }
        Ok(())
    }
}

/// argon2, bounded: at most `password_hash_concurrency` hashes at once, off
/// the async workers.
#[derive(Debug)]
pub struct Hashing {
    permits: Semaphore,
    /// The hash an unknown address is checked against.
    dummy: String,
}

impl Hashing {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let dummy = Password::parse(uuid::Uuid::new_v4().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .hash()
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(Self { permits: Semaphore::new(concurrency.max(1)), dummy })
    }

    pub async fn hash(&self, password: Password) -> Result<String, ApiError> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || password.hash())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Whether `password` matches `hash`; with `None` (no such user) the
    /// dummy is checked, which never matches but costs the same.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let matches = tokio::task::spawn_blocking(move || domain::verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        known && matches
    }
}
