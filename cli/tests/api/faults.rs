//! Faults under load: a cancel racing its own order's saga, and the database
//! going away while sagas are in flight. What a user would check afterwards:
//! every order's end state, the book, each user's balances against their
//! fills, and no message parked.

use std::collections::HashMap;
use std::time::Duration;

use bourse_cli::chaos::{self, ChaosOptions};
use bourse_common::config::MessagingConfig;
use bourse_common::db::Backend;
use bourse_common::reference::ReferenceData;
use bourse_common::{deadletter, on_both_backends};
use futures::future::join_all;
use rust_decimal::Decimal;
use serde_json::json;

use crate::helpers::{TestStack, WAIT, fees, limit_buy, pair, settled};
use bourse_common::testkit::eventually;

on_both_backends!(orders_cancelled_right_after_placing_end_cancelled_with_everything_released);

async fn no_dead_letters(t: &TestStack) {
    for queue in chaos::queues(&ReferenceData::default()) {
        let parked = deadletter::list(&t.env.amqp_url, &queue, 10).await.unwrap();
        assert!(parked.is_empty(), "{queue}.dlq holds {parked:?}");
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// 200 orders, each cancelled the moment it is accepted, from four clients at
/// once: the cancel races the reservation, the book and the order's own
/// saga steps. Each ends `cancelled`, none is left in the book, and the user
/// gets back exactly what was reserved, once.
async fn orders_cancelled_right_after_placing_end_cancelled_with_everything_released(backend: Backend) {
    let t = TestStack::start(backend).await;
    let carol = t.user("carol@example.com").await;
    t.top_up(&carol, "USDT", "100000").await;

    let client = |n: usize| {
        let (t, carol) = (&t, &carol);
        async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let price = format!("{}", 100 + (n * 50 + i) % 7);
                let order = t.place(carol, limit_buy("ETH-USDT", &price, "1")).await;
                let id = order["id"].as_str().unwrap().to_string();
                let (status, body) =
                    t.call_patiently("DELETE", &format!("/api/orders/{id}"), Some(carol), None).await;
                assert_eq!(status, 202, "{body}");
                ids.push(id);
            }
            ids
        }
    };
    let ids: Vec<String> = join_all((0..4).map(client)).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 200);
    for id in &ids {
        t.order_reaches(&carol, id, "cancelled").await;
    }

    let (status, book) = t.call("GET", "/api/markets/ETH-USDT/book", None, None).await;
    assert_eq!(status, 200, "{book}");
    assert_eq!(book["bids"], json!([]), "no cancelled order rests in the book");
    assert_eq!(t.accounts(&carol).await["USDT"], pair("100000", "0"));
    let (_, history) = t.call("GET", "/api/history/finance?per_page=1", Some(&carol), None).await;
    assert_eq!(history["total"], 1 + 200 * 4, "a top-up, then per order one reservation and one release");
    no_dead_letters(&t).await;
    t.stop().await;
}

/// Retries that would park a message within a second: an outage that spent
/// attempts would show up as dead letters.
fn quick_retries() -> MessagingConfig {
    MessagingConfig { retry_delays_ms: vec![100, 200, 400], max_attempts: 3, ..MessagingConfig::default() }
}

/// PostgreSQL stops for 60 s in the middle of a burst of orders from two
/// traders, with reservations, trades, settlements and e-mails in flight.
/// Every service waits for it (not ready meanwhile), the clients retry what
/// was refused with the same key, nothing is parked, and afterwards every
/// order is filled and each trader's balances are what their fills say.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the shared PostgreSQL: scripts/test.sh runs it alone"]
async fn database_outage_in_a_burst_pauses_the_stack_and_parks_nothing() {
    let t = TestStack::start_with(Backend::Postgres, Some(quick_retries()), &[], Default::default()).await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "ETH", "20").await;
    t.top_up(&bob, "USDT", "10000").await;

    // Four clients, ten orders each, every one retried with its key until accepted.
    let client = |n: usize| {
        let (t, token, side) = if n.is_multiple_of(2) { (&t, &alice, "sell") } else { (&t, &bob, "buy") };
        async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                let key = format!("client-{n}-{i}");
                let order = json!({"market": "ETH-USDT", "side": side, "type": "limit", "price": "100", "quantity": "1"});
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                let id = loop {
                    let (status, body) = t
                        .call_with(
                            "POST",
                            "/api/orders",
                            Some(token),
                            Some(order.clone()),
                            &[("Idempotency-Key", &key)],
                        )
                        .await;
                    if status == 202 {
                        break body["id"].as_str().unwrap().to_string();
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "order {key} never accepted: {status} {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                ids.push((token.clone(), id));
            }
            ids
        }
    };
    let burst = join_all((0..4).map(client));
    let outage = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::process::Command::new("bash")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres-outage.sh"), "60"])
            .status()
            .await
    };
    // While the database is away, the gateway says the stack is not ready.
    let probe = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        t.http.get(t.url("/health/ready")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    let (orders, outage, ready_during) = tokio::join!(burst, outage, probe);
    assert!(outage.unwrap().success(), "PostgreSQL stopped and started again");
    assert_eq!(ready_during, 503, "not ready while the database is down");
    let orders: Vec<(String, String)> = orders.into_iter().flatten().collect();
    assert_eq!(orders.len(), 40);

    for (token, id) in &orders {
        t.order_reaches(token, id, "filled").await;
    }
    // Settlement follows the fills: wait for what each paid, then check what each received.
    let a = settled(&t, &alice, "ETH", pair("0", "0")).await;
    let b = settled(&t, &bob, "USDT", pair("8000", "0")).await;
    // Each trader against their own fills: Alice sold 20 ETH at 100, Bob paid
    // 2000 USDT for them; each received that less their fee, which is in the fee account.
    let fees: HashMap<String, Decimal> =
        fees(&t).await.into_iter().map(|(currency, amount)| (currency, dec(&amount))).collect();
    assert_eq!(dec(&a["USDT"].0) + fees["USDT"], dec("2000"), "Alice's proceeds and her fee");
    assert_eq!(dec(&b["ETH"].0) + fees["ETH"], dec("20"), "Bob's ETH and his fee");
    assert_eq!((dec(&a["USDT"].1), dec(&b["ETH"].1)), (Decimal::ZERO, Decimal::ZERO));
    no_dead_letters(&t).await;
    t.stop().await;
}

fn chaos_options(seed: u64, users: usize, orders: usize, kills: usize) -> ChaosOptions {
    ChaosOptions {
        seed,
        users,
        orders,
        clients: 4,
        kills,
        broker_restart: false,
        database_outage: None,
        scripts_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts").into(),
    }
}

/// The chaos harness, short: 400 orders of every kind from 8 users while
/// each service is killed and started again, RabbitMQ restarts and
/// PostgreSQL stops for 10 s; every check holds (the long run is in README).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts RabbitMQ and stops PostgreSQL: scripts/test.sh runs it alone"]
async fn chaos_short_run_with_kills_a_broker_restart_and_a_database_outage() {
    bourse_common::telemetry::init();
    let options = ChaosOptions {
        broker_restart: true,
        database_outage: Some(Duration::from_secs(10)),
        ..chaos_options(20261126, 8, 400, 6)
    };
    let report = chaos::run_isolated(Backend::Postgres, &options, |_| {}).await.unwrap();
    println!("{}", report.table());
    assert!(report.violations.is_empty(), "{}", report.table());
    assert!(report.trades > 0, "the load traded");
    assert_eq!(report.kills.values().sum::<usize>(), 6);
    assert_eq!(report.kills.len(), 6, "each service killed once: {:?}", report.kills);
}

/// The chaos harness on SQLite, kills only (the broker and the database stay
/// up, so it runs beside the other tests): 300 orders of every kind from 8
/// users while each service is killed and started again; every order ends as
/// the harness expects, each user's balances agree with their own top-ups and
/// fills, nothing is parked, no e-mail goes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short_run_with_kills_on_sqlite() {
    bourse_common::telemetry::init();
    let report =
        chaos::run_isolated(Backend::Sqlite, &chaos_options(20261127, 8, 300, 6), |_| {}).await.unwrap();
    println!("{}", report.table());
    assert!(report.violations.is_empty(), "{}", report.table());
    assert!(report.trades > 0, "the load traded");
    assert_eq!(report.kills.len(), 6, "each service killed once: {:?}", report.kills);
}

on_both_backends!(the_chaos_harness_reports_a_trade_credited_twice);

/// A settlement that credits its buyer twice (a bug injected on purpose)
/// keeps every order's state right; the harness still reports it, per user
/// and per currency.
async fn the_chaos_harness_reports_a_trade_credited_twice(backend: Backend) {
    bourse_common::telemetry::init();
    let options = chaos_options(7, 4, 80, 0);
    let report = chaos::run_isolated(backend, &options, |stack| {
        stack.service("payment-service").unwrap().bus.faults.credit_twice(1);
    })
    .await
    .unwrap();
    println!("{}", report.table());
    assert!(report.trades > 0, "the load traded");
    assert_eq!(report.wrong_users.len(), 1, "the one buyer credited twice: {}", report.table());
    assert!(report.violations.iter().any(|v| v.contains("money made or lost")), "{}", report.table());
}

on_both_backends!(two_instances_of_every_service_apply_each_message_once);
on_both_backends!(matching_sharded_by_market_each_instance_keeps_the_books_it_is_given);

/// The sum of a metric's samples (every label) in a service's `/metrics`.
async fn metric(t: &TestStack, url: &str, name: &str) -> f64 {
    // A fresh connection: a pooled one the server closed meanwhile fails the request.
    let request = t.http.get(format!("{url}/metrics")).header("connection", "close");
    let text = request.send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two instances of every service side by side, sharing their databases and
/// queues, for a whole burst of trades: one relay of each service publishes
/// (the other stands by), every message is applied once, and each trader's
/// balances are what their fills say.
async fn two_instances_of_every_service_apply_each_message_once(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    for name in bourse_cli::stack::service_names() {
        t.stack.add_instance(name).await.unwrap();
    }
    for second in &t.stack.more {
        let url = format!("{}/health/ready", second.url());
        eventually(&format!("{} ready", second.name), WAIT, || async {
            t.http.get(&url).send().await.ok().filter(|r| r.status() == 200).map(drop)
        })
        .await;
    }
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "ETH", "20").await;
    t.top_up(&bob, "USDT", "10000").await;
    let mut orders = Vec::new();
    for _ in 0..20 {
        let sell =
            json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "100", "quantity": "1"});
        orders.push((alice.clone(), t.place(&alice, sell).await["id"].as_str().unwrap().to_string()));
        let buy = limit_buy("ETH-USDT", "100", "1");
        orders.push((bob.clone(), t.place(&bob, buy).await["id"].as_str().unwrap().to_string()));
    }
    for (token, id) in &orders {
        t.order_reaches(token, id, "filled").await;
    }
    let a = settled(&t, &alice, "ETH", pair("0", "0")).await;
    let b = settled(&t, &bob, "USDT", pair("8000", "0")).await;
    let (_, history) = t.call("GET", "/api/history/finance?per_page=1", Some(&alice), None).await;
    // A top-up, then per sale: its reservation (2 entries), its settlement (one
    // entry in each currency) and the release of its (empty) rest at its end (2).
    assert_eq!(history["total"], 1 + 20 * (2 + 2 + 2), "each of Alice's trades settled once");
    assert!(dec(&a["USDT"].0) > dec("1990") && dec(&a["USDT"].0) < dec("2000"), "{a:?}");
    assert!(dec(&b["ETH"].0) > dec("19.9") && dec(&b["ETH"].0) < dec("20"), "{b:?}");

    let instances: Vec<(&str, String)> =
        t.stack.services.iter().chain(&t.stack.more).map(|s| (s.name, s.url())).collect();
    let mut leaders: HashMap<&str, f64> = HashMap::new();
    let mut duplicates = 0.0;
    for (name, url) in &instances {
        *leaders.entry(name).or_default() += metric(&t, url, "bourse_relay_leader").await;
        duplicates += metric(&t, url, "bourse_messages_duplicate_total").await;
    }
    for (name, leading) in &leaders {
        assert_eq!(*leading, 1.0, "one relay of {name} publishes");
    }
    assert_eq!(duplicates, 0.0, "no message reached a consumer twice: each outbox row published once");
    // The e-mails follow the settlements by a moment: wait for them, then count.
    t.wait_mails("alice@example.com", 21).await;
    t.wait_mails("bob@example.com", 21).await;
    let fills = t.mails_to("alice@example.com").len() + t.mails_to("bob@example.com").len();
    assert_eq!(fills, 2 + 40, "a welcome each, one e-mail per side of each trade");
    no_dead_letters(&t).await;
    t.stop().await;
}

/// What one instance's consumer of `queue` applied (its `/metrics`).
async fn handled(t: &TestStack, url: &str, queue: &str) -> f64 {
    let request = t.http.get(format!("{url}/metrics")).header("connection", "close");
    let text = request.send().await.unwrap().text().await.unwrap();
    let series = format!("bourse_messages_handled_total{{queue=\"{queue}\"}}");
    text.lines().filter_map(|line| line.strip_prefix(&series)?.trim().parse::<f64>().ok()).sum()
}

/// matching-service sharded by market: the stack's instance keeps ETH-USDT
/// only (`settings.markets`). BTC-USDT's orders wait, their commands parked
/// in order-service's outbox (no queue takes them), while ETH-USDT trades;
/// a second instance given BTC-USDT takes them up. Each market's queue is
/// consumed by its own instance only, and each user's balances are what
/// their own fills make them, fees included.
async fn matching_sharded_by_market_each_instance_keeps_the_books_it_is_given(backend: Backend) {
    use bourse_common::service::Service;
    use matching_service::MatchingService;

    let eth_only = "[settings]\nmarkets = [\"ETH-USDT\"]\n";
    let mut t = TestStack::start_configured(backend, &[("matching-service", eth_only)]).await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "ETH", "10").await;
    t.top_up(&alice, "BTC", "1").await;
    t.top_up(&bob, "USDT", "100000").await;

    // Alice's sell first, in the book (open) before Bob's buy: she is the maker.
    let trade = |market: &'static str, price: &'static str, quantity: &'static str| {
        let (t, alice, bob) = (&t, alice.clone(), bob.clone());
        async move {
            let sell = json!({"market": market, "side": "sell", "type": "limit", "price": price, "quantity": quantity});
            let sell = t.place(&alice, sell).await["id"].as_str().unwrap().to_string();
            t.order_reaches(&alice, &sell, "open").await;
            let buy =
                t.place(&bob, limit_buy(market, price, quantity)).await["id"].as_str().unwrap().to_string();
            (sell, buy)
        }
    };
    let btc = trade("BTC-USDT", "20000", "0.1").await;
    t.order_reaches(&bob, &btc.1, "open").await;
    let eth = trade("ETH-USDT", "100", "1").await;
    t.order_reaches(&alice, &eth.0, "filled").await;
    t.order_reaches(&bob, &eth.1, "filled").await;
    let order_service = t.stack.service("order-service").unwrap().url();
    eventually("BTC-USDT's commands parked", WAIT, || async {
        (metric(&t, &order_service, "bourse_outbox_parked").await >= 2.0).then_some(())
    })
    .await;
    for (token, id) in [(&alice, &btc.0), (&bob, &btc.1)] {
        let (_, order) = t.call("GET", &format!("/api/orders/{id}"), Some(token), None).await;
        assert_eq!(
            (order["status"].as_str(), order["filled_quantity"].as_str()),
            (Some("open"), Some("0")),
            "{order}"
        );
    }

    // A second instance keeps BTC-USDT: the parked commands go out to its queue.
    let mut config = bourse_cli::stack::configure::<MatchingService>(&t.options).unwrap();
    config.settings.markets = vec!["BTC-USDT".into()];
    t.stack.more.push(MatchingService::run(config).await.unwrap());
    t.order_reaches(&alice, &btc.0, "filled").await;
    t.order_reaches(&bob, &btc.1, "filled").await;

    // Each market's queue was consumed by its own instance only.
    let first = t.stack.service("matching-service").unwrap().url();
    let second = t.stack.more[0].url();
    let (eth_queue, btc_queue) = ("matching-service.orders.ETH-USDT", "matching-service.orders.BTC-USDT");
    assert_eq!(handled(&t, &first, eth_queue).await, 2.0, "ETH-USDT's two submits, by the first");
    assert_eq!(handled(&t, &first, btc_queue).await, 0.0);
    assert_eq!(handled(&t, &second, btc_queue).await, 2.0, "BTC-USDT's two submits, by the second");
    assert_eq!(handled(&t, &second, eth_queue).await, 0.0);

    // Alice sold 1 ETH at 100 and 0.1 BTC at 20,000 as the maker (0.1 % fee on
    // what she received); Bob bought both as the taker (0.2 %).
    let a = settled(&t, &alice, "USDT", pair("2097.9", "0")).await;
    assert_eq!((&a["ETH"], &a["BTC"]), (&pair("9", "0"), &pair("0.9", "0")), "{a:?}");
    let b = settled(&t, &bob, "BTC", pair("0.0998", "0")).await;
    assert_eq!((&b["ETH"], &b["USDT"]), (&pair("0.998", "0"), &pair("97900", "0")), "{b:?}");
    no_dead_letters(&t).await;
    t.stop().await;
}
