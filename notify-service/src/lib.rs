//! `notify-service`: e-mail to users over SMTP, never twice for one event.
//!
//! The e-mails it sends (one module of [`mails`] each):
//!
//! | event | e-mail |
//! | --- | --- |
//! | `user.registered` | welcome |
//! | `user.password-reset-requested` | the one-time reset token (sealed by the gateway, opened here) |
//! | `user.registration-attempted` | someone tried to register with the user's address |
//! | `order.rejected` | the refusal, with the reason and the amounts |
//! | `funds.settled` | an order filled or partly filled, with what was credited |
//!
//! Not yet: the wallet address (`wallet.created`), deposits, withdrawals
//! and `transfer.confirmed`.
//!
//! | module | owns |
//! | --- | --- |
//! | [`mails`] | the kinds of e-mail (one module and one template each) and their delivery |
//! | [`users`] | the recipients' addresses, kept from `user.registered` |
//! | [`mailer`] | the SMTP client (lettre) and what its failures mean |
//! | [`templates`] | the templates, embedded and checked at start-up |
//! | [`storage`] | recipients and the record of every e-mail sent |
//! | [`routes`] | REST: the record, for administrators |
//! | `settings` | [`Settings`]: SMTP, sender, site address, reference data |
//!
//! Two queues: `notify-service.users` ([`users`]) keeps each new user's
//! address; `notify-service.mails` ([`mails`]) takes every event that calls
//! for an e-mail, one at a time (an e-mail cannot be rolled back with a
//! batch). An SMTP server that is down or answers 4xx sends the event to the
//! retry tiers (growing delays), then to `notify-service.mails.dlq`; a 5xx
//! parks that event at once and the queue goes on.
//!
//! A library with a thin `main.rs`: [`NotifyService`] is its
//! [`Service`]; `NotifyService::run(config)` starts it on the configured
//! ports and URLs, so that tests and `bourse up` start it in-process.

pub mod mailer;
pub mod mails;
pub mod routes;
mod settings;
pub mod storage;
pub mod templates;
pub mod users;

use std::sync::Arc;

use bourse_common::config::ServiceConfig;
use bourse_common::inbox::consume;
use bourse_common::registry::{self, ServiceInfo};
use bourse_common::service::{Service, ServiceParts};
use utoipa::OpenApi;

pub use crate::settings::Settings;

use crate::mailer::Mailer;
use crate::mails::{Mails, Postman};
use crate::templates::Templates;
use crate::users::Users;

/// notify-service's configuration (`NOTIFY__DATABASE__URL` and the like override it).
pub type Config = ServiceConfig<Settings>;

/// notify-service. Its embedded defaults: `./data/notify-service.db`, local
/// RabbitMQ, SMTP on 127.0.0.1:2525, port 8085.
#[derive(Debug)]
pub struct NotifyService;

impl Service for NotifyService {
    const INFO: &'static ServiceInfo = &registry::NOTIFY;
    type Settings = Settings;

    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        let postman = Postman {
            mailer: Mailer::new(&settings.smtp, &settings.from)?,
            templates: Templates::load(mails::TEMPLATES.iter().copied())?,
            site_url: settings.site_url.trim_end_matches('/').to_string(),
            reference: settings.reference.clone(),
            reset_key: settings.reset_key()?,
        };
        Ok(ServiceParts {
            migrations: vec![&MIGRATIONS],
            consumers: vec![
                consume::<Users>("notify-service.users", users::handle),
                consume::<Mails>("notify-service.mails", postman).one_at_a_time(),
            ],
            routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
            openapi: routes::Api::openapi(),
            ..Default::default()
        })
    }
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
