//! Every service of the stack starts, migrates, connects and documents itself.

use std::time::Duration;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;

use crate::helpers::TestStack;

on_both_backends!(every_service_starts_migrates_and_reports_ready);

async fn every_service_starts_migrates_and_reports_ready(backend: Backend) {
    let t = TestStack::start(backend).await;
    assert_eq!(t.stack.services.len(), 6);
    let http = &t.http;

    for service in &t.stack.services {
        let url = service.url();
        let live = http.get(format!("{url}/health/live")).send().await.unwrap();
        assert_eq!(live.status(), 200, "{} is live", service.name);

        let ready: serde_json::Value = eventually(service.name, Duration::from_secs(20), || async {
            let response = http.get(format!("{url}/health/ready")).send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            response.json().await.ok()
        })
        .await;
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["checks"]["database"], true);
        assert_eq!(ready["checks"]["relay"], true, "{} is connected to the broker", service.name);

        // Its migrations ran: the outbox exists and is empty.
        let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("bourse_outbox_backlog 0"), "{metrics}");
        assert!(metrics.contains("bourse_component_up{component=\"relay\"} 1"), "{metrics}");

        let spec: serde_json::Value =
            http.get(format!("{url}/api-docs/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert_eq!(spec["info"]["title"], service.name);
        assert!(spec["paths"]["/health/ready"].is_object());
        let swagger = http.get(format!("{url}/swagger-ui/")).send().await.unwrap();
        assert_eq!(swagger.status(), 200);
        assert!(swagger.text().await.unwrap().contains("swagger-ui"));

        let missing = http.get(format!("{url}/no/such/route")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }

    t.stop().await;
}

on_both_backends!(the_gateway_routes_and_documents_each_service_from_its_registry_row);

/// Each service has its registry row: the gateway guards and forwards its
/// paths, and lists its API, from that row (chain-service's wallets as the example).
async fn the_gateway_routes_and_documents_each_service_from_its_registry_row(backend: Backend) {
    let t = TestStack::start(backend).await;
    let initializer =
        t.http.get(t.url("/swagger-ui/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    for service in bourse_common::registry::BEHIND_GATEWAY {
        assert!(initializer.contains(service.api_doc), "Swagger UI lists {}: {initializer}", service.name);
        let doc: serde_json::Value =
            t.http.get(t.url(service.api_doc)).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["info"]["title"], service.name, "the gateway serves {}'s document", service.name);
    }

    // A user route of chain-service's row: guarded by the gateway, then forwarded.
    let (status, body) = t.call("GET", "/api/users/me/wallets", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let token = t.user("wallets@example.com").await;
    let (status, body) = t.call("GET", "/api/users/me/wallets", Some(&token), None).await;
    assert_eq!(status, 200, "chain-service answers its wallets route: {body}");
    assert!(body.is_array(), "{body}");
    // A path no row claims never leaves the gateway, token or not.
    let (status, _) = t.call("GET", "/api/nowhere", None, None).await;
    assert_eq!(status, 404);

    t.stop().await;
}
