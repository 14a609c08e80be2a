//! order-service's own settings (`ORDER__SETTINGS__*`): the reference data
//! (currencies and markets) that orders are checked against.

use bourse_common::reference::ReferenceData;
use serde::{Deserialize, Serialize};

/// order-service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub reference: ReferenceData,
}
