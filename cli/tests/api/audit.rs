//! The audit against a real stack: clean after orders, a trade, a deposit
//! and a withdrawal; each deliberately injected fault found with its account
//! and amounts; `bourse audit` exits 0 on a clean stack and 1 on a tampered one.

use bourse_common::config::DatabaseConfig;
use bourse_common::db::{Backend, Db, DbError};
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;
use diesel::RunQueryDsl;
use serde_json::{Value, json};

use crate::helpers::{TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(
    the_audit_is_clean_after_trades_deposits_and_withdrawals,
    the_audit_finds_each_injected_fault_with_its_account_and_amounts,
);

/// Every message is checked at once (no grace), and only on demand.
const PAYMENT_SETTINGS: &str = "[settings]\naudit_grace_ms = 0\naudit_interval_ms = 0\n";

/// Alice buys 1 ETH from Bob at 2000 USDT; returns their tokens once it is settled.
async fn a_trade(t: &TestStack) -> (String, String) {
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "USDT", "10000").await;
    t.top_up(&bob, "ETH", "5").await;
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let sell = t.place(&bob, sell).await;
    t.order_reaches(&bob, sell["id"].as_str().unwrap(), "open").await;
    let buy = t.place(&alice, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, buy["id"].as_str().unwrap(), "filled").await;
    // Maker 0.1 %, taker 0.2 %, each in what it receives.
    settled(t, &alice, "ETH", pair("0.998", "0")).await;
    settled(t, &bob, "USDT", pair("1998", "0")).await;
    (alice, bob)
}

async fn audit(t: &TestStack, admin: &str) -> Value {
    let (status, report) = t.call("POST", "/api/admin/audit", Some(admin), None).await;
    assert_eq!(status, 200, "{report}");
    report
}

/// The report's discrepancies as `(check, account, expected, found)`.
fn discrepancies(report: &Value) -> Vec<(String, String, String, String)> {
    report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (text("check"), text("account"), text("expected"), text("found"))
        })
        .collect()
}

async fn payment_db(t: &TestStack) -> Db {
    let url = t.options.databases["payment-service"].clone();
    Db::connect(&DatabaseConfig { url, pool_size: 1 }).unwrap()
}

/// Runs `sql` on payment-service's database, as someone with access to it might.
async fn tamper(t: &TestStack, sql: &'static str) {
    let changed = payment_db(t)
        .await
        .write(move |c| {
            bourse_common::on_backend!(c, |conn| diesel::sql_query(sql).execute(conn)).map_err(DbError::from)
        })
        .await
        .unwrap();
    assert!(changed > 0, "{sql} changed nothing");
}

async fn the_audit_is_clean_after_trades_deposits_and_withdrawals(backend: Backend) {
    let t = TestStack::start_configured(backend, &[("payment-service", PAYMENT_SETTINGS)]).await;
    let admin = t.admin("admin@bourse.local").await;
    let (alice, _bob) = a_trade(&t).await;
    // A deposit on the chain, credited; then a withdrawal of part of it, confirmed.
    let (_, wallets) = t.call("GET", "/api/users/me/wallets", Some(&alice), None).await;
    let address = wallets[0]["address"].as_str().unwrap().to_string();
    t.chain.send_eth(&address, 2_000_000_000_000_000_000).await.unwrap();
    t.chain.mine(3).await.unwrap();
    settled(&t, &alice, "ETH", pair("2.998", "0")).await;
    let to = alloy::signers::local::PrivateKeySigner::random().address().to_checksum(None);
    let body = json!({"currency": "ETH", "amount": "0.5", "address": to});
    let (status, w) = t.call("POST", "/api/withdrawals", Some(&alice), Some(body)).await;
    assert_eq!(status, 202, "{w}");
    eventually("the withdrawal is confirmed", WAIT, || async {
        t.chain.mine(1).await.unwrap();
        let (_, w) = t
            .call("GET", &format!("/api/withdrawals/{}", w["id"].as_str().unwrap()), Some(&alice), None)
            .await;
        (w["status"] == "confirmed").then_some(())
    })
    .await;
    settled(&t, &alice, "ETH", pair("2.4975", "0")).await;

    let report = audit(&t, &admin).await;
    assert_eq!(discrepancies(&report), [], "{report:#}");
    let totals: Vec<(&str, &str, &str, &str, &str, &str)> = report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap();
            (s("currency"), s("users"), s("fees"), s("top_ups"), s("deposits"), s("withdrawals"))
        })
        .filter(|t| t.0 != "BTC")
        .collect();
    assert_eq!(
        totals,
        [("ETH", "6.4975", "0.0025", "5", "2", "0.5"), ("USDT", "9998", "2", "10000", "0", "0"),],
        "users + fees = top-ups + deposits - withdrawals, per currency: {report:#}"
    );
    // The gauges say so.
    let payment = t.stack.service("payment-service").unwrap().url();
    let metrics = t.http.get(format!("{payment}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("bourse_audit_discrepancies") && l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("bourse_audit_last_clean_seconds")), "{metrics}");
    // The latest report is kept; an ordinary user may not see it.
    let (_, latest) = t.call("GET", "/api/admin/audit", Some(&admin), None).await;
    assert_eq!(latest["id"], report["id"]);
    let (status, _) = t.call("POST", "/api/admin/audit", Some(&alice), None).await;
    assert_eq!(status, 403);
    let (code, output) = t.bourse_audit(PAYMENT_SETTINGS).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("clean: every check holds"), "{output}");
    t.stop().await;
}

async fn the_audit_finds_each_injected_fault_with_its_account_and_amounts(backend: Backend) {
    let t = TestStack::start_configured(backend, &[("payment-service", PAYMENT_SETTINGS)]).await;
    let admin = t.admin("admin@bourse.local").await;
    a_trade(&t).await;
    assert_eq!(discrepancies(&audit(&t, &admin).await), []);
    // 1. A ledger entry changed by hand: Alice's top-up entry says 10001.
    tamper(
        &t,
        "UPDATE ledger_entries SET amount = '10001' WHERE kind = 'top_up' AND currency = 'USDT' AND account LIKE 'user:%:available'",
    )
    .await;
    let found = discrepancies(&audit(&t, &admin).await);
    let alice_usdt =
        found.iter().find(|d| d.0 == "balance_differs_from_entries").expect("the account named").clone();
    assert!(alice_usdt.1.ends_with(":USDT:available"), "{found:?}");
    assert_eq!(
        (alice_usdt.2.as_str(), alice_usdt.3.as_str()),
        ("8001", "8000"),
        "entries say 8001, the balance 8000: {found:?}"
    );
    assert!(
        found.iter().any(|d| d.0 == "ledger_transaction_unbalanced" && d.2 == "0" && d.3 == "1"),
        "the top-up's transaction is off by 1: {found:?}"
    );
    tamper(&t, "UPDATE ledger_entries SET amount = '10000' WHERE amount = '10001'").await;

    // 2. A balance changed without an entry: Bob's USDT grows by 5.
    tamper(&t, "UPDATE accounts SET available = '2003' WHERE currency = 'USDT' AND CAST(available AS NUMERIC) = 1998").await;
    let found = discrepancies(&audit(&t, &admin).await);
    let bob =
        found.iter().find(|d| d.0 == "balance_differs_from_entries").expect("the account named").clone();
    assert!(bob.1.ends_with(":USDT:available"), "{found:?}");
    assert_eq!((bob.2.as_str(), bob.3.as_str()), ("1998", "2003"), "{found:?}");
    assert!(
        found.contains(&(
            "currency_not_conserved".into(),
            "currency USDT".into(),
            "10000".into(),
            "10005".into()
        )),
        "{found:?}"
    );
    tamper(&t, "UPDATE accounts SET available = '1998' WHERE currency = 'USDT' AND CAST(available AS NUMERIC) = 2003").await;
    assert_eq!(discrepancies(&audit(&t, &admin).await), [], "restored");

    // 3. A settled trade deleted from the ledger: the event log still has it.
    tamper(&t, "DELETE FROM ledger_entries WHERE reference LIKE 'trade:%'").await;
    let report = audit(&t, &admin).await;
    let found = discrepancies(&report);
    let unsettled: Vec<_> = found.iter().filter(|d| d.0 == "trade_not_settled_once").collect();
    let mut changes: Vec<(&str, &str)> = unsettled.iter().map(|d| (d.2.as_str(), d.3.as_str())).collect();
    changes.sort_unstable();
    // Alice: +0.998 ETH, -2000 USDT; Bob: -1 ETH, +1998 USDT; none found.
    assert_eq!(changes, [("-1", "0"), ("-2000", "0"), ("0.998", "0"), ("1998", "0")], "{report:#}");
    // Each names the trade's message in the event log and its ledger reference.
    for d in
        report["discrepancies"].as_array().unwrap().iter().filter(|d| d["check"] == "trade_not_settled_once")
    {
        let messages: Vec<&str> =
            d["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        assert!(messages.len() == 2 && messages[1].starts_with("trade:"), "{d}");
        assert!(uuid::Uuid::parse_str(messages[0]).is_ok(), "{d}");
    }

    // The alarm: `audit.failed` in the event log, the gauge, and `bourse audit` exits 1.
    let log = bourse_common::eventlog::read(
        &t.env.amqp_url,
        bourse_common::eventlog::StreamOffset::First,
        100_000,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(log.iter().any(|e| e.envelope.message_type == "audit.failed"), "audit.failed is raised");
    // Every administrator is e-mailed, with the report's id and the checks that failed.
    let alert = eventually("the administrator is told", WAIT, || async {
        t.mails_to("admin@bourse.local")
            .into_iter()
            .find(|m| m.text.as_deref().is_some_and(|text| text.contains(report["id"].as_str().unwrap())))
    })
    .await;
    let (subject, text) = (alert.subject.unwrap_or_default(), alert.text.unwrap_or_default());
    assert!(subject.starts_with("ALERT: the audit found"), "{subject}");
    assert!(text.contains("trade_not_settled_once"), "{text}");
    assert!(
        t.mails_to("alice@example.com").iter().all(|m| !m
            .subject
            .as_deref()
            .unwrap_or("")
            .starts_with("ALERT"))
    );
    let (code, output) = t.bourse_audit(PAYMENT_SETTINGS).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("trade_not_settled_once"), "{output}");
    t.stop().await;
}
