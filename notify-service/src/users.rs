//! The queue `notify-service.users`: keeps each new user's address, apart
//! from the e-mails, so that a welcome that cannot be delivered loses no
//! address, and who is an administrator (`user.role-granted`). An e-mail goes
//! to the address kept here, never to one its event carries.

use bourse_common::auth::Role;
use bourse_common::catalog::{RoleGranted, UserRegistered};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::HandlerError;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;

use crate::storage;

bourse_common::inbound! {
    /// What the queue `notify-service.users` takes.
    pub enum Users {
        Registered(UserRegistered),
        RoleGranted(RoleGranted),
    }
}

/// Handles one message of the queue.
pub fn handle(
    conn: &mut DbConnection,
    message: Users,
    _: &Envelope,
    _: &mut Emitter,
) -> Result<(), HandlerError> {
    match message {
        Users::Registered(event) => remember(conn, &event),
        Users::RoleGranted(event) => {
            // The registration comes first in this queue (the same producer, in order).
            if storage::set_administrator(conn, event.user_id, event.role == Role::Admin)? {
                Ok(())
            } else {
                Err(HandlerError::Transient(anyhow::anyhow!(
                    "no address known yet for user {}",
                    event.user_id
                )))
            }
        }
    }
}

/// Keeps where the new user's e-mail goes (the first address stays).
pub fn remember(conn: &mut DbConnection, event: &UserRegistered) -> Result<(), HandlerError> {
    storage::remember(conn, event.user_id, &event.email, now_micros())?;
    Ok(())
}
