//! What payment-service does with the messages it consumes, each inside the
//! inbox transaction. One typed enum per queue, decoded once, handled by a
//! `match` on types:
//!
//! | queue | messages | effect |
//! | --- | --- | --- |
//! | `payment-service.users` | [`Users`]: `user.registered` | open an account in every currency |
//! | `payment-service.commands` | [`Commands`]: `payment.reserve-funds`, `payment.release-funds` | reserve (or reject), release what an order holds |
//! | `payment-service.matching` | [`Matching`]: `trade.executed`, `order.updated` | settle a trade; release what an ended order still holds |

use std::collections::BTreeMap;
use std::sync::Arc;

use bourse_common::catalog::{
    FundsRejected, FundsReleased, FundsReserved, FundsSettled, OrderUpdated, ReleaseFunds, ReserveFunds,
    TradeExecuted, UserRegistered,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use uuid::Uuid;

use crate::domain::{self, ReservationStatus};
use crate::settings::Settings;
use crate::storage;

bourse_common::inbound! {
    /// What the queue `payment-service.users` takes.
    pub enum Users {
        Registered(UserRegistered),
    }
}

bourse_common::inbound! {
    /// What the queue `payment-service.commands` takes (from order-service).
    pub enum Commands {
        Reserve(ReserveFunds),
        Release(ReleaseFunds),
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
}

impl Handlers {
    pub fn new(settings: Settings) -> Self {
        Self { settings: Arc::new(settings) }
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
            Commands::Release(cmd) => release(conn, cmd.order_id, cmd.user_id, out),
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
            Matching::Trade(trade) => trade_executed(&self.settings, conn, &trade, out),
            // An order that can fill no more gives back what it still holds.
            Matching::Order(update) if update.status.is_final() => {
                release(conn, update.order_id, update.user_id, out)
            }
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

/// Moves the order's amount from available to reserved, or says why not.
pub fn reserve_funds(
    reference: &ReferenceData,
    conn: &mut DbConnection,
    cmd: &ReserveFunds,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
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

/// Releases what the order still holds reserved, and says how much (zero when nothing was).
pub fn release(
    conn: &mut DbConnection,
    order_id: Uuid,
    user_id: Uuid,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let now = now_micros();
    let released = match storage::reservation(conn, order_id)? {
        Some(r) if r.status == ReservationStatus::Active => {
            // The reservation's owner, whoever the message names.
            let user = Uuid::parse_str(&r.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
            let balance = storage::lock_balance(conn, user, &r.currency, now)?;
            let movement = balance.release(r.remaining.value());
            storage::apply(conn, user, &r.currency, balance, &movement, &order_reference(order_id), now)?;
            storage::close_reservation(conn, order_id, ReservationStatus::Released, now)?;
            Some((r.currency, r.remaining))
        }
        Some(r) => Some((r.currency, Amount::ZERO)),
        None => None,
    };
    let (currency, amount) = released.unwrap_or_default();
    out.reply(&FundsReleased { order_id, user_id, currency, amount });
    Ok(())
}

/// Settles both sides of a trade in one transaction, fees to the fee account,
/// and tells each side what it paid and received (`funds.settled`). The rule
/// is [`domain::settle_trade`]; here its accounts are locked (in its lock
/// order), the reservations read, its result recorded.
pub fn trade_executed(
    settings: &Settings,
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
    let mut balances = BTreeMap::new();
    for account in deal.accounts(base, quote) {
        let balance = storage::lock_balance(conn, account.user, &account.currency, now)?;
        balances.insert(account, balance);
    }
    let mut held = |order: Uuid| -> Result<_, HandlerError> {
        Ok(storage::reservation(conn, order)?.map(|r| r.remaining.value()))
    };
    let held = domain::Held { buyer: held(deal.buyer().order_id)?, seller: held(deal.seller().order_id)? };
    let settlement = domain::settle_trade(&deal, rates, base, quote, &balances, held)
        .map_err(|e| permanent(e.to_string()))?;

    let trade_ref = format!("trade:{}", trade.trade_id);
    for leg in &settlement.legs {
        let (user, currency) = (leg.account.user, &leg.account.currency);
        storage::apply(conn, user, currency, leg.before, &leg.movement, &trade_ref, now)?;
    }
    for (order, remaining) in settlement.reservations {
        storage::consume_reservation(conn, order, remaining.into(), now)?;
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
    Ok(())
}
