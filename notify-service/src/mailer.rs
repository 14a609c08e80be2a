//! Sending one e-mail over SMTP (lettre), and what its failure means.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{PoolConfig, SmtpTransport};
use lettre::{Message, Transport};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::templates::Rendered;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text: only for a server on this machine (the dev default).
    None,
    /// Upgrade with STARTTLS, required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where e-mail goes (`NOTIFY__SETTINGS__SMTP__HOST` and the like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: TlsMode,
    /// How long one SMTP command may take before the send counts as failed (and is retried).
    pub timeout_ms: u64,
    /// Open connections kept for reuse.
    pub pool_size: u32,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2525,
            username: None,
            password: None,
            tls: TlsMode::None,
            timeout_ms: 10_000,
            pool_size: 4,
        }
    }
}

/// Why an e-mail did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server is down or slow, or answered 4xx: worth trying again later.
    #[error("SMTP: {0}")]
    Transient(String),
    /// A 5xx answer, or an address that cannot be written: it will never go.
    #[error("SMTP: {0}")]
    Permanent(String),
}

/// An SMTP client for one server and one sender.
#[derive(Clone)]
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
    /// The sender's domain, the right-hand side of every Message-ID.
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(smtp: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("sender {from:?}: {e}"))?;
        let builder = match smtp.tls {
            TlsMode::None => SmtpTransport::builder_dangerous(&smtp.host),
            TlsMode::Starttls => SmtpTransport::starttls_relay(&smtp.host)?,
            TlsMode::Tls => SmtpTransport::relay(&smtp.host)?,
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
            .pool_config(PoolConfig::new().max_size(smtp.pool_size.max(1)));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let domain = from.email.domain().to_string();
        Ok(Self { transport: builder.build(), from, domain })
    }

    /// The Message-ID of the e-mail about `event`: the same for every attempt,
    /// so that a duplicate can be recognised by mail software.
    pub fn message_id(&self, event: Uuid) -> String {
        format!("<{event}@{}>", self.domain)
    }

    /// Sends one e-mail and returns the server's reply (`250 ...`). Blocks.
    pub fn send(&self, message_id: &str, to: &str, mail: &Rendered) -> Result<String, SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::Permanent(format!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .message_id(Some(message_id.to_string()))
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .date_now()
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| SendError::Permanent(format!("building the message: {e}")))?;
        match self.transport.send(&message) {
            Ok(response) => {
                let text: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), text.join(" ")))
            }
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}
