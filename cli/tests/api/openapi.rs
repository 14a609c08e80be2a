//! The API documents tell the truth: schemathesis (PyPI) generates requests
//! from every OpenAPI document the gateway's Swagger UI lists (the merged one,
//! the gateway's, each service's) and sends them through the gateway as an
//! administrator: no server error, and no status a document does not name.

use bourse_common::db::Backend;
use bourse_common::registry::BEHIND_GATEWAY;
use bourse_common::service::{MERGED_API_DOC, OWN_API_DOC};

use crate::helpers::TestStack;

/// schemathesis: `$BOURSE_SCHEMATHESIS`, or where `scripts/infra.sh ensure_test_tools` installs it.
fn schemathesis() -> String {
    std::env::var("BOURSE_SCHEMATHESIS").unwrap_or_else(|_| "/var/tmp/bourse-venv/bin/schemathesis".into())
}

/// One schemathesis run over `document`: whether it passed, and what it
/// printed. Awaited, never blocking: the stack runs on this test's runtime.
async fn run_schemathesis(
    gateway: &str,
    document: &str,
    admin: &str,
    cache: &std::path::Path,
) -> (bool, String) {
    let out = tokio::process::Command::new(schemathesis())
        // schemathesis keeps its crash cache in its working directory.
        .current_dir(cache)
        .arg("run")
        .arg(format!("{gateway}{document}"))
        .args(["--url", gateway, "--header", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", "not_a_server_error,status_code_conformance"])
        .args([
            "--max-examples",
            "10",
            "--seed",
            "1",
            // One worker: with two, schemathesis 4.32's generator sometimes
            // crashes on its own cache ("Runtime Error", a KeyError).
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
        ])
        // Role changes would revoke the very token the run uses (tested in `security_identity`).
        .args(["--exclude-path", "/api/admin/users/{id}/role"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis (bash scripts/infra.sh ensure_test_tools installs it)");
    let output =
        format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), output)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_status_in_any_document() {
    let t = TestStack::start(Backend::Sqlite).await;
    let admin = t.admin("admin@bourse.local").await;
    let gateway = t.url("");
    let documents = [MERGED_API_DOC, OWN_API_DOC].into_iter().chain(BEHIND_GATEWAY.iter().map(|s| s.api_doc));
    let cache = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for document in documents {
        // schemathesis itself sometimes crashes while generating ("Runtime Error",
        // no check failed): that document is run once more.
        let run = || run_schemathesis(&gateway, document, &admin, cache.path());
        let (passed, output) = match run().await {
            (false, output) if output.contains("Runtime Error") && !output.contains("ST10") => run().await,
            result => result,
        };
        if !passed {
            failures.push(format!("{document}:\n{output}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    t.stop().await;
}
