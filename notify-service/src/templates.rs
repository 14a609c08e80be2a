//! The e-mail templates (minijinja), embedded in the binary. Each kind of
//! e-mail is one template in `templates/` that extends `layout.j2` and fills
//! three blocks: `subject`, `text` (the plain-text body) and `body` (the HTML
//! body, escaped). Amounts reach templates already written out with their
//! currency (`"0.4995 ETH"`), exactly as stored: templates never compute.
//!
//! The kinds' templates are handed to [`Templates::load`] as `(name, source)`
//! pairs (the mails list them): this module knows the layout only.

use minijinja::{Environment, UndefinedBehavior, Value};

/// One e-mail's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every template, checked when the service starts.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

const LAYOUT: &str = include_str!("../templates/layout.j2");

impl Templates {
    /// Compiles the layout and the given templates, `(name, source)` each; a
    /// syntax error stops the service here.
    pub fn load(
        templates: impl IntoIterator<Item = (&'static str, &'static str)>,
    ) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // A name missing from the context is an error, never an empty string in a user's e-mail.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Off by default: the layout switches escaping on around the HTML body only.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_template("layout.j2", LAYOUT)?;
        for (name, source) in templates {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, template: &str, context: &Value) -> Result<Rendered, minijinja::Error> {
        let mut captured = self.env.get_template(template)?.render_captured(context)?;
        let mut block = |name: &str| {
            captured.with_state_mut(|state| state.render_block(name)).map(|s| s.trim().to_string())
        };
        Ok(Rendered {
            // One line: a header cannot hold a line break.
            subject: block("subject")?.split_whitespace().collect::<Vec<_>>().join(" "),
            text: block("text")? + "\n",
            html: block("html")? + "\n",
        })
    }
}

#[cfg(test)]
mod tests {
    use minijinja::context;

    use super::*;

    const PROBE: &str = r#"{% extends "layout.j2" %}{% block subject %}Hi {{ name }}
again{% endblock %}{% block text %}Hello {{ name }}{% endblock %}{% block body %}<p>Hello {{ name }}</p>{% endblock %}"#;

    #[test]
    fn the_html_body_is_escaped_and_the_text_is_not() {
        let templates = Templates::load([("probe.j2", PROBE)]).unwrap();
        let mail = templates.render("probe.j2", &context! { name => "<b>Ann & Co</b>" }).unwrap();
        assert_eq!(mail.subject, "Hi <b>Ann & Co</b> again");
        assert_eq!(mail.text, "Hello <b>Ann & Co</b>\n");
        assert!(mail.html.contains("<p>Hello &lt;b&gt;Ann &amp; Co&lt;&#x2f;b&gt;</p>"), "{}", mail.html);
    }

    #[test]
    fn a_missing_value_is_an_error_not_a_blank() {
        let templates = Templates::load([("probe.j2", PROBE)]).unwrap();
        let err = templates.render("probe.j2", &context! {}).unwrap_err();
        assert_eq!(err.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn a_syntax_error_stops_the_load() {
        let err = Templates::load([("broken.j2", "{% block subject %}")]).unwrap_err();
        assert_eq!(err.kind(), minijinja::ErrorKind::SyntaxError);
    }
}
