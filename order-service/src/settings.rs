//! order-service's own settings (`ORDER__SETTINGS__*`): the reference data
//! (currencies and markets) that orders are checked against, and how many
//! orders a user may have open at once; price triggers' limits, the market
//! buy cap, where the last price is read, and how often expiry is looked for.

use bourse_common::reference::ReferenceData;
use serde::{Deserialize, Serialize};

/// order-service's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub reference: ReferenceData,
    /// Orders a user may hold not yet ended (pending, open, partially
    /// filled, cancel requested); one more is 422 `too_many_open_orders`.
    pub max_open_orders: u32,
    /// Price triggers a user may hold not yet ended (pending or active);
    /// one more is 422 `too_many_triggers`.
    pub max_active_triggers: u32,
    /// A market buy placed by a trigger is capped this many percent above
    /// its stop: the cap sizes what it holds from placement.
    pub market_buy_cap_percent: rust_decimal::Decimal,
    /// Where matching-service answers (`/api/history/trades`): a trigger is
    /// checked against its market's last price when placed. Unset: not
    /// checked here; matching-service still refuses one crossed when armed.
    pub matching_service_url: Option<String>,
    /// How often triggers past their `expires_at` are looked for (ms); 0: never.
    pub trigger_expiry_sweep_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reference: ReferenceData::default(),
            max_open_orders: 200,
            max_active_triggers: 200,
            market_buy_cap_percent: rust_decimal::Decimal::TEN,
            matching_service_url: None,
            trigger_expiry_sweep_ms: 1000,
        }
    }
}
