//! The e-mails, one module per kind: which event it answers, which template
//! it fills and with what. To add one: a module here (its [`Kind`]), its
//! template in `templates/`, and a line in the list of kinds below (the
//! `kinds!` call), which also binds the queue `notify-service.mails` to the
//! kind's event type.
//!
//! The kinds that exist: `welcome` (`user.registered`), `password_reset`
//! (`user.password-reset-requested`), `registration_attempted`
//! (`user.registration-attempted`), `order_rejected` (`order.rejected`) and
//! `order_filled` (`funds.settled`), `wallet_created` (`wallet.created`: the
//! deposit address), `deposit_credited` (`deposit.confirmed`),
//! `withdrawal_confirmed` (`withdrawal.confirmed`), `withdrawal_failed`
//! (`withdrawal.failed`), and `audit_failed` (`audit.failed`, to every administrator).
//!
//! Each event is decoded once, into [`Mails`]; its kind reads the typed
//! event into the template's values. Delivery ([`Postman`]) runs inside the
//! inbox transaction of the event: the e-mail goes to the SMTP server, its
//! reply is recorded in `mails`, and the transaction commits at once, so that
//! the only window for a second copy is a crash between the server's `250`
//! and that commit. Both copies then carry the same `Message-ID`, derived
//! from the event id.

pub mod audit_failed;
pub mod deposit_credited;
pub mod order_filled;
pub mod order_rejected;
pub mod password_reset;
pub mod registration_attempted;
pub mod settlement_confirmed;
pub mod trigger_fired;
pub mod wallet_created;
pub mod welcome;
pub mod withdrawal_confirmed;
pub mod withdrawal_failed;

use bourse_common::catalog::{
    AuditFailed, DepositConfirmed, FundsSettled, OrderRejected, PasswordResetRequested,
    RegistrationAttempted, SettlementConfirmed, Side, TriggerFired, UserRegistered, WalletCreated,
    WithdrawalConfirmed, WithdrawalFailed,
};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use bourse_common::secret::Secret;
use minijinja::Value;
use uuid::Uuid;

use crate::mailer::{Mailer, SendError};
use crate::storage;
use crate::templates::Templates;
use crate::users;

/// An e-mail about an event, before it is addressed: the recipients are the
/// addresses kept for them, never one the event carries.
#[derive(Debug)]
pub struct Draft {
    pub to: To,
    pub context: Value,
}

/// Whom an e-mail goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The user the event is about.
    User(Uuid),
    /// Every administrator (from `user.role-granted`), each their own copy.
    Administrators,
}

/// What a kind of e-mail knows of the exchange besides the event.
#[derive(Debug)]
pub struct Site<'a> {
    /// The public address, for links (`http://127.0.0.1:8080`).
    pub url: &'a str,
    pub reference: &'a ReferenceData,
    /// Opens the reset tokens the gateway sealed.
    pub reset_key: &'a Secret,
}

/// One kind of e-mail, answering the event `E`.
#[derive(Debug)]
pub struct Kind<E> {
    /// Its template's name and source (`templates/<name>`).
    pub template: &'static str,
    pub source: &'static str,
    /// Reads the event into the template's values.
    pub compose: fn(E, &Site) -> Draft,
}

/// Every kind of e-mail, one line each: `Variant(event type) => module`.
/// From the list come [`Mails`] (the queue's events, decoded once, and the
/// queue's bindings), [`Mails::compose`] and [`TEMPLATES`], so that a kind
/// added here is bound, composed and its template loaded.
macro_rules! kinds {
    ($($variant:ident($event:ty) => $module:ident),+ $(,)?) => {
        bourse_common::inbound! {
            /// The events that call for an e-mail (queue `notify-service.mails`), decoded once.
            pub enum Mails {
                $($variant($event)),+
            }
        }

        /// Every kind's template, as `(name, source)`.
        pub const TEMPLATES: &[(&str, &str)] = &[$(($module::KIND.template, $module::KIND.source)),+];

        impl Mails {
            /// The name of the event's template, and its values.
            pub fn compose(self, site: &Site) -> (&'static str, Draft) {
                match self {
                    $(Mails::$variant(event) => {
                        ($module::KIND.template, ($module::KIND.compose)(event, site))
                    })+
                }
            }
        }
    };
}

kinds! {
    Welcome(UserRegistered) => welcome,
    PasswordReset(PasswordResetRequested) => password_reset,
    RegistrationAttempted(RegistrationAttempted) => registration_attempted,
    OrderRejected(OrderRejected) => order_rejected,
    OrderFilled(FundsSettled) => order_filled,
    WalletCreated(WalletCreated) => wallet_created,
    DepositCredited(DepositConfirmed) => deposit_credited,
    WithdrawalConfirmed(WithdrawalConfirmed) => withdrawal_confirmed,
    WithdrawalFailed(WithdrawalFailed) => withdrawal_failed,
    SettlementConfirmed(SettlementConfirmed) => settlement_confirmed,
    TriggerFired(TriggerFired) => trigger_fired,
    AuditFailed(AuditFailed) => audit_failed,
}

/// An amount as a person reads it: exact, with its currency (`"0.4995 ETH"`).
pub fn money(amount: Amount, currency: &str) -> String {
    format!("{amount} {currency}")
}

/// `"bought"` or `"sold"` (the side itself is [`Side::as_str`]).
pub fn past_tense(side: Side) -> &'static str {
    match side {
        Side::Buy => "bought",
        Side::Sell => "sold",
    }
}

/// What notify-service needs to send: the handler of the queue `notify-service.mails`.
#[derive(Debug)]
pub struct Postman {
    pub mailer: Mailer,
    pub templates: Templates,
    pub site_url: String,
    pub reference: ReferenceData,
    pub reset_key: Secret,
}

impl Handle<Mails> for Postman {
    /// Sends the e-mail an event calls for, and records it, inside the event's inbox transaction.
    fn handle(
        &self,
        conn: &mut DbConnection,
        event: Mails,
        envelope: &Envelope,
        _: &mut Emitter,
    ) -> Result<(), HandlerError> {
        if let Mails::Welcome(registered) = &event {
            // The welcome may be handled before the users queue saw the registration.
            users::remember(conn, registered)?;
        }
        if let Mails::PasswordReset(reset) = &event
            && self.reset_key.open(&reset.sealed_token).is_none()
        {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "the reset token does not open with settings.password_reset_key: the gateway's key differs"
            )));
        }
        let site = Site { url: &self.site_url, reference: &self.reference, reset_key: &self.reset_key };
        let (template, draft) = event.compose(&site);
        let recipients: Vec<(String, String)> = match draft.to {
            To::User(user) => match storage::recipient(conn, user)? {
                Some(address) => vec![(user.to_string(), address)],
                // Its registration is on its way (or was lost: the retries end in the dead-letter queue).
                None => {
                    return Err(HandlerError::Transient(anyhow::anyhow!(
                        "no address known yet for user {user}"
                    )));
                }
            },
            To::Administrators => storage::administrators(conn)?,
        };
        if recipients.is_empty() {
            tracing::warn!(event = %envelope.message_type, "no administrator to tell: nothing sent");
        }
        let mail = self
            .templates
            .render(template, &draft.context)
            .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("template {template}: {e:#}")))?;
        let message_id = self.mailer.message_id(envelope.message_id);
        // One copy each (a failure sends them all again on the retry: the
        // same Message-ID lets a mail program show one).
        for (user_id, recipient) in recipients {
            let reply = self.mailer.send(&message_id, &recipient, &mail).map_err(|e| match e {
                SendError::Transient(_) => HandlerError::Transient(e.into()),
                SendError::Permanent(_) => HandlerError::Permanent(e.into()),
            })?;
            tracing::info!(to = %recipient, %message_id, subject = %mail.subject, %reply, "e-mail sent");
            storage::record(
                conn,
                &storage::Sent {
                    event_id: envelope.message_id.to_string(),
                    event_type: envelope.message_type.clone(),
                    user_id,
                    recipient,
                    message_id: message_id.clone(),
                    subject: mail.subject.clone(),
                    smtp_reply: reply,
                    sent_at: now_micros(),
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use bourse_common::inbox::Inbound;
    use bourse_common::messages::{Kind as MessageKind, Message};
    use chrono::Utc;

    use super::*;
    use crate::templates::Rendered;

    /// A kind's e-mail for `payload`, as the recipient would read it: the
    /// event goes through the queue's decoding, as it would on the queue.
    pub fn render<M: Message>(payload: &M) -> Rendered {
        let envelope = Envelope::new("test", "corr", payload, Utc::now());
        let reference = ReferenceData::default();
        let site = Site { url: "http://bourse.test", reference: &reference, reset_key: &test_key() };
        let (template, draft) = Mails::decode(&envelope).unwrap().compose(&site);
        Templates::load(TEMPLATES.iter().copied()).unwrap().render(template, &draft.context).unwrap()
    }

    /// The reset key of [`render`].
    pub fn test_key() -> Secret {
        Secret::new("the test key of notify-service's mails")
    }

    #[test]
    fn each_event_type_has_one_kind_and_each_kind_its_own_template() {
        let events: HashSet<_> = Mails::BINDINGS.iter().map(|(_, t)| *t).collect();
        assert_eq!(events.len(), Mails::BINDINGS.len());
        let templates: HashSet<_> = TEMPLATES.iter().map(|(name, _)| *name).collect();
        assert_eq!(templates.len(), TEMPLATES.len());
    }

    #[test]
    fn the_mails_queue_takes_domain_events_only() {
        assert!(Mails::BINDINGS.iter().all(|(kind, _)| *kind == MessageKind::Event), "{:?}", Mails::BINDINGS);
    }

    #[test]
    fn an_event_of_another_type_is_parked_not_retried() {
        let envelope = Envelope::new(
            "test",
            "corr",
            &bourse_common::catalog::OrderCancelled {
                order_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                market: "ETH-USDT".into(),
                in_book: false,
                quantity: None,
            },
            Utc::now(),
        );
        assert!(matches!(Mails::decode(&envelope), Err(HandlerError::Permanent(_))));
    }
}
