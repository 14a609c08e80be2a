//! The rules of chain-service, pure: what a deposit credits in the ledger's
//! scale and what is left as dust, how many confirmations a block has, and
//! when a deposit is credited; what a valid withdrawal is (address, amount,
//! limits), where it and its transaction stand, and how a replacement's fee
//! is raised.

use rust_decimal::Decimal;

/// Decimals of the chain's native coin (wei per ETH: 10^18).
pub const NATIVE_DECIMALS: u32 = 18;

/// Gas of a plain native transfer (to an address without code; a contract
/// that needs more reverts, and the withdrawal fails and is given back).
pub const NATIVE_TRANSFER_GAS: u64 = 21_000;

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

bourse_common::named_enum! {
    /// Where a withdrawal stands, as its user sees it.
    #[derive(utoipa::ToSchema)]
    pub enum WithdrawalStatus {
        /// Asked for; payment-service is holding its amount and fee.
        Requested = "requested",
        /// Could not be held (insufficient funds): nothing moved. Final.
        Refused = "refused",
        /// Held; its transaction is being signed and sent.
        Sending = "sending",
        /// Its transaction is on the node (or in a block, with confirmations).
        Sent = "sent",
        /// Confirmed on the chain; amount and fee debited. Final.
        Confirmed = "confirmed",
        /// Reverted or could not be sent; what was held is back. Final.
        Failed = "failed",
    }
}

impl WithdrawalStatus {
    /// Still on its way (counts against the user's withdrawals in flight).
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Requested | Self::Sending | Self::Sent)
    }
}

bourse_common::named_enum! {
    /// Where an outgoing transaction stands in the pipeline.
    pub enum TxStatus {
        /// An intent: to be signed (no nonce yet).
        Queued = "queued",
        /// Nonce assigned, signed bytes stored: to be broadcast (again, after a restart).
        Signed = "signed",
        /// The node took it; waiting for a block (replaced with a higher fee if it waits too long).
        Broadcast = "broadcast",
        /// In a block; waiting for its confirmations (back to broadcast if the block leaves the chain).
        Mined = "mined",
        /// With its confirmations. Final.
        Confirmed = "confirmed",
        /// Reverted, or refused by the node before it was ever pending. Final.
        Failed = "failed",
    }
}

bourse_common::named_enum! {
    /// What an outgoing transaction is for.
    pub enum TxPurpose {
        Withdrawal = "withdrawal",
        /// The gas wallet sends a wallet the ETH a token transfer's (or a
        /// settlement transaction's) gas costs.
        Gas = "gas",
        /// A settlement window's transfer: a payer's wallet to the clearing
        /// wallet, or the clearing wallet to a receiver's (or the fee wallet).
        Settlement = "settlement",
    }
}

bourse_common::named_enum! {
    /// Where a settlement window stands.
    #[derive(utoipa::ToSchema)]
    pub enum WindowStatus {
        /// Taking trades.
        Open = "open",
        /// Closed: the payers' wallets send their net to the clearing wallet.
        Collecting = "collecting",
        /// Collected: the clearing wallet pays the receivers and the fee wallet.
        Paying = "paying",
        /// Every transaction of the window confirmed. Final.
        Settled = "settled",
        /// A transaction of the window failed (`reason`): the operators step in. Final.
        Failed = "failed",
    }
}

/// Who a settlement leg belongs to besides the users: the exchange's fees.
pub const FEES_OWNER: &str = "fees";

/// The owner of the clearing wallet's transactions.
pub const CLEARING_OWNER: &str = "clearing";

/// A window's net per owner and currency (its legs summed; zero nets
/// dropped): negative, the owner pays the clearing wallet; positive, it is paid.
pub fn net<'a>(
    legs: impl IntoIterator<Item = (&'a str, &'a str, Decimal)>,
) -> std::collections::BTreeMap<(String, String), Decimal> {
    let mut net = std::collections::BTreeMap::new();
    for (owner, currency, delta) in legs {
        *net.entry((owner.to_string(), currency.to_string())).or_insert(Decimal::ZERO) += delta;
    }
    net.retain(|_, v| !v.is_zero());
    net
}

/// Is a window opened at `opened_at` with `trades` due to close at `now`?
pub fn window_due(opened_at: i64, trades: u32, now: i64, window_ms: u64, window_trades: u32) -> bool {
    let age_ms = u64::try_from((now - opened_at) / 1_000).unwrap_or(0);
    age_ms >= window_ms || trades >= window_trades.max(1)
}

/// The id of a window's transaction for `owner` in `currency` (one per
/// wallet and asset per window).
pub fn settlement_tx_id(window: &str, owner: &str, currency: &str) -> String {
    format!("settle:{window}:{owner}:{currency}")
}

/// What is wrong with a withdrawal's address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not an address: 0x and 40 hex digits")]
    Malformed,
    #[error("the address's checksum (EIP-55 mixed case) is wrong: check it for a typo")]
    Checksum,
    #[error("the zero address burns what is sent to it")]
    Zero,
}

impl AddressError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "address_malformed",
            Self::Checksum => "address_checksum",
            Self::Zero => "address_zero",
        }
    }
}

/// An address as a user types it: 0x and 40 hex digits; in mixed case its
/// EIP-55 checksum must hold (all lower or upper case carries none). Returned
/// checksummed.
pub fn parse_address(text: &str) -> Result<alloy::primitives::Address, AddressError> {
    let hex = text.strip_prefix("0x").ok_or(AddressError::Malformed)?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::Malformed);
    }
    let address: alloy::primitives::Address = text.parse().map_err(|_| AddressError::Malformed)?;
    let mixed = hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && address.to_checksum(None) != text {
        return Err(AddressError::Checksum);
    }
    if address.is_zero() {
        return Err(AddressError::Zero);
    }
    Ok(address)
}

/// A fee raised by `percent` (rounded up, and by at least one wei).
pub fn bumped(fee: u128, percent: u32) -> u128 {
    let raised = fee.saturating_mul(100 + u128::from(percent)).div_ceil(100);
    raised.max(fee.saturating_add(1))
}

/// The fees of a first attempt: the tip, and a cap that survives the base fee
/// doubling (EIP-1559 raises it at most 12.5 % a block).
pub fn first_fees(base_fee: u128, tip: u128) -> (u128, u128) {
    (base_fee.saturating_mul(2).saturating_add(tip), tip)
}

/// Why a withdrawal is refused before anything is held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WithdrawalError {
    #[error("{0} is not a currency of this exchange")]
    UnknownCurrency(String),
    #[error("{0} does not live on the chain: it cannot be withdrawn")]
    OffChain(String),
    #[error("at most {max} {currency} per withdrawal")]
    AboveMaximum { max: Decimal, currency: String },
    #[error("you have {in_flight} withdrawals on their way, the most at once is {max}")]
    TooManyInFlight { in_flight: u64, max: u32 },
}

impl WithdrawalError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCurrency(_) => "unknown_currency",
            Self::OffChain(_) => "currency_not_on_chain",
            Self::AboveMaximum { .. } => "withdrawal_above_maximum",
            Self::TooManyInFlight { .. } => "too_many_withdrawals",
        }
    }
}

/// Room for one more withdrawal of a user who has `in_flight` on their way?
pub fn room_for_another(in_flight: u64, max: u32) -> Result<(), WithdrawalError> {
    if in_flight >= u64::from(max) {
        Err(WithdrawalError::TooManyInFlight { in_flight, max })
    } else {
        Ok(())
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
    fn an_address_is_40_hex_digits_with_its_checksum_when_mixed_case() {
        let good = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        assert_eq!(parse_address(good).unwrap().to_checksum(None), good);
        assert_eq!(
            parse_address(&good.to_lowercase()).unwrap().to_checksum(None),
            good,
            "no checksum to check"
        );
        let typo = "0x70997970c51812dc3A010C7d01b50e0d17dc79C8";
        assert_eq!(parse_address(typo), Err(AddressError::Checksum));
        for bad in [
            "",
            "0x",
            "70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C",
            "0xZZ997970C51812dc3A010C7d01b50e0d17dc79C8",
        ] {
            assert_eq!(parse_address(bad), Err(AddressError::Malformed), "{bad}");
        }
        assert_eq!(parse_address(&format!("0x{}", "0".repeat(40))), Err(AddressError::Zero));
    }

    #[test]
    fn a_replacement_raises_its_fee_by_the_percent_and_at_least_one_wei() {
        assert_eq!(bumped(1_000, 25), 1_250);
        assert_eq!(bumped(3, 10), 4, "rounded up");
        assert_eq!(bumped(0, 25), 1);
        assert_eq!(first_fees(10, 1), (21, 1));
    }

    #[test]
    fn a_user_has_a_bounded_number_of_withdrawals_in_flight() {
        assert!(room_for_another(4, 5).is_ok());
        let full = room_for_another(5, 5).unwrap_err();
        assert_eq!(full.code(), "too_many_withdrawals");
    }

    #[test]
    fn a_window_nets_each_owner_and_currency_and_drops_zeros() {
        let legs = [
            ("alice", "USDT", d("-2000")),
            ("alice", "ETH", d("0.998")),
            ("bob", "ETH", d("-1")),
            ("bob", "USDT", d("1998")),
            ("fees", "ETH", d("0.002")),
            ("fees", "USDT", d("2")),
            // Bob buys it back: his ETH nets to zero.
            ("bob", "ETH", d("1")),
            ("bob", "USDT", d("-1998")),
            ("alice", "ETH", d("-0.998")),
            ("alice", "USDT", d("1998")),
        ];
        let net = net(legs);
        let of = |o: &str, c: &str| net.get(&(o.to_string(), c.to_string())).copied();
        assert_eq!(of("alice", "USDT"), Some(d("-2")));
        assert_eq!(of("alice", "ETH"), None, "nets to zero: no transaction");
        assert_eq!(of("bob", "ETH"), None);
        assert_eq!(of("fees", "ETH"), Some(d("0.002")));
        assert_eq!(net.values().copied().sum::<Decimal>(), d("0.002"), "what the fees hold in ETH");
    }

    #[test]
    fn a_window_closes_after_its_time_or_its_trades() {
        assert!(!window_due(0, 3, 999_000, 1_000, 10));
        assert!(window_due(0, 3, 1_000_000, 1_000, 10));
        assert!(window_due(0, 10, 1, 1_000, 10));
        assert!(window_due(0, 1, 1, 1_000, 0), "at least one trade closes it");
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
