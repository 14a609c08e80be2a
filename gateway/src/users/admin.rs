//! Administrators. No address is an administrator by itself: the first one
//! is made by the operator command `bourse admin grant <email>` (which calls
//! [`grant`] on the gateway's database), further ones by an administrator
//! through `POST /api/admin/users/{id}/role`. Every change of role is an
//! audited event (`user.role-granted`) written in the same transaction, and
//! raises the user's token version, so that a token with the old role stops
//! working.

use bourse_common::auth::Role;
use bourse_common::catalog::RoleGranted;
use bourse_common::db::{Db, DbConnection, DbError};
use bourse_common::outbox::Emitter;
use bourse_common::registry;
use uuid::Uuid;

use super::domain::Email;
use super::storage::{self, StoredUser};

/// Whose role to set.
#[derive(Debug, Clone)]
pub enum Target {
    Email(Email),
    Id(Uuid),
}

/// Who set it.
#[derive(Debug, Clone, Copy)]
pub enum GrantedBy {
    /// The operator command, run where the gateway's database is.
    Operator,
    Admin(Uuid),
}

/// Sets `target`'s role, with its `user.role-granted` event, in one
/// transaction. `None` when there is no such user. Setting the role it
/// already has changes nothing and sends nothing.
pub async fn grant(
    db: &Db,
    target: Target,
    role: Role,
    by: GrantedBy,
) -> Result<Option<StoredUser>, DbError> {
    db.write(move |c| grant_in(c, &target, role, by)).await
}

fn grant_in(
    c: &mut DbConnection,
    target: &Target,
    role: Role,
    by: GrantedBy,
) -> Result<Option<StoredUser>, DbError> {
    let user = match target {
        Target::Email(email) => storage::find_by_email(c, email)?,
        Target::Id(id) => storage::find_by_id(c, *id)?,
    };
    let Some(mut user) = user else { return Ok(None) };
    if user.role == role {
        return Ok(Some(user));
    }
    storage::set_role(c, user.id, role)?;
    let mut out = Emitter::new(registry::GATEWAY.name);
    let (granted_by, via) = match by {
        GrantedBy::Operator => (None, "cli"),
        GrantedBy::Admin(id) => (Some(id), "api"),
    };
    out.send(
        &user.id.to_string(),
        &RoleGranted {
            user_id: user.id,
            email: user.email.clone(),
            role,
            previous_role: user.role,
            granted_by,
            via: via.into(),
        },
    );
    out.flush(c)?;
    user.role = role;
    user.token_version += 1;
    Ok(Some(user))
}
