//! The order saga's reactions to payment-service, each inside the inbox
//! transaction, each transition recorded with the message that caused it.

use bourse_common::catalog::{
    FundsRejected, FundsReleased, FundsReserved, OrderCancelled, OrderRejected, ReleaseFunds, SubmitOrder,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::domain::Status;
use crate::storage::{self, Cause, OrderRow};

/// The events of the saga queue.
pub const EVENTS: [&str; 3] = [FundsReserved::TYPE, FundsRejected::TYPE, FundsReleased::TYPE];

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
            funds_rejected(conn, order, &event.reason, message, out)
        }
        FundsReleased::TYPE => {
            let event: FundsReleased = message.payload()?;
            let order = order(conn, event.order_id)?;
            funds_released(conn, order, message, out)
        }
        other => Err(HandlerError::Permanent(anyhow::anyhow!("unexpected message type {other}"))),
    }
}

fn order(conn: &mut DbConnection, id: Uuid) -> Result<OrderRow, HandlerError> {
    // The order commits before its command is published: a miss is a bug, not a race.
    storage::find(conn, id)?.ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {id}")))
}

fn cause(message: &Envelope) -> Cause {
    Cause { kind: message.message_type.clone(), id: message.message_id.to_string() }
}

fn ids(order: &OrderRow) -> Result<(Uuid, Uuid), HandlerError> {
    let parse = |s: &str| Uuid::parse_str(s).map_err(|e| HandlerError::Permanent(e.into()));
    Ok((parse(&order.id)?, parse(&order.user_id)?))
}

fn funds_reserved(
    conn: &mut DbConnection,
    order: OrderRow,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let (order_id, user_id) = ids(&order)?;
    match order.status() {
        Status::Pending => {
            storage::transition(conn, &order, Status::Open, None, &cause(message), now_micros())?;
            out.reply(&SubmitOrder {
                order_id,
                user_id,
                market: order.market.clone(),
                side: parse_enum(&order.side)?,
                order_type: parse_enum(&order.order_type)?,
                price: order.price.as_deref().map(str::parse).transpose().map_err(perm)?,
                quantity: order.quantity.parse().map_err(perm)?,
                time_in_force: parse_enum(&order.time_in_force)?,
            });
        }
        // Cancelled while the funds were being reserved: give them back.
        Status::CancelRequested => {
            out.reply(&ReleaseFunds { order_id, user_id });
        }
        _ => {}
    }
    Ok(())
}

fn funds_rejected(
    conn: &mut DbConnection,
    order: OrderRow,
    reason: &str,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    if matches!(order.status(), Status::Pending | Status::CancelRequested) {
        let (order_id, user_id) = ids(&order)?;
        storage::transition(conn, &order, Status::Rejected, Some(reason), &cause(message), now_micros())?;
        out.reply(&OrderRejected {
            order_id,
            user_id,
            market: order.market.clone(),
            reason: reason.to_string(),
        });
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
        let (order_id, user_id) = ids(&order)?;
        storage::transition(conn, &order, Status::Cancelled, None, &cause(message), now_micros())?;
        out.reply(&OrderCancelled { order_id, user_id, market: order.market.clone() });
    }
    Ok(())
}

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(anyhow::anyhow!("stored order is corrupt: {e}"))
}

/// The stored snake_case name of a catalog enum back into the enum.
pub fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, HandlerError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(perm)
}
