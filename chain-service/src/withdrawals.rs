//! Withdrawals, the saga chain-service runs (correlation: the withdrawal id):
//!
//! ```text
//! POST /api/withdrawals -> withdrawal `requested` + payment.hold-withdrawal
//! payment-service: hold amount + fee -> withdrawal.held | withdrawal.refused
//! withdrawal.refused -> `refused` (nothing moved)
//! withdrawal.held    -> `sending` + a transaction intent (the pipeline signs and sends it)
//! pipeline: broadcast -> `sent` (withdrawal.sent), confirmations -> `confirmed`
//!   (withdrawal.confirmed: payment-service debits the hold), reverted or refused
//!   by the node -> `failed` (withdrawal.failed: payment-service gives it all back)
//! ```
//!
//! Each step happens in one transaction with the messages it sends.

use std::sync::Arc;

use alloy::primitives::Address;
use bourse_common::catalog::{
    WithdrawalConfirmed, WithdrawalFailed, WithdrawalHeld, WithdrawalRefused, WithdrawalSent,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::domain::{self, TxPurpose, WithdrawalStatus};
use crate::pipeline::transfer_intent;
use crate::settings::{Asset, Settings};
use crate::storage::{self, TxRow, WithdrawalRow};

bourse_common::inbound! {
    /// What the queue `chain-service.payments` takes (from payment-service).
    pub enum Payments {
        Held(WithdrawalHeld),
        Refused(WithdrawalRefused),
    }
}

/// Handles payment-service's answers, each in the inbox transaction.
#[derive(Debug, Clone)]
pub struct Answers {
    pub settings: Arc<Settings>,
}

impl Handle<Payments> for Answers {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Payments,
        _: &Envelope,
        _: &mut Emitter,
    ) -> Result<(), HandlerError> {
        let now = now_micros();
        match message {
            Payments::Held(held) => {
                let Some(w) = storage::withdrawal(conn, held.withdrawal_id)? else {
                    return Err(HandlerError::Permanent(anyhow::anyhow!(
                        "no withdrawal {}",
                        held.withdrawal_id
                    )));
                };
                let from = [WithdrawalStatus::Requested];
                if storage::set_withdrawal_status(conn, &w.id, &from, WithdrawalStatus::Sending, None, now)? {
                    let asset = self.settings.asset(&w.currency).ok_or_else(|| {
                        HandlerError::Permanent(anyhow::anyhow!(
                            "withdrawal {}: {} is not on the chain",
                            w.id,
                            w.currency
                        ))
                    })?;
                    let tx = intent(conn, &w, &asset, now)?;
                    storage::insert_tx(conn, &tx)?;
                }
            }
            Payments::Refused(refused) => {
                let id = refused.withdrawal_id.to_string();
                let from = [WithdrawalStatus::Requested];
                storage::set_withdrawal_status(
                    conn,
                    &id,
                    &from,
                    WithdrawalStatus::Refused,
                    Some(&refused.reason),
                    now,
                )?;
            }
        }
        Ok(())
    }
}

/// The transaction a held withdrawal sends from the user's wallet, no nonce
/// yet (the pipeline gives it one): the amount in wei to the address, or a
/// token's `transfer` of it to the address.
fn intent(
    conn: &mut DbConnection,
    w: &WithdrawalRow,
    asset: &Asset,
    now: i64,
) -> Result<TxRow, HandlerError> {
    let permanent = |why: &str| HandlerError::Permanent(anyhow::anyhow!("withdrawal {}: {why}", w.id));
    let user = Uuid::parse_str(&w.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
    let wallet = storage::wallet_of(conn, user)?.ok_or_else(|| permanent("the user has no wallet"))?;
    let units =
        domain::to_units(w.amount.value(), asset.decimals).ok_or_else(|| permanent("no chain amount"))?;
    let to: Address = w.address.parse().map_err(|_| permanent("not an address"))?;
    let from: Address = wallet.address.parse().map_err(|_| permanent("the wallet's address"))?;
    let intent = transfer_intent(w.id.clone(), TxPurpose::Withdrawal, &w.user_id, from, asset, to, units);
    Ok(TxRow::queued(intent, now))
}

/// Moves the withdrawal of `tx` on to `to` from sending or sent (with
/// `reason` when it failed); the withdrawal (its id and row) when it moved,
/// for the caller to say so.
fn move_on(
    conn: &mut DbConnection,
    tx: &TxRow,
    to: WithdrawalStatus,
    reason: Option<&str>,
    now: i64,
) -> diesel::QueryResult<Option<(Uuid, Uuid, WithdrawalRow)>> {
    let Ok(id) = Uuid::parse_str(&tx.id) else { return Ok(None) };
    let Some(w) = storage::withdrawal(conn, id)? else { return Ok(None) };
    let from = [WithdrawalStatus::Sending, WithdrawalStatus::Sent];
    if !storage::set_withdrawal_status(conn, &w.id, &from, to, reason, now)? {
        return Ok(None);
    }
    let user = Uuid::parse_str(&w.user_id).unwrap_or_default();
    Ok(Some((id, user, w)))
}

/// The pipeline handed `tx` to the node (again, or a replacement).
pub fn sent(conn: &mut DbConnection, tx: &TxRow, now: i64, out: &mut Emitter) -> diesel::QueryResult<()> {
    if let Some((withdrawal_id, user_id, w)) = move_on(conn, tx, WithdrawalStatus::Sent, None, now)? {
        let tx_hash = tx.tx_hash.clone().unwrap_or_default();
        let event = WithdrawalSent {
            withdrawal_id,
            user_id,
            currency: w.currency,
            amount: w.amount,
            address: w.address,
            tx_hash,
        };
        out.send(&w.id, &event);
    }
    Ok(())
}

/// `tx` has its confirmations.
pub fn confirmed(
    conn: &mut DbConnection,
    tx: &TxRow,
    now: i64,
    out: &mut Emitter,
) -> diesel::QueryResult<()> {
    if let Some((withdrawal_id, user_id, w)) = move_on(conn, tx, WithdrawalStatus::Confirmed, None, now)? {
        let event = WithdrawalConfirmed {
            withdrawal_id,
            user_id,
            currency: w.currency,
            amount: w.amount,
            fee: w.fee,
            address: w.address,
            tx_hash: tx.tx_hash.clone().unwrap_or_default(),
            block_number: tx.block_number.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        };
        out.send(&w.id, &event);
    }
    Ok(())
}

/// `tx` will never be mined, or reverted (`tx.error` says why).
pub fn failed(conn: &mut DbConnection, tx: &TxRow, now: i64, out: &mut Emitter) -> diesel::QueryResult<()> {
    let reason = tx.error.clone().unwrap_or_else(|| "the transaction failed".into());
    if let Some((withdrawal_id, user_id, w)) =
        move_on(conn, tx, WithdrawalStatus::Failed, Some(&reason), now)?
    {
        let event = WithdrawalFailed {
            withdrawal_id,
            user_id,
            currency: w.currency,
            amount: w.amount,
            address: w.address,
            reason,
            tx_hash: tx.block_number.and(tx.tx_hash.clone()),
        };
        out.send(&w.id, &event);
    }
    Ok(())
}
