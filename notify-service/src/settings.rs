//! notify-service's own settings: where e-mail goes, who sends it, and what
//! the e-mails link to (`NOTIFY__SETTINGS__SMTP__PORT=2525` and the like).

use bourse_common::reference::ReferenceData;
use bourse_common::secret::Secret;
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
    /// The key the gateway seals reset tokens with (its
    /// `settings.password_reset_key`, the same value). Required: notify-service
    /// refuses to start without it.
    pub password_reset_key: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            smtp: SmtpSettings::default(),
            from: "Bourse <no-reply@bourse.local>".into(),
            site_url: "http://127.0.0.1:8080".into(),
            reference: ReferenceData::default(),
            password_reset_key: None,
        }
    }
}

impl Settings {
    /// The reset key, or why notify-service cannot start.
    pub fn reset_key(&self) -> anyhow::Result<Secret> {
        self.password_reset_key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "settings.password_reset_key is not set: notify-service refuses to start without it; \
                 set NOTIFY__SETTINGS__PASSWORD_RESET_KEY to the gateway's GATEWAY__SETTINGS__PASSWORD_RESET_KEY"
            )
        })
    }
}
