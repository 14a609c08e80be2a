//! Settlement on chain: trades settle in the ledger at once (payment-service);
//! the chain follows, window by window, so that every custodial wallet holds
//! on chain what its user holds in the ledger.
//!
//! ```text
//! funds.settled (each side of a trade, from payment-service)
//!   -> its legs in chain currencies, in the open window (paid: -, received: +, fee: owner `fees`)
//! window due (window_ms after it opened, or window_trades trades)
//!   -> `collecting`: net per wallet and asset; each payer's wallet sends its net to the clearing wallet
//! every collection confirmed
//!   -> `paying`: the clearing wallet sends each receiver its net, and the fees to the fee wallet
//! every payment confirmed
//!   -> `settled`: settlement.confirmed to each user (their transactions, their hashes)
//! ```
//!
//! One transaction per wallet and asset per window, each through the
//! pipeline (`settle:<window>:<owner>:<currency>`); its gas paid by the gas
//! wallet first (never from what the user holds). A window never blocks
//! trading: the ledger does not wait for it. A transaction that fails fails
//! its window (`failed`, with the reason): the audit then shows the wallet
//! apart from its ledger until the operators settle it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::rounds::RoundError;
use alloy::primitives::Address;
use bourse_common::catalog::{FundsSettled, SettlementConfirmed, SettlementLeg};
use bourse_common::db::{DbConnection, DbError};
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use uuid::Uuid;

use crate::PRODUCER;
use crate::domain::{self, CLEARING_OWNER, FEES_OWNER, TxPurpose, TxStatus, WindowStatus};
use crate::pipeline::transfer_intent;
use crate::settings::Settings;
use crate::storage::{self, LegRow, TxRow, WindowRow};

bourse_common::inbound! {
    /// What the queue `chain-service.settlements` takes (from payment-service).
    pub enum Trades {
        Settled(FundsSettled),
    }
}

/// Records each settled trade side's legs in the open window, in the inbox transaction.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub settings: Arc<Settings>,
}

impl Handle<Trades> for Recorder {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Trades,
        _: &Envelope,
        _: &mut Emitter,
    ) -> Result<(), HandlerError> {
        let Trades::Settled(side) = message;
        let on_chain = |currency: &str| self.settings.asset(currency).is_some();
        let (trade, order, user) =
            (side.trade_id.to_string(), side.order_id.to_string(), side.user_id.to_string());
        let mut legs = Vec::new();
        let mut leg = |owner: &str, currency: &str, delta: rust_decimal::Decimal| {
            if on_chain(currency) && !delta.is_zero() {
                legs.push(LegRow {
                    trade_id: trade.clone(),
                    order_id: order.clone(),
                    owner: owner.to_string(),
                    currency: currency.to_string(),
                    delta: delta.into(),
                    window_id: String::new(),
                });
            }
        };
        leg(&user, &side.paid_currency, -side.paid.value());
        leg(&user, &side.received_currency, side.received.value());
        leg(FEES_OWNER, &side.received_currency, side.fee.value());
        if legs.is_empty() {
            return Ok(());
        }
        storage::lock_windows(conn)?;
        let now = now_micros();
        let window = match storage::open_window(conn)? {
            Some(w) => w.id,
            None => {
                let w = new_window(now);
                storage::insert_window(conn, &w)?;
                w.id
            }
        };
        for l in &mut legs {
            l.window_id.clone_from(&window);
        }
        storage::insert_legs(conn, &window, &legs)?;
        Ok(())
    }
}

/// The clearing wallet and the fee wallet.
#[derive(Debug, Clone, Copy)]
pub struct Wallets {
    pub clearing: Address,
    pub fees: Address,
}

/// One round of the windows (in the pipeline's round, by the lease's holder):
/// closes a due window, moves collected windows on to paying, paid ones to
/// settled. Database only: the pipeline sends what this queues.
pub fn round(conn: &mut DbConnection, settings: &Settings, wallets: Wallets) -> Result<(), RoundError> {
    let now = now_micros();
    let s = &settings.settlement;
    storage::lock_windows(conn)?;
    if let Some(open) = storage::open_window(conn)? {
        let trades = u32::try_from(open.trades).unwrap_or(0);
        if domain::window_due(open.opened_at, trades, now, s.window_ms, s.window_trades)
            && whole_trades_only(conn, &open, now)?
            && storage::set_window_status(
                conn,
                &open.id,
                WindowStatus::Open,
                WindowStatus::Collecting,
                None,
                now,
            )?
        {
            let queued = queue(conn, settings, wallets, &open.id, Step::Collect)?;
            tracing::info!(window = %open.id, trades, transactions = queued, "settlement window closed");
        }
    }
    for w in storage::windows_in(conn, &[WindowStatus::Collecting, WindowStatus::Paying])? {
        let txs = storage::window_txs(conn, &w.id)?;
        if let Some(failed) = txs.iter().find(|t| t.status == TxStatus::Failed) {
            let reason = format!("{}: {}", failed.id, failed.error.as_deref().unwrap_or("failed"));
            fail(conn, &w, &reason, now)?;
        } else if !txs.iter().all(|t| t.status == TxStatus::Confirmed) {
            continue;
        } else if w.status == WindowStatus::Collecting {
            queue(conn, settings, wallets, &w.id, Step::Pay)?;
            storage::set_window_status(
                conn,
                &w.id,
                WindowStatus::Collecting,
                WindowStatus::Paying,
                None,
                now,
            )?;
        } else if storage::set_window_status(
            conn,
            &w.id,
            WindowStatus::Paying,
            WindowStatus::Settled,
            None,
            now,
        )? {
            tracing::info!(window = %w.id, transactions = txs.len(), "settlement window settled on chain");
            tell_users(conn, &w, &txs)?;
        }
    }
    Ok(())
}

/// A window settles whole trades: the side of a trade whose other side has
/// not arrived yet (each side is its own `funds.settled`) moves on to a new
/// open window, so that what a window pays out it has collected. `false`:
/// no whole trade yet, the window stays open.
fn whole_trades_only(conn: &mut DbConnection, open: &WindowRow, now: i64) -> Result<bool, RoundError> {
    let legs = storage::legs_of(conn, &open.id)?;
    let mut sides: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for l in &legs {
        sides.entry(&l.trade_id).or_default().insert(&l.order_id);
    }
    let halves: Vec<String> = sides.iter().filter(|(_, s)| s.len() < 2).map(|(t, _)| t.to_string()).collect();
    if halves.is_empty() {
        return Ok(true);
    }
    if halves.len() == sides.len() {
        return Ok(false);
    }
    let next = new_window(now);
    storage::insert_window(conn, &next)?;
    storage::move_trades(conn, &halves, &open.id, &next.id)?;
    Ok(true)
}

/// A window opening now.
fn new_window(now: i64) -> WindowRow {
    WindowRow {
        id: Uuid::now_v7().to_string(),
        status: WindowStatus::Open,
        trades: 0,
        reason: None,
        opened_at: now,
        closed_at: None,
        settled_at: None,
        updated_at: now,
    }
}

fn fail(conn: &mut DbConnection, w: &WindowRow, reason: &str, now: i64) -> Result<(), RoundError> {
    tracing::error!(window = %w.id, %reason, "ALERT: a settlement window failed");
    storage::set_window_status(conn, &w.id, w.status, WindowStatus::Failed, Some(reason), now)?;
    Ok(())
}

/// A window's net per owner and currency, from its legs.
fn nets(legs: &[LegRow]) -> BTreeMap<(String, String), rust_decimal::Decimal> {
    domain::net(legs.iter().map(|l| (l.owner.as_str(), l.currency.as_str(), l.delta.value())))
}

/// The two steps of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Each payer's wallet sends its net to the clearing wallet.
    Collect,
    /// The clearing wallet sends each receiver its net (the fees to the fee wallet).
    Pay,
}

/// Queues the transactions of `step` for window `id`: how many. A window
/// that cannot be settled (a user without a wallet) fails, with the reason.
fn queue(
    conn: &mut DbConnection,
    settings: &Settings,
    wallets: Wallets,
    id: &str,
    step: Step,
) -> Result<usize, RoundError> {
    let nets = nets(&storage::legs_of(conn, id)?);
    let now = now_micros();
    let mut txs = Vec::new();
    for ((owner, currency), amount) in &nets {
        let paying = amount.is_sign_negative();
        let Some(asset) = settings.asset(currency) else { continue };
        if paying != (step == Step::Collect) {
            continue;
        }
        let wallet = match owner.as_str() {
            FEES_OWNER => Some(wallets.fees),
            user => Uuid::parse_str(user)
                .ok()
                .map(|u| storage::wallet_of(conn, u))
                .transpose()?
                .flatten()
                .and_then(|w| w.address.parse::<Address>().ok()),
        };
        let Some(wallet) = wallet else {
            let w =
                storage::window(conn, id)?.ok_or_else(|| RoundError::Config(format!("no window {id}")))?;
            fail(conn, &w, &format!("{owner} has no wallet to settle {currency} with"), now)?;
            return Ok(0);
        };
        let Some(units) = domain::to_units(amount.abs(), asset.decimals) else {
            return Err(RoundError::Config(format!("{amount} {currency} has no chain amount")));
        };
        let (user, from, to) = match step {
            Step::Collect => (owner.as_str(), wallet, wallets.clearing),
            Step::Pay => (CLEARING_OWNER, wallets.clearing, wallet),
        };
        let tx_id = domain::settlement_tx_id(id, owner, currency);
        txs.push(TxRow::queued(
            transfer_intent(tx_id, TxPurpose::Settlement, user, from, &asset, to, units),
            now,
        ));
    }
    for tx in &txs {
        storage::insert_tx(conn, tx)?;
    }
    Ok(txs.len())
}

/// Each user of a settled window gets `settlement.confirmed`: their net per
/// currency with the transaction that moved it.
fn tell_users(conn: &mut DbConnection, w: &WindowRow, txs: &[TxRow]) -> Result<(), DbError> {
    let legs = storage::legs_of(conn, &w.id)?;
    let mut trades: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for l in legs.iter().filter(|l| l.owner != FEES_OWNER) {
        trades.entry(&l.owner).or_default().insert(&l.trade_id);
    }
    let nets = nets(&legs);
    let Ok(window_id) = Uuid::parse_str(&w.id) else { return Ok(()) };
    let mut out = Emitter::new(PRODUCER);
    for (user, trades) in trades {
        let Ok(user_id) = Uuid::parse_str(user) else { continue };
        let legs: Vec<SettlementLeg> = nets
            .iter()
            .filter(|((owner, _), _)| owner == user)
            .filter_map(|((owner, currency), amount)| {
                let id = domain::settlement_tx_id(&w.id, owner, currency);
                let tx = txs.iter().find(|t| t.id == id)?;
                Some(SettlementLeg {
                    currency: currency.clone(),
                    amount: (*amount).into(),
                    tx_hash: tx.tx_hash.clone().unwrap_or_default(),
                    block_number: tx.block_number.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                })
            })
            .collect();
        if legs.is_empty() {
            continue;
        }
        let trades = u32::try_from(trades.len()).unwrap_or(u32::MAX);
        out.send(&w.id, &SettlementConfirmed { window_id, user_id, trades, legs });
    }
    out.flush(conn)?;
    Ok(())
}
