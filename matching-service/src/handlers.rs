//! Orders in and out of the books, each command in the inbox transaction
//! with its book change, its trades and its events.
//!
//! Each market's book is cached in memory with the latest candle of every
//! interval ([`Live`]), both checked against the market's stored version
//! first: a rolled-back transaction or another instance's change makes the
//! book reload from the database and the candles rebuild from the stored
//! trades, so a redelivered command never counts a trade twice.
//!
//! A cancel that finds no order in the book leaves a stored tombstone: a
//! submit retried after its cancel finds it and is turned away (never in the
//! book, `order.updated` `cancelled` with its reason), so its saga ends as a
//! cancel in the usual order does. The engine stays pure: the tombstone is
//! checked and stored here, around it.

use std::collections::HashMap;
use std::sync::Mutex;

use bourse_common::catalog::{
    BookChanged, CancelOrder, MarketTrade, OrderUpdated, SubmitOrder, TradeExecuted,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::outbox::Emitter;
use bourse_common::{micros_to_time, now_micros};
use uuid::Uuid;

use crate::candles::{Candle, Interval, Live, Tick};
use crate::engine::{Book, CancelReason, NewOrder, Outcome};
use crate::storage;

bourse_common::inbound! {
    /// What the orders queue takes (from order-service).
    pub enum Orders {
        Submit(SubmitOrder),
        Cancel(CancelOrder),
    }
}

/// A market's book and live candles, as of a stored version.
#[derive(Debug)]
struct Market {
    /// `None` while a command runs ahead of the database (until it commits).
    version: Option<i64>,
    book: Book,
    /// `None` until the first trade after a load: rebuilt from storage then.
    candles: Option<Live>,
}

/// The books of every market, with the version each was loaded at.
#[derive(Debug, Default)]
pub struct Matcher {
    markets: Mutex<HashMap<String, Market>>,
}

impl Handle<Orders> for Matcher {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Orders,
        _envelope: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        self.apply(conn, message, now_micros(), out)
    }
}

impl Matcher {
    /// Applies a command at `now` (the trades' time, in microseconds).
    fn apply(
        &self,
        conn: &mut DbConnection,
        message: Orders,
        now: i64,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        let market_id = match &message {
            Orders::Submit(cmd) => cmd.terms.market.clone(),
            Orders::Cancel(cmd) => cmd.market.clone(),
        };
        let mut markets = self.markets.lock().unwrap_or_else(|p| p.into_inner());
        let stored = storage::version(conn, &market_id)?;
        let market = markets.entry(market_id.clone()).or_insert_with(|| Market {
            version: None,
            book: Book::default(),
            candles: None,
        });
        if market.version != Some(stored) {
            let resting = storage::load_book(conn, &market_id)?;
            *market = Market { version: Some(stored), book: Book::from_resting(resting), candles: None };
        }
        // From here the cache runs ahead of the database until commit; the
        // version check above repairs it if the transaction rolls back.
        market.version = None;
        let outcome = match message {
            Orders::Submit(cmd) => {
                let order = NewOrder::from(cmd);
                if storage::has_tombstone(conn, order.id)? {
                    Outcome::turned_away(&order, CancelReason::BeforeSubmit)
                } else {
                    market.book.submit(&order)
                }
            }
            Orders::Cancel(cmd) => {
                let outcome = market.book.cancel(cmd.order_id);
                if outcome.updates.is_empty() {
                    // Not in the book: its submit may still come (a retry); it will find this.
                    storage::leave_tombstone(conn, cmd.order_id, &market_id, cmd.user_id, now)?;
                }
                outcome
            }
        };
        record(conn, &market_id, market, &outcome, now, out)?;
        market.version = Some(storage::bump_version(conn, &market_id, stored)?);
        Ok(())
    }
}

/// Stores the book change and the trades, and emits their events.
fn record(
    conn: &mut DbConnection,
    market_id: &str,
    market: &mut Market,
    outcome: &Outcome,
    now: i64,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    for fill in &outcome.fills {
        let trade_id = Uuid::now_v7();
        storage::insert_trade(conn, trade_id, market_id, fill, now)?;
        out.send(
            market_id,
            &MarketTrade {
                trade_id,
                market: market_id.to_string(),
                price: fill.price.into(),
                quantity: fill.quantity.into(),
                taker_side: fill.taker_side,
                executed_at: micros_to_time(now),
            },
        );
        let tick = Tick { at_micros: now, price: fill.price, quantity: fill.quantity };
        for (interval, candle) in candles_with(conn, market_id, &mut market.candles, &tick)? {
            out.send(market_id, &candle.message(market_id, interval));
        }
        out.send(
            &fill.taker_order.to_string(),
            &TradeExecuted {
                trade_id,
                market: market_id.to_string(),
                price: fill.price.into(),
                quantity: fill.quantity.into(),
                taker_side: fill.taker_side,
                taker_order_id: fill.taker_order,
                taker_user_id: fill.taker_user,
                maker_order_id: fill.maker_order,
                maker_user_id: fill.maker_user,
                executed_at: micros_to_time(now),
                taker_remaining: Some(fill.taker_remaining.into()),
                maker_remaining: Some(fill.maker_remaining.into()),
            },
        );
    }
    if !outcome.updates.is_empty() {
        out.send(market_id, &BookChanged { market: market_id.to_string() });
    }
    for update in &outcome.updates {
        storage::save_order(conn, market_id, update.order, market.book.get(update.order))?;
        out.send(
            &update.order.to_string(),
            &OrderUpdated {
                order_id: update.order,
                user_id: update.user,
                market: market_id.to_string(),
                quantity: update.quantity.into(),
                filled_quantity: update.filled.into(),
                status: update.status(),
                reason: update.reason().map(|r| r.message().to_string()),
            },
        );
    }
    Ok(())
}

/// The candles, one per interval, that hold a trade just stored: from the
/// live candles, or rebuilt from the stored trades (this one included) when
/// they are cold or the trade is older than what they have seen.
fn candles_with(
    conn: &mut DbConnection,
    market_id: &str,
    live: &mut Option<Live>,
    tick: &Tick,
) -> Result<Vec<(Interval, Candle)>, HandlerError> {
    if let Some(updated) = live.as_mut().and_then(|l| l.add(tick)) {
        return Ok(updated);
    }
    let from = Live::window_start(tick.at_micros);
    let ticks = storage::ticks_between(conn, market_id, from, i64::MAX, i64::MAX)?;
    let (rebuilt, holding) = Live::rebuild(from, &ticks, tick.at_micros);
    *live = Some(rebuilt);
    Ok(holding)
}

#[cfg(test)]
mod tests {
    use bourse_common::catalog::{CandleUpdated, OrderTerms, OrderType, Side, TimeInForce};
    use bourse_common::messages::Message;
    use diesel::Connection;
    use rust_decimal::Decimal;

    use super::*;
    use crate::candles;
    use crate::storage::test_db;

    fn d(n: i64) -> Decimal {
        Decimal::from(n)
    }

    const MARKET: &str = "ETH-USDT";
    /// 2026-01-01T00:00:00Z plus some seconds.
    fn at(second: i64) -> i64 {
        (1_767_225_600 + second) * 1_000_000
    }

    fn submit(id: u128, user: u128, side: Side, price: i64, quantity: i64) -> Orders {
        Orders::Submit(SubmitOrder {
            order_id: Uuid::from_u128(id),
            user_id: Uuid::from_u128(user),
            terms: OrderTerms {
                market: MARKET.to_string(),
                side,
                order_type: OrderType::Limit,
                price: Some(Decimal::from(price).into()),
                quantity: Decimal::from(quantity).into(),
                time_in_force: TimeInForce::Gtc,
            },
        })
    }

    /// A maker resting and a taker filling it whole: one trade at `price`.
    fn trade(
        matcher: &Matcher,
        conn: &mut DbConnection,
        n: u128,
        price: i64,
        now: i64,
    ) -> Vec<CandleUpdated> {
        let mut out = Emitter::new("matching-service");
        matcher.apply(conn, submit(2 * n, 1, Side::Sell, price, 1), now, &mut out).unwrap();
        matcher.apply(conn, submit(2 * n + 1, 2, Side::Buy, price, 1), now, &mut out).unwrap();
        out.envelopes()
            .filter(|e| e.message_type == CandleUpdated::TYPE)
            .map(|e| {
                assert_eq!(e.correlation_id, MARKET);
                e.payload().unwrap()
            })
            .collect()
    }

    /// The candles the REST route shows, from the stored trades until `to`.
    fn history(conn: &mut DbConnection, interval: Interval, to: i64) -> Vec<CandleUpdated> {
        let ticks = storage::ticks_between(conn, MARKET, 0, to, i64::MAX).unwrap();
        candles::candles(&ticks, interval).iter().map(|c| c.message(MARKET, interval)).collect()
    }

    fn volumes(candles: &[CandleUpdated]) -> Vec<Decimal> {
        candles.iter().map(|c| c.volume.value()).collect()
    }

    #[test]
    fn every_trade_emits_the_candle_of_every_interval_that_holds_it_as_rest_shows_it() {
        let mut conn = test_db();
        let matcher = Matcher::default();
        let mut emitted = Vec::new();
        for (n, (price, second)) in [(100, 10), (104, 20), (98, 70), (101, 4000)].into_iter().enumerate() {
            let candles = trade(&matcher, &mut conn, n as u128, price, at(second));
            assert_eq!(candles.iter().map(|c| c.interval).collect::<Vec<_>>(), Interval::ALL);
            for candle in &candles {
                let rest = history(&mut conn, candle.interval, at(second) + 1);
                assert_eq!(rest.last(), Some(candle), "trade {n}, {}", candle.interval);
            }
            emitted.push(candles);
        }
        // The second trade adds to the first's candles; the third opens a new minute; the fourth a new hour.
        let one_minute = |n: usize| emitted[n][0].clone();
        assert_eq!((one_minute(1).open.value(), one_minute(1).high.value()), (d(100), d(104)));
        assert_eq!(volumes(&emitted[2])[..3], [d(1), d(3), d(3)]);
        assert_eq!(volumes(&emitted[3])[3..], [d(1), d(4), d(4)]);
    }

    #[test]
    fn a_rolled_back_command_or_a_restart_never_counts_a_trade_twice() {
        let mut conn = test_db();
        let matcher = Matcher::default();
        trade(&matcher, &mut conn, 0, 100, at(1));
        // Applied, then rolled back (a batch that failed): redelivered later.
        let rolled_back = conn.transaction::<(), HandlerError, _>(|c| {
            trade(&matcher, c, 1, 200, at(2));
            Err(HandlerError::Permanent(anyhow::anyhow!("the batch failed")))
        });
        assert!(rolled_back.is_err());
        let redelivered = trade(&matcher, &mut conn, 1, 200, at(3));
        assert_eq!(volumes(&redelivered), [d(2); 6]);
        assert_eq!(redelivered[0].high.value(), d(200));
        // A new instance (or a restart) rebuilds its candles from storage.
        let restarted = Matcher::default();
        let after = trade(&restarted, &mut conn, 2, 150, at(4));
        assert_eq!(volumes(&after), [d(3); 6]);
        assert_eq!(history(&mut conn, Interval::M1, at(5)).last(), Some(&after[0]));
    }

    #[test]
    fn a_trade_older_than_the_last_one_still_gets_the_candle_that_holds_it() {
        let mut conn = test_db();
        let matcher = Matcher::default();
        trade(&matcher, &mut conn, 0, 100, at(125));
        // The clock went back two minutes.
        let late = trade(&matcher, &mut conn, 1, 90, at(5));
        assert_eq!(late[0].open_time.timestamp_micros(), at(0));
        assert_eq!((late[0].volume.value(), late[0].close.value()), (d(1), d(90)));
        assert_eq!(late[0], history(&mut conn, Interval::M1, at(200))[0]);
        let next = trade(&matcher, &mut conn, 2, 110, at(130));
        assert_eq!((next[0].volume.value(), next[0].open.value()), (d(2), d(100)));
        assert_eq!(volumes(&next)[2..], [d(3); 4]);
    }

    #[test]
    fn a_submit_after_its_cancel_is_turned_away_even_after_a_restart() {
        use bourse_common::catalog::BookStatus;
        let mut conn = test_db();
        let mut out = Emitter::new("matching-service");
        let order = Uuid::from_u128(7);
        let cancel = Orders::Cancel(CancelOrder {
            order_id: order,
            user_id: Uuid::from_u128(1),
            market: MARKET.into(),
        });
        Matcher::default().apply(&mut conn, cancel, at(1), &mut out).unwrap();
        assert!(out.envelopes().all(|e| e.message_type != OrderUpdated::TYPE), "nothing to say yet");
        // Restarted: the tombstone is stored, not cached.
        let matcher = Matcher::default();
        let mut out = Emitter::new("matching-service");
        matcher.apply(&mut conn, submit(7, 1, Side::Buy, 100, 1), at(2), &mut out).unwrap();
        let updates: Vec<OrderUpdated> = out
            .envelopes()
            .filter(|e| e.message_type == OrderUpdated::TYPE)
            .map(|e| e.payload().unwrap())
            .collect();
        assert_eq!(updates.len(), 1);
        assert_eq!((updates[0].order_id, updates[0].status), (order, BookStatus::Cancelled));
        assert_eq!(updates[0].filled_quantity.value(), Decimal::ZERO);
        assert_eq!(updates[0].reason.as_deref(), Some("cancelled on request before it reached the book"));
        assert_eq!(storage::load_book(&mut conn, MARKET).unwrap(), []);
        // A crossing order finds nothing to trade with.
        let mut out = Emitter::new("matching-service");
        matcher.apply(&mut conn, submit(8, 2, Side::Sell, 100, 1), at(3), &mut out).unwrap();
        assert!(out.envelopes().all(|e| e.message_type != TradeExecuted::TYPE));
    }
}
