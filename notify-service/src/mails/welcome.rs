//! `user.registered`: welcome to the exchange.

use bourse_common::catalog::UserRegistered;
use minijinja::context;

use super::{Draft, Kind, Site, To};

pub const KIND: Kind<UserRegistered> =
    Kind { template: "welcome.j2", source: include_str!("../../templates/welcome.j2"), compose };

fn compose(event: UserRegistered, site: &Site) -> Draft {
    Draft { to: To::User(event.user_id), context: context! { email => event.email, site => site.url } }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn greets_the_new_account() {
        let mail = super::super::tests::render(&UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ann@example.com".into(),
        });
        assert_eq!(mail.subject, "Welcome to Bourse");
        assert!(mail.text.contains("your Bourse account ann@example.com is ready"), "{}", mail.text);
        assert!(mail.html.contains("<strong>ann@example.com</strong>"), "{}", mail.html);
        assert!(mail.text.contains("http://bourse.test/swagger-ui/"));
    }
}
