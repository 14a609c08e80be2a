//! `user.registered`: welcome to the exchange.

use bourse_common::catalog::UserRegistered;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::messages::Message;
use minijinja::context;

use super::{Draft, Kind, Site};

pub const KIND: Kind = Kind {
    event: UserRegistered::TYPE,
    template: "welcome.j2",
    source: include_str!("../../templates/welcome.j2"),
    compose,
};

fn compose(message: &Envelope, site: &Site) -> Result<Draft, HandlerError> {
    let event: UserRegistered = message.payload()?;
    Ok(Draft { user_id: event.user_id, context: context! { email => event.email, site => site.url } })
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
