//! matching-service's own settings (`MATCHING__SETTINGS__*`).

use bourse_common::reference::ReferenceData;
use serde::{Deserialize, Serialize};

/// matching-service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The markets whose books it keeps (and their currencies).
    pub reference: ReferenceData,
}
