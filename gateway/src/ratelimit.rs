//! A per-client rate limit (token bucket: `per_second` sustained, `burst` at
//! once) and request ids, for every `/api` request. A client is its user
//! when it sends a token whose signature is good, else its IP address (the
//! peer's: no forwarding header is trusted), never the raw header, so junk
//! tokens share their sender's bucket. The buckets are bounded: past
//! `max_clients` the least recently seen client is forgotten. One gateway
//! instance counts alone; behind a load balancer the limit is per instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use bourse_common::auth::{CLIENT_REQUEST_ID_HEADER, REQUEST_ID_HEADER};
use bourse_common::error::ApiError;

use crate::tokens::Tokens;

#[derive(Debug, Default)]
struct Buckets {
    /// client -> (tokens, last seen, recency stamp)
    buckets: HashMap<String, (f64, Instant, u64)>,
    /// recency stamp -> client, oldest first
    order: BTreeMap<u64, String>,
    stamp: u64,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32, max_clients: usize) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `client`; `Err(seconds to wait)` when there is none.
    pub fn take(&self, client: &str, now: Instant) -> Result<(), f64> {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut *guard;
        b.stamp += 1;
        let stamp = b.stamp;
        let (tokens, at, seen) = match b.buckets.get_mut(client) {
            Some(bucket) => bucket,
            None => {
                while b.buckets.len() >= self.max_clients {
                    let Some((_, oldest)) = b.order.pop_first() else { break };
                    b.buckets.remove(&oldest);
                }
                b.buckets.entry(client.to_string()).or_insert((self.burst, now, stamp))
            }
        };
        b.order.remove(seen);
        *seen = stamp;
        b.order.insert(stamp, client.to_string());
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) / self.per_second.max(f64::MIN_POSITIVE))
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().map(|b| b.buckets.len()).unwrap_or(0)
    }
}

/// 429 `rate_limited` (the wait goes in `Retry-After` where the caller can set it).
pub fn too_many(_wait: f64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests, slow down")
}

/// The gateway's id of a request (in the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn client_key(req: &ServiceRequest) -> String {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .zip(req.app_data::<web::Data<Tokens>>())
        .and_then(|(token, tokens)| tokens.verify(token.trim()).ok());
    match user {
        Some(verified) => format!("user:{}", verified.caller.user_id),
        None => format!("ip:{}", req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default()),
    }
}

/// The middleware: request id in and out, then the rate limit.
pub async fn limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    // The request id is always the gateway's own: a client's is kept apart
    // (`x-client-request-id`), a correlation hint that services never record as a cause.
    let request_id = uuid::Uuid::now_v7().to_string();
    let client_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .and_then(|v| HeaderValue::from_str(v).ok());
    let header = HeaderName::from_static(REQUEST_ID_HEADER);
    let value = HeaderValue::from_str(&request_id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(header.clone(), value.clone());
    req.headers_mut().remove(CLIENT_REQUEST_ID_HEADER);
    if let Some(client_id) = client_id {
        req.headers_mut().insert(HeaderName::from_static(CLIENT_REQUEST_ID_HEADER), client_id);
    }
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let _span = tracing::info_span!("request", request_id = %request_id, path = %req.path()).entered();

    if let Some(limiter) = req.app_data::<web::Data<RateLimiter>>()
        && let Err(wait) = limiter.take(&client_key(&req), Instant::now())
    {
        let err = too_many(wait);
        let mut response = actix_web::ResponseError::error_response(&err);
        let retry = HeaderValue::from_str(&format!("{}", wait.ceil().max(1.0)))
            .unwrap_or(HeaderValue::from_static("1"));
        response.headers_mut().insert(HeaderName::from_static("retry-after"), retry);
        response.headers_mut().insert(header, value);
        return Ok(req.into_response(response).map_into_right_body());
    }
    drop(_span);
    let mut response = next.call(req).await?;
    response.headers_mut().insert(header, value);
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let limiter = RateLimiter::new(10.0, 3, 100);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.take("a", t0).is_ok()));
        assert!(limiter.take("a", t0).is_err());
        assert!(limiter.take("b", t0).is_ok(), "clients are counted apart");
        assert!(limiter.take("a", t0 + Duration::from_millis(100)).is_ok());
        assert!(limiter.take("a", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn past_its_bound_the_least_recently_seen_client_is_forgotten() {
        let limiter = RateLimiter::new(1.0, 1, 2);
        let t0 = Instant::now();
        assert!(limiter.take("a", t0).is_ok());
        assert!(limiter.take("b", t0).is_ok());
        assert!(limiter.take("a", t0).is_err(), "a is seen again: b is now the oldest");
        assert!(limiter.take("c", t0).is_ok());
        assert_eq!(limiter.clients(), 2);
        assert!(limiter.take("a", t0).is_err(), "a was kept, with its empty bucket");
        assert!(limiter.take("b", t0).is_ok(), "b was forgotten: a fresh bucket");
    }
}
