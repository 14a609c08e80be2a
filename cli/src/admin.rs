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
