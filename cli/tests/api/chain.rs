//! chain-service against a real anvil: a wallet per user (its key sealed at
//! rest), native deposits seen as pending and credited once after their
//! confirmations, through restarts and reorgs; withdrawals held, sent,
//! confirmed and debited (or given back), one transaction each through
//! crashes and fee bumps.

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
    a_withdrawal_is_held_sent_confirmed_and_debited_exactly,
    a_withdrawal_that_reverts_or_cannot_be_sent_gives_everything_back,
    chain_service_killed_after_signing_and_after_broadcasting_sends_each_withdrawal_once,
    a_stuck_withdrawal_is_replaced_with_a_higher_fee_and_confirmed_once,
    bad_withdrawals_are_refused_with_a_code_and_hold_nothing,
    usdt_is_deposited_and_withdrawn_as_a_token_whose_gas_the_gas_wallet_pays,
    a_withdrawal_whose_block_leaves_the_chain_is_sent_again_and_confirmed_once,
    on_the_dev_stack_a_chain_currency_comes_only_from_the_chain,
    two_chain_service_instances_credit_and_send_once_and_one_takes_over,
    the_demo_deposits_trades_and_withdraws_end_to_end,
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

/// A user's `transfers` channel on the gateway's feed.
pub(crate) struct Transfers {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Transfers {
    /// Subscribed, once the book's snapshot says the subscription is in place.
    pub(crate) async fn open(t: &TestStack, token: &str) -> Self {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let url = t.url("/ws").replace("http://", "ws://");
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let send = |v: Value| Message::text(v.to_string());
        ws.send(send(serde_json::json!({"op": "auth", "token": token}))).await.unwrap();
        let channels = serde_json::json!({"op": "subscribe", "channels": ["transfers", "book:ETH-USDT"]});
        ws.send(send(channels)).await.unwrap();
        let mut feed = Self { ws };
        while feed.message().await["channel"] != "book:ETH-USDT" {}
        feed
    }

    async fn message(&mut self) -> Value {
        use futures::StreamExt;
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.unwrap().unwrap().unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                return serde_json::from_str::<Value>(&text).unwrap();
            }
        }
    }

    /// The next message of the `transfers` channel.
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let message = self.message().await;
            if message["channel"] == "transfers" {
                return message;
            }
        }
    }
}

async fn a_deposit_is_pending_until_its_confirmations_then_credited_once(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let address = address(&t, &alice).await;
    let mut feed = Transfers::open(&t, &alice).await;

    // 1.5 ETH and 123 wei below the ledger's 8 decimals.
    let tx = t.chain.send_eth(&address, 3 * ETH / 2 + 123).await.unwrap();
    let pending = deposit_reaches(&t, &alice, &tx, "pending").await;
    let seen = feed.next().await;
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
    let transfer = feed.next().await;
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

/// Deposits `wei` to the user's wallet on the chain and waits for the
/// credit; returns the wallet's address.
async fn funded(t: &TestStack, token: &str, wei: u128) -> String {
    let address = address(t, token).await;
    let tx = t.chain.send_eth(&address, wei).await.unwrap();
    t.chain.mine(3).await.unwrap();
    deposit_reaches(t, token, &tx, "credited").await;
    eventually("the deposit is in the balance", WAIT, || async {
        (t.accounts(token).await["ETH"].0 != "0").then_some(())
    })
    .await;
    address
}

/// An address outside the exchange (nobody's wallet), checksummed.
fn outside() -> String {
    alloy::signers::local::PrivateKeySigner::random().address().to_checksum(None)
}

async fn withdraw(t: &TestStack, token: &str, amount: &str, to: &str) -> Value {
    withdraw_currency(t, token, "ETH", amount, to).await
}

async fn withdraw_currency(t: &TestStack, token: &str, currency: &str, amount: &str, to: &str) -> Value {
    let body = serde_json::json!({"currency": currency, "amount": amount, "address": to});
    let (status, w) = t.call("POST", "/api/withdrawals", Some(token), Some(body)).await;
    assert_eq!(status, 202, "{w}");
    w
}

async fn withdrawal(t: &TestStack, token: &str, id: &str) -> Value {
    let (status, w) = t.call("GET", &format!("/api/withdrawals/{id}"), Some(token), None).await;
    assert_eq!(status, 200, "{w}");
    w
}

/// Waits until the withdrawal `id` reads `status`; returns it.
async fn withdrawal_reaches(t: &TestStack, token: &str, id: &str, status: &str) -> Value {
    eventually_or(&format!("withdrawal {id} {status}"), WAIT, || async {
        let w = withdrawal(t, token, id).await;
        if w["status"] == status { Ok(w) } else { Err(format!(": saw {w}")) }
    })
    .await
}

/// Waits until the user's ETH balance is `expected` (available, reserved).
async fn eth_balance_becomes(t: &TestStack, token: &str, expected: (&str, &str)) {
    eventually_or("the ETH balance", WAIT, || async {
        let now = t.accounts(token).await["ETH"].clone();
        if now == pair(expected.0, expected.1) { Ok(()) } else { Err(format!(": saw {now:?}")) }
    })
    .await;
}

async fn a_withdrawal_is_held_sent_confirmed_and_debited_exactly(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, 2 * ETH).await;
    let to = outside();
    let mut feed = Transfers::open(&t, &alice).await;

    // Typed in lower case (no checksum to check), stored checksummed.
    let body = serde_json::json!({"currency": "ETH", "amount": "0.5", "address": to.to_lowercase()});
    let key = [("Idempotency-Key", "alice-w1")];
    let (status, w) = t.call_with("POST", "/api/withdrawals", Some(&alice), Some(body.clone()), &key).await;
    assert_eq!(status, 202, "{w}");
    assert_eq!(
        (&w["amount"], &w["fee"], &w["address"]),
        (&"0.5".into(), &"0.0005".into(), &to.clone().into()),
        "{w}"
    );
    let id = w["id"].as_str().unwrap().to_string();
    // The same key and body: the same withdrawal, nothing more held.
    let (status, again) = t.call_with("POST", "/api/withdrawals", Some(&alice), Some(body), &key).await;
    assert_eq!((status, &again["id"]), (202, &w["id"]), "{again}");

    // Mined at once (automine), one confirmation of three: held, not debited.
    let sent = withdrawal_reaches(&t, &alice, &id, "sent").await;
    eth_balance_becomes(&t, &alice, ("1.4995", "0.5005")).await;
    assert!(sent["confirmations"].as_u64().unwrap() < 3, "{sent}");

    t.chain.mine(2).await.unwrap();
    let done = withdrawal_reaches(&t, &alice, &id, "confirmed").await;
    assert!(done["confirmations"].as_u64().unwrap() >= 3, "{done}");
    eth_balance_becomes(&t, &alice, ("1.4995", "0")).await;
    let tx_hash = done["tx_hash"].as_str().unwrap();
    // Her live view: held, sent (with its transaction), confirmed.
    let mut seen = Vec::new();
    while seen.last().is_none_or(|m: &Value| m["status"] != "confirmed") {
        let message = feed.next().await["data"].clone();
        assert_eq!(
            (&message["kind"], &message["id"]),
            (&"withdrawal".into(), &id.clone().into()),
            "{message}"
        );
        seen.push(message);
    }
    let statuses: Vec<&str> = seen.iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["held", "sent", "confirmed"], "{seen:?}");
    assert_eq!((&seen[1]["tx_hash"], &seen[2]["tx_hash"]), (&tx_hash.into(), &tx_hash.into()));
    assert_eq!(
        t.chain.balance(&to).await.unwrap(),
        alloy::primitives::U256::from(ETH / 2),
        "exactly the amount"
    );
    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 1, "one transaction from the wallet");
    let mined = t.chain.transaction(tx_hash).await.unwrap().expect("the transaction is on chain");
    assert_eq!(mined["to"].as_str().unwrap().to_lowercase(), to.to_lowercase(), "{mined}");

    // The ledger: held (reserve), then debited (withdrawal), under the withdrawal's reference.
    let (_, history) = t.call("GET", "/api/history/finance?per_page=100", Some(&alice), None).await;
    let mine: Vec<(&str, &str)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reference"] == format!("withdrawal:{id}"))
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(mine, [("withdrawal", "-0.5005"), ("reserve", "0.5005"), ("reserve", "-0.5005")], "{history}");
    let (_, list) = t.call("GET", "/api/withdrawals", Some(&alice), None).await;
    assert_eq!((&list["total"], &list["items"][0]["id"]), (&1.into(), &id.clone().into()), "{list}");

    let mail = eventually("the withdrawal is e-mailed", WAIT, || async {
        t.mails_to("alice@example.com")
            .into_iter()
            .find(|m| m.subject.as_deref() == Some("Withdrawal confirmed: 0.5 ETH"))
    })
    .await;
    let text = mail.text.as_deref().unwrap();
    assert!(text.contains(tx_hash) && text.contains(&to) && text.contains("0.0005 ETH"), "{text}");
    t.stop().await;
}

async fn a_withdrawal_that_reverts_or_cannot_be_sent_gives_everything_back(backend: Backend) {
    let t = TestStack::start(backend).await;
    // Bob's ETH is in the ledger only (a top-up): his wallet cannot pay it.
    let bob = t.user("bob@example.com").await;
    let bob_wallet = address(&t, &bob).await;
    t.top_up(&bob, "ETH", "1").await;
    let w = withdraw(&t, &bob, "0.25", &outside()).await;
    let failed = withdrawal_reaches(&t, &bob, w["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("the wallet holds 0 ETH on the chain"), "{reason}");
    eth_balance_becomes(&t, &bob, ("1", "0")).await;
    assert_eq!(t.chain.nonce(&bob_wallet).await.unwrap(), 0, "nothing was sent");

    // Alice sends to a contract that refuses every payment: mined, reverted.
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, ETH).await;
    let refuser = outside();
    t.chain.set_code(&refuser, "0x60006000fd").await.unwrap();
    let w = withdraw(&t, &alice, "0.2", &refuser).await;
    let id = w["id"].as_str().unwrap();
    let failed = withdrawal_reaches(&t, &alice, id, "failed").await;
    assert!(failed["reason"].as_str().unwrap().contains("reverted"), "{failed}");
    assert!(failed["tx_hash"].is_string(), "{failed}");
    eth_balance_becomes(&t, &alice, ("1", "0")).await;
    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 1, "the reverted transaction used its nonce");
    assert_eq!(t.chain.balance(&refuser).await.unwrap(), alloy::primitives::U256::ZERO);
    // Released in full: the ledger's release under the withdrawal's reference.
    let (_, history) = t.call("GET", "/api/history/finance?per_page=100", Some(&alice), None).await;
    let released: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reference"] == format!("withdrawal:{id}") && e["kind"] == "release")
        .map(|e| e["amount"].as_str().unwrap())
        .collect();
    assert_eq!(released.len(), 2, "{history}");
    assert!(released.contains(&"0.2005"), "{released:?}");
    for (user, amount) in [("bob@example.com", "0.25"), ("alice@example.com", "0.2")] {
        eventually("the failure is e-mailed", WAIT, || async {
            let subject = format!("Withdrawal failed: {amount} ETH");
            t.mails_to(user).into_iter().find(|m| m.subject.as_deref() == Some(subject.as_str()))
        })
        .await;
    }
    t.stop().await;
}

async fn chain_service_killed_after_signing_and_after_broadcasting_sends_each_withdrawal_once(
    backend: Backend,
) {
    let mut t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, 3 * ETH).await;
    let to = outside();
    let signed_hash = async |t: &TestStack, id: &str| {
        eventually("the transaction is signed and stored", WAIT, || async {
            let w = withdrawal(t, &alice, id).await;
            w["tx_hash"].as_str().map(str::to_string)
        })
        .await
    };

    // Killed after storing the signed transaction, before broadcasting it.
    t.stack.service("chain-service").unwrap().bus.faults.crash_sender_after_signing(1);
    let first = withdraw(&t, &alice, "0.1", &to).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let first_hash = signed_hash(&t, &first_id).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(t.chain.transaction(&first_hash).await.unwrap().is_none(), "not broadcast before the crash");
    t.stack.crash_and_restart("chain-service").await.unwrap();
    withdrawal_reaches(&t, &alice, &first_id, "sent").await;

    // Killed after broadcasting, before recording that it did.
    t.stack.service("chain-service").unwrap().bus.faults.crash_sender_after_broadcast(1);
    let second = withdraw(&t, &alice, "0.2", &to).await;
    let second_id = second["id"].as_str().unwrap().to_string();
    let second_hash = signed_hash(&t, &second_id).await;
    eventually("the node has it", WAIT, || async {
        t.chain.transaction(&second_hash).await.unwrap().map(|_| ())
    })
    .await;
    assert_eq!(withdrawal(&t, &alice, &second_id).await["status"], "sending", "not recorded as sent");
    t.stack.crash_and_restart("chain-service").await.unwrap();

    t.chain.mine(3).await.unwrap();
    for (id, hash) in [(&first_id, &first_hash), (&second_id, &second_hash)] {
        let done = withdrawal_reaches(&t, &alice, id, "confirmed").await;
        assert_eq!(done["tx_hash"].as_str(), Some(hash.as_str()), "the same signed bytes: {done}");
    }
    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 2, "one transaction per withdrawal");
    let received = alloy::primitives::U256::from(3 * ETH / 10);
    assert_eq!(t.chain.balance(&to).await.unwrap(), received, "0.1 + 0.2 ETH, once each");
    eth_balance_becomes(&t, &alice, ("2.699", "0")).await;
    t.stop().await;
}

async fn a_stuck_withdrawal_is_replaced_with_a_higher_fee_and_confirmed_once(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, ETH).await;
    let to = outside();

    // Nothing is mined: the transaction waits in the mempool past replace_after_ms (1 s here).
    t.chain.set_automine(false).await.unwrap();
    let w = withdraw(&t, &alice, "0.1", &to).await;
    let id = w["id"].as_str().unwrap().to_string();
    let first = withdrawal_reaches(&t, &alice, &id, "sent").await;
    let first_hash = first["tx_hash"].as_str().unwrap().to_string();
    let replaced = eventually("the transaction is replaced", WAIT, || async {
        let w = withdrawal(&t, &alice, &id).await;
        (w["replacements"].as_i64().unwrap() >= 1).then_some(w)
    })
    .await;
    let replaced_hash = replaced["tx_hash"].as_str().unwrap().to_string();
    assert_ne!(replaced_hash, first_hash, "{replaced}");
    t.chain.set_automine(true).await.unwrap();
    t.chain.mine(3).await.unwrap();
    let done = withdrawal_reaches(&t, &alice, &id, "confirmed").await;
    let mined_hash = done["tx_hash"].as_str().unwrap();
    assert_ne!(mined_hash, first_hash, "a replacement was mined: {done}");
    // The first attempt paid the configured tip (1 gwei); the mined one 25 % more at least.
    let mined = t.chain.transaction(mined_hash).await.unwrap().expect("mined");
    let tip =
        u128::from_str_radix(mined["maxPriorityFeePerGas"].as_str().unwrap().trim_start_matches("0x"), 16);
    assert!(tip.unwrap() >= 1_250_000_000, "a higher fee: {mined}");
    assert!(t.chain.transaction(&first_hash).await.unwrap().is_none(), "the first attempt is gone");
    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 1, "one transaction mined");
    assert_eq!(t.chain.balance(&to).await.unwrap(), alloy::primitives::U256::from(ETH / 10), "sent once");
    eth_balance_becomes(&t, &alice, ("0.8995", "0")).await;
    t.stop().await;
}

async fn bad_withdrawals_are_refused_with_a_code_and_hold_nothing(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    address(&t, &alice).await;
    t.top_up(&alice, "ETH", "1").await;
    let good = outside();
    // anvil's second account, one letter's case changed.
    let typo = "0x70997970c51812dc3A010C7d01b50e0d17dc79C8";
    for (currency, amount, address, code) in [
        ("ETH", "0.1", "0x1234", "address_malformed"),
        ("ETH", "0.1", "not an address", "address_malformed"),
        ("ETH", "0.1", typo, "address_checksum"),
        ("ETH", "0.1", "0x0000000000000000000000000000000000000000", "address_zero"),
        ("ETH", "0.123456789", good.as_str(), "amount_scale_exceeded"),
        ("ETH", "0", good.as_str(), "amount_not_positive"),
        ("ETH", "-1", good.as_str(), "amount_not_positive"),
        ("ETH", "101", good.as_str(), "withdrawal_above_maximum"),
        ("DOGE", "1", good.as_str(), "unknown_currency"),
        ("BTC", "0.5", good.as_str(), "currency_not_on_chain"),
        ("ETH", "5", good.as_str(), "insufficient_funds"),
    ] {
        let body = serde_json::json!({"currency": currency, "amount": amount, "address": address});
        let (status, answer) = t.call("POST", "/api/withdrawals", Some(&alice), Some(body)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some(code)),
            "{currency} {amount} {address}: {answer}"
        );
    }
    // A key used for another body.
    let key = [("Idempotency-Key", "alice-k")];
    let body = |amount: &str| Some(serde_json::json!({"currency": "ETH", "amount": amount, "address": good}));
    let (status, first) = t.call_with("POST", "/api/withdrawals", Some(&alice), body("0.1"), &key).await;
    assert_eq!(status, 202, "{first}");
    let (status, reused) = t.call_with("POST", "/api/withdrawals", Some(&alice), body("0.2"), &key).await;
    assert_eq!((status, reused["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{reused}");
    // Nothing held but the one accepted (its wallet has no ETH on chain: it fails and is given back).
    withdrawal_reaches(&t, &alice, first["id"].as_str().unwrap(), "failed").await;
    eth_balance_becomes(&t, &alice, ("1", "0")).await;
    let (_, list) = t.call("GET", "/api/withdrawals", Some(&alice), None).await;
    let statuses: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|w| w["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "refused"], "the refused one is on record, nothing held: {list}");
    let (status, _) =
        t.call("GET", &format!("/api/withdrawals/{}", uuid::Uuid::now_v7()), Some(&alice), None).await;
    assert_eq!(status, 404);
    t.stop().await;
}

async fn usdt_is_deposited_and_withdrawn_as_a_token_whose_gas_the_gas_wallet_pays(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let wallet = address(&t, &alice).await;
    let (_, wallets) = t.call("GET", "/api/users/me/wallets", Some(&alice), None).await;
    let usdt =
        wallets.as_array().unwrap().iter().find(|w| w["currency"] == "USDT").expect("a USDT address").clone();
    assert_eq!(
        (&usdt["address"], &usdt["token"]),
        (&wallet.clone().into(), &t.chain.usdt.to_checksum(None).into())
    );

    // The dev faucet mints her 1500.5 USDT: a Transfer log to her address, credited after its confirmations.
    let body = serde_json::json!({"currency": "USDT", "amount": "1500.5"});
    let (status, sent) = t.call("POST", "/api/users/me/wallets/faucet", Some(&alice), Some(body)).await;
    assert_eq!(status, 202, "{sent}");
    let tx = sent["tx_hash"].as_str().unwrap().to_string();
    let pending = deposit_reaches(&t, &alice, &tx, "pending").await;
    assert_eq!((&pending["currency"], &pending["amount"]), (&"USDT".into(), &"1500.5".into()), "{pending}");
    assert!(pending["id"].as_str().unwrap().ends_with(":log0"), "one of the transaction's logs: {pending}");
    t.chain.mine(2).await.unwrap();
    deposit_reaches(&t, &alice, &tx, "credited").await;
    eventually("the USDT is in the balance", WAIT, || async {
        (t.accounts(&alice).await["USDT"] == pair("1500.5", "0")).then_some(())
    })
    .await;

    // She holds no ETH: the gas wallet pays her token transfer's gas.
    assert_eq!(t.chain.balance(&wallet).await.unwrap(), alloy::primitives::U256::ZERO);
    let to = outside();
    let body = serde_json::json!({"currency": "USDT", "amount": "500", "address": to});
    let (status, w) = t.call("POST", "/api/withdrawals", Some(&alice), Some(body)).await;
    assert_eq!(status, 202, "{w}");
    assert_eq!(w["fee"], "1", "{w}");
    let id = w["id"].as_str().unwrap().to_string();
    withdrawal_reaches(&t, &alice, &id, "sent").await;
    t.chain.mine(3).await.unwrap();
    let done = withdrawal_reaches(&t, &alice, &id, "confirmed").await;
    assert_eq!(t.chain.usdt_balance(&to).await.unwrap(), 500_000_000, "exactly 500 USDT reached the address");
    assert_eq!(t.chain.usdt_balance(&wallet).await.unwrap(), 1_000_500_000);
    assert_eq!(
        t.chain.nonce(&wallet).await.unwrap(),
        1,
        "one transaction from her wallet: the token transfer"
    );
    let mined = t.chain.transaction(done["tx_hash"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        mined["to"].as_str().unwrap().to_lowercase(),
        format!("{:#x}", t.chain.usdt),
        "a call to the token"
    );
    eventually("amount and fee debited", WAIT, || async {
        (t.accounts(&alice).await["USDT"] == pair("999.5", "0")).then_some(())
    })
    .await;
    // The gas the gas wallet sent her wallet is the exchange's, not a deposit of hers.
    t.chain.mine(3).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        t.chain.balance(&wallet).await.unwrap() > alloy::primitives::U256::ZERO,
        "gas left in the wallet"
    );
    assert_eq!(t.accounts(&alice).await["ETH"], pair("0", "0"), "no ETH credited for the gas");
    assert_eq!(deposits(&t, &alice).await.len(), 1, "one deposit: the USDT");
    eventually("the withdrawal is e-mailed", WAIT, || async {
        t.mails_to("alice@example.com")
            .into_iter()
            .find(|m| m.subject.as_deref() == Some("Withdrawal confirmed: 500 USDT"))
    })
    .await;

    // Bob's USDT is in the ledger only (a top-up): his wallet cannot send it, all is given back.
    let bob = t.user("bob@example.com").await;
    address(&t, &bob).await;
    t.top_up(&bob, "USDT", "100").await;
    let w = withdraw_currency(&t, &bob, "USDT", "50", &outside()).await;
    let failed = withdrawal_reaches(&t, &bob, w["id"].as_str().unwrap(), "failed").await;
    assert!(failed["reason"].as_str().unwrap().contains("the wallet holds 0 USDT on the chain"), "{failed}");
    eventually("given back", WAIT, || async {
        (t.accounts(&bob).await["USDT"] == pair("100", "0")).then_some(())
    })
    .await;
    t.stop().await;
}

async fn a_withdrawal_whose_block_leaves_the_chain_is_sent_again_and_confirmed_once(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, ETH).await;
    let before = t.chain.snapshot().await.unwrap();
    let to = outside();
    let w = withdraw(&t, &alice, "0.3", &to).await;
    let id = w["id"].as_str().unwrap().to_string();
    let mined = eventually("the withdrawal is in a block", WAIT, || async {
        let w = withdrawal(&t, &alice, &id).await;
        w["block_number"].as_i64().map(|_| w)
    })
    .await;

    // A reorg: its block leaves the chain (fewer than its confirmations deep);
    // other blocks take its place, and more follow, one at a time.
    t.chain.revert(before).await.unwrap();
    let done = eventually("the withdrawal is confirmed", WAIT, || async {
        t.chain.mine(1).await.unwrap();
        let w = withdrawal(&t, &alice, &id).await;
        (w["status"] == "confirmed").then_some(w)
    })
    .await;
    assert_eq!(done["tx_hash"], mined["tx_hash"], "the same signed bytes, sent again: {done}");
    assert!(t.chain.transaction(mined["tx_hash"].as_str().unwrap()).await.unwrap().is_some());
    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 1, "one transaction on the chain");
    assert_eq!(t.chain.balance(&to).await.unwrap(), alloy::primitives::U256::from(3 * ETH / 10), "sent once");
    eth_balance_becomes(&t, &alice, ("0.6995", "0")).await;
    t.stop().await;
}

async fn on_the_dev_stack_a_chain_currency_comes_only_from_the_chain(backend: Backend) {
    // As `bourse up` runs: no ledger-only top-up of ETH or USDT.
    let smtp = notify_service::mailer::SmtpSettings::default();
    let t = TestStack::start_tuned(backend, None, &[], smtp, |o| o.top_up_chain_currencies = false).await;
    let alice = t.user("alice@example.com").await;
    for currency in ["ETH", "USDT"] {
        let path = format!("/api/users/me/accounts/{currency}/top-up");
        let (status, answer) =
            t.call("POST", &path, Some(&alice), Some(serde_json::json!({"amount": "1"}))).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("deposit_on_chain")), "{answer}");
    }
    t.top_up(&alice, "BTC", "1").await;
    // The faucet is the dev stack's way: a deposit, credited from the chain (once her wallet is made).
    address(&t, &alice).await;
    let body = serde_json::json!({"currency": "ETH", "amount": "2"});
    let (status, sent) = t.call("POST", "/api/users/me/wallets/faucet", Some(&alice), Some(body)).await;
    assert_eq!(status, 202, "{sent}");
    t.chain.mine(3).await.unwrap();
    deposit_reaches(&t, &alice, sent["tx_hash"].as_str().unwrap(), "credited").await;
    eth_balance_becomes(&t, &alice, ("2", "0")).await;
    assert_eq!(t.accounts(&alice).await["BTC"], pair("1", "0"));
    t.stop().await;
}

async fn two_chain_service_instances_credit_and_send_once_and_one_takes_over(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    t.stack.add_instance("chain-service").await.unwrap();
    let alice = t.user("alice@example.com").await;
    let wallet = funded(&t, &alice, 2 * ETH).await;
    let to = outside();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(withdraw(&t, &alice, "0.1", &to).await["id"].as_str().unwrap().to_string());
    }
    let confirmed = async |t: &TestStack, id: &str| {
        eventually("the withdrawal is confirmed", WAIT, || async {
            t.chain.mine(1).await.unwrap();
            (withdrawal(t, &alice, id).await["status"] == "confirmed").then_some(())
        })
        .await
    };
    for id in &ids {
        confirmed(&t, id).await;
    }
    // The first instance (the one that took the lease) killed: the other takes over.
    t.stack.crash_and_restart("chain-service").await.unwrap();
    let last = withdraw(&t, &alice, "0.2", &to).await;
    confirmed(&t, last["id"].as_str().unwrap()).await;

    assert_eq!(t.chain.nonce(&wallet).await.unwrap(), 4, "one transaction per withdrawal");
    assert_eq!(t.chain.balance(&to).await.unwrap(), alloy::primitives::U256::from(ETH / 2), "0.5 ETH, once");
    eth_balance_becomes(&t, &alice, ("1.498", "0")).await;
    assert_eq!(deposit_entries(&t, &alice).await.len(), 1, "the deposit credited once");
    t.stop().await;
}

async fn the_demo_deposits_trades_and_withdraws_end_to_end(backend: Backend) {
    // As on `bourse up`: ETH and USDT only from the chain; blocks come by themselves.
    let smtp = notify_service::mailer::SmtpSettings::default();
    let t = TestStack::start_tuned(backend, None, &[], smtp, |o| o.top_up_chain_currencies = false).await;
    let mining = tokio::spawn({
        let url = t.chain.url.clone();
        async move {
            let node = alloy::providers::ProviderBuilder::new().connect_http(url.parse().unwrap());
            loop {
                use alloy::providers::Provider;
                let _: Result<serde_json::Value, _> = node.raw_request("evm_mine".into(), ()).await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    });
    let demo = bourse_cli::demo::run(&t.stack.gateway_url()).await;
    mining.abort();
    demo.expect("the demo runs through: deposits, the trade and the withdrawal");
    // What it did, as its users see it: Alice's USDT deposit credited, Bob's withdrawal confirmed.
    eventually("the demo's e-mails", WAIT, || async {
        let subjects: Vec<String> =
            t.mailbox.received().unwrap().iter().filter_map(|m| m.subject.clone()).collect();
        let wanted =
            ["Deposit credited: 10000 USDT", "Deposit credited: 1.5 ETH", "Withdrawal confirmed: 0.25 ETH"];
        wanted.iter().all(|w| subjects.iter().any(|s| s == w)).then_some(())
    })
    .await;
    t.stop().await;
}
