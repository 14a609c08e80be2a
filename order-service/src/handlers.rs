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
//! | `trigger.fired` | matching-service | the trigger `fired`; its order (in the book already) is stored `open` |
//! | `trigger.disarmed` | matching-service | the trigger `cancelled`, `expired` or `rejected`; its funds released |
//!
//! A price trigger's funds are reserved under the id of the order it will
//! place, so `funds.*` for an id with no order is its trigger's: the table
//! is [`TriggerState::after`](crate::triggers::TriggerState::after). Once it
//! fired (`trigger.fired`, or the first word of its order if a retry brings
//! that first), the id is its order's, which the saga moves as any other.

use bourse_common::catalog::{
    ArmTrigger, DisarmTrigger, FundsRejected, FundsReleased, FundsReserved, OrderCancelled, OrderRejected,
    OrderUpdated, ReleaseFunds, SubmitOrder, TriggerDisarmed, TriggerFired, TriggerKind, TriggerUpdated,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::domain::{self, Effect, Step};
use crate::storage::{self, Cause, OrderRow};
use crate::trigger_storage::{self, TriggerRow};
use crate::triggers::{TriggerEffect, TriggerStatus, TriggerStep};

/// The queue of the saga's events.
pub const QUEUE: &str = "order-service.saga";

bourse_common::inbound! {
    /// What the saga queue takes.
    pub enum Saga {
        FundsReserved(FundsReserved),
        FundsRejected(FundsRejected),
        FundsReleased(FundsReleased),
        OrderUpdated(OrderUpdated),
        TriggerFired(TriggerFired),
        TriggerDisarmed(TriggerDisarmed),
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
        Saga::TriggerFired(event) => return trigger_fired(conn, event, envelope, out),
        Saga::TriggerDisarmed(event) => {
            let trigger = trigger(conn, event.trigger_id)?;
            let step = TriggerStep::Disarmed(event.reason);
            trigger_step(conn, &trigger, step, event.detail.as_deref(), out)?;
            return Ok(());
        }
    };
    let order = match storage::lock(conn, order_id)? {
        Some(order) => order,
        None => match trigger_storage::lock_by_order(conn, order_id)? {
            // Funds of a trigger not fired: its own step.
            Some(trigger) if trigger.status != TriggerStatus::Fired => match &message {
                Saga::FundsReserved(_) => {
                    let effect = trigger_step(conn, &trigger, TriggerStep::FundsReserved, None, out)?;
                    // An OCO's limit order enters its book as it is armed: stored `open` now.
                    if let (Some(TriggerEffect::Arm), Some(terms)) = (effect, trigger.limit_leg_terms()) {
                        let order = OrderRow::placed_by(&trigger, terms, now_micros());
                        storage::insert(conn, &order, &cause(envelope))?;
                    }
                    return Ok(());
                }
                Saga::FundsRejected(e) => {
                    let step = TriggerStep::FundsRejected;
                    trigger_step(conn, &trigger, step, Some(&e.reason), out)?;
                    return Ok(());
                }
                // Released after it was cancelled, expired or refused: nothing more.
                Saga::FundsReleased(_) if trigger.status.is_final() => return Ok(()),
                // Its order's word came before `trigger.fired` (a retry): it fired.
                _ => placed_order(conn, &trigger, envelope, out)?,
            },
            Some(trigger) => placed_order(conn, &trigger, envelope, out)?,
            // The order commits before its command is published: a miss is a bug, not a race.
            None => return Err(HandlerError::Permanent(anyhow::anyhow!("no order {order_id}"))),
        },
    };
    if let Saga::OrderUpdated(event) = &message {
        // The book's filled quantity, final order or not: it only grows.
        if let Some(filled) = domain::filled_after(order.filled_quantity, event.filled_quantity) {
            storage::set_filled(conn, &order, filled, now_micros())?;
        }
    }
    advance(conn, &order, step, rejection, envelope, out)
}

fn trigger(conn: &mut DbConnection, id: Uuid) -> Result<TriggerRow, HandlerError> {
    let found = trigger_storage::lock(conn, id)?;
    found.ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no trigger {id}")))
}

/// `trigger.fired`: the trigger is `fired`, with what fired it; its order is
/// stored, or, an OCO's (stored since arming), has its stop leg's terms now.
fn trigger_fired(
    conn: &mut DbConnection,
    event: &TriggerFired,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let trigger = trigger(conn, event.trigger_id)?;
    if trigger.fired_at.is_none() {
        let at = event.fired_at.timestamp_micros();
        trigger_storage::set_fired(conn, &trigger, event.stop_price, event.trade_price, at)?;
    }
    if trigger.kind == TriggerKind::Oco {
        let order = storage::lock(conn, event.order_id)?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("oco {}: no order {}", trigger.id, event.order_id))
        })?;
        trigger_step(conn, &trigger, TriggerStep::Fired, None, out)?;
        storage::set_terms(conn, &order, &event.terms, now_micros())?;
        return Ok(());
    }
    placed_order(conn, &trigger, envelope, out)?;
    Ok(())
}

/// The order `trigger` placed, stored `open` (it is in its book) the first
/// time its firing is heard of, the trigger `fired` with it.
fn placed_order(
    conn: &mut DbConnection,
    trigger: &TriggerRow,
    envelope: &Envelope,
    out: &mut Emitter,
) -> Result<OrderRow, HandlerError> {
    let (_, _, order_id) = trigger.ids().map_err(|e| HandlerError::Permanent(e.into()))?;
    if let Some(order) = storage::lock(conn, order_id)? {
        return Ok(order);
    }
    if trigger.status != TriggerStatus::Active && trigger.status != TriggerStatus::Fired {
        return Err(HandlerError::Permanent(anyhow::anyhow!(
            "trigger {} is {}: it cannot have fired",
            trigger.id,
            trigger.status
        )));
    }
    trigger_step(conn, trigger, TriggerStep::Fired, None, out)?;
    let order = OrderRow::placed_by(trigger, trigger.order_terms(), now_micros());
    storage::insert(conn, &order, &cause(envelope))?;
    Ok(order)
}

/// Moves the (locked) trigger on `step` as its table says: stores its new
/// state, tells its user, sends what the step sends (and returns it).
fn trigger_step(
    conn: &mut DbConnection,
    trigger: &TriggerRow,
    step: TriggerStep,
    reason: Option<&str>,
    out: &mut Emitter,
) -> diesel::QueryResult<Option<TriggerEffect>> {
    let before = trigger.state();
    let (after, effect) = before.after(step);
    if after == before {
        return Ok(None);
    }
    let reason = reason.filter(|_| after.status == TriggerStatus::Rejected);
    trigger_storage::set_state(conn, trigger, after, reason, now_micros())?;
    let (trigger_id, user_id, order_id) =
        trigger.ids().map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    if after.status != before.status {
        out.send(
            &trigger.id,
            &TriggerUpdated {
                trigger_id,
                user_id,
                market: trigger.market.clone(),
                kind: trigger.kind,
                side: trigger.side,
                status: after.status.to_string(),
                order_id: shows_order(trigger.kind, after.status).then_some(order_id),
                reason: reason.map(str::to_string),
            },
        );
    }
    match effect {
        None => {}
        Some(TriggerEffect::Arm) => {
            out.send(&trigger.id, &arm(trigger, trigger_id, user_id, order_id));
        }
        Some(TriggerEffect::Disarm) => {
            let reason = match after.ending {
                Some(crate::triggers::Ending::Expiry) => bourse_common::catalog::DisarmReason::Expired,
                _ => bourse_common::catalog::DisarmReason::Cancelled,
            };
            out.send(
                &trigger.id,
                &DisarmTrigger { trigger_id, user_id, order_id, market: trigger.market.clone(), reason },
            );
        }
        Some(TriggerEffect::Release) => {
            out.send(&trigger.id, &ReleaseFunds { order_id, user_id });
        }
    }
    Ok(effect)
}

/// Whether a trigger in `status` has an order to show: it fired; an OCO's
/// is in the book from arming.
pub fn shows_order(kind: TriggerKind, status: TriggerStatus) -> bool {
    match status {
        TriggerStatus::Fired | TriggerStatus::Traded => true,
        TriggerStatus::Active => kind == TriggerKind::Oco,
        _ => false,
    }
}

/// The command that arms `trigger` in its book.
fn arm(trigger: &TriggerRow, trigger_id: Uuid, user_id: Uuid, order_id: Uuid) -> ArmTrigger {
    ArmTrigger {
        trigger_id,
        user_id,
        order_id,
        kind: trigger.kind,
        fires_when: trigger.kind.fires_when(trigger.side),
        stop_price: trigger.stop_price,
        trail_amount: trigger.trail_amount,
        trail_percent: trigger.trail_percent,
        expires_at: trigger.expires_at.map(bourse_common::micros_to_time),
        limit_leg_price: trigger.limit_leg_terms().and_then(|leg| leg.price),
        terms: trigger.order_terms(),
    }
}

/// A cancel request or an expiry for a trigger: the route's and the sweep's
/// step, inside their transaction.
pub fn end_trigger(
    conn: &mut DbConnection,
    trigger: &TriggerRow,
    ending: crate::triggers::Ending,
    out: &mut Emitter,
) -> diesel::QueryResult<()> {
    trigger_step(conn, trigger, TriggerStep::End(ending), None, out).map(drop)
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
            out.reply(&OrderCancelled {
                order_id,
                user_id,
                market: order.market.clone(),
                in_book: after.book != crate::domain::BookStage::Unsent,
                quantity: Some(order.terms().quantity),
            });
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
