//! payment-service's own settings (`PAYMENT__SETTINGS__*`): whether top-up
//! answers, the reference data amounts are checked against, the fee rates.

use bourse_common::reference::ReferenceData;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// payment-service's own settings (`PAYMENT__SETTINGS__TOP_UP_ENABLED=false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `POST /api/users/me/accounts/{currency}/top-up` answers; switch off in production.
    pub top_up_enabled: bool,
    pub reference: ReferenceData,
    /// Fee of the resting side of a trade, as a fraction of what it receives (`"0.001"` = 0.1%).
    pub maker_fee_rate: Decimal,
    /// Fee of the side that took liquidity.
    pub taker_fee_rate: Decimal,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            top_up_enabled: true,
            reference: ReferenceData::default(),
            maker_fee_rate: Decimal::new(1, 3),
            taker_fee_rate: Decimal::new(2, 3),
        }
    }
}
