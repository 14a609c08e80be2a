//! Settlement on chain against a real anvil, as `bourse up` runs it (ETH and
//! USDT only from the chain): each window's trades netted per wallet and
//! asset, one transaction each through the clearing wallet, fees to the fee
//! wallet; through a crash mid-window; and the audit reconciling every
//! wallet with the ledger, finding a transfer the ledger does not know about.

use std::collections::{BTreeMap, BTreeSet};

use alloy::signers::local::PrivateKeySigner;
use bourse_common::config::DatabaseConfig;
use bourse_common::db::{Backend, Db, DbError};
use bourse_common::on_both_backends;
use bourse_common::testkit::{eventually, eventually_or};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::chain::Transfers;
use crate::helpers::{CHAIN_SETTINGS, TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(
    a_trade_settles_on_chain_one_transaction_per_wallet_and_asset_and_the_audit_finds_a_theft,
    two_hundred_trades_settle_in_a_few_windows_with_transactions_bounded_by_the_netting,
    chain_service_killed_mid_window_sends_each_transaction_once_and_the_window_settles,
);

const ETH: u128 = 1_000_000_000_000_000_000;
const USDT: u128 = 1_000_000;

/// chain-service as in the other chain tests, with windows of `window_ms` or `window_trades`.
fn chain_toml(window_ms: u64, window_trades: u32) -> String {
    format!(
        "{CHAIN_SETTINGS}[settings.settlement]\nwindow_ms = {window_ms}\nwindow_trades = {window_trades}\n"
    )
}

/// Blocks come by themselves (a block every 100 ms), as on a chain.
struct Miner(tokio::task::JoinHandle<()>);

impl Miner {
    fn start(t: &TestStack) -> Self {
        let url = t.chain.url.clone();
        Self(tokio::spawn(async move {
            use alloy::providers::Provider;
            let node = alloy::providers::ProviderBuilder::new().connect_http(url.parse().unwrap());
            loop {
                let _: Result<Value, _> = node.raw_request("evm_mine".into(), ()).await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }))
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The user's wallet address, once it is made.
async fn wallet(t: &TestStack, token: &str) -> String {
    eventually("the wallet is made", WAIT, || async {
        let (_, w) = t.call("GET", "/api/users/me/wallets", Some(token), None).await;
        w[0]["address"].as_str().map(str::to_string)
    })
    .await
}

/// A user with `amount` of `currency` deposited through the dev faucet (on
/// chain), credited; returns their token and wallet address.
async fn funded(t: &TestStack, email: &str, currency: &str, amount: &str) -> (String, String) {
    let token = t.user(email).await;
    let address = wallet(t, &token).await;
    let body = json!({"currency": currency, "amount": amount});
    let (status, sent) = t.call("POST", "/api/users/me/wallets/faucet", Some(&token), Some(body)).await;
    assert_eq!(status, 202, "{sent}");
    settled(t, &token, currency, pair(amount, "0")).await;
    (token, address)
}

fn addresses(t: &TestStack) -> (String, String) {
    let secrets = &t.options.secrets;
    let key = secrets.clearing_key.as_ref().unwrap().expose().parse::<PrivateKeySigner>().unwrap();
    (key.address().to_checksum(None), secrets.fee_address().unwrap().to_checksum(None))
}

async fn windows(t: &TestStack, admin: &str) -> Vec<Value> {
    let (status, page) = t.call("GET", "/api/admin/chain/settlements?per_page=100", Some(admin), None).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// The windows once every one is settled and they hold `trades` trades.
async fn all_settled(t: &TestStack, admin: &str, trades: i64) -> Vec<Value> {
    eventually(&format!("{trades} trades settled on chain"), WAIT * 3, || async {
        let all = windows(t, admin).await;
        let counted: i64 = all.iter().map(|w| w["trades"].as_i64().unwrap()).sum();
        let done = all.iter().all(|w| w["status"] == "settled");
        assert!(all.iter().all(|w| w["status"] != "failed"), "a window failed: {all:#?}");
        (done && counted == trades).then_some(all)
    })
    .await
}

/// What the gas wallet sent `wallet` for its settlement transactions, less
/// what they burnt, in wei: read from the chain (values and receipts).
async fn gas_float(t: &TestStack, wallet: &str, windows: &[Value]) -> i128 {
    let url = t.options.databases["chain-service"].clone();
    let db = Db::connect(&DatabaseConfig { url, pool_size: 1 }).unwrap();
    let mut float = 0i128;
    for tx in windows.iter().flat_map(|w| w["transactions"].as_array().unwrap()) {
        if !tx["from"].as_str().unwrap().eq_ignore_ascii_case(wallet) {
            continue;
        }
        float -= t.chain.gas_cost(tx["tx_hash"].as_str().unwrap()).await.unwrap() as i128;
        let id = tx["id"].as_str().unwrap().to_string();
        let payments = db
            .read(move |c| chain_service::storage::gas_payments(c, &id).map_err(DbError::from))
            .await
            .unwrap();
        for p in payments.iter().filter(|p| p.block_number.is_some()) {
            let sent = t.chain.transaction(p.tx_hash.as_deref().unwrap()).await.unwrap().unwrap();
            let value =
                u128::from_str_radix(sent["value"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            float += value as i128;
        }
    }
    float
}

/// Bob sells Alice 1 ETH at 2000 USDT (he rests, she takes); once her order is filled.
async fn bob_sells_alice_buys_one_eth(t: &TestStack, alice: &str, bob: &str) {
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let sell = t.place(bob, sell).await;
    t.order_reaches(bob, sell["id"].as_str().unwrap(), "open").await;
    let buy = t.place(alice, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(alice, buy["id"].as_str().unwrap(), "filled").await;
}

async fn eth(t: &TestStack, address: &str) -> u128 {
    t.chain.balance(address).await.unwrap().to::<u128>()
}

async fn usdt(t: &TestStack, address: &str) -> u128 {
    t.chain.usdt_balance(address).await.unwrap()
}

async fn audit(t: &TestStack, admin: &str) -> Value {
    let (status, report) = t.call("POST", "/api/admin/audit", Some(admin), None).await;
    assert_eq!(status, 200, "{report}");
    report
}

/// `bourse audit` on this stack, reconciling the chain through chain-service
/// (its URL and the stack's internal secret in the configuration).
async fn bourse_audit(t: &TestStack) -> (i32, String) {
    t.bourse_audit(&format!(
        "[settings]\naudit_grace_ms = 0\naudit_interval_ms = 0\nchain_service_url = \"{}\"\n[security]\ninternal_secret = \"{}\"\n",
        t.stack.service("chain-service").unwrap().url(),
        t.options.secrets.internal_secret.expose()
    ))
    .await
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

async fn a_trade_settles_on_chain_one_transaction_per_wallet_and_asset_and_the_audit_finds_a_theft(
    backend: Backend,
) {
    let t = TestStack::start_settling(backend, &chain_toml(1_000, 100)).await;
    let _miner = Miner::start(&t);
    let admin = t.admin("admin@bourse.local").await;
    let (alice, alice_wallet) = funded(&t, "alice@example.com", "USDT", "10000").await;
    let (bob, bob_wallet) = funded(&t, "bob@example.com", "ETH", "5").await;
    let (clearing, fee_wallet) = addresses(&t);

    let mut feed = Transfers::open(&t, &alice).await;
    bob_sells_alice_buys_one_eth(&t, &alice, &bob).await;
    // In the ledger at once: maker 0.1 %, taker 0.2 %, each in what it receives.
    settled(&t, &alice, "ETH", pair("0.998", "0")).await;
    settled(&t, &bob, "USDT", pair("1998", "0")).await;

    let windows = all_settled(&t, &admin, 1).await;
    assert_eq!(windows.len(), 1, "{windows:#?}");
    let txs = windows[0]["transactions"].as_array().unwrap();
    let id = windows[0]["id"].as_str().unwrap();
    let (a, b) = (alice_wallet.as_str(), bob_wallet.as_str());
    let mut expected = BTreeSet::new();
    for (owner, currency) in [(a, "USDT"), (b, "ETH"), (a, "ETH"), (b, "USDT")] {
        expected.insert(format!("settle:{id}:{}:{currency}", user_id(&t, owner).await));
    }
    expected.insert(format!("settle:{id}:fees:ETH"));
    expected.insert(format!("settle:{id}:fees:USDT"));
    let ids: BTreeSet<String> = txs.iter().map(|tx| tx["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, expected, "one transaction per wallet and asset: {txs:#?}");
    for tx in txs {
        assert_eq!(tx["status"], "confirmed", "{tx}");
        assert!(t.chain.transaction(tx["tx_hash"].as_str().unwrap()).await.unwrap().is_some(), "{tx}");
    }
    assert_eq!(t.chain.nonce(a).await.unwrap(), 1, "Alice's wallet sent once: her USDT");
    assert_eq!(t.chain.nonce(b).await.unwrap(), 1, "Bob's wallet sent once: his ETH");
    assert_eq!(t.chain.nonce(&clearing).await.unwrap(), 4, "the clearing wallet paid four");

    // On chain, exactly the trade less the fees; the fee wallet holds the fees.
    assert_eq!(usdt(&t, a).await, 8_000 * USDT);
    assert_eq!(usdt(&t, b).await, 1_998 * USDT);
    assert_eq!(usdt(&t, &fee_wallet).await, 2 * USDT);
    assert_eq!(eth(&t, &fee_wallet).await, 2 * ETH / 1_000);
    assert_eq!(usdt(&t, &clearing).await, 0, "the clearing wallet keeps nothing");
    // ETH: what the trade moved, and the gas float the gas wallet sent for
    // each wallet's own transaction (never from the user's funds).
    let alice_float = gas_float(&t, a, &windows).await;
    let bob_float = gas_float(&t, b, &windows).await;
    assert!(alice_float > 0 && bob_float > 0, "{alice_float} {bob_float}");
    assert_eq!(eth(&t, a).await as i128, (998 * ETH / 1_000) as i128 + alice_float);
    assert_eq!(eth(&t, b).await as i128, (4 * ETH) as i128 + bob_float);

    // Each user is told, with the transactions: on the `transfers` channel...
    let told = loop {
        let message = feed.next().await;
        if message["data"]["kind"] == "settlement" {
            break message["data"].clone();
        }
    };
    assert_eq!(
        (told["status"].as_str(), told["id"].as_str(), told["trades"].as_u64()),
        (Some("confirmed"), Some(id), Some(1)),
        "{told}"
    );
    let legs: BTreeMap<&str, (&str, &str)> = told["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (l["currency"].as_str().unwrap(), (l["amount"].as_str().unwrap(), l["tx_hash"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(legs["ETH"].0, "0.998", "{told}");
    assert_eq!(legs["USDT"].0, "-2000", "{told}");
    for (_, hash) in legs.values() {
        assert!(txs.iter().any(|tx| tx["tx_hash"] == *hash), "{told}");
    }
    // ... and by e-mail.
    let mail = eventually("Alice's settlement e-mail", WAIT, || async {
        t.all_mails_to("alice@example.com")
            .into_iter()
            .find(|m| m.subject.as_deref() == Some("Your trades are settled on chain (1 trade)"))
    })
    .await;
    let text = mail.text.unwrap();
    let alice_id = user_id(&t, a).await;
    for tx in txs.iter().filter(|tx| tx["id"].as_str().unwrap().contains(&alice_id)) {
        assert!(text.contains(tx["tx_hash"].as_str().unwrap()), "{text}");
    }
    assert!(text.contains("+0.998 ETH") && text.contains("-2000 USDT"), "{text}");

    // The audit: clean, every wallet reconciled at a block.
    let report = audit(&t, &admin).await;
    assert_eq!(report["discrepancies"], json!([]), "{report:#}");
    assert!(report["chain_block"].as_u64().is_some(), "{report:#}");
    assert_eq!(
        report["wallets_checked"], 10,
        "the admin, Alice, Bob, fees, clearing; ETH and USDT: {report:#}"
    );

    let (code, printed) = bourse_audit(&t).await;
    println!("{printed}");
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("wallet holdings reconciled with the ledger at block"), "{printed}");

    // A transfer out of Bob's wallet that the ledger does not know about.
    let thief = PrivateKeySigner::random().address().to_checksum(None);
    let stolen = t.chain.transfer_out_of(b, &thief, ETH / 10).await.unwrap();
    let burnt = t.chain.gas_cost(&stolen).await.unwrap();
    t.chain.mine(1).await.unwrap();
    let (code, printed) = bourse_audit(&t).await;
    println!("{printed}");
    assert_eq!(code, 1, "{printed}");
    assert!(printed.contains(&format!("chain_differs_from_ledger wallet {b}")), "{printed}");
    let report = audit(&t, &admin).await;
    let found: Vec<&Value> = report["discrepancies"].as_array().unwrap().iter().collect();
    assert_eq!(found.len(), 1, "{report:#}");
    let d = found[0];
    assert_eq!(d["check"], "chain_differs_from_ledger", "{d}");
    assert!(
        d["account"].as_str().unwrap().contains(b) && d["account"].as_str().unwrap().ends_with("ETH"),
        "{d}"
    );
    let missing = dec(&d["expected"]) - dec(&d["found"]);
    assert_eq!(missing, Decimal::from_i128_with_scale((ETH / 10 + burnt) as i128, 18), "{d}");
    t.stop().await;
}

/// The id of the user whose wallet is `address` (chain-service's records).
async fn user_id(t: &TestStack, address: &str) -> String {
    let url = t.options.databases["chain-service"].clone();
    let db = Db::connect(&DatabaseConfig { url, pool_size: 1 }).unwrap();
    let owners = db.read(|c| chain_service::storage::wallet_owners(c).map_err(DbError::from)).await.unwrap();
    owners.into_iter().find(|(a, _)| a.eq_ignore_ascii_case(address)).unwrap().1
}

async fn two_hundred_trades_settle_in_a_few_windows_with_transactions_bounded_by_the_netting(
    backend: Backend,
) {
    let t = TestStack::start_settling(backend, &chain_toml(60_000, 50)).await;
    let _miner = Miner::start(&t);
    let admin = t.admin("admin@bourse.local").await;
    let mut sellers = Vec::new();
    let mut buyers = Vec::new();
    for i in 0..5 {
        sellers.push(funded(&t, &format!("seller{i}@example.com"), "ETH", "10").await);
        buyers.push(funded(&t, &format!("buyer{i}@example.com"), "USDT", "100000").await);
    }
    const TRADES: usize = 200;
    for k in 0..TRADES {
        let (seller, _) = &sellers[k % 5];
        let (buyer, _) = &buyers[(k / 5) % 5];
        let price = (1990 + (k % 20)).to_string();
        let sell = json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": price, "quantity": "0.01"});
        t.place(seller, sell).await;
        t.place(buyer, limit_buy("ETH-USDT", &price, "0.01")).await;
    }
    // Every seller sold 0.4 ETH; the book is empty once all filled.
    for (seller, _) in &sellers {
        settled(&t, seller, "ETH", pair("9.6", "0")).await;
    }
    let windows = all_settled(&t, &admin, TRADES as i64).await;
    let txs: usize = windows.iter().map(|w| w["transactions"].as_array().unwrap().len()).sum();
    // 10 users and the fees, two assets: at most 22 per window, whatever its trades.
    assert!(windows.len() >= 4, "50 trades a window: {}", windows.len());
    for w in &windows {
        assert!(w["transactions"].as_array().unwrap().len() <= 22, "{w:#}");
    }
    assert!(txs <= windows.len() * 22 && txs < TRADES, "{txs} transactions for {TRADES} trades");

    // Each user's wallet against their own ledger: USDT exactly; ETH with
    // the gas float the gas wallet sent their wallet.
    for (token, address) in sellers.iter().chain(&buyers) {
        let accounts = t.accounts(token).await;
        let ledger =
            |c: &str| -> Decimal { accounts.get(c).map_or(Decimal::ZERO, |(a, _)| a.parse().unwrap()) };
        let on_chain_usdt = Decimal::from_i128_with_scale(usdt(&t, address).await as i128, 6);
        assert_eq!(on_chain_usdt, ledger("USDT"), "{address}");
        let float = gas_float(&t, address, &windows).await;
        let on_chain_eth = Decimal::from_i128_with_scale(eth(&t, address).await as i128, 18);
        assert_eq!(on_chain_eth, ledger("ETH") + Decimal::from_i128_with_scale(float, 18), "{address}");
    }
    // Then withdrawals out of the settled wallets: the audit is clean after all of it.
    let to = PrivateKeySigner::random().address().to_checksum(None);
    let mut withdrawn = Vec::new();
    for ((token, _), (currency, amount)) in [(&sellers[0], ("ETH", "0.5")), (&buyers[0], ("USDT", "100"))] {
        let body = json!({"currency": currency, "amount": amount, "address": to});
        let (status, w) = t.call("POST", "/api/withdrawals", Some(token), Some(body)).await;
        assert_eq!(status, 202, "{w}");
        withdrawn.push((token.clone(), w["id"].as_str().unwrap().to_string()));
    }
    for (token, id) in &withdrawn {
        // Slower than the others when the machine is busy: two wallets' transactions, gas first.
        eventually_or(&format!("withdrawal {id} confirmed"), WAIT * 2, || async {
            let (_, w) = t.call("GET", &format!("/api/withdrawals/{id}"), Some(token), None).await;
            if w["status"] == "confirmed" { Ok(()) } else { Err(format!(", last seen: {w}")) }
        })
        .await;
    }
    assert_eq!(eth(&t, &to).await, ETH / 2);
    assert_eq!(usdt(&t, &to).await, 100 * USDT);
    let report = eventually("the withdrawals debited and the audit clean", WAIT, || async {
        let report = audit(&t, &admin).await;
        (report["discrepancies"] == json!([])).then_some(report)
    })
    .await;
    assert_eq!(report["wallets_checked"], 26, "ten users, the admin, fees, clearing; two assets: {report:#}");
    let totals: BTreeMap<String, Value> = report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["currency"].as_str().unwrap().into(), t.clone()))
        .collect();
    assert_eq!(dec(&totals["ETH"]["deposits"]), Decimal::from(50));
    t.stop().await;
}

async fn chain_service_killed_mid_window_sends_each_transaction_once_and_the_window_settles(
    backend: Backend,
) {
    let mut t = TestStack::start_settling(backend, &chain_toml(500, 100)).await;
    let _miner = Miner::start(&t);
    let admin = t.admin("admin@bourse.local").await;
    let (alice, alice_wallet) = funded(&t, "alice@example.com", "USDT", "10000").await;
    let (bob, bob_wallet) = funded(&t, "bob@example.com", "ETH", "5").await;
    let (clearing, fee_wallet) = addresses(&t);

    // Killed after its second broadcast of the window (a gas payment, then
    // the first collection), before recording it.
    t.stack.service("chain-service").unwrap().bus.faults.crash_sender_after_broadcast(2);
    bob_sells_alice_buys_one_eth(&t, &alice, &bob).await;
    eventually("a collection is on chain", WAIT, || async {
        let sent = t.chain.nonce(&alice_wallet).await.unwrap() + t.chain.nonce(&bob_wallet).await.unwrap();
        (sent >= 1).then_some(())
    })
    .await;
    let before = windows(&t, &admin).await;
    assert_eq!(before[0]["status"], "collecting", "stopped mid-window: {before:#?}");
    t.stack.crash_and_restart("chain-service").await.unwrap();

    let windows = all_settled(&t, &admin, 1).await;
    let txs = windows[0]["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 6, "{txs:#?}");
    assert_eq!(t.chain.nonce(&alice_wallet).await.unwrap(), 1, "Alice's collection once");
    assert_eq!(t.chain.nonce(&bob_wallet).await.unwrap(), 1, "Bob's collection once");
    assert_eq!(t.chain.nonce(&clearing).await.unwrap(), 4, "each payment once");
    assert_eq!(usdt(&t, &alice_wallet).await, 8_000 * USDT);
    assert_eq!(usdt(&t, &bob_wallet).await, 1_998 * USDT);
    assert_eq!(usdt(&t, &fee_wallet).await, 2 * USDT);
    assert_eq!(eth(&t, &fee_wallet).await, 2 * ETH / 1_000);
    let report = audit(&t, &admin).await;
    assert_eq!(report["discrepancies"], json!([]), "{report:#}");
    t.stop().await;
}
