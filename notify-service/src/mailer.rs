//! Sending one e-mail over SMTP (lettre), and what its failure means.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use bourse_common::secret::Secret;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
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
    pub password: Option<Secret>,
    pub tls: TlsMode,
    /// A certificate authority (PEM) to trust besides the public ones, for a
    /// server whose certificate a private CA signed.
    pub ca_file: Option<PathBuf>,
    /// How long one SMTP command may take before the send counts as failed (and is retried).
    pub timeout_ms: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2525,
            username: None,
            password: None,
            tls: TlsMode::None,
            ca_file: None,
            timeout_ms: 10_000,
        }
    }
}

/// Why an e-mail did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server is down or slow, answered 4xx, or refused the connection
    /// (TLS, login): worth trying again later.
    #[error("SMTP: {0}")]
    Transient(String),
    /// A 5xx answer to this e-mail, or an address that cannot be written: it will never go.
    #[error("SMTP: {0}")]
    Permanent(String),
}

/// An SMTP client for one server and one sender. It keeps one connection
/// open between e-mails (the mails queue is handled one event at a time).
///
/// It drives lettre's [`SmtpConnection`] itself, rather than lettre's
/// transport, for one reason: lettre 0.11.23 writes an e-mail's body and its
/// closing `CRLF.CRLF` in two writes on a socket without `TCP_NODELAY`, so
/// Nagle holds the five closing bytes until the server's delayed ACK: 40 ms
/// per e-mail (22 e-mails/s on loopback). Here body and terminator leave in
/// one write. When a lettre release sets `TCP_NODELAY` (lettre PR #1159,
/// merged upstream, not yet on crates.io), this goes back to `SmtpTransport`.
pub struct Mailer {
    smtp: SmtpSettings,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    from: Mailbox,
    /// The sender's domain, the right-hand side of every Message-ID.
    domain: String,
    connection: Mutex<Option<SmtpConnection>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(smtp: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("sender {from:?}: {e}"))?;
        let tls = match smtp.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => {
                let mut tls = TlsParameters::builder(smtp.host.clone());
                if let Some(path) = &smtp.ca_file {
                    let read = || -> anyhow::Result<Certificate> {
                        Ok(Certificate::from_pem(&std::fs::read(path)?)?)
                    };
                    let ca = read().with_context(|| format!("smtp.ca_file {}", path.display()))?;
                    tls = tls.add_root_certificate(ca);
                }
                Some(tls.build()?)
            }
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(_), Some(_)) if smtp.tls == TlsMode::None => anyhow::bail!(
                "smtp.username and smtp.password with smtp.tls = none would send the password in clear: \
                 use starttls or tls, or no login"
            ),
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_string()))
            }
            (None, None) => None,
            _ => anyhow::bail!("smtp.username and smtp.password go together: set both or neither"),
        };
        let domain = from.email.domain().to_string();
        Ok(Self {
            smtp: smtp.clone(),
            tls,
            credentials,
            hello: ClientId::default(),
            from,
            domain,
            connection: Mutex::new(None),
        })
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
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        // A kept connection the server may have closed meanwhile: checked with a NOOP.
        let kept = slot.take().filter(|c| !c.has_broken()).and_then(|mut c| {
            if c.test_connected() {
                Some(c)
            } else {
                c.abort();
                None
            }
        });
        let mut connection = match kept {
            Some(connection) => connection,
            // Not this e-mail's fault (the server, the network, TLS or the
            // login): the e-mail waits for it to be mended, never parked at once.
            None => self.connect().map_err(|e| SendError::Transient(format!("connecting: {e}")))?,
        };
        match transfer(&mut connection, &message) {
            Ok(response) => {
                *slot = Some(connection);
                Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
            }
            Err(e) => {
                connection.abort();
                if e.is_permanent() {
                    Err(SendError::Permanent(e.to_string()))
                } else {
                    Err(SendError::Transient(e.to_string()))
                }
            }
        }
    }

    fn connect(&self) -> Result<SmtpConnection, smtp::Error> {
        let timeout = Some(Duration::from_millis(self.smtp.timeout_ms));
        let implicit_tls = if self.smtp.tls == TlsMode::Tls { self.tls.as_ref() } else { None };
        let server = (self.smtp.host.as_str(), self.smtp.port);
        let mut connection = SmtpConnection::connect(server, timeout, &self.hello, implicit_tls, None)?;
        if let (TlsMode::Starttls, Some(tls)) = (self.smtp.tls, &self.tls) {
            // Required: a server that does not offer it is an error, never a plain-text fallback.
            connection.starttls(tls, &self.hello)?;
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials)?;
        }
        Ok(connection)
    }
}

/// One e-mail over an open connection: MAIL, RCPT, DATA, then the
/// dot-stuffed body and its terminator in a single write.
fn transfer(connection: &mut SmtpConnection, message: &Message) -> Result<Response, smtp::Error> {
    let envelope = message.envelope();
    let body = message.formatted();
    let mut options = Vec::new();
    if !body.is_ascii() {
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    connection.command(Mail::new(envelope.from().cloned(), options))?;
    for to in envelope.to() {
        connection.command(Rcpt::new(to.clone(), vec![]))?;
    }
    connection.command(Data)?;
    connection.command(DataBody(&String::from_utf8_lossy(&body)))
}

/// The data of an e-mail as sent: lines starting with `.` get one more
/// (RFC 5321, 4.5.2), then `CRLF.CRLF`.
struct DataBody<'a>(&'a str);

impl std::fmt::Display for DataBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut at_line_start = true;
        for c in self.0.chars() {
            if at_line_start && c == '.' {
                f.write_str(".")?;
            }
            f.write_char(c)?;
            at_line_start = c == '\n';
        }
        f.write_str(if self.0.ends_with("\r\n") { ".\r\n" } else { "\r\n.\r\n" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_over_plain_text_is_refused_at_start_and_the_password_never_printed() {
        let smtp = SmtpSettings {
            username: Some("bourse".into()),
            password: Some(Secret::new("smtp-pass-word")),
            ..SmtpSettings::default()
        };
        let error = Mailer::new(&smtp, "Bourse <no-reply@bourse.local>").unwrap_err();
        assert!(error.to_string().contains("tls = none"), "{error}");
        assert!(!format!("{smtp:?} {error:#}").contains("smtp-pass-word"));
        let smtp = SmtpSettings { tls: TlsMode::Starttls, ..smtp };
        let mailer = Mailer::new(&smtp, "Bourse <no-reply@bourse.local>").unwrap();
        assert!(!format!("{mailer:?}").contains("smtp-pass-word"));
    }

    #[test]
    fn a_user_name_without_a_password_is_refused_at_start() {
        let smtp = SmtpSettings { username: Some("bourse".into()), ..SmtpSettings::default() };
        let error = Mailer::new(&smtp, "Bourse <no-reply@bourse.local>").unwrap_err();
        assert!(error.to_string().contains("smtp.username and smtp.password"), "{error}");
    }

    #[test]
    fn data_lines_starting_with_a_dot_get_another_and_the_end_is_marked() {
        assert_eq!(DataBody("a\r\n.b\r\n..c\r\nd.").to_string(), "a\r\n..b\r\n...c\r\nd.\r\n.\r\n");
        assert_eq!(DataBody(".x\r\n").to_string(), "..x\r\n.\r\n");
    }
}
