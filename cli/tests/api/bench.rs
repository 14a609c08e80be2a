//! `bourse bench` against a stack: a short run (crossing limits, cancels,
//! market and IOC orders taking resting limits) ends with every order final
//! and every trader's balances agreeing with their own fills, and the six-hop
//! chain measured; a settlement that credits twice fails the run, naming the
//! trader and the currency.

use bourse_cli::bench::{self, Options};
use bourse_common::db::Backend;
use bourse_common::on_both_backends;

use crate::helpers::TestStack;

on_both_backends!(a_short_bench_ends_with_every_order_final_and_every_balance_agreeing_with_its_fills);
on_both_backends!(a_bench_fails_when_a_settlement_credits_a_trader_twice);

fn options(t: &TestStack, orders: usize, cancel_percent: u8) -> Options {
    Options {
        gateway: t.url(""),
        amqp_url: Some(t.env.amqp_url.clone()),
        pairs: 2,
        orders,
        rate: None,
        concurrency: 8,
        market: "ETH-USDT".into(),
        price: "2000".parse().unwrap(),
        quantity: "0.001".parse().unwrap(),
        cancel_percent,
        taker_percent: 20,
        taker_market: "BTC-USDT".into(),
        drain: std::time::Duration::from_secs(60),
        chain_messages: 300,
        label: "test".into(),
        watch_pid: Some(std::process::id()),
        idle: std::time::Duration::from_millis(100),
    }
}

async fn a_short_bench_ends_with_every_order_final_and_every_balance_agreeing_with_its_fills(
    backend: Backend,
) {
    let t = TestStack::start(backend).await;
    let report = bench::run(options(&t, 80, 10)).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new(), "{}", report.table());
    assert_eq!((report.sent, report.accepted, report.done), (80, 80, 80), "{}", report.table());
    assert_eq!(
        report.mix,
        bench::Mix { crossing: 28, cancelled: 4, market: 4, ioc: 4 },
        "{}",
        report.table()
    );
    assert!(report.refused.is_empty(), "{}", report.table());
    let settled = report.submit_to_settled_ms.expect("crossing orders settled");
    let filled = report.submit_to_filled_ms.expect("crossing orders filled");
    assert!(settled.max >= settled.p99 && settled.p99 >= settled.p50 && settled.p50 > 0.0, "{settled:?}");
    assert!(filled.p50 > 0.0, "{filled:?}");
    assert!(report.six_hop_messages_per_second.is_some_and(|r| r > 0.0), "{}", report.table());
    assert!(report.stack_over_broker.is_some_and(|r| r > 0.0), "{}", report.table());
    let (before, after) = report.memory_mb.expect("this process's memory");
    assert!(before > 0.0 && after > 0.0, "{before} {after}");
    let table = report.table();
    assert!(table.contains("every order final, every balance agrees with its fills"), "{table}");
    t.stop().await;
}

async fn a_bench_fails_when_a_settlement_credits_a_trader_twice(backend: Backend) {
    let t = TestStack::start(backend).await;
    // The fifth settlement credits its trader twice (a bug on purpose).
    t.stack.service("payment-service").unwrap().bus.faults.credit_twice(5);
    let report =
        bench::run(Options { amqp_url: None, taker_percent: 0, ..options(&t, 20, 0) }).await.unwrap();
    assert_eq!(report.done, 20, "{}", report.table());
    assert!(!report.violations.is_empty(), "{}", report.table());
    assert!(
        report.violations.iter().any(|v| v.starts_with("trader ") && v.contains("expected")),
        "{:?}",
        report.violations
    );
    assert!(report.table().contains("violation(s)"), "{}", report.table());
    t.stop().await;
}
