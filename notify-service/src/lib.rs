//! `notify-service`: e-mail to users over SMTP for the user-facing events, never twice for one event.
//!
//! | module | owns |
//! | --- | --- |
//! | [`mails`] | the kinds of e-mail (one module and one template each) and their delivery |
//! | [`mailer`] | the SMTP client (lettre) and what its failures mean |
//! | [`templates`] | the templates, embedded and checked at start-up |
//! | [`storage`] | recipients kept from `user.registered`, the record of every e-mail sent |
//! | [`routes`] | REST: the record, for administrators |
//!
//! Two queues: `notify-service.users` keeps each new user's address;
//! `notify-service.mails` takes every event that calls for an e-mail, one at a
//! time (an e-mail cannot be rolled back with a batch). An SMTP server that is
//! down or answers 4xx sends the event to the retry tiers (growing delays),
//! then to `notify-service.mails.dlq`; a 5xx parks that event at once and the
//! queue goes on.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod mailer;
pub mod mails;
pub mod routes;
pub mod storage;
pub mod templates;

use std::sync::Arc;

use bourse_common::catalog::UserRegistered;
use bourse_common::config::ServiceConfig;
use bourse_common::inbox::Handler;
use bourse_common::messages::Message;
use bourse_common::reference::ReferenceData;
use bourse_common::service::{self, RunningService, ServiceParts};
use bourse_common::topology::QueueSpec;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::mailer::{Mailer, SmtpSettings};
use crate::mails::Postman;
use crate::templates::Templates;

pub const NAME: &str = "notify-service";
/// `NOTIFY__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "NOTIFY";
pub const DEFAULT_PORT: u16 = 8085;

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            smtp: SmtpSettings::default(),
            from: "Bourse <no-reply@bourse.local>".into(),
            site_url: "http://127.0.0.1:8080".into(),
            reference: ReferenceData::default(),
        }
    }
}

pub type Config = ServiceConfig<Settings>;

/// The embedded defaults: `./data/notify-service.db`, local RabbitMQ, SMTP on 127.0.0.1:2525, port 8085.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    let settings = &config.settings;
    let postman = Arc::new(Postman {
        mailer: Mailer::new(&settings.smtp, &settings.from)?,
        templates: Templates::load()?,
        site_url: settings.site_url.trim_end_matches('/').to_string(),
        reference: settings.reference.clone(),
    });
    let users: Arc<dyn Handler> = Arc::new(|c: &mut _, m: &_, _: &mut _| mails::user_registered(c, m));
    let mails: Arc<dyn Handler> = Arc::new(move |c: &mut _, m: &_, _: &mut _| mails::deliver(&postman, c, m));
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        consumers: vec![
            (QueueSpec::new("notify-service.users").events(&[UserRegistered::TYPE]), users),
            (QueueSpec::new("notify-service.mails").events(&mails::events()).one_at_a_time(), mails),
        ],
        routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
        openapi: routes::Api::openapi(),
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
