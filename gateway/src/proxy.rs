//! Routing of `/api/...` to the service that owns it, with the caller's
//! identity: the token is checked here, and the service gets the user id
//! and role in headers (any such header from the client is dropped).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bourse_common::auth::{Caller, REQUEST_ID_HEADER, ROLE_HEADER, USER_ID_HEADER};
use bourse_common::error::ApiError;
use futures::StreamExt;

use crate::tokens::Tokens;
use crate::{Settings, Upstreams};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

/// The service owning `path`, and who may call it. `None`: no such route.
pub fn route(path: &str) -> Option<(&'static str, Access)> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let route = if path.starts_with("/api/markets/") && path.ends_with("/book") {
        ("matching-service", Access::Public)
    } else if path == "/api/currencies" || path == "/api/markets" {
        ("order-service", Access::Public)
    } else if under("/api/history/trades") || under("/api/history/candles") {
        ("matching-service", Access::Public)
    } else if under("/api/orders") || under("/api/triggers") {
        ("order-service", Access::User)
    } else if under("/api/users/me/accounts") || under("/api/history/finance") {
        ("payment-service", Access::User)
    } else if under("/api/users/me/wallets") || under("/api/withdrawals") {
        ("chain-service", Access::User)
    } else if under("/api/admin/payments") {
        ("payment-service", Access::Admin)
    } else if under("/api/admin/orders") {
        ("order-service", Access::Admin)
    } else if under("/api/admin/notifications") {
        ("notify-service", Access::Admin)
    } else {
        return None;
    };
    Some(route)
}

/// The caller of a request with a valid bearer token.
pub fn caller(req: &HttpRequest, tokens: &Tokens) -> Result<Option<Caller>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    tokens.verify(token.trim()).map(Some)
}

/// Reads at most `limit` bytes of the body.
async fn body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body may have at most {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Forwards the request to its service and its answer back.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    tokens: web::Data<Tokens>,
    upstreams: web::Data<Upstreams>,
    settings: web::Data<Settings>,
    client: web::Data<reqwest::Client>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let (service, access) = route(path).ok_or_else(|| ApiError::not_found("not_found", "no such route"))?;
    let caller = caller(&req, &tokens)?;
    match (access, caller) {
        (Access::Public, _) => {}
        (_, None) => return Err(ApiError::unauthorized("a valid bearer token is required")),
        (Access::Admin, Some(c)) => {
            c.require_admin()?;
        }
        _ => {}
    }
    let base = upstreams
        .url(service)
        .ok_or_else(|| ApiError::unavailable(format!("{service} is not configured")))?;
    let url = match req.uri().query() {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    let body = body(payload, settings.body_limit_bytes).await?;
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("bad_method", "unsupported method"))?;
    let mut outgoing = client.request(method, &url).body(body);
    for name in ["content-type", "accept", "idempotency-key", REQUEST_ID_HEADER] {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(c) = caller {
        outgoing =
            outgoing.header(USER_ID_HEADER, c.user_id.to_string()).header(ROLE_HEADER, c.role.as_str());
    }
    let response = outgoing.send().await.map_err(|e| {
        tracing::warn!(service, error = %e, "upstream unreachable");
        ApiError::unavailable(format!("{service} is unavailable, try again"))
    })?;
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = response.bytes().await.map_err(|_| ApiError::unavailable(format!("{service} broke off")))?;
    let mut answer = HttpResponse::build(status);
    if let Some(ct) = content_type {
        answer.insert_header(("content-type", ct));
    }
    Ok(answer.body(bytes))
}

/// A service's OpenAPI document, for the gateway's Swagger UI.
pub async fn api_doc(
    path: web::Path<String>,
    upstreams: web::Data<Upstreams>,
    client: web::Data<reqwest::Client>,
) -> Result<HttpResponse, ApiError> {
    let service = path.into_inner();
    let base = upstreams.url(&service).ok_or_else(|| ApiError::not_found("not_found", "no such service"))?;
    let doc: serde_json::Value = client
        .get(format!("{base}{}", bourse_common::service::OWN_API_DOC))
        .send()
        .await
        .map_err(|_| ApiError::unavailable(format!("{service} is unavailable")))?
        .json()
        .await
        .map_err(|_| ApiError::unavailable(format!("{service} sent no API document")))?;
    Ok(HttpResponse::Ok().json(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_route_has_one_owner() {
        assert_eq!(route("/api/orders"), Some(("order-service", Access::User)));
        assert_eq!(route("/api/orders/123"), Some(("order-service", Access::User)));
        assert_eq!(route("/api/markets"), Some(("order-service", Access::Public)));
        assert_eq!(route("/api/markets/ETH-USDT/book"), Some(("matching-service", Access::Public)));
        assert_eq!(route("/api/users/me/accounts/USDT/top-up"), Some(("payment-service", Access::User)));
        assert_eq!(route("/api/admin/payments/audit"), Some(("payment-service", Access::Admin)));
        assert_eq!(route("/api/admin/notifications"), Some(("notify-service", Access::Admin)));
        assert_eq!(route("/api/ordersx"), None);
        assert_eq!(route("/api/nothing"), None);
    }
}
