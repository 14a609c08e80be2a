//! The rules of money movement, pure: a movement is a set of ledger legs
//! that sum to zero, and applying it to a balance is the only way a balance
//! changes; the settlement of a trade (who pays what, which fee applies, what
//! each reservation still holds); the words ledger entries and reservations
//! are stored with. No database, no clock.

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
        Reserve = "reserve",
        Release = "release",
        Settle = "settle",
    }
}

bourse_common::named_enum! {
    /// Where an order's reservation stands.
    pub enum ReservationStatus {
        /// Holds what the order has not spent yet.
        Active = "active",
        /// What was left went back to available.
        Released = "released",
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

    pub fn reserve(self, amount: Decimal) -> Result<Movement, Insufficient> {
        if amount > self.available {
            return Err(Insufficient { available: self.available, needed: amount });
        }
        Ok(Movement::transfer(Kind::Reserve, LedgerAccount::Available, LedgerAccount::Reserved, amount))
    }

    pub fn release(self, amount: Decimal) -> Movement {
        Movement::transfer(Kind::Release, LedgerAccount::Reserved, LedgerAccount::Available, amount)
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

/// What the two orders of a trade still hold reserved; `None`: the order
/// has no reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub buyer: Option<Decimal>,
    pub seller: Option<Decimal>,
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
    /// Each order (the buyer's, then the seller's) and what it still holds reserved.
    pub reservations: [(Uuid, Decimal); 2],
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
    /// The caller did not lock every account of [`Trade::accounts`].
    #[error("the {} balance of {} is not locked", .0.currency, .0.user)]
    NotLocked(AccountId),
}

/// Settles `trade` between `base` and `quote`: the buyer pays from its
/// reserved quote and the seller from its reserved base ([`settle`]), the
/// taker at the taker's fee rate and the maker at the maker's. `balances`
/// are the locked balances of [`Trade::accounts`], `held` what each order
/// still holds reserved. Refused when an account would go negative (checked
/// first, leg by leg in lock order) or when an order spends more than it
/// holds (the buyer's, then the seller's).
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

    let remaining = |order: Uuid, held: Option<Decimal>, spent: Decimal| {
        let left = held.ok_or(SettlementError::NothingHeld(order))? - spent;
        if left < Decimal::ZERO {
            return Err(SettlementError::Overspent(order));
        }
        Ok((order, left))
    };
    let reservations = [
        remaining(buyer.order_id, held.buyer, notional)?,
        remaining(seller.order_id, held.seller, quantity)?,
    ];
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
        Currency { code: "ETH".into(), scale: 8 }
    }

    fn usdt() -> Currency {
        Currency { code: "USDT".into(), scale: 6 }
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

    fn movement(legs: &[(LedgerAccount, &str)]) -> Movement {
        Movement { kind: Kind::Settle, legs: legs.iter().map(|(a, x)| (*a, d(x))).collect() }
    }

    use LedgerAccount::{Available, Clearing, Fees, Reserved};

    #[test]
    fn a_taker_who_buys_pays_the_taker_fee_on_what_it_receives() {
        let held = Held { buyer: Some(d("4000")), seller: Some(d("2")) };
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
        assert_eq!(s.reservations, [(party(2).order_id, d("999.25")), (party(1).order_id, d("0.5"))]);
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
        let held = Held { buyer: Some(d("3000.75")), seller: Some(d("1.5")) };
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
        assert_eq!(s.reservations, [(party(1).order_id, Decimal::ZERO), (party(2).order_id, Decimal::ZERO)]);
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
        let short = settle(Held { buyer: Some(d("3000.74")), seller: Some(d("2")) });
        assert_eq!(short, Err(SettlementError::Overspent(party(2).order_id)));
        assert_eq!(
            short.unwrap_err().to_string(),
            format!("order {} spent more than it reserved", party(2).order_id)
        );
        let none = settle(Held { buyer: Some(d("3000.75")), seller: None });
        assert_eq!(none, Err(SettlementError::NothingHeld(party(1).order_id)));
        assert_eq!(none.unwrap_err().to_string(), format!("order {} holds nothing", party(1).order_id));
        // The buyer's reservation is checked before the seller's.
        let both = settle(Held { buyer: Some(d("1")), seller: Some(d("1")) });
        assert_eq!(both, Err(SettlementError::Overspent(party(2).order_id)));
    }

    #[test]
    fn no_account_goes_negative_and_that_is_checked_before_the_reservations() {
        let trade = trade(Side::Buy);
        let mut balances = locked(2, 1);
        balances.insert(account(2, "USDT"), balance("10000", "3000.74"));
        let held = Held { buyer: Some(d("1")), seller: None };
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
        let held = Held { buyer: Some(d("3000.75")), seller: Some(d("1.5")) };
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
            words(&["top_up", "reserve", "release", "settle"])
        );
        assert_eq!(
            ReservationStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            words(&["active", "released"])
        );
        assert!("cancelled".parse::<ReservationStatus>().is_err());
    }
}
