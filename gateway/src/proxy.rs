//! Routing of `/api/...` to the service that owns it, as the
//! [registry](bourse_common::registry) says, with who may call it: the
//! token is checked here, and the service gets the user id and role in
//! headers (any such header from the client is dropped), signed with the
//! internal secret ([`signed`]) so that the service knows the gateway sent them.
//! A path with dot segments or encoded separators is refused before routing
//! ([`check_path`]): the gateway routes on exactly the path the service sees.
//! Also every service's OpenAPI document, for the gateway's Swagger UI.

use actix_web::HttpMessage;
use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bourse_common::auth::{
    CLIENT_REQUEST_ID_HEADER, Caller, GatewayProof, InternalSecret, ProofFields, REQUEST_ID_HEADER,
    ROLE_HEADER, USER_ID_HEADER,
};
use bourse_common::db::Db;
use bourse_common::error::ApiError;
use bourse_common::metrics::RouteLabel;
use bourse_common::registry::{self, Access, BEHIND_GATEWAY, ServiceInfo};
use bourse_common::service::{ApiDocument, MERGED_API_DOC, OWN_API_DOC};
use futures::StreamExt;

use crate::ratelimit::RequestId;

use crate::settings::{Settings, Upstreams};
use crate::tokens::Tokens;
use crate::users::sessions::{self, Sessions};

/// 404 for a path a service could resolve to another route than the one the
/// gateway routed: dot segments (`.`, `..`), encoded dots and separators
/// (`%2e`, `%2f`, `%5c`), backslashes, empty segments.
pub fn check_path(raw_path: &str) -> Result<(), ApiError> {
    let lower = raw_path.to_ascii_lowercase();
    let encoded = ["%2e", "%2f", "%5c", "\\"].iter().any(|bad| lower.contains(bad));
    let dots_or_empty =
        raw_path.split('/').skip(1).any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if encoded || dots_or_empty || !raw_path.starts_with('/') {
        return Err(ApiError::not_found("not_found", "no such route"));
    }
    Ok(())
}

/// A request to a service, with the caller's identity (if any) and the
/// gateway's proof of it: the MAC covers the method, the path and query as
/// `url` sends them, the user, the role, the request id and the time.
pub fn signed(
    client: &reqwest::Client,
    secret: &InternalSecret,
    method: reqwest::Method,
    url: reqwest::Url,
    caller: Option<Caller>,
    request_id: &str,
) -> reqwest::RequestBuilder {
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let user = caller.map(|c| c.user_id.to_string()).unwrap_or_default();
    let role = caller.map(|c| c.role.as_str()).unwrap_or_default();
    let fields = ProofFields {
        method: method.as_str(),
        path_and_query: &path_and_query,
        user: &user,
        role,
        request_id,
        timestamp: chrono::Utc::now().timestamp(),
    };
    let [(ts_name, ts), (sig_name, sig)] = GatewayProof::headers(secret, &fields);
    let mut request = client
        .request(method, url)
        .header(ts_name, ts)
        .header(sig_name, sig)
        .header(REQUEST_ID_HEADER, request_id);
    if caller.is_some() {
        request = request.header(USER_ID_HEADER, user).header(ROLE_HEADER, role);
    }
    // The service continues the gateway's span of this request.
    if let Some(trace) = bourse_common::tracecontext::current() {
        request = request.header(bourse_common::tracecontext::HEADER, trace.to_string());
    }
    request
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

/// Whether `caller` may call a route open to `access`.
fn authorize(access: Access, caller: Option<Caller>) -> Result<(), ApiError> {
    match (access, caller) {
        (Access::Public, _) => Ok(()),
        (_, None) => Err(ApiError::unauthorized("a valid bearer token is required")),
        (Access::Admin, Some(c)) => c.require_admin().map(drop),
        (Access::User, Some(_)) => Ok(()),
    }
}

/// Forwards the request to its service and its answer back.
#[allow(clippy::too_many_arguments)] // actix extractors, one per shared part
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    tokens: web::Data<Tokens>,
    upstreams: web::Data<Upstreams>,
    settings: web::Data<Settings>,
    client: web::Data<reqwest::Client>,
    secret: web::Data<InternalSecret>,
    sessions: web::Data<Sessions>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let path = req.uri().path();
    check_path(path)?;
    let (service, route) =
        registry::route(path).ok_or_else(|| ApiError::not_found("not_found", "no such route"))?;
    req.extensions_mut().insert(RouteLabel(route.label(path)));
    let (service, access) = (service.name, route.access);
    let caller = sessions::caller(&req, &tokens, &sessions, &db).await?;
    authorize(access, caller)?;
    let base = upstreams
        .url(service)
        .ok_or_else(|| ApiError::unavailable(format!("{service} is not configured")))?;
    let url = match req.uri().query() {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    let url = reqwest::Url::parse(&url).map_err(|_| ApiError::not_found("not_found", "no such route"))?;
    let body = body(payload, settings.body_limit_bytes).await?;
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("bad_method", "unsupported method"))?;
    // The gateway's own request id (set by the middleware), never the client's.
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let mut outgoing = signed(&client, &secret, method, url, caller, &request_id).body(body);
    for name in ["content-type", "accept", "idempotency-key", CLIENT_REQUEST_ID_HEADER] {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            outgoing = outgoing.header(name, value);
        }
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

/// Serves each service's OpenAPI document where its registry row says
/// ([`ServiceInfo::api_doc`]), for the gateway's Swagger UI.
pub fn api_docs(cfg: &mut web::ServiceConfig) {
    cfg.route(MERGED_API_DOC, web::get().to(merged_api_doc));
    for service in BEHIND_GATEWAY {
        cfg.route(
            service.api_doc,
            web::get().to(move |upstreams: web::Data<Upstreams>, client: web::Data<reqwest::Client>| {
                api_doc(service, upstreams, client)
            }),
        );
    }
}

/// A service's OpenAPI document, fetched from the service.
async fn api_doc(
    service: &'static ServiceInfo,
    upstreams: web::Data<Upstreams>,
    client: web::Data<reqwest::Client>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(fetch_api_doc(service, &upstreams, &client).await?))
}

async fn fetch_api_doc(
    service: &'static ServiceInfo,
    upstreams: &Upstreams,
    client: &reqwest::Client,
) -> Result<utoipa::openapi::OpenApi, ApiError> {
    let name = service.name;
    let base =
        upstreams.url(name).ok_or_else(|| ApiError::unavailable(format!("{name} is not configured")))?;
    client
        .get(format!("{base}{OWN_API_DOC}"))
        .send()
        .await
        .map_err(|_| ApiError::unavailable(format!("{name} is unavailable")))?
        .json()
        .await
        .map_err(|_| ApiError::unavailable(format!("{name} sent no API document")))
}

/// One document of every route a client can call through the gateway: the
/// gateway's own, then each service's public routes (`/api/...`; their
/// health and metrics routes answer on the service only).
async fn merged_api_doc(
    own: web::Data<ApiDocument>,
    upstreams: web::Data<Upstreams>,
    client: web::Data<reqwest::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut merged = own.0.clone();
    merged.info.title = "Bourse".into();
    merged.info.description = Some("Every route of the gateway and of the services behind it.".into());
    for service in BEHIND_GATEWAY {
        let mut doc = fetch_api_doc(service, &upstreams, &client).await?;
        doc.paths.paths.retain(|path, _| path.starts_with("/api/"));
        merged.merge(doc);
    }
    Ok(HttpResponse::Ok().json(merged))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::{App, test};
    use bourse_common::auth::Role;
    use uuid::Uuid;

    use super::*;

    #[actix_web::test]
    async fn dot_segments_and_encoded_separators_are_refused() {
        for bad in [
            "/api/orders/../../metrics",
            "/api/orders/%2e%2e/metrics",
            "/api/orders/%2E./metrics",
            "/api/orders/..%2Fmetrics",
            "/api/orders/..%5cmetrics",
            "/api/orders/..\\metrics",
            "/api/orders/./x",
            "/api/orders//x",
            "/api/orders/",
            "api/orders",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in
            ["/api/orders", "/api/orders/0190c0de-0000-7000-8000-000000000001", "/api/markets/ETH-USDT/book"]
        {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[actix_web::test]
    async fn the_registry_says_who_owns_a_route_and_who_may_call_it() {
        let tokens = Tokens::new(&bourse_common::secret::Secret::random(), Duration::from_secs(60));
        let dir = std::env::temp_dir().join(format!("gateway-proxy-{}", Uuid::new_v4()));
        let db = Db::connect(&bourse_common::config::DatabaseConfig {
            url: dir.join("gateway.db").display().to_string(),
            pool_size: 1,
        })
        .unwrap();
        db.migrate(&[&crate::MIGRATIONS]).await.unwrap();
        let stored = crate::users::storage::StoredUser {
            id: Uuid::now_v7(),
            email: "ann@example.com".into(),
            password_hash: "-".into(),
            role: Role::User,
            token_version: 0,
        };
        let id = stored.id;
        db.write(move |c| {
            crate::users::storage::insert_user(c, &stored, 0).map_err(bourse_common::db::DbError::from)
        })
        .await
        .unwrap();
        let user = tokens.issue(id, Role::User, 0).unwrap();
        let mut upstreams = Upstreams::default();
        for service in BEHIND_GATEWAY {
            upstreams.insert(service.name, "http://127.0.0.1:1"); // nobody answers
        }
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(tokens))
                .app_data(web::Data::new(upstreams))
                .app_data(web::Data::new(Settings::default()))
                .app_data(web::Data::new(reqwest::Client::new()))
                .app_data(web::Data::new(InternalSecret::generate()))
                .app_data(web::Data::new(Sessions::default()))
                .app_data(web::Data::new(db))
                .default_service(web::to(forward)),
        )
        .await;
        let cases = [
            ("/api/nothing", None, 404, "no such route"),
            ("/api/orders", None, 401, "a valid bearer token is required"),
            ("/api/admin/payments/audit", Some(&user), 403, "this route is for administrators"),
            ("/api/orders/123", Some(&user), 503, "order-service is unavailable, try again"),
            ("/api/markets/ETH-USDT/book", None, 503, "matching-service is unavailable, try again"),
            ("/api/orders/../../metrics", Some(&user), 404, "no such route"),
            ("/api/orders/%2e%2e/%2E%2E/metrics", Some(&user), 404, "no such route"),
            ("/api/orders/..%2fmetrics", Some(&user), 404, "no such route"),
            ("/api/orders/..%5Cmetrics", Some(&user), 404, "no such route"),
            ("/api/orders/./123", Some(&user), 404, "no such route"),
            ("/api/orders//123", Some(&user), 404, "no such route"),
        ];
        for (path, token, status, message) in cases {
            let mut request = test::TestRequest::get().uri(path);
            if let Some(token) = token {
                request = request.insert_header(("authorization", format!("Bearer {token}")));
            }
            let response = test::call_service(&app, request.to_request()).await;
            assert_eq!(response.status().as_u16(), status, "{path}");
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"]["message"], message, "{path}");
        }
    }
}
