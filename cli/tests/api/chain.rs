//! chain-service against a real anvil: a wallet per user (its key sealed at
//! rest), native deposits seen as pending and credited once after their
//! confirmations, through restarts and reorgs.

use bourse_common::config::DatabaseConfig;
use bourse_common::db::{Backend, Db};
use bourse_common::on_both_backends;
use bourse_common::secret::Secret;
use bourse_common::testkit::{eventually, eventually_or};
use serde_json::Value;

use crate::helpers::{TestStack, WAIT, WALLET_MAIL, pair};

on_both_backends!(
    registration_gives_a_wallet_whose_key_only_the_master_key_opens,
    a_deposit_is_pending_until_its_confirmations_then_credited_once,
    chain_service_killed_mid_way_credits_once_and_skips_no_block,
    a_reorg_orphans_a_pending_deposit_and_flags_a_credited_one,
    the_dev_faucet_deposits_through_the_chain,
);

const ETH: u128 = 1_000_000_000_000_000_000;

/// The user's ETH deposit address, once chain-service made the wallet.
async fn address(t: &TestStack, token: &str) -> String {
    let wallets = eventually("the wallet is made", WAIT, || async {
        let (status, body) = t.call("GET", "/api/users/me/wallets", Some(token), None).await;
        (status == 200 && body.as_array().is_some_and(|w| !w.is_empty())).then_some(body)
    })
    .await;
    assert_eq!(wallets[0]["currency"], "ETH", "{wallets}");
    assert_eq!(wallets[0]["chain_id"], 31_337, "{wallets}");
    wallets[0]["address"].as_str().unwrap().to_string()
}

async fn deposits(t: &TestStack, token: &str) -> Vec<Value> {
    let (status, body) = t.call("GET", "/api/users/me/deposits?per_page=100", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Waits until the user's deposit of `tx` reads `status`; returns it.
async fn deposit_reaches(t: &TestStack, token: &str, tx: &str, status: &str) -> Value {
    eventually_or(&format!("deposit {tx} {status}"), WAIT, || async {
        let all = deposits(t, token).await;
        match all.iter().find(|d| d["tx_hash"] == tx) {
            Some(d) if d["status"] == status => Ok(d.clone()),
            other => Err(format!(": saw {other:?}")),
        }
    })
    .await
}

/// The entries of kind `deposit` in the user's ledger.
async fn deposit_entries(t: &TestStack, token: &str) -> Vec<Value> {
    let (_, history) = t.call("GET", "/api/history/finance?per_page=100", Some(token), None).await;
    history["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "deposit").cloned().collect()
}

async fn registration_gives_a_wallet_whose_key_only_the_master_key_opens(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;
    let parsed: alloy::primitives::Address = address.parse().unwrap();
    assert_eq!(parsed.to_checksum(None), address, "an EIP-55 checksummed address");
    // Each user has their own.
    let bob = t.user("bob@example.com").await;
    assert_ne!(crate::chain::address(&t, &bob).await, address);

    // The address is e-mailed.
    let mail = eventually("the deposit address is e-mailed", WAIT, || async {
        t.all_mails_to("alice@example.com").into_iter().find(|m| m.subject.as_deref() == Some(WALLET_MAIL))
    })
    .await;
    assert!(mail.text.as_deref().unwrap().contains(&address), "{mail:?}");

    // At rest the key is sealed: another key opens nothing, the stack's opens
    // the key of exactly this address.
    let url = t.options.databases["chain-service"].clone();
    let db = Db::connect(&DatabaseConfig { url, pool_size: 1 }).unwrap();
    let rows = db
        .read(|c| {
            let owners = chain_service::storage::wallet_owners(c)?;
            owners
                .iter()
                .map(|(_, user)| chain_service::storage::wallet_of(c, user.parse().unwrap()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bourse_common::db::DbError::from)
        })
        .await
        .unwrap();
    let row = rows.into_iter().flatten().find(|w| w.address == address).unwrap();
    assert!(!row.sealed_key.is_empty());
    let master = t.options.secrets.wallet_master_key.clone().unwrap();
    let wallets = chain_service::wallets::Wallets::new(Secret::random(), 31_337);
    assert!(wallets.signer(&row).is_none(), "opened without the master key");
    let wallets = chain_service::wallets::Wallets::new(master, 31_337);
    let key = wallets.signer(&row).expect("the master key opens it");
    assert_eq!(key.address(), parsed);
    let key_hex = alloy::hex::encode(key.to_bytes());
    assert!(!row.sealed_key.contains(&key_hex), "the key is not stored in clear");
    t.stop().await;
}

async fn a_deposit_is_pending_until_its_confirmations_then_credited_once(backend: Backend) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;
    // Her `transfers` channel on the feed (the book's snapshot says the subscription is in place).
    let url = t.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(serde_json::json!({"op": "auth", "token": alice}))).await.unwrap();
    ws.send(send(serde_json::json!({"op": "subscribe", "channels": ["transfers", "book:ETH-USDT"]})))
        .await
        .unwrap();
    let mut next = async || loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    while next().await["channel"] != "book:ETH-USDT" {}

    // 1.5 ETH and 123 wei below the ledger's 8 decimals.
    let tx = t.chain.send_eth(&address, 3 * ETH / 2 + 123).await.unwrap();
    let pending = deposit_reaches(&t, &alice, &tx, "pending").await;
    let seen = next().await;
    assert_eq!(seen["channel"], "transfers", "{seen}");
    assert_eq!(
        (&seen["data"]["status"], &seen["data"]["tx_hash"], &seen["data"]["required_confirmations"]),
        (&serde_json::json!("pending"), &serde_json::json!(tx), &serde_json::json!(3)),
        "{seen}"
    );
    assert_eq!(pending["amount"], "1.5", "{pending}");
    assert_eq!(pending["dust"], "0.000000000000000123", "{pending}");
    assert_eq!(pending["required_confirmations"], 3, "{pending}");
    assert!(pending["confirmations"].as_u64().unwrap() < 3, "{pending}");
    assert_eq!(t.accounts(&alice).await["ETH"], pair("0", "0"), "nothing credited before its confirmations");

    // Two more blocks: three confirmations, credited.
    t.chain.mine(2).await.unwrap();
    let credited = deposit_reaches(&t, &alice, &tx, "credited").await;
    let transfer = next().await;
    assert_eq!(transfer["channel"], "transfers", "{transfer}");
    assert_eq!(
        (&transfer["data"]["status"], &transfer["data"]["amount"], &transfer["data"]["tx_hash"]),
        (&serde_json::json!("credited"), &serde_json::json!("1.5"), &serde_json::json!(tx)),
        "{transfer}"
    );
    assert!(credited["confirmations"].as_u64().unwrap() >= 3, "{credited}");
    eventually("the deposit is in the balance", WAIT, || async {
        (t.accounts(&alice).await["ETH"] == pair("1.5", "0")).then_some(())
    })
    .await;
    let mails = t.wait_mails("alice@example.com", 2).await;
    assert_eq!(mails[1].subject.as_deref(), Some("Deposit credited: 1.5 ETH"), "{mails:?}");

    // Many blocks later it is still credited once.
    t.chain.mine(10).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.accounts(&alice).await["ETH"], pair("1.5", "0"));
    let entries = deposit_entries(&t, &alice).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["amount"], "1.5");
    assert_eq!(entries[0]["reference"], format!("deposit:{}", credited["id"].as_str().unwrap()));
    assert_eq!(deposits(&t, &alice).await.len(), 1);
    t.stop().await;
}

async fn chain_service_killed_mid_way_credits_once_and_skips_no_block(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;

    // Seen, not yet credited: killed there.
    let first = t.chain.send_eth(&address, ETH).await.unwrap();
    deposit_reaches(&t, &alice, &first, "pending").await;
    t.stack.crash_and_restart("chain-service").await.unwrap();
    t.chain.mine(3).await.unwrap();
    // payment-service killed while the credit is on its way to it.
    t.stack.crash_and_restart("payment-service").await.unwrap();
    deposit_reaches(&t, &alice, &first, "credited").await;

    // Killed again, and blocks (one with a deposit) go by while it is down.
    t.stack.crash_and_restart("chain-service").await.unwrap();
    let second = t.chain.send_eth(&address, 2 * ETH).await.unwrap();
    t.chain.mine(3).await.unwrap();
    deposit_reaches(&t, &alice, &second, "credited").await;
    eventually("both deposits in the balance", WAIT, || async {
        (t.accounts(&alice).await["ETH"] == pair("3", "0")).then_some(())
    })
    .await;
    t.chain.mine(5).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.accounts(&alice).await["ETH"], pair("3", "0"), "each credited once");
    assert_eq!(deposit_entries(&t, &alice).await.len(), 2);
    assert_eq!(deposits(&t, &alice).await.len(), 2);
    t.stop().await;
}

async fn a_reorg_orphans_a_pending_deposit_and_flags_a_credited_one(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;

    // Before its confirmations: the block leaves the chain, the deposit with it.
    let before = t.chain.snapshot().await.unwrap();
    let orphan = t.chain.send_eth(&address, ETH).await.unwrap();
    deposit_reaches(&t, &alice, &orphan, "pending").await;
    t.chain.revert(before).await.unwrap();
    t.chain.mine(2).await.unwrap();
    deposit_reaches(&t, &alice, &orphan, "orphaned").await;
    t.chain.mine(3).await.unwrap();
    assert_eq!(t.accounts(&alice).await["ETH"], pair("0", "0"), "an orphaned deposit is never credited");

    // After crediting (a reorg deeper than the confirmations): flagged, not debited.
    let before = t.chain.snapshot().await.unwrap();
    let deep = t.chain.send_eth(&address, 2 * ETH).await.unwrap();
    t.chain.mine(3).await.unwrap();
    deposit_reaches(&t, &alice, &deep, "credited").await;
    eventually("the deposit is in the balance", WAIT, || async {
        (t.accounts(&alice).await["ETH"] == pair("2", "0")).then_some(())
    })
    .await;
    t.chain.revert(before).await.unwrap();
    t.chain.mine(6).await.unwrap();
    deposit_reaches(&t, &alice, &deep, "reverted").await;
    let log = bourse_common::eventlog::read(
        &t.env.amqp_url,
        bourse_common::eventlog::StreamOffset::First,
        10_000,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(
        log.iter().any(|e| e.envelope.message_type == "deposit.reverted"),
        "the operators are alerted by deposit.reverted"
    );
    assert_eq!(t.accounts(&alice).await["ETH"], pair("2", "0"), "never a silent debit");
    t.stop().await;
}

async fn the_dev_faucet_deposits_through_the_chain(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;
    let faucet = |amount: &str| {
        let body = serde_json::json!({"amount": amount});
        t.call("POST", "/api/users/me/wallets/faucet", Some(&alice), Some(body))
    };

    // Bad amounts: refused, nothing sent.
    for (amount, code) in [
        ("0", "amount_not_positive"),
        ("0.000000001", "amount_scale_exceeded"),
        ("11", "faucet_above_maximum"),
    ] {
        let (status, body) = faucet(amount).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "{amount}: {body}");
    }
    let before = t.chain.balance(&address).await.unwrap();
    assert!(before.is_zero());

    // 2.5 ETH: on chain to her wallet, then credited as any deposit.
    let (status, sent) = faucet("2.5").await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["address"], address.as_str());
    let tx = sent["tx_hash"].as_str().unwrap().to_string();
    deposit_reaches(&t, &alice, &tx, "pending").await;
    assert_eq!(t.chain.balance(&address).await.unwrap(), alloy::primitives::U256::from(5 * ETH / 2));
    t.chain.mine(2).await.unwrap();
    deposit_reaches(&t, &alice, &tx, "credited").await;
    eventually("the faucet's deposit is in the balance", WAIT, || async {
        (t.accounts(&alice).await["ETH"] == pair("2.5", "0")).then_some(())
    })
    .await;
    t.stop().await;
}
