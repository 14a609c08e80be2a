//! The saga queue (`order-service.saga`): each message decoded once into
//! [`Saga`], applied inside the inbox transaction, each transition recorded
//! with the message that caused it. The saga table is
//! [`SagaState::after`](crate::domain::SagaState::after) (README.md, "Sagas
//! and message order"); here the order is loaded (locked), the table
//! consulted, the new state stored and what it sends sent.
//!
//! | message | from | what it does |
//! | --- | --- | --- |
//! | `funds.reserved` | payment-service | `pending` -> `open`, sends `matching.submit-order`; a `cancel_requested` order never sent to its book sends `payment.release-funds` instead |
//! | `funds.rejected` | payment-service | `pending` or `cancel_requested` -> `rejected` with the reason, publishes `order.rejected` |
//! | `funds.released` | payment-service | `cancel_requested` -> `cancelled`, publishes `order.cancelled`; while the book's last word is still to come, only remembered (`sent_released`) |
//! | `order.updated` | matching-service | records its filled quantity (it only grows); `open` -> `partially_filled`, -> `filled`, or out of the book -> `cancel_requested` until its funds are released (`cancelled` at once if they were) |

use bourse_common::catalog::{
    FundsRejected, FundsReleased, FundsReserved, OrderCancelled, OrderRejected, OrderUpdated, ReleaseFunds,
    SubmitOrder,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::domain::{self, Effect, Step};
use crate::storage::{self, Cause, OrderRow};

/// The queue of the saga's events.
pub const QUEUE: &str = "order-service.saga";

bourse_common::inbound! {
    /// What the saga queue takes.
    pub enum Saga {
        FundsReserved(FundsReserved),
        FundsRejected(FundsRejected),
        FundsReleased(FundsReleased),
        OrderUpdated(OrderUpdated),
    }
}

/// Applies one message of the saga queue.
pub fn handle(
    conn: &mut DbConnection,
    message: Saga,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let (order_id, step, rejection) = match &message {
        Saga::FundsReserved(event) => (event.order_id, Step::FundsReserved, None),
        Saga::FundsRejected(event) => (event.order_id, Step::FundsRejected, Some(event)),
        Saga::FundsReleased(event) => (event.order_id, Step::FundsReleased, None),
        Saga::OrderUpdated(event) => (event.order_id, Step::Book(event.status), None),
    };
    let order = order(conn, order_id)?;
    if let Saga::OrderUpdated(event) = &message {
        // The book's filled quantity, final order or not: it only grows.
        if let Some(filled) = domain::filled_after(order.filled_quantity, event.filled_quantity) {
            storage::set_filled(conn, &order, filled, now_micros())?;
        }
    }
    advance(conn, &order, step, rejection, envelope, out)
}

fn order(conn: &mut DbConnection, id: Uuid) -> Result<OrderRow, HandlerError> {
    let found = storage::lock(conn, id)?;
    // The order commits before its command is published: a miss is a bug, not a race.
    found.ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {id}")))
}

fn cause(envelope: &Envelope) -> Cause {
    Cause { kind: envelope.message_type.clone(), id: envelope.message_id.to_string() }
}

/// Moves the (locked) order on `step` as the saga table says: stores its new
/// status with the cause, and how far it got with its book; sends what the step sends.
fn advance(
    conn: &mut DbConnection,
    order: &OrderRow,
    step: Step,
    rejection: Option<&FundsRejected>,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let now = now_micros();
    let before = order.saga();
    let (after, effect) = before.after(step);
    if after.status != before.status {
        let reason = rejection.map(|r| r.reason.as_str()).filter(|_| effect == Some(Effect::Rejected));
        storage::transition(conn, order, after.status, reason, &cause(envelope), now)?;
    }
    if after.book != before.book {
        storage::set_book_stage(conn, order, after.book, now)?;
    }
    let Some(effect) = effect else { return Ok(()) };
    let (order_id, user_id) = order.ids().map_err(|e| HandlerError::Permanent(e.into()))?;
    match effect {
        Effect::Submit => {
            out.reply(&SubmitOrder { order_id, user_id, terms: order.terms() });
        }
        Effect::ReleaseFunds => {
            out.reply(&ReleaseFunds { order_id, user_id });
        }
        Effect::Cancelled => {
            out.reply(&OrderCancelled { order_id, user_id, market: order.market.clone() });
        }
        Effect::Rejected => {
            let rejection = rejection.ok_or_else(|| {
                HandlerError::Permanent(anyhow::anyhow!("order {order_id}: rejected by no funds.rejected"))
            })?;
            let terms = order.terms();
            out.reply(&OrderRejected {
                order_id,
                user_id,
                market: terms.market,
                reason: rejection.reason.clone(),
                side: Some(terms.side),
                order_type: Some(terms.order_type),
                price: terms.price,
                quantity: Some(terms.quantity),
                currency: Some(rejection.currency.clone()),
                amount: Some(rejection.amount),
            });
        }
    }
    Ok(())
}
