//! Recipients (kept from `user.registered`, administrators marked from
//! `user.role-granted`) and the record of every e-mail sent.

use bourse_common::db::DbConnection;
use diesel::prelude::*;
use uuid::Uuid;

diesel::table! {
    recipients (user_id) {
        user_id -> Text,
        email -> Text,
        registered_at -> BigInt,
        administrator -> Bool,
    }
}

diesel::table! {
    mails (id) {
        id -> BigInt,
        event_id -> Text,
        event_type -> Text,
        user_id -> Text,
        recipient -> Text,
        message_id -> Text,
        subject -> Text,
        smtp_reply -> Text,
        sent_at -> BigInt,
    }
}

/// Remembers where a user's e-mail goes (the first address stays).
pub fn remember(conn: &mut DbConnection, user: Uuid, email: &str, now: i64) -> QueryResult<()> {
    let row = (
        recipients::user_id.eq(user.to_string()),
        recipients::email.eq(email),
        recipients::registered_at.eq(now),
    );
    bourse_common::on_backend!(conn, |c| diesel::insert_into(recipients::table)
        .values(row.clone())
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// The user's e-mail address, if their registration has arrived.
pub fn recipient(conn: &mut DbConnection, user: Uuid) -> QueryResult<Option<String>> {
    recipients::table.find(user.to_string()).select(recipients::email).first(conn).optional()
}

/// Marks the user an administrator or not; `false` when their registration has not arrived.
pub fn set_administrator(conn: &mut DbConnection, user: Uuid, administrator: bool) -> QueryResult<bool> {
    let changed = diesel::update(recipients::table.find(user.to_string()))
        .set(recipients::administrator.eq(administrator))
        .execute(conn)?;
    Ok(changed == 1)
}

/// The administrators, as `(user, address)`.
pub fn administrators(conn: &mut DbConnection) -> QueryResult<Vec<(String, String)>> {
    recipients::table
        .filter(recipients::administrator.eq(true))
        .order(recipients::registered_at)
        .select((recipients::user_id, recipients::email))
        .load(conn)
}

/// An e-mail the SMTP server accepted.
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = mails)]
pub struct Sent {
    pub event_id: String,
    pub event_type: String,
    pub user_id: String,
    pub recipient: String,
    pub message_id: String,
    pub subject: String,
    pub smtp_reply: String,
    pub sent_at: i64,
}

pub fn record(conn: &mut DbConnection, sent: &Sent) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(mails::table).values(sent).execute(c))?;
    Ok(())
}

/// The e-mails sent, newest first, to one user or to everyone; and how many there are.
pub fn sent(
    conn: &mut DbConnection,
    user: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Sent>, i64)> {
    let user = user.map(|u| u.to_string());
    let query = || {
        let mut query = mails::table.into_boxed();
        if let Some(user) = &user {
            query = query.filter(mails::user_id.eq(user.clone()));
        }
        query
    };
    let total = query().count().get_result(conn)?;
    let rows =
        query().order(mails::id.desc()).limit(limit).offset(offset).select(Sent::as_select()).load(conn)?;
    Ok((rows, total))
}
