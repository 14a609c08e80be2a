//! The rules of money movement, pure: a movement is a set of ledger legs
//! that sum to zero, and applying it to a balance is the only way a balance
//! changes. No database, no clock.

use rust_decimal::Decimal;

/// A ledger account of one user and currency, or the world outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerAccount {
    Available,
    Reserved,
    /// Where top-ups come from (later: deposits from the chain).
    External,
    /// Passes a trade's amounts between its two sides: nets to zero per trade.
    Clearing,
    /// The exchange's fee income.
    Fees,
}

impl LedgerAccount {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::External => "external",
            Self::Clearing => "clearing",
            Self::Fees => "fees",
        }
    }
}

/// What moved money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TopUp,
    Reserve,
    Release,
    Settle,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "top_up",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Settle => "settle",
        }
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
}
