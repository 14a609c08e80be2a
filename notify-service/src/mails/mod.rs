//! The e-mails, one module per kind: which event it answers, which template
//! it fills and with what. To add one: a module here (its [`Kind`]), its
//! template in `templates/`, and a line in [`KINDS`].
//!
//! Delivery ([`deliver`]) runs inside the inbox transaction of the event: the
//! e-mail goes to the SMTP server, its reply is recorded in `mails`, and the
//! transaction commits at once, so that the only window for a second copy is
//! a crash between the server's `250` and that commit. Both copies then carry
//! the same `Message-ID`, derived from the event id.

pub mod order_filled;
pub mod order_rejected;
pub mod password_reset;
pub mod welcome;

use bourse_common::catalog::{Side, UserRegistered};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::reference::ReferenceData;
use minijinja::Value;
use uuid::Uuid;

use crate::mailer::{Mailer, SendError};
use crate::storage;
use crate::templates::Templates;

/// An e-mail about an event, before it is addressed: the recipient is the
/// address kept for `user_id`, never one the event carries.
#[derive(Debug)]
pub struct Draft {
    pub user_id: Uuid,
    pub context: Value,
}

/// What a kind of e-mail knows of the exchange besides the event.
#[derive(Debug)]
pub struct Site<'a> {
    /// The public address, for links (`http://127.0.0.1:8080`).
    pub url: &'a str,
    pub reference: &'a ReferenceData,
}

/// One kind of e-mail.
#[derive(Debug)]
pub struct Kind {
    /// The event type it answers.
    pub event: &'static str,
    /// Its template's name and source (`templates/<name>`).
    pub template: &'static str,
    pub source: &'static str,
    /// Reads the event into the template's values.
    pub compose: fn(&Envelope, &Site) -> Result<Draft, HandlerError>,
}

/// Every kind of e-mail.
pub const KINDS: &[Kind] = &[welcome::KIND, password_reset::KIND, order_rejected::KIND, order_filled::KIND];

/// The event types notify-service mails about.
pub fn events() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.event).collect()
}

/// An amount as a person reads it: exact, with its currency (`"0.4995 ETH"`).
pub fn money(amount: Amount, currency: &str) -> String {
    format!("{amount} {currency}")
}

/// `"buy"` and `"bought"`, `"sell"` and `"sold"`.
pub fn side_words(side: Side) -> (&'static str, &'static str) {
    match side {
        Side::Buy => ("buy", "bought"),
        Side::Sell => ("sell", "sold"),
    }
}

/// What notify-service needs to send.
#[derive(Debug)]
pub struct Postman {
    pub mailer: Mailer,
    pub templates: Templates,
    pub site_url: String,
    pub reference: ReferenceData,
}

/// Keeps a new user's address (queue `notify-service.users`, apart from the
/// e-mails, so that a welcome that cannot be delivered loses no address).
pub fn user_registered(conn: &mut DbConnection, message: &Envelope) -> Result<(), HandlerError> {
    let event: UserRegistered = message.payload()?;
    storage::remember(conn, event.user_id, &event.email, now_micros())?;
    Ok(())
}

/// Sends the e-mail an event calls for, and records it, inside the event's inbox transaction.
pub fn deliver(postman: &Postman, conn: &mut DbConnection, message: &Envelope) -> Result<(), HandlerError> {
    let kind = KINDS
        .iter()
        .find(|k| k.event == message.message_type)
        .ok_or_else(|| HandlerError::unexpected(message))?;
    if kind.event == UserRegistered::TYPE {
        // The welcome may be handled before the users queue saw the registration.
        user_registered(conn, message)?;
    }
    let draft = (kind.compose)(message, &Site { url: &postman.site_url, reference: &postman.reference })?;
    let Some(recipient) = storage::recipient(conn, draft.user_id)? else {
        // Its registration is on its way (or was lost: the retries end in the dead-letter queue).
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "no address known yet for user {}",
            draft.user_id
        )));
    };
    let mail = postman
        .templates
        .render(kind.template, &draft.context)
        .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("template {}: {e:#}", kind.template)))?;
    let message_id = postman.mailer.message_id(message.message_id);
    let reply = postman.mailer.send(&message_id, &recipient, &mail).map_err(|e| match e {
        SendError::Transient(_) => HandlerError::Transient(e.into()),
        SendError::Permanent(_) => HandlerError::Permanent(e.into()),
    })?;
    tracing::info!(to = %recipient, %message_id, subject = %mail.subject, %reply, "e-mail sent");
    storage::record(
        conn,
        &storage::Sent {
            event_id: message.message_id.to_string(),
            event_type: message.message_type.clone(),
            user_id: draft.user_id.to_string(),
            recipient,
            message_id,
            subject: mail.subject,
            smtp_reply: reply,
            sent_at: now_micros(),
        },
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use bourse_common::messages::Message;
    use chrono::Utc;
    use serde::Serialize;

    use super::*;
    use crate::templates::Rendered;

    /// A kind's e-mail for `payload`, as the recipient would read it.
    pub fn render<M: Message + Serialize>(payload: &M) -> Rendered {
        let envelope = Envelope::new("test", "corr", payload, Utc::now());
        let kind = KINDS.iter().find(|k| k.event == M::TYPE).unwrap();
        let reference = ReferenceData::default();
        let draft =
            (kind.compose)(&envelope, &Site { url: "http://bourse.test", reference: &reference }).unwrap();
        Templates::load().unwrap().render(kind.template, &draft.context).unwrap()
    }

    #[test]
    fn each_event_type_has_one_kind() {
        let mut events = events();
        events.sort();
        events.dedup();
        assert_eq!(events.len(), KINDS.len());
    }
}
