//! The edges an attacker reaches: a service port without the gateway's proof,
//! paths that would resolve elsewhere, a client's request id as an audit cause.

use bourse_common::auth::{
    GatewayProof, InternalSecret, ProofFields, REQUEST_ID_HEADER, ROLE_HEADER, USER_ID_HEADER,
};
use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestStack, limit_buy};

on_both_backends!(
    service_ports_refuse_identity_headers_without_a_fresh_gateway_proof,
    dot_segments_and_encoded_separators_are_404_through_the_gateway,
    a_client_request_id_is_never_the_cause_of_a_transition,
    huge_numbers_are_4xx_with_a_code_never_5xx,
);

/// A GET to a service port with identity headers and, if given, a proof made at `timestamp`.
async fn direct(
    t: &TestStack,
    service: &str,
    path: &str,
    user: &str,
    role: &str,
    proof: Option<(&InternalSecret, i64)>,
) -> (u16, Value) {
    let url = format!("{}{path}", t.stack.service(service).unwrap().url());
    let mut request = t
        .http
        .get(&url)
        .header(USER_ID_HEADER, user)
        .header(ROLE_HEADER, role)
        .header(REQUEST_ID_HEADER, "r-1");
    if let Some((secret, timestamp)) = proof {
        let fields =
            ProofFields { method: "GET", path_and_query: path, user, role, request_id: "r-1", timestamp };
        for (name, value) in GatewayProof::headers(secret, &fields) {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn service_ports_refuse_identity_headers_without_a_fresh_gateway_proof(backend: Backend) {
    let t = TestStack::start(backend).await;
    let credentials =
        serde_json::json!({"email": "victim@example.com", "password": crate::helpers::PASSWORD});
    let (status, user) = t.call("POST", "/api/auth/users", None, Some(credentials)).await;
    assert_eq!(status, 201, "{user}");
    // The victim's id, as an attacker on the network could learn it.
    let victim = user["id"].as_str().unwrap().to_string();

    let secret = InternalSecret::new(t.options.secrets.internal_secret.expose()).unwrap();
    let other = InternalSecret::generate();
    let now = chrono::Utc::now().timestamp();
    let routes = [
        ("order-service", "/api/orders", "user"),
        ("payment-service", "/api/users/me/accounts", "user"),
        ("payment-service", "/api/admin/payments/fees", "admin"),
        ("notify-service", "/api/admin/notifications", "admin"),
    ];
    for (service, path, role) in routes {
        for (proof, why) in [
            (None, "no proof"),
            (Some((&other, now)), "a proof with another secret"),
            (Some((&secret, now - 120)), "a stale proof"),
            (Some((&secret, now + 120)), "a proof from the future"),
        ] {
            let (status, body) = direct(&t, service, path, &victim, role, proof).await;
            assert_eq!(status, 401, "{service} {path} with {why}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        }
        // The same request with the gateway's proof passes: the check is the proof alone.
        let (status, body) = direct(&t, service, path, &victim, role, Some((&secret, now))).await;
        assert_eq!(status, 200, "{service} {path} with a valid proof: {body}");
    }
    // The proof covers the role: a user proof with the role header raised is refused.
    let fields = ProofFields {
        method: "GET",
        path_and_query: "/api/admin/payments/fees",
        user: &victim,
        role: "user",
        request_id: "r-1",
        timestamp: now,
    };
    let url = format!("{}/api/admin/payments/fees", t.stack.service("payment-service").unwrap().url());
    let mut request = t
        .http
        .get(&url)
        .header(USER_ID_HEADER, &victim)
        .header(ROLE_HEADER, "admin")
        .header(REQUEST_ID_HEADER, "r-1");
    for (name, value) in GatewayProof::headers(&secret, &fields) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 401);

    t.stop().await;
}

/// Sends `path` to the gateway exactly as written (no client normalises it); the status.
async fn raw_get(t: &TestStack, path: &str, token: &str) -> (u16, String) {
    let address = t.stack.service("gateway").unwrap().http_addr;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

async fn dot_segments_and_encoded_separators_are_404_through_the_gateway(backend: Backend) {
    let t = TestStack::start(backend).await;
    let token = t.user("walker@example.com").await;
    let (status, _) = raw_get(&t, "/api/orders", &token).await;
    assert_eq!(status, 200, "the raw client works");
    for path in [
        "/api/orders/../../metrics",
        "/api/orders/%2e%2e/%2e%2e/metrics",
        "/api/orders/%2E%2E/%2E%2E/metrics",
        "/api/orders/..%2f..%2fmetrics",
        "/api/orders/..%2F..%2Fmetrics",
        "/api/orders/..%5c..%5cmetrics",
        "/api/orders/.%2e/.%2e/metrics",
        "/api/orders/./../../metrics",
        "/api/users/me/accounts/../../../../health/ready",
        "/api/nothing/here",
    ] {
        let (status, answer) = raw_get(&t, path, &token).await;
        // 400 is the HTTP parser refusing the line itself; never the upstream's answer.
        assert!(status == 404 || status == 400, "{path}: {answer}");
        assert!(!answer.contains("bourse_outbox_backlog"), "{path} reached /metrics: {answer}");
        if status == 404 {
            assert!(answer.contains("\"not_found\""), "{path}: {answer}");
        }
    }
    t.stop().await;
}

async fn a_client_request_id_is_never_the_cause_of_a_transition(backend: Backend) {
    let t = TestStack::start(backend).await;
    let token = t.user("auditor@example.com").await;
    let (status, order) = t
        .call_with(
            "POST",
            "/api/orders",
            Some(&token),
            Some(limit_buy("ETH-USDT", "10", "1")),
            &[("x-request-id", "forged-cause-0001")],
        )
        .await;
    assert_eq!(status, 202, "{order}");
    let id = order["id"].as_str().unwrap();
    let (status, steps) = t.call("GET", &format!("/api/orders/{id}/transitions"), Some(&token), None).await;
    assert_eq!(status, 200, "{steps}");
    let steps = steps.as_array().unwrap();
    assert!(!steps.is_empty());
    for step in steps {
        assert_ne!(step["cause_id"], "forged-cause-0001", "{step}");
        assert_ne!(step["cause_id"], "", "{step}");
    }
    t.stop().await;
}

#[tokio::test]
async fn security_a_service_or_gateway_without_an_internal_secret_refuses_to_start() {
    use bourse_common::service::Service;
    let mut order = order_service::OrderService::default_config();
    order.http.port = 0;
    let err = order_service::OrderService::run(order).await.unwrap_err().to_string();
    assert!(err.contains("no internal secret"), "{err}");
    let mut gateway = gateway::Gateway::default_config();
    gateway.http.port = 0;
    let err = gateway::Gateway::run(gateway).await.unwrap_err().to_string();
    assert!(err.contains("no internal secret"), "{err}");
}

async fn huge_numbers_are_4xx_with_a_code_never_5xx(backend: Backend) {
    let t = TestStack::start(backend).await;
    let token = t.user("whale@example.com").await;
    let huge = "79228162514264337593543950335";
    for (price, code) in [(huge, "price_above_maximum"), ("1000000.01", "price_above_maximum")] {
        let (status, body) =
            t.call("POST", "/api/orders", Some(&token), Some(limit_buy("ETH-USDT", price, "1"))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "price {price}: {body}");
    }
    // The market's maximum itself is accepted (and refused only for want of funds).
    let (status, body) =
        t.call("POST", "/api/orders", Some(&token), Some(limit_buy("ETH-USDT", "1000000", "1"))).await;
    assert_eq!(status, 202, "{body}");
    let market_buy = serde_json::json!({"market": "ETH-USDT", "side": "buy", "type": "market", "price": huge, "quantity": huge});
    let (status, body) = t.call("POST", "/api/orders", Some(&token), Some(market_buy)).await;
    assert!((400..500).contains(&status) && body["error"]["code"].is_string(), "{status} {body}");

    for _ in 0..2 {
        let (status, body) = t
            .call(
                "POST",
                "/api/users/me/accounts/USDT/top-up",
                Some(&token),
                Some(serde_json::json!({"amount": huge})),
            )
            .await;
        assert!((400..500).contains(&status), "{status} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    for path in [
        "/api/orders?page=9223372036854775807",
        "/api/orders?page=9223372036854775807&per_page=100",
        "/api/history/finance?page=9223372036854775807",
        "/api/orders?page=99999999999999999999999",
        "/api/orders?page=0",
        "/api/orders?per_page=1000",
    ] {
        let (status, body) = t.call("GET", path, Some(&token), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    t.stop().await;
}
