//! `bourse admin grant <email>`: the operator makes an administrator by
//! writing to the gateway's database directly (where only an operator can),
//! through the same code as the admin route, so that the grant is audited
//! (`user.role-granted`, written to the gateway's outbox in the same
//! transaction and published by the gateway's relay).

use bourse_common::auth::Role;
use bourse_common::config::DatabaseConfig;
use bourse_common::db::Db;
use gateway::users::admin::{self, GrantedBy, Target};
use gateway::users::domain::Email;
use gateway::users::storage::StoredUser;

/// Gives the user registered with `email` the role `role`, in the gateway's
/// database at `database` (a SQLite file or a `postgres://` URL).
pub async fn grant(database: &str, email: &str, role: Role) -> anyhow::Result<StoredUser> {
    let email = Email::parse(email)?;
    let db = Db::connect(&DatabaseConfig { url: database.to_string(), pool_size: 1 })?;
    admin::grant(&db, Target::Email(email.clone()), role, GrantedBy::Operator)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user is registered with {email} in {}", redact(database)))
}

fn redact(url: &str) -> String {
    bourse_common::config::redact_url(url)
}

/// `bourse audit`: runs payment-service's audit on its database at
/// `database` and the event log at `amqp_url`, and keeps the report (a
/// report with discrepancies raises `audit.failed` through payment-service's
/// outbox). The settings (fee rates, reference data, `chain_service_url`
/// with `security.internal_secret` to reconcile the chain) are
/// payment-service's configuration: its defaults, `config` (a TOML file) and `PAYMENT__*`.
pub async fn audit(
    database: &str,
    amqp_url: &str,
    config: Option<&std::path::Path>,
) -> anyhow::Result<payment_service::audit::Report> {
    use bourse_common::service::Service;
    use payment_service::PaymentService;
    let defaults = PaymentService::default_config();
    let config = bourse_common::config::load(&defaults, config, PaymentService::INFO.env_prefix)?;
    let db = Db::connect(&DatabaseConfig { url: database.to_string(), pool_size: 2 })?;
    db.migrate(&[&payment_service::MIGRATIONS]).await?;
    let bus = bourse_common::bus::Bus {
        producer: PaymentService::INFO.name.to_string(),
        db,
        amqp_url: amqp_url.to_string(),
        config: config.messaging.clone(),
        faults: Default::default(),
        metrics: Default::default(),
    };
    let chain = payment_service::audit::ChainSource::of(&config);
    let auditor = payment_service::audit::Auditor { settings: config.settings, bus, chain };
    Ok(auditor.audit().await?)
}
