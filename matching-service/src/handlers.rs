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

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bourse_common::catalog::{
    ArmTrigger, BookChanged, CancelOrder, CandlesUpdated, DisarmReason, DisarmTrigger, MarketTrade,
    OrderUpdated, SubmitOrder, TradeExecuted, TriggerDisarmed, TriggerFired,
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
use crate::trigger_storage::{self, TriggerRow};
use crate::triggers::{Armed, Level, TriggerBook};
use bourse_common::catalog::PriceMove;
use bourse_common::catalog::Trail;
use rust_decimal::Decimal;

bourse_common::inbound! {
    /// What the orders queue takes (from order-service).
    pub enum Orders {
        Submit(SubmitOrder),
        Cancel(CancelOrder),
        Arm(ArmTrigger),
        Disarm(DisarmTrigger),
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
    triggers: Triggers,
}

/// A market's armed price triggers: the index a trade is evaluated against,
/// each one's stored row (the order it places), and the last trade's price.
#[derive(Debug, Default)]
struct Triggers {
    book: TriggerBook,
    rows: HashMap<Uuid, TriggerRow>,
    /// The armed OCOs by the id of the order their limit leg rests under.
    ocos: HashMap<Uuid, Uuid>,
    next_seq: i64,
    last_price: Option<Decimal>,
}

impl Triggers {
    /// The market's armed triggers as stored, a trailing stop's best price
    /// brought up to date with the trades made since it was armed.
    fn load(conn: &mut DbConnection, market: &str) -> Result<Self, HandlerError> {
        let rows = trigger_storage::load_armed(conn, market)?;
        let mut triggers = Triggers {
            next_seq: trigger_storage::next_seq(conn, market)?,
            last_price: trigger_storage::last_price(conn, market)?,
            ..Default::default()
        };
        let oldest_trailing = rows.iter().filter(|r| r.best.is_some()).map(|r| r.armed_version).min();
        let since = match oldest_trailing {
            Some(version) => trigger_storage::prices_after(conn, market, version)?,
            None => Vec::new(),
        };
        for row in rows {
            let (id, _, _) = row.ids()?;
            let mut level = level_of(&row).map_err(HandlerError::Permanent)?;
            if let Level::Trailing { best, .. } = &mut level {
                let later = since.iter().filter(|(v, _)| *v > row.armed_version).map(|(_, p)| p.value());
                *best = later.fold(*best, |b, p| row.fires_when.better(b, p));
            }
            let seq = u64::try_from(row.seq).map_err(|e| HandlerError::Permanent(e.into()))?;
            triggers.book.insert(Armed { id, seq, direction: row.fires_when, level });
            triggers.track(row)?;
        }
        Ok(triggers)
    }

    /// Keeps an armed trigger's row, and an OCO's order id.
    fn track(&mut self, row: TriggerRow) -> Result<(), HandlerError> {
        let (id, _, order) = row.ids()?;
        if row.limit_leg_price.is_some() {
            self.ocos.insert(order, id);
        }
        self.rows.insert(id, row);
        Ok(())
    }

    /// Takes a trigger out of the index (fired or disarmed): its row.
    fn untrack(&mut self, id: Uuid) -> Option<TriggerRow> {
        self.book.remove(id);
        let row = self.rows.remove(&id)?;
        if row.limit_leg_price.is_some()
            && let Ok(order) = Uuid::parse_str(&row.order_id)
        {
            self.ocos.remove(&order);
        }
        Some(row)
    }
}

/// A stored trigger's stop: fixed, or trailing from its best price when armed.
fn level_of(row: &TriggerRow) -> anyhow::Result<Level> {
    let trail = match (row.trail_amount, row.trail_percent) {
        (Some(a), _) => Some(Trail::Amount(a.value())),
        (None, Some(p)) => Some(Trail::Percent(p.value())),
        (None, None) => None,
    };
    match (row.stop_price, trail, row.best) {
        (Some(stop), _, _) => Ok(Level::Fixed(stop.value())),
        (None, Some(trail), Some(best)) => Ok(Level::Trailing { trail, best: best.value() }),
        _ => Err(anyhow::anyhow!("trigger {}: neither a stop nor a trail from a best price", row.trigger_id)),
    }
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
            Orders::Arm(cmd) => cmd.terms.market.clone(),
            Orders::Disarm(cmd) => cmd.market.clone(),
        };
        let mut markets = self.markets.lock().unwrap_or_else(|p| p.into_inner());
        let stored = storage::version_for_update(conn, &market_id)?;
        let market = markets.entry(market_id.clone()).or_insert_with(|| Market {
            version: None,
            book: Book::default(),
            candles: None,
            triggers: Triggers::default(),
        });
        if market.version != Some(stored) {
            *market = Market {
                version: Some(stored),
                book: Book::from_resting(storage::load_book(conn, &market_id)?),
                candles: None,
                triggers: Triggers::load(conn, &market_id)?,
            };
        }
        // From here the cache runs ahead of the database until commit; the
        // version check above repairs it if the transaction rolls back.
        market.version = None;
        let version = stored + 1;
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
            Orders::Arm(cmd) => {
                let armed = arm(conn, &mut market.triggers, &cmd, version, now, out)?;
                // An OCO's limit leg enters the book with its stop, or is turned away with it.
                match (cmd.limit_leg(), armed) {
                    (Some(terms), Some(armed)) => {
                        let leg = NewOrder { id: cmd.order_id, user: cmd.user_id, terms };
                        match armed {
                            Ok(()) => market.book.submit(&leg),
                            Err(reason) => Outcome::turned_away(&leg, leg_reason(reason)),
                        }
                    }
                    _ => Outcome::default(),
                }
            }
            Orders::Disarm(cmd) => match disarm(conn, &mut market.triggers, &cmd, now, out)? {
                Some(row) => take_out_leg(&mut market.book, &row, cmd.reason)?,
                None => Outcome::default(),
            },
        };
        // Each outcome's trades are evaluated against the triggers in the
        // order they were made, after the OCOs whose limit order the outcome
        // traded or ended are disarmed; the orders they fire are placed in
        // firing order, and their own trades evaluated after.
        let mut outcomes = VecDeque::from([outcome]);
        while let Some(outcome) = outcomes.pop_front() {
            record(conn, &market_id, market, &outcome, now, version, out)?;
            end_ocos(conn, &mut market.triggers, &outcome, out)?;
            for fill in &outcome.fills {
                market.triggers.last_price = Some(fill.price);
                for fired in market.triggers.book.trade(fill.price) {
                    let Some(row) = market.triggers.untrack(fired.id) else { continue };
                    match fire(conn, &row, fired.stop, fill.price, now, out)? {
                        Some(order) => {
                            if row.limit_leg_price.is_some() {
                                // An OCO's limit leg leaves the book unseen: the same order goes on as its stop says.
                                market.book.cancel(order.id);
                            }
                            outcomes.push_back(market.book.submit(&order));
                        }
                        None => {
                            outcomes.push_back(take_out_leg(&mut market.book, &row, DisarmReason::Expired)?)
                        }
                    }
                }
            }
        }
        market.version = Some(storage::bump_version(conn, &market_id, stored)?);
        Ok(())
    }
}

/// `matching.arm-trigger`: stored and armed (`Ok`), unless its disarm came
/// first (a cancel tombstone under its order id), its expiry passed, or the
/// last price has already crossed its stop (`invalid`): refused for that
/// reason. `None`: it was armed or refused before (the command came twice).
fn arm(
    conn: &mut DbConnection,
    triggers: &mut Triggers,
    cmd: &ArmTrigger,
    version: i64,
    now: i64,
    out: &mut Emitter,
) -> Result<Option<Result<(), DisarmReason>>, HandlerError> {
    if trigger_storage::status(conn, cmd.trigger_id)?.is_some() {
        return Ok(None);
    }
    let seq = triggers.next_seq;
    let mut row = TriggerRow::armed(cmd, triggers.last_price, version, seq, trigger_storage::ARMED);
    let refusal = if storage::has_tombstone(conn, cmd.order_id)? {
        Some((DisarmReason::Cancelled, None))
    } else if cmd.expires_at.is_some_and(|at| at.timestamp_micros() <= now) {
        Some((DisarmReason::Expired, None))
    } else {
        match (level_of(&row), triggers.last_price) {
            (Err(_), _) => {
                Some((DisarmReason::Invalid, Some("the market has no trade yet to trail".to_string())))
            }
            (Ok(level), Some(last)) if cmd.fires_when.crosses(stop_of(level, cmd.fires_when), last) => {
                Some((
                    DisarmReason::Invalid,
                    Some(format!(
                        "the last price {last} had already crossed its stop {}",
                        stop_of(level, cmd.fires_when)
                    )),
                ))
            }
            (Ok(_), _) => None,
        }
    };
    if let Some((reason, detail)) = refusal {
        row.status = trigger_storage::DISARMED.to_string();
        trigger_storage::insert(conn, &row)?;
        out.send(&row.trigger_id, &row.disarmed(reason, detail)?);
        return Ok(Some(Err(reason)));
    }
    trigger_storage::insert(conn, &row)?;
    let level = level_of(&row).map_err(HandlerError::Permanent)?;
    let seq = u64::try_from(seq).map_err(|e| HandlerError::Permanent(e.into()))?;
    triggers.book.insert(Armed { id: cmd.trigger_id, seq, direction: cmd.fires_when, level });
    triggers.track(row)?;
    triggers.next_seq += 1;
    Ok(Some(Ok(())))
}

/// Why an OCO's limit leg leaves the book (or never enters it) with its stop.
fn leg_reason(reason: DisarmReason) -> CancelReason {
    match reason {
        DisarmReason::Cancelled => CancelReason::BeforeSubmit,
        DisarmReason::Expired => CancelReason::Expired,
        DisarmReason::Invalid => CancelReason::StopCrossed,
        DisarmReason::Traded => CancelReason::Requested,
    }
}

/// An OCO's limit leg out of the book with its stop (cancelled or expired);
/// nothing for any other trigger, or a leg no longer resting.
fn take_out_leg(book: &mut Book, row: &TriggerRow, reason: DisarmReason) -> Result<Outcome, HandlerError> {
    if row.limit_leg_price.is_none() {
        return Ok(Outcome::default());
    }
    let (_, _, order) = row.ids()?;
    let reason = match reason {
        DisarmReason::Cancelled => CancelReason::Requested,
        other => leg_reason(other),
    };
    Ok(book.cancel_because(order, reason))
}

/// The OCOs whose limit order `outcome` traded or took out of the book:
/// their stop is disarmed (`traded`, or `cancelled` with the order).
fn end_ocos(
    conn: &mut DbConnection,
    triggers: &mut Triggers,
    outcome: &Outcome,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let traded = outcome.fills.iter().flat_map(|f| [f.taker_order, f.maker_order]);
    let traded = traded.map(|order| (order, DisarmReason::Traded));
    let ended = outcome.updates.iter().filter(|u| u.reason().is_some());
    let ended = ended.map(|u| (u.order, DisarmReason::Cancelled));
    for (order, reason) in traded.chain(ended).collect::<Vec<_>>() {
        let Some(id) = triggers.ocos.get(&order).copied() else { continue };
        let Some(row) = triggers.untrack(id) else { continue };
        trigger_storage::set_status(conn, id, trigger_storage::DISARMED)?;
        out.send(&row.trigger_id, &row.disarmed(reason, None)?);
    }
    Ok(())
}

/// A level's stop as it stands, for a trigger that fires as the price `moves`.
fn stop_of(level: Level, moves: PriceMove) -> Decimal {
    match level {
        Level::Fixed(stop) => stop,
        Level::Trailing { trail, best } => trail.stop(moves, best),
    }
}

/// `matching.disarm-trigger`: out of the book (its row returned, for an
/// OCO's limit leg to follow), unless it fired or was disarmed first (it
/// stays as it is) or was never armed here (its arm will find the tombstone
/// and be refused).
fn disarm(
    conn: &mut DbConnection,
    triggers: &mut Triggers,
    cmd: &DisarmTrigger,
    now: i64,
    out: &mut Emitter,
) -> Result<Option<TriggerRow>, HandlerError> {
    match trigger_storage::status(conn, cmd.trigger_id)?.as_deref() {
        Some(trigger_storage::ARMED) => {
            let row = triggers.untrack(cmd.trigger_id);
            trigger_storage::set_status(conn, cmd.trigger_id, trigger_storage::DISARMED)?;
            out.send(
                &cmd.trigger_id.to_string(),
                &TriggerDisarmed {
                    trigger_id: cmd.trigger_id,
                    user_id: cmd.user_id,
                    order_id: cmd.order_id,
                    market: cmd.market.clone(),
                    reason: cmd.reason,
                    detail: None,
                },
            );
            Ok(row)
        }
        Some(_) => Ok(None),
        None => {
            storage::leave_tombstone(conn, cmd.order_id, &cmd.market, cmd.user_id, now)?;
            Ok(None)
        }
    }
}

/// A trigger a trade at `price` crossed: past its expiry it is disarmed
/// (`expired`); else it is `fired` and its order returned, to be placed now.
fn fire(
    conn: &mut DbConnection,
    row: &TriggerRow,
    stop: Decimal,
    price: Decimal,
    now: i64,
    out: &mut Emitter,
) -> Result<Option<NewOrder>, HandlerError> {
    let (trigger_id, user_id, order_id) = row.ids()?;
    if row.expires_at.is_some_and(|at| at <= now) {
        trigger_storage::set_status(conn, trigger_id, trigger_storage::DISARMED)?;
        out.send(&row.trigger_id, &row.disarmed(DisarmReason::Expired, None)?);
        return Ok(None);
    }
    trigger_storage::set_status(conn, trigger_id, trigger_storage::FIRED)?;
    let terms = row.terms();
    out.send(
        &row.trigger_id,
        &TriggerFired {
            trigger_id,
            user_id,
            order_id,
            kind: row.kind,
            stop_price: stop.into(),
            trade_price: price.into(),
            fired_at: micros_to_time(now),
            terms: terms.clone(),
        },
    );
    Ok(Some(NewOrder { id: order_id, user: user_id, terms }))
}

/// Stores the book change and the trades, and emits their events.
fn record(
    conn: &mut DbConnection,
    market_id: &str,
    market: &mut Market,
    outcome: &Outcome,
    now: i64,
    version: i64,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    for fill in &outcome.fills {
        let trade_id = Uuid::now_v7();
        storage::insert_trade(conn, trade_id, market_id, fill, now, version)?;
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
        let candles = candles_with(conn, market_id, &mut market.candles, &tick)?;
        let candles = candles.into_iter().map(|(interval, c)| c.message(market_id, interval)).collect();
        out.send(market_id, &CandlesUpdated { market: market_id.to_string(), candles });
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
        let updates: Vec<CandlesUpdated> = out
            .envelopes()
            .filter(|e| e.message_type == CandlesUpdated::TYPE)
            .map(|e| {
                assert_eq!(e.correlation_id, MARKET);
                e.payload().unwrap()
            })
            .collect();
        assert_eq!(updates.len(), 1, "one message for every interval");
        updates.into_iter().flat_map(|u| u.candles).collect()
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

    fn of_type<M: Message + serde::de::DeserializeOwned>(out: &Emitter) -> Vec<M> {
        out.envelopes().filter(|e| e.message_type == M::TYPE).map(|e| e.payload().unwrap()).collect()
    }

    /// An OCO selling 1 ETH: a limit order at 2200, a stop at 1800 that sells at market.
    fn oco(id: u128) -> Orders {
        let (d, a) = (|n: i64| Some(Decimal::from(n).into()), Decimal::from(1).into());
        Orders::Arm(ArmTrigger {
            trigger_id: Uuid::from_u128(id),
            user_id: Uuid::from_u128(9),
            order_id: Uuid::from_u128(id + 1),
            kind: bourse_common::catalog::TriggerKind::Oco,
            fires_when: PriceMove::Falls,
            stop_price: d(1800),
            trail_amount: None,
            trail_percent: None,
            expires_at: None,
            limit_leg_price: d(2200),
            terms: OrderTerms {
                market: MARKET.to_string(),
                side: Side::Sell,
                order_type: OrderType::Market,
                price: None,
                quantity: a,
                time_in_force: TimeInForce::Ioc,
            },
        })
    }

    #[test]
    fn an_oco_rests_its_limit_order_and_either_leg_cancels_the_other() {
        use bourse_common::catalog::BookStatus;
        let mut conn = test_db();
        let matcher = Matcher::default();
        let mut out = Emitter::new("matching-service");
        let order = Uuid::from_u128(101);
        matcher.apply(&mut conn, submit(1, 1, Side::Buy, 1700, 1), at(1), &mut out).unwrap();
        matcher.apply(&mut conn, oco(100), at(2), &mut out).unwrap();
        let updates = of_type::<OrderUpdated>(&out);
        assert_eq!((updates[1].order_id, updates[1].status), (order, BookStatus::Open));
        // The stop fires on a trade at 1800: the same order leaves 2200 and sells at market, to the bid at 1700.
        let mut out = Emitter::new("matching-service");
        matcher.apply(&mut conn, submit(2, 2, Side::Sell, 1800, 1), at(3), &mut out).unwrap();
        matcher.apply(&mut conn, submit(3, 3, Side::Buy, 1800, 1), at(4), &mut out).unwrap();
        let fired = of_type::<TriggerFired>(&out);
        assert_eq!((fired.len(), fired[0].order_id), (1, order));
        let trades = of_type::<TradeExecuted>(&out);
        assert_eq!(trades.len(), 2);
        assert_eq!((trades[1].taker_order_id, trades[1].price.value()), (order, d(1700)));
        let updates = of_type::<OrderUpdated>(&out);
        let of_order: Vec<_> = updates.iter().filter(|u| u.order_id == order).map(|u| u.status).collect();
        assert_eq!(of_order, [BookStatus::Filled], "never cancelled: the same order went on");
        assert!(storage::load_book(&mut conn, MARKET).unwrap().is_empty());

        // Another: its limit order fills at 2200, the stop is disarmed; a fall to 1800 fires nothing.
        let matcher = Matcher::default();
        trade(&matcher, &mut conn, 500, 2000, at(5));
        let mut out = Emitter::new("matching-service");
        matcher.apply(&mut conn, oco(200), at(5), &mut out).unwrap();
        matcher.apply(&mut conn, submit(4, 4, Side::Buy, 2200, 1), at(6), &mut out).unwrap();
        let disarmed = of_type::<TriggerDisarmed>(&out);
        assert_eq!((disarmed.len(), disarmed[0].reason), (1, DisarmReason::Traded));
        matcher.apply(&mut conn, submit(5, 5, Side::Sell, 1800, 1), at(7), &mut out).unwrap();
        matcher.apply(&mut conn, submit(6, 6, Side::Buy, 1800, 1), at(8), &mut out).unwrap();
        assert!(of_type::<TriggerFired>(&out).is_empty());

        // A third, cancelled: its limit order leaves the book with it.
        let mut out = Emitter::new("matching-service");
        matcher.apply(&mut conn, oco(300), at(9), &mut out).unwrap();
        let disarm = Orders::Disarm(DisarmTrigger {
            trigger_id: Uuid::from_u128(300),
            user_id: Uuid::from_u128(9),
            order_id: Uuid::from_u128(301),
            market: MARKET.into(),
            reason: DisarmReason::Cancelled,
        });
        Matcher::default().apply(&mut conn, disarm, at(10), &mut out).unwrap();
        let last = of_type::<OrderUpdated>(&out).pop().unwrap();
        assert_eq!((last.order_id, last.status), (Uuid::from_u128(301), BookStatus::Cancelled));
        assert!(storage::load_book(&mut conn, MARKET).unwrap().is_empty());
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
