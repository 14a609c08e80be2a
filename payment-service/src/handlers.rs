//! What payment-service does with the messages it consumes, each inside the
//! inbox transaction: open accounts for a new user, reserve and release funds.

use bourse_common::catalog::{
    FundsRejected, FundsReleased, FundsReserved, ReleaseFunds, ReserveFunds, UserRegistered,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;

use crate::storage;

/// The ledger reference of an order's movements.
fn order_reference(order_id: uuid::Uuid) -> String {
    format!("order:{order_id}")
}

/// Opens an account in every currency for a new user.
pub fn user_registered(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    message: &Envelope,
) -> Result<(), HandlerError> {
    let event: UserRegistered = message.payload()?;
    for currency in &reference.currencies {
        storage::open_account(conn, event.user_id, &currency.code, now_micros())?;
    }
    Ok(())
}

/// Moves the order's amount from available to reserved, or says why not.
pub fn reserve_funds(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let cmd: ReserveFunds = message.payload()?;
    if storage::reservation(conn, cmd.order_id)?.is_some() {
        return Ok(()); // this order's funds were already decided
    }
    let reject = |out: &mut Emitter, reason: String| {
        out.reply(&FundsRejected {
            order_id: cmd.order_id,
            user_id: cmd.user_id,
            currency: cmd.currency.clone(),
            amount: cmd.amount,
            reason,
        });
    };
    let Some(currency) = reference.currency(&cmd.currency) else {
        reject(out, format!("unknown currency {}", cmd.currency));
        return Ok(());
    };
    if let Err(e) = cmd.amount.positive_in(currency) {
        reject(out, e.to_string());
        return Ok(());
    }
    let now = now_micros();
    let balance = storage::lock_balance(conn, cmd.user_id, &cmd.currency, now)?;
    match balance.reserve(cmd.amount.value()) {
        Ok(movement) => {
            let reference = order_reference(cmd.order_id);
            storage::apply(conn, cmd.user_id, &cmd.currency, balance, &movement, &reference, now)?;
            storage::insert_reservation(conn, cmd.order_id, cmd.user_id, &cmd.currency, cmd.amount, now)?;
            out.reply(&FundsReserved {
                order_id: cmd.order_id,
                user_id: cmd.user_id,
                currency: cmd.currency.clone(),
                amount: cmd.amount,
            });
        }
        Err(insufficient) => reject(out, format!("{insufficient} {}", cmd.currency)),
    }
    Ok(())
}

/// Gives back what is left of the order's reservation.
pub fn release_funds(
    conn: &mut DbConnection,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let cmd: ReleaseFunds = message.payload()?;
    let now = now_micros();
    let released = match storage::reservation(conn, cmd.order_id)? {
        Some(r) if r.status == "active" => {
            // The reservation's owner, whoever the command names.
            let user = uuid::Uuid::parse_str(&r.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
            let balance = storage::lock_balance(conn, user, &r.currency, now)?;
            let movement = balance.release(r.remaining.value());
            storage::apply(conn, user, &r.currency, balance, &movement, &order_reference(cmd.order_id), now)?;
            storage::close_reservation(conn, cmd.order_id, "released", now)?;
            Some((r.currency, r.remaining))
        }
        Some(r) => Some((r.currency, Amount::ZERO)),
        None => None,
    };
    let (currency, amount) = released.unwrap_or_default();
    out.reply(&FundsReleased { order_id: cmd.order_id, user_id: cmd.user_id, currency, amount });
    Ok(())
}

/// The message types of the command queue.
pub const COMMANDS: [&str; 2] = [ReserveFunds::TYPE, ReleaseFunds::TYPE];

/// A message of the command queue, to its handler.
pub fn command(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    match message.message_type.as_str() {
        ReserveFunds::TYPE => reserve_funds(reference, conn, message, out),
        ReleaseFunds::TYPE => release_funds(conn, message, out),
        _ => Err(HandlerError::unexpected(message)),
    }
}
