//! notify-service's own settings: where e-mail goes, who sends it, and what
//! the e-mails link to (`NOTIFY__SETTINGS__SMTP__PORT=2525` and the like).

use bourse_common::reference::ReferenceData;
use serde::{Deserialize, Serialize};

use crate::mailer::SmtpSettings;

/// notify-service's own settings (`NOTIFY__SETTINGS__SMTP__PORT=2525`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub smtp: SmtpSettings,
    /// The sender of every e-mail; its domain ends every Message-ID.
    pub from: String,
    /// The exchange's public address, for links in e-mails.
    pub site_url: String,
    pub reference: ReferenceData,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            smtp: SmtpSettings::default(),
            from: "Bourse <no-reply@bourse.local>".into(),
            site_url: "http://127.0.0.1:8080".into(),
            reference: ReferenceData::default(),
        }
    }
}
