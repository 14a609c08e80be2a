//! The `users` and `password_resets` tables (the same diesel code on SQLite
//! and PostgreSQL). A stored value that does not decode (an id, a role) is an
//! error, never a silent default.

use bourse_common::auth::Role;
use bourse_common::db::DbConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use uuid::Uuid;

use super::domain::Email;

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
        token_version -> BigInt,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    role: Role,
    created_at: i64,
    token_version: i64,
}

/// A registered user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: Uuid,
    /// Normalized when it was registered.
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    /// Tokens carry it; only tokens of the current version are valid.
    pub token_version: i64,
}

fn undecodable(what: &str, value: &str) -> DieselError {
    DieselError::DeserializationError(format!("stored {what} `{value}` does not decode").into())
}

fn decode_id(id: &str) -> QueryResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| undecodable("user id", id))
}

impl TryFrom<UserRow> for StoredUser {
    type Error = DieselError;

    fn try_from(row: UserRow) -> QueryResult<Self> {
        Ok(Self {
            id: decode_id(&row.id)?,
            role: row.role,
            email: row.email,
            password_hash: row.password_hash,
            token_version: row.token_version,
        })
    }
}

/// Stores a new user; an e-mail already registered is a unique violation.
pub fn insert_user(conn: &mut DbConnection, user: &StoredUser, created_at: i64) -> QueryResult<()> {
    let row = UserRow {
        id: user.id.to_string(),
        email: user.email.clone(),
        password_hash: user.password_hash.clone(),
        role: user.role,
        created_at,
        token_version: user.token_version,
    };
    diesel::insert_into(users::table).values(&row).execute(conn).map(drop)
}

pub fn find_by_email(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<StoredUser>> {
    users::table
        .filter(users::email.eq(email.as_str()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(StoredUser::try_from)
        .transpose()
}

pub fn find_by_id(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<StoredUser>> {
    users::table
        .find(id.to_string())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(StoredUser::try_from)
        .transpose()
}

/// The user's token version (`None`: no such user).
pub fn token_version(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<i64>> {
    users::table.find(id.to_string()).select(users::token_version).first(conn).optional()
}

/// Sets a new password and raises the token version: every token issued
/// before is revoked.
pub fn set_password_hash(conn: &mut DbConnection, user_id: Uuid, hash: &str) -> QueryResult<()> {
    diesel::update(users::table.find(user_id.to_string()))
        .set((users::password_hash.eq(hash), users::token_version.eq(users::token_version + 1)))
        .execute(conn)
        .map(drop)
}

/// Sets the user's role and raises the token version (tokens carry the role).
pub fn set_role(conn: &mut DbConnection, user_id: Uuid, role: Role) -> QueryResult<()> {
    diesel::update(users::table.find(user_id.to_string()))
        .set((users::role.eq(role), users::token_version.eq(users::token_version + 1)))
        .execute(conn)
        .map(drop)
}

/// Reset tokens issued to `user_id` since `since`.
pub fn resets_since(conn: &mut DbConnection, user_id: Uuid, since: i64) -> QueryResult<i64> {
    password_resets::table
        .filter(password_resets::user_id.eq(user_id.to_string()))
        .filter(password_resets::created_at.ge(since))
        .count()
        .get_result(conn)
}

/// Stores a reset token (its hash) for `user_id`; the user's older unused
/// tokens stop working (marked used at `now`).
pub fn insert_reset(
    conn: &mut DbConnection,
    token_hash: &str,
    user_id: Uuid,
    expires_at: i64,
    now: i64,
) -> QueryResult<()> {
    diesel::update(
        password_resets::table
            .filter(password_resets::user_id.eq(user_id.to_string()))
            .filter(password_resets::used_at.is_null()),
    )
    .set(password_resets::used_at.eq(now))
    .execute(conn)?;
    diesel::insert_into(password_resets::table)
        .values((
            password_resets::token_hash.eq(token_hash),
            password_resets::user_id.eq(user_id.to_string()),
            password_resets::expires_at.eq(expires_at),
            password_resets::created_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// Uses up the reset token with this hash: its user when it was unused and
/// unexpired at `now`. Call it inside the transaction that sets the password.
pub fn use_reset(conn: &mut DbConnection, token_hash: &str, now: i64) -> QueryResult<Option<Uuid>> {
    let reset = password_resets::table
        .filter(password_resets::token_hash.eq(token_hash))
        .filter(password_resets::used_at.is_null())
        .filter(password_resets::expires_at.gt(now))
        .select(password_resets::user_id)
        .first::<String>(conn)
        .optional()?;
    // Marking it used only where it is still unused makes it one-time under races too.
    let used = diesel::update(
        password_resets::table
            .filter(password_resets::token_hash.eq(token_hash))
            .filter(password_resets::used_at.is_null()),
    )
    .set(password_resets::used_at.eq(now))
    .execute(conn)?;
    reset.filter(|_| used == 1).map(|user_id| decode_id(&user_id)).transpose()
}
