//! `user.password-reset-requested`: the one-time token, and until when it
//! holds. The token arrives sealed with the key shared with the gateway and
//! is opened only here, to be written into the e-mail.

use bourse_common::catalog::PasswordResetRequested;
use minijinja::context;

use super::{Draft, Kind, Site, To};

pub const KIND: Kind<PasswordResetRequested> = Kind {
    template: "password_reset.j2",
    source: include_str!("../../templates/password_reset.j2"),
    compose,
};

fn compose(event: PasswordResetRequested, site: &Site) -> Draft {
    Draft {
        to: To::User(event.user_id),
        context: context! {
            // Only named in the text: the e-mail goes to the address kept at registration.
            email => event.email,
            token => site.reset_key.open(&event.sealed_token).unwrap_or_default(),
            expires_at => event.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            site => site.url,
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn carries_the_token_and_its_expiry() {
        let mail = super::super::tests::render(&PasswordResetRequested {
            user_id: Uuid::now_v7(),
            email: "ann@example.com".into(),
            sealed_token: super::super::tests::test_key().seal("tok-123").unwrap(),
            expires_at: chrono::Utc.with_ymd_and_hms(2026, 11, 23, 22, 15, 0).unwrap(),
        });
        assert_eq!(mail.subject, "Your Bourse password reset");
        assert!(mail.text.contains("    tok-123\n"), "{}", mail.text);
        assert!(mail.text.contains("valid until 2026-11-23 22:15 UTC"));
        assert!(mail.html.contains(">tok-123</p>"));
    }
}
