//! Broker messages that move money are checked against what the receiver
//! knows: a `trade.executed` published by anyone who can reach the broker,
//! at a price the orders never accepted, moves no money and is parked.

use bourse_common::catalog::{Side, TradeExecuted};
use bourse_common::db::Backend;
use bourse_common::envelope::Envelope;
use bourse_common::testkit::eventually;
use bourse_common::{deadletter, on_both_backends, topology};
use lapin::options::BasicPublishOptions;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestStack, WAIT, limit_buy, pair};

on_both_backends!(a_forged_trade_outside_the_orders_limits_moves_no_money_and_is_parked);

/// Registers `email`; returns its id and a token.
async fn register(t: &TestStack, email: &str) -> (Uuid, String) {
    let credentials = json!({"email": email, "password": PASSWORD});
    let (status, body) = t.call("POST", "/api/auth/users", None, Some(credentials)).await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_str().unwrap().parse().unwrap(), t.token(email).await)
}

/// Publishes `trade` to `bourse.events` as matching-service would, without being it.
async fn forge(t: &TestStack, trade: &TradeExecuted) -> Envelope {
    let envelope =
        Envelope::new("matching-service", trade.taker_order_id.to_string(), trade, chrono::Utc::now());
    let conn = bourse_common::amqp::connect(&t.env.amqp_url, "forger").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        topology::EVENTS.into(),
        "trade.executed".into(),
        BasicPublishOptions::default(),
        envelope.to_json().as_bytes(),
        envelope.amqp_properties(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    conn.close(200, "forged".into()).await.unwrap();
    envelope
}

async fn a_forged_trade_outside_the_orders_limits_moves_no_money_and_is_parked(backend: Backend) {
    const QUEUE: &str = "payment-service.matching";
    let t = TestStack::start(backend).await;
    let (alice_id, alice) = register(&t, "alice@example.com").await;
    let (bob_id, bob) = register(&t, "bob@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    t.top_up(&bob, "USDT", "2000").await;
    // A sell at 2100 and a buy at 2000: they do not cross, both rest.
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2100", "quantity": "1"});
    let sell = t.place(&alice, sell).await["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let buy = t.place(&bob, limit_buy("ETH-USDT", "2000", "1")).await["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    t.order_reaches(&alice, &sell.to_string(), "open").await;
    t.order_reaches(&bob, &buy.to_string(), "open").await;
    let before = (t.accounts(&alice).await, t.accounts(&bob).await);
    assert_eq!((&before.0["ETH"], &before.1["USDT"]), (&pair("0", "1"), &pair("0", "2000")));

    // Below the seller's limit, then above the buyer's: each the whole of both orders.
    let forged = |price: &str| TradeExecuted {
        trade_id: Uuid::now_v7(),
        market: "ETH-USDT".into(),
        price: price.parse().unwrap(),
        quantity: "1".parse().unwrap(),
        taker_side: Side::Buy,
        taker_order_id: buy,
        taker_user_id: bob_id,
        maker_order_id: sell,
        maker_user_id: alice_id,
        executed_at: chrono::Utc::now(),
        taker_remaining: Some("0".parse().unwrap()),
        maker_remaining: Some("0".parse().unwrap()),
    };
    let low = forge(&t, &forged("1")).await;
    let high = forge(&t, &forged("2000.01")).await;

    let parked: Vec<Value> = eventually("both forged trades parked", WAIT, || async {
        let parked = deadletter::list(&t.env.amqp_url, QUEUE, 10).await.unwrap();
        (parked.len() == 2).then(|| parked.iter().map(|d| serde_json::to_value(d).unwrap()).collect())
    })
    .await;
    let reason = |envelope: &Envelope| {
        let d = parked
            .iter()
            .find(|d| d["envelope"]["message_id"] == envelope.message_id.to_string())
            .unwrap_or_else(|| panic!("{} parked: {parked:?}", envelope.message_id));
        assert_eq!(d["attempts"], 1, "a forged trade is not retried: {d}");
        d["error"].as_str().unwrap().to_string()
    };
    let low = reason(&low);
    assert!(
        low.contains(&format!("order {sell} is a sell limited to 2100: a trade at 1 violates its limit")),
        "{low}"
    );
    let high = reason(&high);
    assert!(
        high.contains(&format!(
            "order {buy} is a buy limited to 2000: a trade at 2000.01 violates its limit"
        )),
        "{high}"
    );

    // Not a cent moved; both orders still rest as they were.
    assert_eq!((t.accounts(&alice).await, t.accounts(&bob).await), before);
    for (token, id) in [(&alice, sell), (&bob, buy)] {
        let order = t.order_reaches(token, &id.to_string(), "open").await;
        let filled: rust_decimal::Decimal = order["filled_quantity"].as_str().unwrap().parse().unwrap();
        assert!(filled.is_zero(), "{order}");
    }
    t.stop().await;
}
