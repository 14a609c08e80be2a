//! What payment-service does with the messages it consumes, each inside the
//! inbox transaction: open accounts for a new user, reserve and release
//! funds, settle trades, release what an ended order still holds.

use bourse_common::catalog::{
    FundsRejected, FundsReleased, FundsReserved, FundsSettled, OrderUpdated, ReleaseFunds, ReserveFunds,
    Side, TradeExecuted, UserRegistered,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{Settings, domain, storage};

/// The ledger reference of an order's movements.
fn order_reference(order_id: Uuid) -> String {
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
    release(conn, cmd.order_id, cmd.user_id, out)
}

/// Releases what the order still holds reserved, and says how much (zero when nothing was).
fn release(
    conn: &mut DbConnection,
    order_id: Uuid,
    user_id: Uuid,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let now = now_micros();
    let released = match storage::reservation(conn, order_id)? {
        Some(r) if r.status == "active" => {
            // The reservation's owner, whoever the message names.
            let user = Uuid::parse_str(&r.user_id).map_err(|e| HandlerError::Permanent(e.into()))?;
            let balance = storage::lock_balance(conn, user, &r.currency, now)?;
            let movement = balance.release(r.remaining.value());
            storage::apply(conn, user, &r.currency, balance, &movement, &order_reference(order_id), now)?;
            storage::close_reservation(conn, order_id, "released", now)?;
            Some((r.currency, r.remaining))
        }
        Some(r) => Some((r.currency, Amount::ZERO)),
        None => None,
    };
    let (currency, amount) = released.unwrap_or_default();
    out.reply(&FundsReleased { order_id, user_id, currency, amount });
    Ok(())
}

/// The event types of the matching queue, in the order matching-service sends them.
pub const MATCHING_EVENTS: [&str; 2] = [TradeExecuted::TYPE, OrderUpdated::TYPE];

/// A message of the matching queue, to its handler.
pub fn matching_event(
    settings: &Settings,
    conn: &mut DbConnection,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    match message.message_type.as_str() {
        TradeExecuted::TYPE => trade_executed(settings, conn, message, out),
        OrderUpdated::TYPE => {
            let update: OrderUpdated = message.payload()?;
            // An order that can fill no more gives back what it still holds.
            if update.status.is_final() {
                release(conn, update.order_id, update.user_id, out)
            } else {
                Ok(())
            }
        }
        _ => Err(HandlerError::unexpected(message)),
    }
}

/// Settles both sides of a trade in one transaction, fees to the fee account,
/// and tells each side what it paid and received (`funds.settled`).
fn trade_executed(
    settings: &Settings,
    conn: &mut DbConnection,
    message: &Envelope,
    out: &mut Emitter,
) -> Result<(), HandlerError> {
    let trade: TradeExecuted = message.payload()?;
    let permanent =
        |what: String| HandlerError::Permanent(anyhow::anyhow!("trade {}: {what}", trade.trade_id));
    let reference = &settings.reference;
    let market =
        reference.market(&trade.market).ok_or_else(|| permanent(format!("no market {}", trade.market)))?;
    let (base, quote) = match (reference.currency(&market.base), reference.currency(&market.quote)) {
        (Some(b), Some(q)) => (b.clone(), q.clone()),
        _ => return Err(permanent("unknown currency".into())),
    };
    let taker_buys = trade.taker_side == Side::Buy;
    let (buyer, buyer_order, seller, seller_order) = if taker_buys {
        (trade.taker_user_id, trade.taker_order_id, trade.maker_user_id, trade.maker_order_id)
    } else {
        (trade.maker_user_id, trade.maker_order_id, trade.taker_user_id, trade.taker_order_id)
    };
    let (taker_rate, maker_rate) = (settings.taker_fee_rate, settings.maker_fee_rate);
    let (buyer_rate, seller_rate) =
        if taker_buys { (taker_rate, maker_rate) } else { (maker_rate, taker_rate) };
    let (price, quantity) = (trade.price.value(), trade.quantity.value());
    let mut legs = domain::settle(price, quantity, buyer_rate, seller_rate, base.scale, quote.scale);
    // Accounts are locked in one order, so that concurrent settlements never deadlock.
    let account = |leg: &domain::SettlementLeg| {
        let user = if leg.buyer { buyer } else { seller };
        let currency = if leg.currency_is_base { &base.code } else { &quote.code };
        (user, currency.clone())
    };
    legs.sort_by_key(|leg| account(leg));
    let now = now_micros();
    let trade_ref = format!("trade:{}", trade.trade_id);
    for leg in &legs {
        let (user, currency) = account(leg);
        let balance = storage::lock_balance(conn, user, &currency, now)?;
        let after = balance.apply(&leg.movement);
        if after.reserved < Decimal::ZERO || after.available < Decimal::ZERO {
            return Err(permanent(format!("{user} would hold a negative {currency} balance")));
        }
        storage::apply(conn, user, &currency, balance, &leg.movement, &trade_ref, now)?;
    }
    for (order, spent) in [(buyer_order, price * quantity), (seller_order, quantity)] {
        let held = storage::reservation(conn, order)?
            .ok_or_else(|| permanent(format!("order {order} holds nothing")))?;
        let remaining = held.remaining.value() - spent;
        if remaining < Decimal::ZERO {
            return Err(permanent(format!("order {order} spent more than it reserved")));
        }
        storage::consume_reservation(conn, order, remaining.into(), now)?;
    }
    for buyer_side in [true, false] {
        // What this side received and its fee, as the legs just applied moved them.
        let credit = |account| {
            legs.iter()
                .filter(|leg| leg.buyer == buyer_side)
                .flat_map(|leg| &leg.movement.legs)
                .filter(|(a, _)| *a == account)
                .map(|(_, amount)| *amount)
                .sum::<Decimal>()
        };
        let (received, fee) = (credit(domain::LedgerAccount::Available), credit(domain::LedgerAccount::Fees));
        let taker = (trade.taker_side == Side::Buy) == buyer_side;
        let (order_id, user_id, remaining) = if taker {
            (trade.taker_order_id, trade.taker_user_id, trade.taker_remaining)
        } else {
            (trade.maker_order_id, trade.maker_user_id, trade.maker_remaining)
        };
        let (side, paid, paid_currency, received_currency) = if buyer_side {
            (Side::Buy, price * quantity, &quote.code, &base.code)
        } else {
            (Side::Sell, quantity, &base.code, &quote.code)
        };
        out.send(
            &order_id.to_string(),
            &FundsSettled {
                trade_id: trade.trade_id,
                order_id,
                user_id,
                market: trade.market.clone(),
                side,
                maker: !taker,
                price: trade.price,
                quantity: trade.quantity,
                paid_currency: paid_currency.clone(),
                paid: paid.into(),
                received_currency: received_currency.clone(),
                received: received.into(),
                fee: fee.into(),
                remaining,
            },
        );
    }
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
