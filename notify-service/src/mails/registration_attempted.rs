//! `user.registration-attempted`: someone tried to register with the
//! owner's address. The person registering got the same answer as for a new
//! address (no enumeration); the owner learns it here.

use bourse_common::catalog::RegistrationAttempted;
use minijinja::context;

use super::{Draft, Kind, Site, To};

pub const KIND: Kind<RegistrationAttempted> = Kind {
    template: "registration_attempted.j2",
    source: include_str!("../../templates/registration_attempted.j2"),
    compose,
};

fn compose(event: RegistrationAttempted, site: &Site) -> Draft {
    Draft { to: To::User(event.user_id), context: context! { email => event.email, site => site.url } }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn tells_the_owner_and_points_to_the_reset() {
        let mail = super::super::tests::render(&RegistrationAttempted {
            user_id: Uuid::now_v7(),
            email: "ann@example.com".into(),
        });
        assert_eq!(mail.subject, "Someone tried to register with your address");
        assert!(mail.text.contains("ann@example.com is already registered"), "{}", mail.text);
        assert!(mail.text.contains("http://bourse.test/api/auth/password-reset"), "{}", mail.text);
        assert!(mail.html.contains("<strong>ann@example.com</strong>"), "{}", mail.html);
    }
}
