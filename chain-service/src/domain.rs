//! The rules of chain-service, pure: what a deposit credits in the ledger's
//! scale and what is left as dust, how many confirmations a block has, and
//! when a deposit is credited.

use rust_decimal::Decimal;

/// Decimals of the chain's native coin (wei per ETH: 10^18).
pub const NATIVE_DECIMALS: u32 = 18;

/// An amount on chain, split into what the ledger credits (truncated to the
/// currency's scale) and the dust below that scale. The dust stays on the
/// deposit's record (`GET /api/users/me/deposits`) and in the wallet on
/// chain: never credited, never lost from view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    pub credited: Decimal,
    pub dust: Decimal,
}

/// An amount too large for the ledger (more than 28 significant digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{units} units with {decimals} decimals do not fit a ledger amount")]
pub struct TooLarge {
    pub units: u128,
    pub decimals: u32,
}

/// `units` of a token with `decimals` decimals, in a ledger of `scale` decimals.
pub fn to_ledger(units: u128, decimals: u32, scale: u32) -> Result<Converted, TooLarge> {
    let too_large = || TooLarge { units, decimals };
    let exact = i128::try_from(units)
        .ok()
        .and_then(|u| Decimal::try_from_i128_with_scale(u, decimals).ok())
        .ok_or_else(too_large)?;
    let credited = exact.trunc_with_scale(scale);
    Ok(Converted { credited, dust: exact - credited })
}

/// A ledger amount in chain units (`amount` has at most `decimals` decimals:
/// the ledger's scale never exceeds the token's).
pub fn to_units(amount: Decimal, decimals: u32) -> Option<u128> {
    let scaled = amount.checked_mul(Decimal::from(10u64.checked_pow(decimals.min(19))?))?;
    let scaled = if decimals > 19 {
        scaled.checked_mul(Decimal::from(10u64.checked_pow(decimals - 19)?))?
    } else {
        scaled
    };
    u128::try_from(scaled.trunc()).ok().filter(|_| scaled.fract().is_zero())
}

/// Confirmations of a block at `block` when the chain's head is `head`: the
/// block itself counts as one; none when the head is behind it.
pub fn confirmations(block: u64, head: u64) -> u64 {
    head.checked_sub(block).map_or(0, |d| d + 1)
}

/// Is a deposit in `block` credited at `head`, with `required` confirmations?
pub fn is_final(block: u64, head: u64, required: u64) -> bool {
    confirmations(block, head) >= required.max(1)
}

bourse_common::named_enum! {
    /// Where a deposit stands.
    pub enum DepositStatus {
        /// Seen in a block, waiting for its confirmations.
        Pending = "pending",
        /// Confirmed and sent to payment-service to credit (once).
        Credited = "credited",
        /// Its block left the chain before it was credited: it never happened.
        Orphaned = "orphaned",
        /// Its block left the chain after it was credited: an alert for the
        /// operators (`deposit.reverted`), never a silent debit.
        Reverted = "reverted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_deposit_credits_what_the_ledger_scale_holds_and_keeps_the_dust() {
        // 1.234567891 ETH in a ledger of 8 decimals.
        let c = to_ledger(1_234_567_891_000_000_000, 18, 8).unwrap();
        assert_eq!((c.credited, c.dust), (d("1.23456789"), d("0.000000001")));
        let whole = to_ledger(2_000_000_000_000_000_000, 18, 8).unwrap();
        assert_eq!((whole.credited, whole.dust), (d("2"), d("0")));
        let dust_only = to_ledger(5, 18, 8).unwrap();
        assert_eq!((dust_only.credited, dust_only.dust), (d("0"), d("0.000000000000000005")));
        assert!(to_ledger(u128::MAX, 18, 8).is_err());
    }

    #[test]
    fn ledger_amounts_go_back_to_chain_units_exactly() {
        assert_eq!(to_units(d("1.23456789"), 18), Some(1_234_567_890_000_000_000));
        assert_eq!(to_units(d("0.5"), 6), Some(500_000));
        assert_eq!(to_units(d("0.0000001"), 6), None, "below the token's decimals");
        for units in [1u128, 999, 10u128.pow(18), 123_456_789_012_345_678_901] {
            let c = to_ledger(units, 18, 18).unwrap();
            assert_eq!(to_units(c.credited, 18), Some(units));
        }
    }

    #[test]
    fn a_block_counts_itself_and_every_block_on_top() {
        assert_eq!(confirmations(10, 9), 0);
        assert_eq!(confirmations(10, 10), 1);
        assert_eq!(confirmations(10, 15), 6);
        assert!(!is_final(10, 14, 6));
        assert!(is_final(10, 15, 6));
        assert!(is_final(10, 10, 0), "no confirmations asked: one, its own block");
    }
}
