//! The saga queue (`order-service.saga`): each message decoded once into
//! [`Saga`], applied inside the inbox transaction, each transition recorded
//! with the message that caused it. The status table is
//! [`Status::after`](crate::domain::Status::after); here the order is loaded,
//! the table consulted, the result stored and announced.
//!
//! | message | from | what it does |
//! | --- | --- | --- |
//! | `funds.reserved` | payment-service | `pending` -> `open`, sends `matching.submit-order`; a `cancel_requested` order sends `payment.release-funds` instead |
//! | `funds.rejected` | payment-service | `pending` or `cancel_requested` -> `rejected` with the reason, publishes `order.rejected` |
//! | `funds.released` | payment-service | `cancel_requested` -> `cancelled`, publishes `order.cancelled` |
//! | `order.updated` | matching-service | an order that is not final: records its filled quantity; `open` -> `partially_filled`, -> `filled`, or out of the book -> `cancel_requested` until its funds are released |

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

use crate::domain::Step;
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
    match message {
        Saga::FundsReserved(event) => funds_reserved(conn, &event, envelope, out),
        Saga::FundsRejected(event) => funds_rejected(conn, &event, envelope, out),
        Saga::FundsReleased(event) => funds_released(conn, &event, envelope, out),
        Saga::OrderUpdated(event) => order_updated(conn, &event, envelope),
    }
}

fn order(conn: &mut DbConnection, id: Uuid) -> Result<OrderRow, HandlerError> {
    let found = storage::lock(conn, id)?;
    // The order commits before its command is published: a miss is a bug, not a race.
    found.ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {id}")))
}

/// The order's id and its user's.
fn ids(order: &OrderRow) -> Result<(Uuid, Uuid), HandlerError> {
    order.ids().map_err(|e| HandlerError::Permanent(e.into()))
}

fn cause(envelope: &Envelope) -> Cause {
    Cause { kind: envelope.message_type.clone(), id: envelope.message_id.to_string() }
}

fn funds_reserved(
    conn: &mut DbConnection,
    event: &FundsReserved,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let order = order(conn, event.order_id)?;
    if let Some(next) = order.status.after(Step::FundsReserved) {
        let (order_id, user_id) = ids(&order)?;
        storage::transition(conn, &order, next, None, &cause(envelope), now_micros())?;
        out.reply(&SubmitOrder { order_id, user_id, terms: order.terms() });
    } else if order.status.releases_reserved_funds() {
        let (order_id, user_id) = ids(&order)?;
        out.reply(&ReleaseFunds { order_id, user_id });
    }
    Ok(())
}

fn funds_rejected(
    conn: &mut DbConnection,
    rejection: &FundsRejected,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let order = order(conn, rejection.order_id)?;
    if let Some(next) = order.status.after(Step::FundsRejected) {
        let (order_id, user_id) = ids(&order)?;
        let reason = rejection.reason.as_str();
        storage::transition(conn, &order, next, Some(reason), &cause(envelope), now_micros())?;
        let terms = order.terms();
        out.reply(&OrderRejected {
            order_id,
            user_id,
            market: terms.market,
            reason: reason.to_string(),
            side: Some(terms.side),
            order_type: Some(terms.order_type),
            price: terms.price,
            quantity: Some(terms.quantity),
            currency: Some(rejection.currency.clone()),
            amount: Some(rejection.amount),
        });
    }
    Ok(())
}

fn funds_released(
    conn: &mut DbConnection,
    event: &FundsReleased,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let order = order(conn, event.order_id)?;
    if let Some(next) = order.status.after(Step::FundsReleased) {
        let (order_id, user_id) = ids(&order)?;
        storage::transition(conn, &order, next, None, &cause(envelope), now_micros())?;
        out.reply(&OrderCancelled { order_id, user_id, market: order.market.clone() });
    }
    Ok(())
}

/// Follows the book: the filled quantity, fills, the end of the order.
fn order_updated(
    conn: &mut DbConnection,
    event: &OrderUpdated,
    envelope: &Envelope,
) -> Result<(), HandlerError> {
    let order = order(conn, event.order_id)?;
    // A final order keeps what it last recorded.
    if order.status.is_final() {
        return Ok(());
    }
    let now = now_micros();
    storage::set_filled(conn, &order, event.filled_quantity, now)?;
    if let Some(next) = order.status.after(Step::Book(event.status)) {
        storage::transition(conn, &order, next, None, &cause(envelope), now)?;
    }
    Ok(())
}
