//! Deposits credited per second, end to end, on a stack of its own against
//! anvil with automine: N users, one ETH transfer to each user's wallet (a
//! block each), the confirmations mined, until every balance shows its
//! deposit. Prints the figures; asserts only that each user got theirs.
//!
//! ```sh
//! eval "$(bash scripts/infra.sh env)"
//! cargo bench -p bourse-cli --bench deposits            # SQLite; BOURSE_BENCH_BACKEND=postgres
//! BOURSE_BENCH_DEPOSITS=200 cargo bench -p bourse-cli --bench deposits
//! ```

use std::time::{Duration, Instant};

use bourse_cli::client::Gateway;
use bourse_cli::isolated::Isolated;
use bourse_common::db::Backend;
use serde_json::json;

const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BOURSE_BENCH_DEPOSITS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let backend = match std::env::var("BOURSE_BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let chain_settings = "[settings]\npoll_interval_ms = 100\nconfirmations = 6\n";
    let stack = Isolated::start(backend, &[("chain-service", chain_settings)]).await?;
    let gateway = Gateway::new(&stack.stack.gateway_url());

    let mut users = Vec::new();
    for i in 0..n {
        let credentials = json!({"email": format!("bench-{i}@example.com"), "password": "bench password 1"});
        gateway.call("POST", "/api/auth/users", None, Some(&credentials), None).await?;
        let (_, token) = gateway.call("POST", "/api/token", None, Some(&credentials), None).await?;
        users.push(token["access_token"].as_str().unwrap_or_default().to_string());
    }
    let mut addresses = Vec::new();
    for token in &users {
        let address = loop {
            let (_, wallets) = gateway.call("GET", "/api/users/me/wallets", Some(token), None, None).await?;
            if let Some(address) = wallets[0]["address"].as_str() {
                break address.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        addresses.push(address);
    }

    let started = Instant::now();
    for address in &addresses {
        stack.chain.send_eth(address, ETH).await?;
    }
    let sent = started.elapsed();
    stack.chain.mine(5).await?;
    // Credits follow the blocks' order: the last user's comes last.
    let last = users.last().cloned().unwrap_or_default();
    loop {
        let (_, accounts) = gateway.call("GET", "/api/users/me/accounts", Some(&last), None, None).await?;
        if eth_available(&accounts) > rust_decimal::Decimal::ZERO {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not all credited in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let credited = started.elapsed();
    for token in &users {
        let (_, accounts) = gateway.call("GET", "/api/users/me/accounts", Some(token), None, None).await?;
        anyhow::ensure!(
            eth_available(&accounts) == rust_decimal::Decimal::ONE,
            "a user was not credited exactly 1 ETH"
        );
    }
    println!(
        "deposits ({backend:?}, anvil automine, 6 confirmations): {n} sent in {:.2} s ({:.1}/s on chain), \
         all credited after {:.2} s: {:.1} deposits credited per second end to end",
        sent.as_secs_f64(),
        n as f64 / sent.as_secs_f64(),
        credited.as_secs_f64(),
        n as f64 / credited.as_secs_f64(),
    );
    stack.stop().await;
    Ok(())
}

/// The available ETH in an accounts answer (0 when absent).
fn eth_available(accounts: &serde_json::Value) -> rust_decimal::Decimal {
    accounts
        .as_array()
        .and_then(|a| a.iter().find(|x| x["currency"] == "ETH"))
        .and_then(|x| x["available"].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}
