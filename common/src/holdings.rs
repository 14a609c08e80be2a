//! The custodial wallets on chain against the ledger: what chain-service
//! answers on `GET /api/admin/chain/holdings` and payment-service's audit
//! reads (chain reconciliation: `on_chain = ledger + in_flight.total()` for
//! every wallet and asset).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What the chain holds beyond the ledger (negative: short of it), by cause.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InFlight {
    #[schema(value_type = String)]
    pub deposits: Decimal,
    #[schema(value_type = String)]
    pub withdrawals: Decimal,
    #[schema(value_type = String)]
    pub settlement: Decimal,
    #[schema(value_type = String)]
    pub gas: Decimal,
}

impl InFlight {
    pub fn total(&self) -> Decimal {
        self.deposits + self.withdrawals + self.settlement + self.gas
    }
}

/// One wallet's holding of one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Holding {
    /// A user's id, `fees` (the fee wallet) or `clearing`.
    pub owner: String,
    pub address: String,
    pub currency: String,
    /// The balance on chain at the block, exactly (all its decimals).
    #[schema(value_type = String)]
    pub on_chain: Decimal,
    pub in_flight: InFlight,
}

/// A settlement window that will not settle by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedWindow {
    pub id: String,
    pub reason: Option<String>,
}

/// Every custodial wallet's holdings at a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Holdings {
    pub block: u64,
    pub holdings: Vec<Holding>,
    pub failed_windows: Vec<FailedWindow>,
}
