//! What payment-service does with the messages it consumes, each inside the
//! inbox transaction. One typed enum per queue, decoded once, handled by a
//! `match` on types:
//!
//! | queue | messages | effect |
//! | --- | --- | --- |
//! | `payment-service.users` | [`Users`]: `user.registered` | open an account in every currency |
//! | `payment-service.commands` | [`Commands`]: `payment.reserve-funds`, `payment.release-funds`, `payment.hold-withdrawal` | reserve (or reject), release what an order holds; hold a withdrawal's amount and fee |
//! | `payment-service.chain` | [`Chain`]: `deposit.confirmed`, `withdrawal.confirmed`, `withdrawal.failed` | credit a deposit; debit or release what a withdrawal holds |
//! | `payment-service.matching` | [`Matching`]: `trade.executed`, `order.updated` | settle a trade; release what an ended order still holds once its fills are settled |
//!
//! Whatever order an order's messages arrive in (a retry brings one back
//! after later ones), they end in the same balances and reservation: a
//! reservation closes when both its order's end (a final `order.updated`,
//! with the book's filled quantity) and every fill that end implies are
//! settled, by whichever of the two comes last; a release before the
//! reserve leaves a tombstone that refuses the reserve. The rules are
//! [`domain::order_ended`], [`domain::release_requested`],
//! [`domain::Reserve`] and [`domain::Reservation::fill`].

use std::sync::Arc;

use bourse_common::catalog::{
    DepositConfirmed, FundsRejected, FundsReleased, FundsReserved, FundsSettled, HoldWithdrawal,
    OrderUpdated, ReleaseFunds, ReserveFunds, TradeExecuted, UserRegistered, WithdrawalConfirmed,
    WithdrawalFailed, WithdrawalHeld, WithdrawalRefused,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::faults::Faults;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use uuid::Uuid;

use crate::domain::{self, HoldAction, HoldStatus, Release, Reserve, WithdrawalEnd};
use crate::settings::Settings;
use crate::storage;

bourse_common::inbound! {
    /// What the queue `payment-service.users` takes.
    pub enum Users {
        Registered(UserRegistered),
    }
}

bourse_common::inbound! {
    /// What the queue `payment-service.chain` takes (from chain-service).
    pub enum Chain {
        Deposit(DepositConfirmed),
        WithdrawalConfirmed(WithdrawalConfirmed),
        WithdrawalFailed(WithdrawalFailed),
    }
}

bourse_common::inbound! {
    /// What the queue `payment-service.commands` takes (from order-service and chain-service).
    pub enum Commands {
        Reserve(ReserveFunds),
        Release(ReleaseFunds),
        HoldWithdrawal(HoldWithdrawal),
    }
}

bourse_common::inbound! {
    /// What the queue `payment-service.matching` takes, in the order
    /// matching-service sends it: a trade settles before its order's rest is released.
    pub enum Matching {
        Trade(TradeExecuted),
        Order(OrderUpdated),
    }
}

/// The handler of every queue, with the settings it reads.
#[derive(Debug, Clone)]
pub struct Handlers {
    settings: Arc<Settings>,
    /// The service's fault injection points (the bus's): off unless a test arms one.
    pub faults: Arc<Faults>,
}

impl Handlers {
    pub fn new(settings: Settings) -> Self {
        Self { settings: Arc::new(settings), faults: Arc::default() }
    }
}

impl Handle<Users> for Handlers {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Users,
        _: &Envelope,
        _: &mut Emitter,
    ) -> Result<(), HandlerError> {
        storage::lock_ledger(conn)?;
        match message {
            Users::Registered(event) => user_registered(&self.settings.reference, conn, &event),
        }
    }
}

impl Handle<Chain> for Handlers {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Chain,
        _: &Envelope,
        _: &mut Emitter,
    ) -> Result<(), HandlerError> {
        storage::lock_ledger(conn)?;
        match message {
            Chain::Deposit(deposit) => deposit_confirmed(&self.settings.reference, conn, &deposit),
            Chain::WithdrawalConfirmed(w) => {
                withdrawal_ended(conn, w.withdrawal_id, WithdrawalEnd::Confirmed)
            }
            Chain::WithdrawalFailed(w) => withdrawal_ended(conn, w.withdrawal_id, WithdrawalEnd::Failed),
        }
    }
}

impl Handle<Commands> for Handlers {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Commands,
        _: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        storage::lock_ledger(conn)?;
        match message {
            Commands::Reserve(cmd) => reserve_funds(&self.settings.reference, conn, &cmd, out),
            Commands::Release(cmd) => release_funds(conn, &cmd, out),
            Commands::HoldWithdrawal(cmd) => hold_withdrawal(&self.settings.reference, conn, &cmd, out),
        }
    }
}

impl Handle<Matching> for Handlers {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Matching,
        _: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        storage::lock_ledger(conn)?;
        match message {
            Matching::Trade(trade) => trade_executed(&self.settings, &self.faults, conn, &trade, out),
            // An order that can fill no more gives back what it still holds, once its fills are settled.
            Matching::Order(update) if update.status.is_final() => order_ended(conn, &update, out),
            // Resting, or partly filled: the trades carry the money.
            Matching::Order(_) => Ok(()),
        }
    }
}

/// The ledger reference of an order's movements.
fn order_reference(order_id: Uuid) -> String {
    format!("order:{order_id}")
}

/// Opens an account in every currency for a new user.
pub fn user_registered(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    event: &UserRegistered,
) -> Result<(), HandlerError> {
    for currency in &reference.currencies {
        storage::open_account(conn, event.user_id, &currency.code, now_micros())?;
    }
    Ok(())
}

/// Credits a confirmed deposit, once: its ledger reference is the deposit id,
/// so the same deposit sent again (whatever its message id) credits nothing.
pub fn deposit_confirmed(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    deposit: &DepositConfirmed,
) -> Result<(), HandlerError> {
    let currency = reference.currency(&deposit.currency).ok_or_else(|| {
        HandlerError::Permanent(anyhow::anyhow!(
            "deposit {}: no currency {}",
            deposit.deposit_id,
            deposit.currency
        ))
    })?;
    let amount = deposit
        .amount
        .check_scale(currency)
        .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("deposit {}: {e}", deposit.deposit_id)))?;
    let cause = format!("deposit:{}", deposit.deposit_id);
    if storage::has_entries(conn, &cause)? || amount.value().is_zero() {
        return Ok(());
    }
    let now = now_micros();
    let balance = storage::lock_balance(conn, deposit.user_id, &deposit.currency, now)?;
    let movement = balance.deposit(amount.value());
    storage::apply(conn, deposit.user_id, &deposit.currency, balance, &movement, &cause, now)?;
    Ok(())
}

/// The ledger reference of a withdrawal's movements.
fn withdrawal_reference(withdrawal_id: Uuid) -> String {
    format!("withdrawal:{withdrawal_id}")
}

/// `payment.hold-withdrawal`: reserves the amount and the fee, or says why
/// not; decided once per withdrawal (the command sent again changes nothing).
pub fn hold_withdrawal(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    cmd: &HoldWithdrawal,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    if storage::hold(conn, cmd.withdrawal_id)?.is_some() {
        return Ok(());
    }
    let now = now_micros();
    let checked = match reference.currency(&cmd.currency) {
        None => Err(format!("unknown currency {}", cmd.currency)),
        Some(currency) => cmd
            .amount
            .positive_in(currency)
            .and_then(|_| cmd.fee.check_scale(currency))
            .map_err(|e| e.to_string())
            .and_then(|fee| {
                if fee.value().is_sign_negative() { Err("a negative fee".to_string()) } else { Ok(()) }
            }),
    };
    let held = checked.and_then(|()| {
        let balance = storage::lock_balance(conn, cmd.user_id, &cmd.currency, now).map_err(|e| e.to_string());
        balance.map(|b| (b, b.reserve(cmd.amount.value() + cmd.fee.value())))
    });
    let refused = match held {
        Ok((balance, Ok(movement))) => {
            let cause = withdrawal_reference(cmd.withdrawal_id);
            storage::apply(conn, cmd.user_id, &cmd.currency, balance, &movement, &cause, now)?;
            None
        }
        Ok((_, Err(insufficient))) => Some(format!("{insufficient} {}", cmd.currency)),
        Err(reason) => Some(reason),
    };
    storage::insert_hold(
        conn,
        &storage::HoldRow {
            withdrawal_id: cmd.withdrawal_id.to_string(),
            user_id: cmd.user_id.to_string(),
            currency: cmd.currency.clone(),
            amount: cmd.amount,
            fee: cmd.fee,
            status: if refused.is_some() { HoldStatus::Refused } else { HoldStatus::Held },
            reason: refused.clone(),
            created_at: now,
            updated_at: now,
        },
    )?;
    match refused {
        None => out.reply(&WithdrawalHeld { withdrawal_id: cmd.withdrawal_id, user_id: cmd.user_id }),
        Some(reason) => {
            out.reply(&WithdrawalRefused { withdrawal_id: cmd.withdrawal_id, user_id: cmd.user_id, reason })
        }
    };
    Ok(())
}

/// `withdrawal.confirmed` debits what the withdrawal holds (the amount leaves,
/// the fee is the exchange's); `withdrawal.failed` gives it all back. Once.
pub fn withdrawal_ended(
    conn: &mut DbConnection,
    withdrawal_id: Uuid,
    end: WithdrawalEnd,
) -> Result<(), HandlerError> {
    let hold = storage::hold(conn, withdrawal_id)?;
    let action = domain::withdrawal_ended(hold.as_ref().map(|h| h.status), end)
        .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("withdrawal {withdrawal_id}: {e}")))?;
    let Some(hold) = hold.filter(|_| action == HoldAction::Apply) else { return Ok(()) };
    let owner = Uuid::parse_str(&hold.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
    let now = now_micros();
    let balance = storage::lock_balance(conn, owner, &hold.currency, now)?;
    let (amount, fee) = (hold.amount.value(), hold.fee.value());
    let (movement, status) = match end {
        WithdrawalEnd::Confirmed => (balance.withdraw(amount, fee), HoldStatus::Debited),
        WithdrawalEnd::Failed => (balance.release(amount + fee), HoldStatus::Released),
    };
    storage::apply(
        conn,
        owner,
        &hold.currency,
        balance,
        &movement,
        &withdrawal_reference(withdrawal_id),
        now,
    )?;
    storage::set_hold_status(conn, withdrawal_id, status, now)?;
    Ok(())
}

/// Moves the order's amount from available to reserved, or says why not.
pub fn reserve_funds(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    cmd: &ReserveFunds,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let reject = |out: &mut Emitter, reason: String| {
        out.reply(&FundsRejected {
            order_id: cmd.order_id,
            user_id: cmd.user_id,
            currency: cmd.currency.clone(),
            amount: cmd.amount,
            reason,
        });
    };
    let existing = storage::reservation(conn, cmd.order_id)?;
    match Reserve::of(existing.map(|r| r.rules()).as_ref()) {
        Reserve::Fresh => {}
        // This order's funds were decided already (the command came twice).
        Reserve::Decided => return Ok(()),
        Reserve::Refused(why) => {
            reject(out, format!("order {}: {why}", cmd.order_id));
            return Ok(());
        }
    }
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
            storage::insert_reservation(
                conn,
                cmd.order_id,
                cmd.user_id,
                &cmd.currency,
                cmd.amount,
                cmd.limit_price,
                now,
            )?;
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

/// `payment.release-funds`: the order was cancelled before it reached its
/// book (no fill can come), so what it holds goes back at once.
pub fn release_funds(
    conn: &mut DbConnection,
    cmd: &ReleaseFunds,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let reservation = storage::reservation(conn, cmd.order_id)?;
    let release = domain::release_requested(reservation.as_ref().map(|r| r.rules()).as_ref());
    apply_release(conn, cmd.order_id, cmd.user_id, reservation, release, out)
}

/// A final `order.updated`: the order's end, with the book's filled quantity.
/// What it still holds goes back now if every fill up to that is settled;
/// else the end is recorded and the trade that settles the last fill releases it.
pub fn order_ended(
    conn: &mut DbConnection,
    update: &OrderUpdated,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let reservation = storage::reservation(conn, update.order_id)?;
    let release =
        domain::order_ended(reservation.as_ref().map(|r| r.rules()).as_ref(), update.filled_quantity.value())
            .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("order {}: {e}", update.order_id)))?;
    apply_release(conn, update.order_id, update.user_id, reservation, release, out)
}

/// Records what [`domain::release_requested`] or [`domain::order_ended`]
/// decided, and says what was released (`funds.released`, zero when nothing
/// was), except while an ended order waits for its fills.
fn apply_release(
    conn: &mut DbConnection,
    order_id: Uuid,
    user_id: Uuid,
    reservation: Option<storage::ReservationRow>,
    release: Release,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let now = now_micros();
    let currency = reservation.map(|r| r.currency).unwrap_or_default();
    match release {
        // What it holds, read again with the balance locked.
        Release::Now(_) => release_rest(conn, order_id, user_id, now, out),
        Release::AfterFills { filled } => Ok(storage::end_reservation(conn, order_id, filled.into(), now)?),
        Release::Void => {
            storage::void_reservation(conn, order_id, user_id, now)?;
            released(out, order_id, user_id, currency, Amount::ZERO);
            Ok(())
        }
        Release::Closed => {
            released(out, order_id, user_id, currency, Amount::ZERO);
            Ok(())
        }
        Release::Waiting => Ok(()),
    }
}

/// Gives back what the order's reservation still holds (to the reservation's
/// owner, whoever the message names), closes it, and says so.
fn release_rest(
    conn: &mut DbConnection,
    order_id: Uuid,
    user_id: Uuid,
    now: i64,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let Some(r) = storage::reservation(conn, order_id)? else {
        return Err(HandlerError::Permanent(anyhow::anyhow!(
            "order {order_id} has no reservation to release"
        )));
    };
    let owner = Uuid::parse_str(&r.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
    let balance = storage::lock_balance(conn, owner, &r.currency, now)?;
    let movement = balance.release(r.remaining.value());
    storage::apply(conn, owner, &r.currency, balance, &movement, &order_reference(order_id), now)?;
    storage::close_reservation(conn, order_id, domain::ReservationStatus::Released, now)?;
    released(out, order_id, user_id, r.currency, r.remaining);
    Ok(())
}

/// `funds.released`, in the order's saga.
fn released(out: &mut Emitter, order_id: Uuid, user_id: Uuid, currency: String, amount: Amount) {
    out.send(&order_id.to_string(), &FundsReleased { order_id, user_id, currency, amount });
}

/// Settles both sides of a trade in one transaction, fees to the fee account,
/// and tells each side what it paid and received (`funds.settled`). The rule
/// is [`domain::settle_trade`]; here its accounts are locked (in its lock
/// order), the reservations read, its result recorded.
pub fn trade_executed(
    settings: &Settings,
    faults: &Faults,
    conn: &mut DbConnection,
    trade: &TradeExecuted,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let permanent =
        |what: String| HandlerError::Permanent(anyhow::anyhow!("trade {}: {what}", trade.trade_id));
    let reference = &settings.reference;
    let market =
        reference.market(&trade.market).ok_or_else(|| permanent(format!("no market {}", trade.market)))?;
    let (Some(base), Some(quote)) = (reference.currency(&market.base), reference.currency(&market.quote))
    else {
        return Err(permanent("unknown currency".into()));
    };
    let deal = domain::Trade {
        price: trade.price.value(),
        quantity: trade.quantity.value(),
        taker_side: trade.taker_side,
        taker: domain::Party { order_id: trade.taker_order_id, user_id: trade.taker_user_id },
        maker: domain::Party { order_id: trade.maker_order_id, user_id: trade.maker_user_id },
    };
    let rates = domain::FeeRates { maker: settings.maker_fee_rate, taker: settings.taker_fee_rate };
    let now = now_micros();
    let balances = storage::lock_balances(conn, &deal.accounts(base, quote), now)?;
    let (buyer, seller) = (deal.buyer().order_id, deal.seller().order_id);
    let reservations = storage::reservations_of(conn, &[buyer, seller])?;
    let held = |order: Uuid| {
        let id = order.to_string();
        reservations.iter().find(|r| r.order_id == id).map(|r| r.rules())
    };
    let held = domain::Held { buyer: held(buyer), seller: held(seller) };
    let settlement = domain::settle_trade(&deal, rates, base, quote, &balances, held)
        .map_err(|e| permanent(e.to_string()))?;

    let trade_ref = format!("trade:{}", trade.trade_id);
    storage::apply_legs(conn, &settlement.legs, &trade_ref, now)?;
    if faults.should_credit_twice() {
        // A bug on purpose, for the chaos harness to find: the buyer's proceeds credited again.
        let buyer = deal.buyer().user_id;
        if let Some(leg) =
            settlement.legs.iter().rev().find(|l| l.account.user == buyer && l.account.currency == base.code)
        {
            let now_held = storage::lock_balance(conn, buyer, &base.code, now)?;
            storage::apply(conn, buyer, &base.code, now_held, &leg.movement, &trade_ref, now)?;
        }
    }
    let mut ended = Vec::new();
    for (filled, party) in settlement.reservations.iter().zip([deal.buyer(), deal.seller()]) {
        storage::fill_reservation(
            conn,
            filled.order,
            filled.remaining.into(),
            filled.settled.map(Into::into),
            now,
        )?;
        if filled.closes {
            ended.push(party);
        }
    }
    for side in settlement.sides {
        let remaining = if side.maker { trade.maker_remaining } else { trade.taker_remaining };
        out.send(
            &side.party.order_id.to_string(),
            &FundsSettled {
                trade_id: trade.trade_id,
                order_id: side.party.order_id,
                user_id: side.party.user_id,
                market: trade.market.clone(),
                side: side.side,
                maker: side.maker,
                price: trade.price,
                quantity: trade.quantity,
                paid_currency: side.paid_currency,
                paid: side.paid.into(),
                received_currency: side.received_currency,
                received: side.received.into(),
                fee: side.fee.into(),
                remaining,
            },
        );
    }
    // The last fill of an order whose end came first: its rest goes back now.
    for party in ended {
        release_rest(conn, party.order_id, party.user_id, now, out)?;
    }
    Ok(())
}
