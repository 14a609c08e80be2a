//! Orders in and out of the books, each command in the inbox transaction
//! with its book change and its events. Books are cached in memory and
//! checked against the stored version first: a rolled-back transaction or
//! another instance's change makes the cache reload from the database.

use std::collections::HashMap;
use std::sync::Mutex;

use bourse_common::catalog::{
    BookChanged, BookStatus, CancelOrder, MarketTrade, OrderUpdated, SubmitOrder, TradeExecuted,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handler, HandlerError};
use bourse_common::messages::Message;
use bourse_common::outbox::Emitter;
use bourse_common::{micros_to_time, now_micros};
use uuid::Uuid;

use crate::engine::{Book, NewOrder, Outcome, State};
use crate::storage;

/// The command types of the orders queue.
pub const COMMANDS: [&str; 2] = [SubmitOrder::TYPE, CancelOrder::TYPE];

enum Command {
    Submit(NewOrder),
    Cancel(Uuid),
}

/// The books of every market, with the version each was loaded at.
#[derive(Debug, Default)]
pub struct Matcher {
    books: Mutex<HashMap<String, (i64, Book)>>,
}

impl Handler for Matcher {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        let (market, command) = match message.message_type.as_str() {
            SubmitOrder::TYPE => {
                let cmd: SubmitOrder = message.payload()?;
                let order = NewOrder {
                    id: cmd.order_id,
                    user: cmd.user_id,
                    side: cmd.side,
                    order_type: cmd.order_type,
                    price: cmd.price.map(|p| p.value()),
                    quantity: cmd.quantity.value(),
                    time_in_force: cmd.time_in_force,
                };
                (cmd.market, Command::Submit(order))
            }
            CancelOrder::TYPE => {
                let cmd: CancelOrder = message.payload()?;
                (cmd.market, Command::Cancel(cmd.order_id))
            }
            _ => return Err(HandlerError::unexpected(message)),
        };
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let stored = storage::version(conn, &market)?;
        let entry = books.entry(market.clone()).or_insert_with(|| (-1, Book::default()));
        if entry.0 != stored {
            let resting = storage::load_book(conn, &market)?;
            *entry = (stored, Book::from_resting(resting));
        }
        // From here the cached book runs ahead of the database until commit;
        // the version check above repairs it if the transaction rolls back.
        entry.0 = -1;
        let outcome = match command {
            Command::Submit(order) => entry.1.submit(order),
            Command::Cancel(id) => entry.1.cancel(id),
        };
        record(conn, &market, &entry.1, &outcome, out)?;
        entry.0 = storage::bump_version(conn, &market, stored)?;
        Ok(())
    }
}

/// Stores the book change and the trades, and emits their events.
fn record(
    conn: &mut DbConnection,
    market: &str,
    book: &Book,
    outcome: &Outcome,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let now = now_micros();
    for fill in &outcome.fills {
        let trade_id = Uuid::now_v7();
        storage::insert_trade(conn, trade_id, market, fill, now)?;
        out.send(
            market,
            &MarketTrade {
                trade_id,
                market: market.to_string(),
                price: fill.price.into(),
                quantity: fill.quantity.into(),
                taker_side: fill.taker_side,
                executed_at: micros_to_time(now),
            },
        );
        out.send(
            &fill.taker_order.to_string(),
            &TradeExecuted {
                trade_id,
                market: market.to_string(),
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
        out.send(market, &BookChanged { market: market.to_string() });
    }
    for update in &outcome.updates {
        storage::save_order(conn, market, update.order, book.get(update.order))?;
        let (status, reason) = match update.state {
            State::Resting if update.filled.is_zero() => (BookStatus::Open, None),
            State::Resting => (BookStatus::PartiallyFilled, None),
            State::Filled => (BookStatus::Filled, None),
            State::Cancelled(reason) => (BookStatus::Cancelled, Some(reason.as_str().to_string())),
        };
        out.send(
            &update.order.to_string(),
            &OrderUpdated {
                order_id: update.order,
                user_id: update.user,
                market: market.to_string(),
                quantity: update.quantity.into(),
                filled_quantity: update.filled.into(),
                status,
                reason,
            },
        );
    }
    Ok(())
}
