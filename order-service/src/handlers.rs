//! The order saga's reactions to payment-service, each inside the inbox
//! transaction, each transition recorded with the message that caused it.

use bourse_common::catalog::{
    BookStatus, FundsRejected, FundsReleased, FundsReserved, OrderCancelled, OrderRejected, OrderUpdated,
    ReleaseFunds, SubmitOrder,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::domain::Status;
use crate::storage::{self, Cause, OrderRow, Terms};

/// The events of the saga queue.
pub const EVENTS: [&str; 4] =
    [FundsReserved::TYPE, FundsRejected::TYPE, FundsReleased::TYPE, OrderUpdated::TYPE];

pub fn handle(conn: &mut DbConnection, message: &Envelope, out: &mut Emitter) -> Result<(), HandlerError> {
    match message.message_type.as_str() {
        FundsReserved::TYPE => {
            let event: FundsReserved = message.payload()?;
            let order = order(conn, event.order_id)?;
            funds_reserved(conn, order, message, out)
        }
        FundsRejected::TYPE => {
            let event: FundsRejected = message.payload()?;
            let order = order(conn, event.order_id)?;
            funds_rejected(conn, order, &event, message, out)
        }
        FundsReleased::TYPE => {
            let event: FundsReleased = message.payload()?;
            let order = order(conn, event.order_id)?;
            funds_released(conn, order, message, out)
        }
        OrderUpdated::TYPE => {
            let event: OrderUpdated = message.payload()?;
            let order = order(conn, event.order_id)?;
            order_updated(conn, order, &event, message)
        }
        _ => Err(HandlerError::unexpected(message)),
    }
}

fn order(conn: &mut DbConnection, id: Uuid) -> Result<OrderRow, HandlerError> {
    // The order commits before its command is published: a miss is a bug, not a race.
    storage::find(conn, id)?.ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {id}")))
}

fn cause(message: &Envelope) -> Cause {
    Cause { kind: message.message_type.clone(), id: message.message_id.to_string() }
}

fn terms(order: &OrderRow) -> Result<Terms, HandlerError> {
    order.terms().map_err(|e| HandlerError::Permanent(e.into()))
}

fn funds_reserved(
    conn: &mut DbConnection,
    order: OrderRow,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let t = terms(&order)?;
    match order.status() {
        Status::Pending => {
            storage::transition(conn, &order, Status::Open, None, &cause(message), now_micros())?;
            out.reply(&SubmitOrder {
                order_id: t.id,
                user_id: t.user_id,
                market: order.market.clone(),
                side: t.side,
                order_type: t.order_type,
                price: t.price,
                quantity: t.quantity,
                time_in_force: t.time_in_force,
            });
        }
        // Cancelled while the funds were being reserved: give them back.
        Status::CancelRequested => {
            out.reply(&ReleaseFunds { order_id: t.id, user_id: t.user_id });
        }
        _ => {}
    }
    Ok(())
}

fn funds_rejected(
    conn: &mut DbConnection,
    order: OrderRow,
    rejection: &FundsRejected,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    if matches!(order.status(), Status::Pending | Status::CancelRequested) {
        let t = terms(&order)?;
        let reason = rejection.reason.as_str();
        storage::transition(conn, &order, Status::Rejected, Some(reason), &cause(message), now_micros())?;
        out.reply(&OrderRejected {
            order_id: t.id,
            user_id: t.user_id,
            market: order.market.clone(),
            reason: reason.to_string(),
            side: Some(t.side),
            order_type: Some(t.order_type),
            price: t.price,
            quantity: Some(t.quantity),
            currency: Some(rejection.currency.clone()),
            amount: Some(rejection.amount),
        });
    }
    Ok(())
}

/// Follows the book: fills, the end of the order. A cancelled order waits for
/// its reservation to be released before it is `cancelled`.
fn order_updated(
    conn: &mut DbConnection,
    order: OrderRow,
    event: &OrderUpdated,
    message: &Envelope,
) -> Result<(), HandlerError> {
    let now = now_micros();
    let status = order.status();
    if matches!(status, Status::Filled | Status::Cancelled | Status::Rejected) {
        return Ok(());
    }
    storage::set_filled(conn, &order, event.filled_quantity, now)?;
    let next = match (event.status, status) {
        (BookStatus::Filled, _) => Some(Status::Filled),
        (BookStatus::Cancelled, Status::CancelRequested) => None,
        (BookStatus::Cancelled, _) => Some(Status::CancelRequested),
        (BookStatus::PartiallyFilled, Status::Open) => Some(Status::PartiallyFilled),
        _ => None,
    };
    if let Some(next) = next.filter(|n| *n != status) {
        storage::transition(conn, &order, next, None, &cause(message), now)?;
    }
    Ok(())
}

fn funds_released(
    conn: &mut DbConnection,
    order: OrderRow,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    if order.status() == Status::CancelRequested {
        let t = terms(&order)?;
        storage::transition(conn, &order, Status::Cancelled, None, &cause(message), now_micros())?;
        out.reply(&OrderCancelled { order_id: t.id, user_id: t.user_id, market: order.market.clone() });
    }
    Ok(())
}
