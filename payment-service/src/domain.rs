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
}

impl LedgerAccount {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::External => "external",
        }
    }
}

/// What moved money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TopUp,
    Reserve,
    Release,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "top_up",
            Self::Reserve => "reserve",
            Self::Release => "release",
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
                LedgerAccount::External => {}
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
    fn reserving_more_than_available_is_refused() {
        let funded = Balance { available: d("10"), reserved: d("5") };
        assert_eq!(
            funded.reserve(d("10.000001")),
            Err(Insufficient { available: d("10"), needed: d("10.000001") })
        );
        assert!(funded.reserve(d("10")).is_ok());
    }
}
