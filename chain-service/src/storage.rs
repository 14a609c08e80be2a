//! Wallets, the blocks read, the head and the deposits in the service's
//! database. Amounts are TEXT (exact on both back ends).

use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use uuid::Uuid;

use crate::domain::DepositStatus;

bourse_common::stored_as_text!(DepositStatus);

diesel::table! {
    wallets (user_id) {
        user_id -> Text,
        address -> Text,
        sealed_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    chain_blocks (number) {
        number -> BigInt,
        hash -> Text,
        parent_hash -> Text,
    }
}

diesel::table! {
    chain_head (id) {
        id -> Integer,
        number -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    deposits (id) {
        id -> Text,
        user_id -> Text,
        address -> Text,
        currency -> Text,
        amount -> Text,
        dust -> Text,
        tx_hash -> Text,
        block_number -> BigInt,
        block_hash -> Text,
        status -> Text,
        seen_at -> BigInt,
        updated_at -> BigInt,
    }
}

/// A user's wallet as stored (the key sealed).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = wallets)]
pub struct WalletRow {
    pub user_id: String,
    pub address: String,
    pub sealed_key: String,
    pub created_at: i64,
}

pub fn insert_wallet(conn: &mut DbConnection, row: &WalletRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(wallets::table).values(row).execute(c))?;
    Ok(())
}

pub fn wallet_of(conn: &mut DbConnection, user: Uuid) -> QueryResult<Option<WalletRow>> {
    wallets::table.find(user.to_string()).select(WalletRow::as_select()).first(conn).optional()
}

/// Every wallet: address (lower-case hex) -> user.
pub fn wallet_owners(conn: &mut DbConnection) -> QueryResult<Vec<(String, String)>> {
    wallets::table.select((wallets::address, wallets::user_id)).load(conn)
}

/// A block read, with its hash and its parent's.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = chain_blocks)]
pub struct BlockRow {
    pub number: i64,
    pub hash: String,
    pub parent_hash: String,
}

/// The newest block read, if any.
pub fn last_block(conn: &mut DbConnection) -> QueryResult<Option<BlockRow>> {
    chain_blocks::table
        .order(chain_blocks::number.desc())
        .select(BlockRow::as_select())
        .first(conn)
        .optional()
}

pub fn block(conn: &mut DbConnection, number: i64) -> QueryResult<Option<BlockRow>> {
    chain_blocks::table.find(number).select(BlockRow::as_select()).first(conn).optional()
}

pub fn insert_block(conn: &mut DbConnection, row: &BlockRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(chain_blocks::table).values(row).execute(c))?;
    Ok(())
}

/// Forgets the blocks from `number` on (they left the chain).
pub fn drop_blocks_from(conn: &mut DbConnection, number: i64) -> QueryResult<usize> {
    diesel::delete(chain_blocks::table.filter(chain_blocks::number.ge(number))).execute(conn)
}

/// Forgets blocks older than `number` (a reorg that deep is not followed).
pub fn prune_blocks_before(conn: &mut DbConnection, number: i64) -> QueryResult<usize> {
    diesel::delete(chain_blocks::table.filter(chain_blocks::number.lt(number))).execute(conn)
}

pub fn head(conn: &mut DbConnection) -> QueryResult<Option<i64>> {
    chain_head::table.find(1).select(chain_head::number).first(conn).optional()
}

pub fn set_head(conn: &mut DbConnection, number: i64, now: i64) -> QueryResult<()> {
    let updated = diesel::update(chain_head::table.find(1))
        .set((chain_head::number.eq(number), chain_head::updated_at.eq(now)))
        .execute(conn)?;
    if updated == 0 {
        let row = (chain_head::id.eq(1), chain_head::number.eq(number), chain_head::updated_at.eq(now));
        bourse_common::on_backend!(conn, |c| diesel::insert_into(chain_head::table).values(row).execute(c))?;
    }
    Ok(())
}

/// A deposit as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = deposits)]
pub struct DepositRow {
    pub id: String,
    pub user_id: String,
    pub address: String,
    pub currency: String,
    pub amount: Amount,
    pub dust: Amount,
    pub tx_hash: String,
    pub block_number: i64,
    pub block_hash: String,
    pub status: DepositStatus,
    pub seen_at: i64,
    pub updated_at: i64,
}

/// Records a deposit seen; one already recorded (the same transfer read
/// again after a restart) is left as it is.
pub fn insert_deposit(conn: &mut DbConnection, row: &DepositRow) -> QueryResult<bool> {
    let inserted = bourse_common::on_backend!(conn, |c| diesel::insert_into(deposits::table)
        .values(row)
        .on_conflict(deposits::id)
        .do_nothing()
        .execute(c))?;
    Ok(inserted == 1)
}

/// The pending deposits of blocks up to `number` (they have their confirmations).
pub fn pending_up_to(conn: &mut DbConnection, number: i64) -> QueryResult<Vec<DepositRow>> {
    deposits::table
        .filter(deposits::status.eq(DepositStatus::Pending))
        .filter(deposits::block_number.le(number))
        .order((deposits::block_number, deposits::id))
        .select(DepositRow::as_select())
        .load(conn)
}

/// The deposits of blocks from `number` on, pending or credited (a reorg took those blocks).
pub fn live_from(conn: &mut DbConnection, number: i64) -> QueryResult<Vec<DepositRow>> {
    deposits::table
        .filter(deposits::status.eq_any([DepositStatus::Pending, DepositStatus::Credited]))
        .filter(deposits::block_number.ge(number))
        .select(DepositRow::as_select())
        .load(conn)
}

pub fn set_status(conn: &mut DbConnection, id: &str, status: DepositStatus, now: i64) -> QueryResult<()> {
    diesel::update(deposits::table.find(id))
        .set((deposits::status.eq(status), deposits::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// A user's deposits, newest first, and how many there are.
pub fn deposits_of(
    conn: &mut DbConnection,
    user: Uuid,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<DepositRow>, i64)> {
    let mine = || deposits::table.filter(deposits::user_id.eq(user.to_string()));
    let total = mine().count().get_result(conn)?;
    let rows = mine()
        .order((deposits::seen_at.desc(), deposits::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(DepositRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}
