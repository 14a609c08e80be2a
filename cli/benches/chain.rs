//! Deposits credited and withdrawals confirmed per second, end to end, on a
//! stack of its own against anvil with automine. Deposits: N users, one ETH
//! transfer to each user's wallet (a block each), the confirmations mined,
//! until every balance shows its deposit. Withdrawals: each user then asks
//! (all at once) to withdraw 0.5 ETH to an outside address of their own,
//! until every one is confirmed (blocks mined meanwhile for the
//! confirmations). Prints the figures; asserts only that each user and
//! address got exactly theirs.
//!
//! ```sh
//! eval "$(bash scripts/infra.sh env)"
//! cargo bench -p bourse-cli --bench chain            # SQLite; BOURSE_BENCH_BACKEND=postgres
//! BOURSE_BENCH_USERS=200 cargo bench -p bourse-cli --bench chain
//! ```

use std::time::{Duration, Instant};

use bourse_cli::client::Gateway;
use bourse_cli::isolated::Isolated;
use bourse_common::db::Backend;
use serde_json::json;

const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BOURSE_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
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

    let outside: Vec<String> = (0..n)
        .map(|_| alloy::signers::local::PrivateKeySigner::random().address().to_checksum(None))
        .collect();
    let started = Instant::now();
    let requests = users.iter().zip(&outside).map(|(token, to)| {
        let body = json!({"currency": "ETH", "amount": "0.5", "address": to});
        let gateway = &gateway;
        async move { gateway.call("POST", "/api/withdrawals", Some(token), Some(&body), None).await }
    });
    let mut ids = Vec::new();
    for answer in futures::future::join_all(requests).await {
        let (status, w) = answer?;
        anyhow::ensure!(status == 202, "POST /api/withdrawals: {status}: {w}");
        ids.push(w["id"].as_str().unwrap_or_default().to_string());
    }
    let requested = started.elapsed();
    let mut pending: Vec<(&String, &String)> = users.iter().zip(&ids).collect();
    while !pending.is_empty() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not all confirmed in 10 minutes");
        stack.chain.mine(1).await?;
        let mut left = Vec::new();
        for (token, id) in pending {
            let (_, w) =
                gateway.call("GET", &format!("/api/withdrawals/{id}"), Some(token), None, None).await?;
            match w["status"].as_str() {
                Some("confirmed") => {}
                Some("failed" | "refused") => anyhow::bail!("withdrawal {id}: {w}"),
                _ => left.push((token, id)),
            }
        }
        pending = left;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let confirmed = started.elapsed();
    for (token, to) in users.iter().zip(&outside) {
        let (_, accounts) = gateway.call("GET", "/api/users/me/accounts", Some(token), None, None).await?;
        anyhow::ensure!(
            eth_available(&accounts) == "0.4995".parse()?,
            "a user was not debited exactly 0.5005 ETH"
        );
        anyhow::ensure!(
            stack.chain.balance(to).await? == alloy::primitives::U256::from(ETH / 2),
            "{to} got not 0.5 ETH"
        );
    }
    println!(
        "withdrawals ({backend:?}, anvil automine, 6 confirmations): {n} requested in {:.2} s, \
         all confirmed after {:.2} s: {:.1} withdrawals confirmed per second end to end",
        requested.as_secs_f64(),
        confirmed.as_secs_f64(),
        n as f64 / confirmed.as_secs_f64(),
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
