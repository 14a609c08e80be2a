//! order-service's own settings (`ORDER__SETTINGS__*`): the reference data
//! (currencies and markets) that orders are checked against, and how many
//! orders a user may have open at once.

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
}

impl Default for Settings {
    fn default() -> Self {
        Self { reference: ReferenceData::default(), max_open_orders: 200 }
    }
}
