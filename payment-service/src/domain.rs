//! The rules of money movement, pure: a movement is a set of ledger legs
//! that sum to zero, and applying it to a balance is the only way a balance
//! changes; the settlement of a trade (who pays what, which fee applies, what
//! each reservation still holds); the life of a reservation, whatever order
//! its messages come in (closed only when both its order's end and every fill
//! that end implies are settled; a release before the reserve leaves a
//! tombstone); the words ledger entries and reservations are stored with.
//! No database, no clock.

use std::collections::{BTreeMap, BTreeSet};

use bourse_common::catalog::Side;
use bourse_common::money::Currency;
use bourse_common::stored::UnknownWord;
use rust_decimal::Decimal;
use uuid::Uuid;

bourse_common::named_enum! {
    /// A ledger account of one user and currency, or the world outside.
    pub enum LedgerAccount {
        Available = "available",
        Reserved = "reserved",
        /// Where top-ups come from (later: deposits from the chain).
        External = "external",
        /// Passes a trade's amounts between its two sides: nets to zero per trade.
        Clearing = "clearing",
        /// The exchange's fee income.
        Fees = "fees",
    }
}

impl LedgerAccount {
    /// Held per user and currency; the others are the exchange's, one per currency.
    pub fn is_users(self) -> bool {
        matches!(self, Self::Available | Self::Reserved)
    }
}

/// A ledger account's full name, as ledger entries record it:
/// `user:<user>:<currency>:<account>` for a user's own accounts,
/// `<account>:<currency>` for the exchange's (`fees:USDT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName {
    name: String,
    account: LedgerAccount,
    owner: Option<Uuid>,
}

impl AccountName {
    /// `account` in `currency`: `user`'s own, or the exchange's when it is not a user's kind.
    pub fn new(account: LedgerAccount, user: Uuid, currency: &str) -> Self {
        if account.is_users() {
            Self { name: format!("user:{user}:{currency}:{account}"), account, owner: Some(user) }
        } else {
            Self::exchange(account, currency)
        }
    }

    /// The exchange's fee account in `currency`.
    pub fn fees(currency: &str) -> Self {
        Self::exchange(LedgerAccount::Fees, currency)
    }

    fn exchange(account: LedgerAccount, currency: &str) -> Self {
        Self { name: format!("{account}:{currency}"), account, owner: None }
    }

    pub fn account(&self) -> LedgerAccount {
        self.account
    }

    /// The user whose account it is; `None`: the exchange's.
    pub fn owner(&self) -> Option<Uuid> {
        self.owner
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl From<AccountName> for LedgerAccount {
    fn from(name: AccountName) -> Self {
        name.account
    }
}

impl std::fmt::Display for AccountName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::str::FromStr for AccountName {
    type Err = UnknownWord;

    /// Either form [`AccountName::new`] writes, each with its kind of account.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let parse = || {
            // The currency is whatever lies between the fixed parts.
            let (account, owner, currency) = match name.strip_prefix("user:") {
                Some(rest) => {
                    let (user, rest) = rest.split_once(':')?;
                    let (currency, account) = rest.rsplit_once(':')?;
                    (account, Some(Uuid::parse_str(user).ok()?), currency)
                }
                None => {
                    let (account, currency) = name.split_once(':')?;
                    (account, None, currency)
                }
            };
            let account: LedgerAccount = account.parse().ok()?;
            (!currency.is_empty() && account.is_users() == owner.is_some()).then_some((account, owner))
        };
        match parse() {
            Some((account, owner)) => Ok(Self { name: name.to_string(), account, owner }),
            None => Err(UnknownWord { what: "ledger account name", word: name.to_string() }),
        }
    }
}

bourse_common::named_enum! {
    /// What moved money.
    pub enum Kind {
        TopUp = "top_up",
        /// A deposit confirmed on the chain.
        Deposit = "deposit",
        Reserve = "reserve",
        Release = "release",
        Settle = "settle",
        /// A withdrawal confirmed on the chain: its amount leaves, its fee is the exchange's.
        Withdrawal = "withdrawal",
    }
}

bourse_common::named_enum! {
    /// Where a withdrawal's hold stands.
    pub enum HoldStatus {
        /// Amount and fee held (reserved) while the chain sends it.
        Held = "held",
        /// Confirmed on the chain: amount and fee debited.
        Debited = "debited",
        /// Failed on the chain: amount and fee back to available.
        Released = "released",
        /// Not held (insufficient funds, bad amount): nothing moved.
        Refused = "refused",
    }
}

/// How a withdrawal ends in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawalEnd {
    Confirmed,
    Failed,
}

/// What a withdrawal's end does to its hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldAction {
    /// Debit (confirmed) or release (failed) the held amount and fee.
    Apply,
    /// Done already (the event came twice).
    Nothing,
}

/// A withdrawal's end that contradicts its hold: never applied, parked for the operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("withdrawal {end:?} but its hold is {status}")]
pub struct HoldConflict {
    pub end: WithdrawalEnd,
    pub status: String,
}

/// What `end` does to a hold in `status` (`None`: no hold at all).
pub fn withdrawal_ended(status: Option<HoldStatus>, end: WithdrawalEnd) -> Result<HoldAction, HoldConflict> {
    match (status, end) {
        (Some(HoldStatus::Held), _) => Ok(HoldAction::Apply),
        (Some(HoldStatus::Debited), WithdrawalEnd::Confirmed)
        | (Some(HoldStatus::Released), WithdrawalEnd::Failed) => Ok(HoldAction::Nothing),
        (status, end) => {
            Err(HoldConflict { end, status: status.map_or("missing".into(), |s| s.to_string()) })
        }
    }
}

bourse_common::named_enum! {
    /// Where an order's reservation stands.
    pub enum ReservationStatus {
        /// Holds what the order has not spent yet; the order's end is not seen yet.
        Active = "active",
        /// What was left went back to available.
        Released = "released",
        /// The order ended in its book (its final filled quantity is recorded)
        /// while some of its fills were not settled yet: it holds until they
        /// are, and the trade that settles the last of them releases the rest.
        Ending = "ending",
        /// A tombstone: released before anything was reserved. A reserve that
        /// comes later reserves nothing and is refused.
        Void = "void",
    }
}

/// An order's reservation, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub status: ReservationStatus,
    /// Still held, in the reserved currency.
    pub remaining: Decimal,
    /// The order's quantity (base) that its settled trades filled so far;
    /// `None` for a reservation made before this was counted, which ends as
    /// it always did: released at its order's end.
    pub settled: Option<Decimal>,
    /// The order's filled quantity as its book's end said, once seen.
    pub final_filled: Option<Decimal>,
    /// The order's limit: a buy never pays above it, a sell never receives
    /// below it. `None`: a market sell, or a reservation made before limits
    /// were sent, not checked.
    pub limit_price: Option<Decimal>,
}

/// What a command to reserve does, given the order's reservation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Nothing decided yet: reserve (or refuse for want of funds).
    Fresh,
    /// Decided already (the command came twice): nothing more.
    Decided,
    /// Released before it was reserved (a [`ReservationStatus::Void`]
    /// tombstone): nothing is reserved, the order is refused with this reason.
    Refused(&'static str),
}

impl Reserve {
    pub fn of(reservation: Option<&Reservation>) -> Self {
        match reservation.map(|r| r.status) {
            None => Self::Fresh,
            Some(ReservationStatus::Void) => {
                Self::Refused("its funds were released before they were reserved: nothing is reserved")
            }
            Some(_) => Self::Decided,
        }
    }
}

/// What an order's end, or a command to release, does to its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Give back what it still holds, now, and close it (`released`).
    Now(Decimal),
    /// Record the end (`filled` in all) and keep holding (`ending`): fills up
    /// to it are still to settle, and the last of them releases the rest.
    AfterFills { filled: Decimal },
    /// Nothing reserved yet: leave a tombstone (`void`) so that a later
    /// reserve reserves nothing.
    Void,
    /// Closed already (released or void): nothing left; released zero.
    Closed,
    /// Its end is recorded already and waits for its fills: nothing more.
    Waiting,
}

/// An order's end that contradicts its reservation: a bug upstream, never
/// worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndError {
    #[error("it ended with {filled} filled, but trades of {settled} are settled already")]
    SettledBeyondEnd { settled: Decimal, filled: Decimal },
    #[error("it ended twice: with {second} filled, before with {first:?}")]
    EndedTwice { first: Option<Decimal>, second: Decimal },
}

/// A command to release what an order holds (`payment.release-funds`: the
/// order was cancelled before it reached its book, so no fill can come):
/// released at once.
pub fn release_requested(reservation: Option<&Reservation>) -> Release {
    match reservation.map(|r| (r.status, r.remaining)) {
        None => Release::Void,
        Some((ReservationStatus::Active | ReservationStatus::Ending, remaining)) => Release::Now(remaining),
        Some((ReservationStatus::Released | ReservationStatus::Void, _)) => Release::Closed,
    }
}

/// The order's end in its book, with `filled` filled in all (a final
/// `order.updated`): the rest is released when every fill up to `filled` is
/// settled, now if they are, else by the trade that settles the last of them.
pub fn order_ended(reservation: Option<&Reservation>, filled: Decimal) -> Result<Release, EndError> {
    let Some(r) = reservation else { return Ok(Release::Void) };
    match r.status {
        ReservationStatus::Released | ReservationStatus::Void => Ok(Release::Closed),
        ReservationStatus::Ending if r.final_filled == Some(filled) => Ok(Release::Waiting),
        ReservationStatus::Ending => Err(EndError::EndedTwice { first: r.final_filled, second: filled }),
        ReservationStatus::Active => match r.settled {
            None => Ok(Release::Now(r.remaining)),
            Some(settled) if settled == filled => Ok(Release::Now(r.remaining)),
            Some(settled) if settled < filled => Ok(Release::AfterFills { filled }),
            Some(settled) => Err(EndError::SettledBeyondEnd { settled, filled }),
        },
    }
}

/// A reservation after one of its order's trades settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    pub order: Uuid,
    /// Still held.
    pub remaining: Decimal,
    /// Settled so far, this trade included (`None`: not counted, see [`Reservation::settled`]).
    pub settled: Option<Decimal>,
    /// The order had ended and this was its last fill: release `remaining` and close.
    pub closes: bool,
}

impl Reservation {
    /// The reservation of `order` after a trade of `quantity` (base) that
    /// spends `spent` of it. Refused when it is closed (a trade after the
    /// order's end, beyond what the end said), when the order spends more
    /// than it holds, or fills beyond its recorded end.
    pub fn fill(&self, order: Uuid, spent: Decimal, quantity: Decimal) -> Result<Filled, SettlementError> {
        if matches!(self.status, ReservationStatus::Released | ReservationStatus::Void) {
            return Err(SettlementError::Closed(order));
        }
        let remaining = self.remaining - spent;
        if remaining < Decimal::ZERO {
            return Err(SettlementError::Overspent(order));
        }
        let settled = self.settled.map(|s| s + quantity);
        let closes = match (self.status, self.final_filled, settled) {
            (ReservationStatus::Ending, Some(filled), Some(settled)) if settled > filled => {
                return Err(SettlementError::BeyondEnd { order, filled });
            }
            (ReservationStatus::Ending, Some(filled), Some(settled)) => settled == filled,
            _ => false,
        };
        Ok(Filled { order, remaining, settled, closes })
    }
}

/// One balanced ledger transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub kind: Kind,
    pub legs: Vec<(LedgerAccount, Decimal)>,
}

impl Movement {
    fn transfer(kind: Kind, from: LedgerAccount, to: LedgerAccount, amount: Decimal) -> Self {
        Self { kind, legs: vec![(from, -amount), (to, amount)] }
    }
}

/// The balance of one user in one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    pub available: Decimal,
    pub reserved: Decimal,
}

/// Not enough available to reserve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("insufficient funds: {available} available, {needed} needed")]
pub struct Insufficient {
    pub available: Decimal,
    pub needed: Decimal,
}

impl Balance {
    /// The balance after `movement`.
    pub fn apply(mut self, movement: &Movement) -> Self {
        for (account, amount) in &movement.legs {
            match account {
                LedgerAccount::Available => self.available += amount,
                LedgerAccount::Reserved => self.reserved += amount,
                LedgerAccount::External | LedgerAccount::Clearing | LedgerAccount::Fees => {}
            }
        }
        self
    }

    pub fn top_up(self, amount: Decimal) -> Movement {
        Movement::transfer(Kind::TopUp, LedgerAccount::External, LedgerAccount::Available, amount)
    }

    pub fn deposit(self, amount: Decimal) -> Movement {
        Movement::transfer(Kind::Deposit, LedgerAccount::External, LedgerAccount::Available, amount)
    }

    pub fn reserve(self, amount: Decimal) -> Result<Movement, Insufficient> {
        if amount > self.available {
            return Err(Insufficient { available: self.available, needed: amount });
        }
        Ok(Movement::transfer(Kind::Reserve, LedgerAccount::Available, LedgerAccount::Reserved, amount))
    }

    pub fn release(self, amount: Decimal) -> Movement {
        Movement::transfer(Kind::Release, LedgerAccount::Reserved, LedgerAccount::Available, amount)
    }

    /// A confirmed withdrawal: its held amount leaves the exchange, its held fee is the exchange's.
    pub fn withdraw(self, amount: Decimal, fee: Decimal) -> Movement {
        let legs = vec![
            (LedgerAccount::Reserved, -(amount + fee)),
            (LedgerAccount::External, amount),
            (LedgerAccount::Fees, fee),
        ];
        Movement { kind: Kind::Withdrawal, legs: legs.into_iter().filter(|(_, x)| !x.is_zero()).collect() }
    }
}

/// One side's part of a trade in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLeg {
    pub buyer: bool,
    pub currency_is_base: bool,
    pub movement: Movement,
}

/// The fee on `amount` at `rate`, rounded down to `scale` decimals (never
/// more than the rate says).
pub fn fee(amount: Decimal, rate: Decimal, scale: u32) -> Decimal {
    (amount * rate).round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::ToZero)
}

/// A trade of `quantity` base at `price` quote: the buyer pays price x
/// quantity from its reserved quote and receives the base less its fee; the
/// seller pays the quantity from its reserved base and receives the quote
/// less its fee. Fees are charged in the currency received. Each leg
/// balances through the clearing account; together they net it to zero.
pub fn settle(
    price: Decimal,
    quantity: Decimal,
    buyer_fee_rate: Decimal,
    seller_fee_rate: Decimal,
    base_scale: u32,
    quote_scale: u32,
) -> [SettlementLeg; 4] {
    use LedgerAccount::{Available, Clearing, Fees, Reserved};
    let notional = price * quantity;
    let buyer_fee = fee(quantity, buyer_fee_rate, base_scale);
    let seller_fee = fee(notional, seller_fee_rate, quote_scale);
    let leg = |buyer, currency_is_base, legs| SettlementLeg {
        buyer,
        currency_is_base,
        movement: Movement { kind: Kind::Settle, legs },
    };
    [
        leg(true, false, vec![(Reserved, -notional), (Clearing, notional)]),
        leg(
            false,
            false,
            vec![(Clearing, -notional), (Available, notional - seller_fee), (Fees, seller_fee)],
        ),
        leg(false, true, vec![(Reserved, -quantity), (Clearing, quantity)]),
        leg(true, true, vec![(Clearing, -quantity), (Available, quantity - buyer_fee), (Fees, buyer_fee)]),
    ]
}

/// One side of a trade: its order and the order's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party {
    pub order_id: Uuid,
    pub user_id: Uuid,
}

/// A trade to settle: `quantity` base at `price` quote, between the order
/// that took liquidity (the taker, on `taker_side`) and the one resting in
/// the book (the maker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    pub price: Decimal,
    pub quantity: Decimal,
    pub taker_side: Side,
    pub taker: Party,
    pub maker: Party,
}

/// Fee rates, as fractions of what a side receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeRates {
    /// The resting side's.
    pub maker: Decimal,
    /// The side that took liquidity.
    pub taker: Decimal,
}

/// A user's balance in one currency, the unit a settlement locks. Ordered by
/// user, then currency: the lock order, so that concurrent settlements never
/// deadlock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId {
    pub user: Uuid,
    pub currency: String,
}

impl Trade {
    fn taker_buys(&self) -> bool {
        self.taker_side == Side::Buy
    }

    pub fn buyer(&self) -> Party {
        if self.taker_buys() { self.taker } else { self.maker }
    }

    pub fn seller(&self) -> Party {
        if self.taker_buys() { self.maker } else { self.taker }
    }

    /// The accounts its settlement moves, in lock order (iterate the set).
    pub fn accounts(&self, base: &Currency, quote: &Currency) -> BTreeSet<AccountId> {
        let users = [self.buyer().user_id, self.seller().user_id];
        users
            .into_iter()
            .flat_map(|user| [base, quote].map(|c| AccountId { user, currency: c.code.clone() }))
            .collect()
    }
}

/// The reservations of the two orders of a trade; `None`: the order has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub buyer: Option<Reservation>,
    pub seller: Option<Reservation>,
}

/// A movement of one user account, with the balance it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLeg {
    pub account: AccountId,
    pub before: Balance,
    pub movement: Movement,
}

/// One side of a settled trade, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideSettled {
    pub party: Party,
    pub side: Side,
    /// Provided the liquidity (the resting order).
    pub maker: bool,
    pub paid_currency: String,
    pub paid: Decimal,
    pub received_currency: String,
    /// Credited, after the fee.
    pub received: Decimal,
    /// Charged in the received currency.
    pub fee: Decimal,
}

/// A settled trade: what to record, what each order still holds, what to tell each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The movements of the users' accounts, in lock order.
    pub legs: Vec<AccountLeg>,
    /// Each order's reservation after the trade (the buyer's, then the seller's).
    pub reservations: [Filled; 2],
    /// The buyer's side, then the seller's.
    pub sides: [SideSettled; 2],
}

/// Why a trade cannot settle: each is a bug upstream, never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("{} would hold a negative {} balance", .0.user, .0.currency)]
    NegativeBalance(AccountId),
    #[error("order {0} holds nothing")]
    NothingHeld(Uuid),
    #[error("order {0} spent more than it reserved")]
    Overspent(Uuid),
    #[error("order {0} has ended and its reservation is closed: this trade comes after its end")]
    Closed(Uuid),
    #[error("order {order} ended with {filled} filled: this trade fills more")]
    BeyondEnd { order: Uuid, filled: Decimal },
    /// A price the order never accepted: a forged or broken `trade.executed`.
    #[error("order {order} is a {side} limited to {limit}: a trade at {price} violates its limit")]
    BeyondLimit { order: Uuid, side: Side, limit: Decimal, price: Decimal },
    /// The caller did not lock every account of [`Trade::accounts`].
    #[error("the {} balance of {} is not locked", .0.currency, .0.user)]
    NotLocked(AccountId),
}

/// Settles `trade` between `base` and `quote`: the buyer pays from its
/// reserved quote and the seller from its reserved base ([`settle`]), the
/// taker at the taker's fee rate and the maker at the maker's. `balances`
/// are the locked balances of [`Trade::accounts`], `held` what each order
/// their reservations. Refused when the price violates an order's limit
/// (checked first: a buy above its limit, a sell below its limit, as each
/// order's reservation recorded it), when an account would go negative
/// (leg by leg in lock order) or when an order's reservation cannot take the
/// trade ([`Reservation::fill`]: the buyer's, then the seller's; its
/// remaining reservation covers what it pays).
pub fn settle_trade(
    trade: &Trade,
    rates: FeeRates,
    base: &Currency,
    quote: &Currency,
    balances: &BTreeMap<AccountId, Balance>,
    held: Held,
) -> Result<Settlement, SettlementError> {
    let (buyer, seller) = (trade.buyer(), trade.seller());
    let (buyer_rate, seller_rate) =
        if trade.taker_buys() { (rates.taker, rates.maker) } else { (rates.maker, rates.taker) };
    let (price, quantity) = (trade.price, trade.quantity);
    let limits = [(buyer, Side::Buy, held.buyer), (seller, Side::Sell, held.seller)];
    for (party, side, reservation) in limits {
        let Some(limit) = reservation.and_then(|r| r.limit_price) else { continue };
        let violated = match side {
            Side::Buy => price > limit,
            Side::Sell => price < limit,
        };
        if violated {
            return Err(SettlementError::BeyondLimit { order: party.order_id, side, limit, price });
        }
    }
    let notional = price * quantity;
    let legs = settle(price, quantity, buyer_rate, seller_rate, base.scale, quote.scale);

    // What a side received and its fee, as its legs move them.
    let credited = |buyer_side: bool, account: LedgerAccount| {
        legs.iter()
            .filter(|leg| leg.buyer == buyer_side)
            .flat_map(|leg| &leg.movement.legs)
            .filter(|(a, _)| *a == account)
            .map(|(_, amount)| *amount)
            .sum::<Decimal>()
    };
    let side = |buyer_side: bool| {
        let (party, side, paid, paid_currency, received_currency) = if buyer_side {
            (buyer, Side::Buy, notional, quote, base)
        } else {
            (seller, Side::Sell, quantity, base, quote)
        };
        SideSettled {
            party,
            side,
            maker: trade.taker_buys() != buyer_side,
            paid_currency: paid_currency.code.clone(),
            paid,
            received_currency: received_currency.code.clone(),
            received: credited(buyer_side, LedgerAccount::Available),
            fee: credited(buyer_side, LedgerAccount::Fees),
        }
    };
    let sides = [side(true), side(false)];

    let mut ordered: Vec<(AccountId, SettlementLeg)> = legs
        .iter()
        .map(|leg| {
            let user = if leg.buyer { buyer.user_id } else { seller.user_id };
            let currency = if leg.currency_is_base { base } else { quote };
            (AccountId { user, currency: currency.code.clone() }, leg.clone())
        })
        .collect();
    // Stable: a user on both sides of a trade has two legs per account, kept in `settle`'s order.
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    let mut current = balances.clone();
    let mut account_legs = Vec::with_capacity(ordered.len());
    for (account, leg) in ordered {
        let before = *current.get(&account).ok_or_else(|| SettlementError::NotLocked(account.clone()))?;
        let after = before.apply(&leg.movement);
        if after.reserved < Decimal::ZERO || after.available < Decimal::ZERO {
            return Err(SettlementError::NegativeBalance(account));
        }
        current.insert(account.clone(), after);
        account_legs.push(AccountLeg { account, before, movement: leg.movement });
    }

    let fill = |order: Uuid, held: Option<Reservation>, spent: Decimal| {
        held.ok_or(SettlementError::NothingHeld(order))?.fill(order, spent, quantity)
    };
    let reservations =
        [fill(buyer.order_id, held.buyer, notional)?, fill(seller.order_id, held.seller, quantity)?];
    Ok(Settlement { legs: account_legs, reservations, sides })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn sum(m: &Movement) -> Decimal {
        m.legs.iter().map(|(_, a)| a).sum()
    }

    #[test]
    fn reserve_then_release_restores_the_balance_and_every_movement_balances() {
        let start = Balance::default();
        let top_up = start.top_up(d("100"));
        let funded = start.apply(&top_up);
        let reserve = funded.reserve(d("30.5")).unwrap();
        let held = funded.apply(&reserve);
        assert_eq!(held, Balance { available: d("69.5"), reserved: d("30.5") });
        let release = held.release(d("30.5"));
        assert_eq!(held.apply(&release), funded);
        for m in [top_up, reserve, release] {
            assert_eq!(sum(&m), Decimal::ZERO);
        }
    }

    #[test]
    fn a_settlement_conserves_each_currency_and_charges_fees_in_what_is_received() {
        let legs = settle(d("2000.5"), d("1.5"), d("0.002"), d("0.001"), 8, 6);
        for base in [false, true] {
            let all: Vec<&(LedgerAccount, Decimal)> =
                legs.iter().filter(|l| l.currency_is_base == base).flat_map(|l| &l.movement.legs).collect();
            assert_eq!(all.iter().map(|(_, a)| a).sum::<Decimal>(), Decimal::ZERO);
            let clearing: Decimal =
                all.iter().filter(|(k, _)| *k == LedgerAccount::Clearing).map(|(_, a)| a).sum();
            assert_eq!(clearing, Decimal::ZERO, "the clearing account nets to zero");
        }
        for leg in &legs {
            assert_eq!(sum(&leg.movement), Decimal::ZERO);
        }
        // Buyer receives 1.5 ETH less 0.2%; seller 3000.75 USDT less 0.1%, rounded down to 6 decimals.
        assert_eq!(legs[3].movement.legs[1], (LedgerAccount::Available, d("1.497")));
        assert_eq!(legs[1].movement.legs[2], (LedgerAccount::Fees, d("3.00075")));
        assert_eq!(fee(d("0.0001"), d("0.001"), 8), d("0.00000010"));
        assert_eq!(fee(d("0.00001"), d("0.001"), 6), Decimal::ZERO);
    }

    #[test]
    fn reserving_more_than_available_is_refused() {
        let funded = Balance { available: d("10"), reserved: d("5") };
        assert_eq!(
            funded.reserve(d("10.000001")),
            Err(Insufficient { available: d("10"), needed: d("10.000001") })
        );
        assert!(funded.reserve(d("10")).is_ok());
    }

    fn eth() -> Currency {
        Currency { code: "ETH".into(), scale: 8, max: None }
    }

    fn usdt() -> Currency {
        Currency { code: "USDT".into(), scale: 6, max: None }
    }

    /// User `n`, with its order.
    fn party(n: u128) -> Party {
        Party { order_id: Uuid::from_u128(100 + n), user_id: Uuid::from_u128(n) }
    }

    fn rates() -> FeeRates {
        FeeRates { maker: d("0.001"), taker: d("0.002") }
    }

    /// 1.5 ETH at 2000.5 USDT (3000.75 USDT) between user 2 (the taker, on `taker_side`) and user 1.
    fn trade(taker_side: Side) -> Trade {
        Trade { price: d("2000.5"), quantity: d("1.5"), taker_side, taker: party(2), maker: party(1) }
    }

    fn account(user: u128, currency: &str) -> AccountId {
        AccountId { user: Uuid::from_u128(user), currency: currency.into() }
    }

    fn balance(available: &str, reserved: &str) -> Balance {
        Balance { available: d(available), reserved: d(reserved) }
    }

    /// The buyer holds 4000 USDT reserved, the seller 2 ETH.
    fn locked(buyer: u128, seller: u128) -> BTreeMap<AccountId, Balance> {
        let mut balances: BTreeMap<AccountId, Balance> =
            trade(Side::Buy).accounts(&eth(), &usdt()).into_iter().map(|a| (a, Balance::default())).collect();
        balances.insert(account(buyer, "USDT"), balance("0", "4000"));
        balances.insert(account(seller, "ETH"), balance("0", "2"));
        balances
    }

    /// A reservation holding `remaining`, nothing settled yet, its order's end not seen.
    fn active(remaining: &str) -> Reservation {
        Reservation {
            status: ReservationStatus::Active,
            remaining: d(remaining),
            settled: Some(Decimal::ZERO),
            final_filled: None,
            limit_price: None,
        }
    }

    fn filled(order: Uuid, remaining: &str, settled: &str, closes: bool) -> Filled {
        Filled { order, remaining: d(remaining), settled: Some(d(settled)), closes }
    }

    fn movement(legs: &[(LedgerAccount, &str)]) -> Movement {
        Movement { kind: Kind::Settle, legs: legs.iter().map(|(a, x)| (*a, d(x))).collect() }
    }

    use LedgerAccount::{Available, Clearing, Fees, Reserved};

    #[test]
    fn a_taker_who_buys_pays_the_taker_fee_on_what_it_receives() {
        let held = Held { buyer: Some(active("4000")), seller: Some(active("2")) };
        let trade = trade(Side::Buy);
        assert_eq!((trade.buyer(), trade.seller()), (party(2), party(1)));
        let s = settle_trade(&trade, rates(), &eth(), &usdt(), &locked(2, 1), held).unwrap();
        let legs: Vec<(AccountId, Balance, Movement)> =
            s.legs.into_iter().map(|l| (l.account, l.before, l.movement)).collect();
        assert_eq!(
            legs,
            [
                (account(1, "ETH"), balance("0", "2"), movement(&[(Reserved, "-1.5"), (Clearing, "1.5")])),
                (
                    account(1, "USDT"),
                    balance("0", "0"),
                    movement(&[(Clearing, "-3000.75"), (Available, "2997.74925"), (Fees, "3.00075")]),
                ),
                (
                    account(2, "ETH"),
                    balance("0", "0"),
                    movement(&[(Clearing, "-1.5"), (Available, "1.497"), (Fees, "0.003")]),
                ),
                (
                    account(2, "USDT"),
                    balance("0", "4000"),
                    movement(&[(Reserved, "-3000.75"), (Clearing, "3000.75")]),
                ),
            ]
        );
        assert_eq!(
            s.reservations,
            [
                filled(party(2).order_id, "999.25", "1.5", false),
                filled(party(1).order_id, "0.5", "1.5", false)
            ]
        );
        assert_eq!(
            s.sides,
            [
                SideSettled {
                    party: party(2),
                    side: Side::Buy,
                    maker: false,
                    paid_currency: "USDT".into(),
                    paid: d("3000.75"),
                    received_currency: "ETH".into(),
                    received: d("1.497"),
                    fee: d("0.003"),
                },
                SideSettled {
                    party: party(1),
                    side: Side::Sell,
                    maker: true,
                    paid_currency: "ETH".into(),
                    paid: d("1.5"),
                    received_currency: "USDT".into(),
                    received: d("2997.74925"),
                    fee: d("3.00075"),
                },
            ]
        );
    }

    #[test]
    fn a_taker_who_sells_pays_the_taker_fee_and_the_resting_buyer_the_maker_fee() {
        let held = Held { buyer: Some(active("3000.75")), seller: Some(active("1.5")) };
        let trade = trade(Side::Sell);
        assert_eq!((trade.buyer(), trade.seller()), (party(1), party(2)));
        let s = settle_trade(&trade, rates(), &eth(), &usdt(), &locked(1, 2), held).unwrap();
        let accounts: Vec<&AccountId> = s.legs.iter().map(|l| &l.account).collect();
        assert_eq!(
            accounts,
            [&account(1, "ETH"), &account(1, "USDT"), &account(2, "ETH"), &account(2, "USDT")]
        );
        assert_eq!(
            s.legs[0].movement,
            movement(&[(Clearing, "-1.5"), (Available, "1.4985"), (Fees, "0.0015")])
        );
        assert_eq!(
            s.legs[3].movement,
            movement(&[(Clearing, "-3000.75"), (Available, "2994.7485"), (Fees, "6.0015")])
        );
        assert_eq!(
            s.reservations,
            [filled(party(1).order_id, "0", "1.5", false), filled(party(2).order_id, "0", "1.5", false)]
        );
        let [buyer, seller] = &s.sides;
        assert_eq!((buyer.party, buyer.side, buyer.maker), (party(1), Side::Buy, true));
        assert_eq!((buyer.received, buyer.fee), (d("1.4985"), d("0.0015")));
        assert_eq!((seller.party, seller.side, seller.maker), (party(2), Side::Sell, false));
        assert_eq!((seller.paid, seller.received, seller.fee), (d("1.5"), d("2994.7485"), d("6.0015")));
    }

    #[test]
    fn an_order_cannot_spend_more_than_it_holds() {
        let trade = trade(Side::Buy);
        let settle = |held| settle_trade(&trade, rates(), &eth(), &usdt(), &locked(2, 1), held);
        let short = settle(Held { buyer: Some(active("3000.74")), seller: Some(active("2")) });
        assert_eq!(short, Err(SettlementError::Overspent(party(2).order_id)));
        assert_eq!(
            short.unwrap_err().to_string(),
            format!("order {} spent more than it reserved", party(2).order_id)
        );
        let none = settle(Held { buyer: Some(active("3000.75")), seller: None });
        assert_eq!(none, Err(SettlementError::NothingHeld(party(1).order_id)));
        assert_eq!(none.unwrap_err().to_string(), format!("order {} holds nothing", party(1).order_id));
        // The buyer's reservation is checked before the seller's.
        let both = settle(Held { buyer: Some(active("1")), seller: Some(active("1")) });
        assert_eq!(both, Err(SettlementError::Overspent(party(2).order_id)));
    }

    #[test]
    fn a_price_outside_an_orders_limit_settles_nothing() {
        let trade = trade(Side::Buy); // at 2000.5
        let limited =
            |remaining: &str, limit: &str| Reservation { limit_price: Some(d(limit)), ..active(remaining) };
        let settle = |held| settle_trade(&trade, rates(), &eth(), &usdt(), &locked(2, 1), held);
        // At the limits, or without one (a market sell, an older reservation): settles.
        assert!(
            settle(Held {
                buyer: Some(limited("3000.75", "2000.5")),
                seller: Some(limited("1.5", "2000.5"))
            })
            .is_ok()
        );
        assert!(
            settle(Held { buyer: Some(limited("3000.75", "2001")), seller: Some(active("1.5")) }).is_ok()
        );
        // A buy never pays above its limit.
        let above = settle(Held { buyer: Some(limited("4000", "2000")), seller: Some(active("1.5")) });
        let buyer = party(2).order_id;
        assert_eq!(
            above,
            Err(SettlementError::BeyondLimit {
                order: buyer,
                side: Side::Buy,
                limit: d("2000"),
                price: d("2000.5")
            })
        );
        assert_eq!(
            above.unwrap_err().to_string(),
            format!("order {buyer} is a buy limited to 2000: a trade at 2000.5 violates its limit")
        );
        // A sell never receives below its limit, whatever the buyer holds.
        let below = settle(Held { buyer: Some(active("3000.75")), seller: Some(limited("1.5", "2000.6")) });
        assert_eq!(
            below,
            Err(SettlementError::BeyondLimit {
                order: party(1).order_id,
                side: Side::Sell,
                limit: d("2000.6"),
                price: d("2000.5")
            })
        );
    }

    #[test]
    fn no_account_goes_negative_and_that_is_checked_before_the_reservations() {
        let trade = trade(Side::Buy);
        let mut balances = locked(2, 1);
        balances.insert(account(2, "USDT"), balance("10000", "3000.74"));
        let held = Held { buyer: Some(active("1")), seller: None };
        let refused = settle_trade(&trade, rates(), &eth(), &usdt(), &balances, held);
        assert_eq!(refused, Err(SettlementError::NegativeBalance(account(2, "USDT"))));
        assert_eq!(
            refused.unwrap_err().to_string(),
            format!("{} would hold a negative USDT balance", Uuid::from_u128(2))
        );
        balances.remove(&account(1, "USDT"));
        let unlocked = settle_trade(&trade, rates(), &eth(), &usdt(), &balances, held);
        assert_eq!(unlocked, Err(SettlementError::NotLocked(account(1, "USDT"))));
    }

    #[test]
    fn a_user_on_both_sides_has_each_account_moved_twice_in_order() {
        let trade = Trade {
            taker: Party { order_id: Uuid::from_u128(7), user_id: Uuid::from_u128(1) },
            ..trade(Side::Buy)
        };
        let balances = BTreeMap::from([
            (account(1, "ETH"), balance("0", "1.5")),
            (account(1, "USDT"), balance("0", "3000.75")),
        ]);
        assert_eq!(
            trade.accounts(&eth(), &usdt()).into_iter().collect::<Vec<_>>(),
            balances.keys().cloned().collect::<Vec<_>>()
        );
        let held = Held { buyer: Some(active("3000.75")), seller: Some(active("1.5")) };
        let s = settle_trade(&trade, rates(), &eth(), &usdt(), &balances, held).unwrap();
        let before: Vec<(&str, Balance)> =
            s.legs.iter().map(|l| (l.account.currency.as_str(), l.before)).collect();
        assert_eq!(
            before,
            [
                ("ETH", balance("0", "1.5")),
                ("ETH", balance("0", "0")),
                ("USDT", balance("0", "3000.75")),
                ("USDT", balance("0", "0")),
            ]
        );
        let end = s.legs.iter().fold(BTreeMap::new(), |mut end, l| {
            end.insert(l.account.currency.clone(), l.before.apply(&l.movement));
            end
        });
        assert_eq!(end["ETH"], balance("1.497", "0"));
        assert_eq!(end["USDT"], balance("2997.74925", "0"));
    }

    #[test]
    fn account_names_read_back_only_in_the_forms_written() {
        let user = Uuid::from_u128(42);
        let mine = AccountName::new(Available, user, "USDT");
        assert_eq!(mine.as_str(), format!("user:{user}:USDT:available"));
        assert_eq!((mine.account(), mine.owner()), (Available, Some(user)));
        assert_eq!(mine.as_str().parse(), Ok(mine.clone()));
        let fees = AccountName::new(Fees, user, "ETH");
        assert_eq!((fees.as_str(), fees.owner()), ("fees:ETH", None));
        assert_eq!(fees, AccountName::fees("ETH"));
        assert_eq!("clearing:ETH".parse::<AccountName>().map(|n| n.account()), Ok(Clearing));
        for bad in [
            "",
            "fees",
            "fees:",
            "available:USDT",
            "bogus:USDT",
            "user:not-a-uuid:USDT:available",
            &format!("user:{user}:USDT:fees"),
            &format!("user:{user}::reserved"),
            &format!("user:{user}:USDT:reserved:x"),
        ] {
            assert!(bad.parse::<AccountName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_stored_words_stay_what_they_were() {
        let words = |all: &[&'static str]| all.to_vec();
        assert_eq!(
            LedgerAccount::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            words(&["available", "reserved", "external", "clearing", "fees"])
        );
        assert_eq!(
            Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            words(&["top_up", "deposit", "reserve", "release", "settle", "withdrawal"])
        );
        assert_eq!(
            ReservationStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            words(&["active", "released", "ending", "void"])
        );
        assert!("cancelled".parse::<ReservationStatus>().is_err());
        assert_eq!(
            HoldStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            words(&["held", "debited", "released", "refused"])
        );
    }

    #[test]
    fn a_withdrawal_ends_its_hold_once_and_never_against_it() {
        use HoldStatus::*;
        use WithdrawalEnd::*;
        assert_eq!(withdrawal_ended(Some(Held), Confirmed), Ok(HoldAction::Apply));
        assert_eq!(withdrawal_ended(Some(Held), Failed), Ok(HoldAction::Apply));
        assert_eq!(withdrawal_ended(Some(Debited), Confirmed), Ok(HoldAction::Nothing));
        assert_eq!(withdrawal_ended(Some(Released), Failed), Ok(HoldAction::Nothing));
        for (status, end) in
            [(Some(Debited), Failed), (Some(Released), Confirmed), (Some(Refused), Confirmed), (None, Failed)]
        {
            assert!(withdrawal_ended(status, end).is_err(), "{status:?} {end:?}");
        }
    }

    #[test]
    fn a_confirmed_withdrawal_debits_amount_and_fee_from_the_hold() {
        let held = Balance { available: d("1"), reserved: d("2.001") };
        let movement = held.withdraw(d("2"), d("0.001"));
        assert_eq!(movement.legs.iter().map(|(_, x)| *x).sum::<Decimal>(), Decimal::ZERO);
        assert_eq!(held.apply(&movement), Balance { available: d("1"), reserved: d("0") });
        assert_eq!(held.withdraw(d("2"), d("0")).legs.len(), 2, "no zero leg for a free withdrawal");
    }

    fn reservation(
        status: ReservationStatus,
        remaining: &str,
        settled: Option<&str>,
        end: Option<&str>,
    ) -> Reservation {
        Reservation {
            status,
            remaining: d(remaining),
            settled: settled.map(d),
            final_filled: end.map(d),
            limit_price: None,
        }
    }

    #[test]
    fn an_order_end_releases_at_once_only_when_every_fill_it_implies_is_settled() {
        use ReservationStatus::{Active, Ending, Released, Void};
        let end = |r: Option<Reservation>, filled: &str| order_ended(r.as_ref(), d(filled));
        assert_eq!(end(None, "0"), Ok(Release::Void));
        assert_eq!(end(Some(reservation(Active, "10", Some("2"), None)), "2"), Ok(Release::Now(d("10"))));
        assert_eq!(
            end(Some(reservation(Active, "10", Some("0.5"), None)), "2"),
            Ok(Release::AfterFills { filled: d("2") })
        );
        assert_eq!(
            end(Some(reservation(Active, "10", Some("3"), None)), "2"),
            Err(EndError::SettledBeyondEnd { settled: d("3"), filled: d("2") })
        );
        // A reservation made before fills were counted ends as it always did.
        assert_eq!(end(Some(reservation(Active, "10", None, None)), "2"), Ok(Release::Now(d("10"))));
        assert_eq!(end(Some(reservation(Ending, "10", Some("1"), Some("2"))), "2.0"), Ok(Release::Waiting));
        assert_eq!(
            end(Some(reservation(Ending, "10", Some("1"), Some("2"))), "3"),
            Err(EndError::EndedTwice { first: Some(d("2")), second: d("3") })
        );
        for closed in [Released, Void] {
            assert_eq!(end(Some(reservation(closed, "0", Some("0"), None)), "1"), Ok(Release::Closed));
        }
    }

    #[test]
    fn a_release_command_releases_at_once_and_one_before_the_reserve_leaves_a_tombstone() {
        use ReservationStatus::{Active, Ending, Released, Void};
        assert_eq!(release_requested(None), Release::Void);
        assert_eq!(release_requested(Some(&reservation(Active, "7", Some("0"), None))), Release::Now(d("7")));
        assert_eq!(
            release_requested(Some(&reservation(Ending, "7", Some("1"), Some("2")))),
            Release::Now(d("7"))
        );
        for closed in [Released, Void] {
            assert_eq!(release_requested(Some(&reservation(closed, "0", Some("0"), None))), Release::Closed);
        }
        assert_eq!(Reserve::of(None), Reserve::Fresh);
        assert_eq!(Reserve::of(Some(&reservation(Active, "7", Some("0"), None))), Reserve::Decided);
        assert_eq!(Reserve::of(Some(&reservation(Released, "0", Some("0"), None))), Reserve::Decided);
        assert!(matches!(Reserve::of(Some(&reservation(Void, "0", Some("0"), None))), Reserve::Refused(_)));
    }

    #[test]
    fn the_fill_that_completes_an_ended_order_closes_its_reservation() {
        use ReservationStatus::{Active, Ending, Released, Void};
        let order = Uuid::from_u128(9);
        let ending = reservation(Ending, "100", Some("1"), Some("2"));
        assert_eq!(
            ending.fill(order, d("40"), d("0.5")),
            Ok(Filled { order, remaining: d("60"), settled: Some(d("1.5")), closes: false })
        );
        assert_eq!(
            ending.fill(order, d("40"), d("1")),
            Ok(Filled { order, remaining: d("60"), settled: Some(d("2")), closes: true })
        );
        assert_eq!(
            ending.fill(order, d("40"), d("1.5")),
            Err(SettlementError::BeyondEnd { order, filled: d("2") })
        );
        assert_eq!(ending.fill(order, d("100.01"), d("1")), Err(SettlementError::Overspent(order)));
        let active = reservation(Active, "100", Some("1"), None);
        assert_eq!(
            active.fill(order, d("100"), d("5")).map(|f| (f.settled, f.closes)),
            Ok((Some(d("6")), false))
        );
        let legacy = reservation(Active, "100", None, None);
        assert_eq!(legacy.fill(order, d("1"), d("1")).map(|f| (f.settled, f.closes)), Ok((None, false)));
        for closed in [Released, Void] {
            let r = reservation(closed, "0", Some("0"), None);
            assert_eq!(r.fill(order, d("0"), d("1")), Err(SettlementError::Closed(order)));
        }
        assert_eq!(
            SettlementError::Closed(order).to_string(),
            format!("order {order} has ended and its reservation is closed: this trade comes after its end")
        );
    }

    /// Applies an order's fills (spent, quantity) and its end (filled) in the
    /// given order, as the handlers do; returns what was released and the end state.
    fn replay(events: &[Result<(&str, &str), &str>]) -> (Decimal, Reservation) {
        let mut r = reservation(ReservationStatus::Active, "100", Some("0"), None);
        let mut released = Decimal::ZERO;
        let order = Uuid::from_u128(1);
        let mut close = |r: &mut Reservation| {
            released += r.remaining;
            r.remaining = Decimal::ZERO;
            r.status = ReservationStatus::Released;
        };
        for event in events {
            match event {
                Ok((spent, quantity)) => {
                    let f = r.fill(order, d(spent), d(quantity)).unwrap();
                    (r.remaining, r.settled) = (f.remaining, f.settled);
                    if f.closes {
                        close(&mut r);
                    }
                }
                Err(filled) => match order_ended(Some(&r), d(filled)).unwrap() {
                    Release::Now(amount) => {
                        assert_eq!(amount, r.remaining);
                        close(&mut r);
                    }
                    Release::AfterFills { filled } => {
                        (r.status, r.final_filled) = (ReservationStatus::Ending, Some(filled));
                    }
                    other => panic!("{other:?}"),
                },
            }
        }
        (released, r)
    }

    #[test]
    fn fills_and_the_end_give_back_the_same_rest_in_whatever_order_they_come() {
        let (a, b, end) = (Ok(("30", "0.3")), Ok(("45", "0.5")), Err("0.8"));
        let expected = (d("25"), d("0.8"));
        for order in [[a, b, end], [a, end, b], [end, a, b], [end, b, a], [b, end, a], [b, a, end]] {
            let (released, r) = replay(&order);
            assert_eq!((released, r.settled.unwrap()), expected, "{order:?}");
            assert_eq!((r.status, r.remaining), (ReservationStatus::Released, Decimal::ZERO), "{order:?}");
        }
    }
}
