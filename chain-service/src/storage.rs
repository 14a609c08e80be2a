//! Wallets, the blocks read, the head, the deposits, the withdrawals and the
//! outgoing transactions in the service's database. Amounts are TEXT (exact
//! on both back ends).

use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use uuid::Uuid;

use crate::domain::{DepositStatus, TxPurpose, TxStatus, WindowStatus, WithdrawalStatus};

bourse_common::stored_as_text!(DepositStatus, WithdrawalStatus, TxStatus, TxPurpose, WindowStatus);

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

diesel::table! {
    withdrawals (id) {
        id -> Text,
        user_id -> Text,
        currency -> Text,
        amount -> Text,
        fee -> Text,
        address -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        request_body -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    chain_txs (id) {
        id -> Text,
        purpose -> Text,
        user_id -> Text,
        from_address -> Text,
        to_address -> Text,
        value -> Text,
        input -> Text,
        gas_limit -> BigInt,
        nonce -> Nullable<BigInt>,
        max_fee -> Nullable<Text>,
        priority_fee -> Nullable<Text>,
        raw -> Nullable<Text>,
        tx_hash -> Nullable<Text>,
        hashes -> Text,
        replacements -> Integer,
        status -> Text,
        error -> Nullable<Text>,
        block_number -> Nullable<BigInt>,
        block_hash -> Nullable<Text>,
        gas_cost -> Nullable<Text>,
        sent_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        token -> Nullable<Text>,
        token_amount -> Nullable<Text>,
    }
}

diesel::table! {
    chain_nonces (address) {
        address -> Text,
        next_nonce -> BigInt,
    }
}

diesel::table! {
    settlement_windows (id) {
        id -> Text,
        status -> Text,
        trades -> Integer,
        reason -> Nullable<Text>,
        opened_at -> BigInt,
        closed_at -> Nullable<BigInt>,
        settled_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    settlement_legs (trade_id, order_id, owner, currency) {
        trade_id -> Text,
        order_id -> Text,
        owner -> Text,
        currency -> Text,
        delta -> Text,
        window_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(withdrawals, chain_txs);

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

/// A withdrawal as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = withdrawals)]
pub struct WithdrawalRow {
    pub id: String,
    pub user_id: String,
    pub currency: String,
    pub amount: Amount,
    pub fee: Amount,
    /// EIP-55 checksummed.
    pub address: String,
    pub status: WithdrawalStatus,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Makes the calling transaction the only one placing withdrawals for `user`
/// until it ends (the count in flight is then exact).
pub fn lock_withdrawals(conn: &mut DbConnection, user: Uuid) -> QueryResult<()> {
    /// "wdrl" in ASCII.
    const WITHDRAWALS: i32 = 0x7764_726c;
    bourse_common::db::lock_key(conn, WITHDRAWALS, &user.to_string())
}

pub fn insert_withdrawal(conn: &mut DbConnection, row: &WithdrawalRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(withdrawals::table).values(row).execute(c))?;
    Ok(())
}

pub fn withdrawal(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<WithdrawalRow>> {
    withdrawals::table.find(id.to_string()).select(WithdrawalRow::as_select()).first(conn).optional()
}

pub fn withdrawal_by_key(
    conn: &mut DbConnection,
    user: Uuid,
    key: &str,
) -> QueryResult<Option<WithdrawalRow>> {
    withdrawals::table
        .filter(withdrawals::user_id.eq(user.to_string()))
        .filter(withdrawals::idempotency_key.eq(key))
        .select(WithdrawalRow::as_select())
        .first(conn)
        .optional()
}

/// How many of `user`'s withdrawals are on their way.
pub fn withdrawals_in_flight(conn: &mut DbConnection, user: Uuid) -> QueryResult<u64> {
    let in_flight: Vec<WithdrawalStatus> =
        WithdrawalStatus::ALL.iter().copied().filter(|s| s.in_flight()).collect();
    let n: i64 = withdrawals::table
        .filter(withdrawals::user_id.eq(user.to_string()))
        .filter(withdrawals::status.eq_any(in_flight))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A withdrawal with its transaction, once it has one.
pub type WithdrawalWithTx = (WithdrawalRow, Option<TxRow>);

/// A user's withdrawals, newest first, each with its transaction if it has
/// one, and how many there are.
pub fn withdrawals_of(
    conn: &mut DbConnection,
    user: Uuid,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<WithdrawalWithTx>, i64)> {
    let mine = || withdrawals::table.filter(withdrawals::user_id.eq(user.to_string()));
    let total = mine().count().get_result(conn)?;
    let rows = mine()
        .left_join(chain_txs::table.on(chain_txs::id.eq(withdrawals::id)))
        .order((withdrawals::created_at.desc(), withdrawals::id.desc()))
        .limit(limit)
        .offset(offset)
        .select((WithdrawalRow::as_select(), Option::<TxRow>::as_select()))
        .load(conn)?;
    Ok((rows, total))
}

/// Moves a withdrawal on from `from` (a withdrawal elsewhere is left as it is: `false`).
pub fn set_withdrawal_status(
    conn: &mut DbConnection,
    id: &str,
    from: &[WithdrawalStatus],
    to: WithdrawalStatus,
    reason: Option<&str>,
    now: i64,
) -> QueryResult<bool> {
    let changed = diesel::update(withdrawals::table.find(id).filter(withdrawals::status.eq_any(from)))
        .set((withdrawals::status.eq(to), withdrawals::reason.eq(reason), withdrawals::updated_at.eq(now)))
        .execute(conn)?;
    Ok(changed == 1)
}

/// An outgoing transaction as stored; `value` and fees in wei, `input` hex.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = chain_txs, treat_none_as_null = true)]
pub struct TxRow {
    /// The intent's id (a withdrawal's).
    pub id: String,
    pub purpose: TxPurpose,
    pub user_id: String,
    pub from_address: String,
    pub to_address: String,
    pub value: String,
    pub input: String,
    pub gas_limit: i64,
    pub nonce: Option<i64>,
    pub max_fee: Option<String>,
    pub priority_fee: Option<String>,
    /// The signed bytes of the latest attempt (hex).
    pub raw: Option<String>,
    /// The latest attempt's hash, or the mined one's.
    pub tx_hash: Option<String>,
    /// Every attempt's hash, space-separated (one of them is mined).
    pub hashes: String,
    pub replacements: i32,
    pub status: TxStatus,
    pub error: Option<String>,
    pub block_number: Option<i64>,
    pub block_hash: Option<String>,
    /// Gas used times its price, in wei, once mined.
    pub gas_cost: Option<String>,
    /// When the latest attempt was broadcast.
    pub sent_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// A token transfer's contract (lower-case hex); `None`: native.
    pub token: Option<String>,
    /// A token transfer's amount, in token units.
    pub token_amount: Option<String>,
}

/// What a transaction is to do, before the pipeline gives it a nonce.
#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub purpose: TxPurpose,
    pub user_id: String,
    pub from_address: String,
    pub to_address: String,
    /// Wei sent with it.
    pub value: u128,
    /// Calldata, hex (empty for a plain transfer).
    pub input: String,
    pub gas_limit: u64,
    /// A token transfer's contract (lower-case hex) and amount in token units.
    pub token: Option<(String, u128)>,
}

impl TxRow {
    /// `intent`, queued: to be signed.
    pub fn queued(intent: Intent, now: i64) -> Self {
        let (token, token_amount) =
            intent.token.map_or((None, None), |(t, a)| (Some(t), Some(a.to_string())));
        Self {
            id: intent.id,
            purpose: intent.purpose,
            user_id: intent.user_id,
            from_address: intent.from_address,
            to_address: intent.to_address,
            value: intent.value.to_string(),
            input: intent.input,
            gas_limit: i64::try_from(intent.gas_limit).unwrap_or(i64::MAX),
            nonce: None,
            max_fee: None,
            priority_fee: None,
            raw: None,
            tx_hash: None,
            hashes: String::new(),
            replacements: 0,
            status: TxStatus::Queued,
            error: None,
            block_number: None,
            block_hash: None,
            gas_cost: None,
            sent_at: None,
            created_at: now,
            updated_at: now,
            token,
            token_amount,
        }
    }

    pub fn hashes(&self) -> impl Iterator<Item = &str> {
        self.hashes.split_whitespace()
    }
}

pub fn insert_tx(conn: &mut DbConnection, row: &TxRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(chain_txs::table).values(row).execute(c))?;
    Ok(())
}

pub fn tx(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<TxRow>> {
    chain_txs::table.find(id.to_string()).select(TxRow::as_select()).first(conn).optional()
}

/// The gas payments made for the transaction `id`, oldest first.
pub fn gas_payments(conn: &mut DbConnection, id: &str) -> QueryResult<Vec<TxRow>> {
    chain_txs::table
        .filter(chain_txs::purpose.eq(TxPurpose::Gas))
        .filter(chain_txs::id.like(format!("gas:{id}:%")))
        .order((chain_txs::created_at, chain_txs::id))
        .select(TxRow::as_select())
        .load(conn)
}

/// The transactions in `status`, oldest first.
pub fn txs_in(conn: &mut DbConnection, status: TxStatus, limit: i64) -> QueryResult<Vec<TxRow>> {
    chain_txs::table
        .filter(chain_txs::status.eq(status))
        .order((chain_txs::created_at, chain_txs::id))
        .limit(limit)
        .select(TxRow::as_select())
        .load(conn)
}

/// Has `address` a transaction signed and not yet in a block? (One at a
/// time per sender: a failure before the mempool then frees its nonce.)
pub fn sender_busy(conn: &mut DbConnection, address: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        chain_txs::table
            .filter(chain_txs::from_address.eq(address))
            .filter(chain_txs::status.eq_any([TxStatus::Signed, TxStatus::Broadcast])),
    ))
    .get_result(conn)
}

/// Writes `row` over the stored transaction if that is still in `expected`
/// (`false`: another step moved it meanwhile, nothing written).
pub fn update_tx(conn: &mut DbConnection, row: &TxRow, expected: TxStatus) -> QueryResult<bool> {
    let changed = diesel::update(chain_txs::table.find(&row.id).filter(chain_txs::status.eq(expected)))
        .set(row)
        .execute(conn)?;
    Ok(changed == 1)
}

/// The next nonce kept for `address`, if any.
pub fn next_nonce(conn: &mut DbConnection, address: &str) -> QueryResult<Option<i64>> {
    chain_nonces::table.find(address).select(chain_nonces::next_nonce).first(conn).optional()
}

pub fn set_next_nonce(conn: &mut DbConnection, address: &str, next: i64) -> QueryResult<()> {
    let updated = diesel::update(chain_nonces::table.find(address))
        .set(chain_nonces::next_nonce.eq(next))
        .execute(conn)?;
    if updated == 0 {
        let row = (chain_nonces::address.eq(address), chain_nonces::next_nonce.eq(next));
        bourse_common::on_backend!(conn, |c| diesel::insert_into(chain_nonces::table)
            .values(row)
            .execute(c))?;
    }
    Ok(())
}

/// Every transaction `from` or `to` one of the addresses, in a block at or
/// before `block` (mined, confirmed, or reverted there): what the chain moved.
pub fn txs_mined_up_to(conn: &mut DbConnection, block: i64) -> QueryResult<Vec<TxRow>> {
    chain_txs::table
        .filter(chain_txs::block_number.le(block))
        .filter(chain_txs::status.eq_any([TxStatus::Mined, TxStatus::Confirmed, TxStatus::Failed]))
        .select(TxRow::as_select())
        .load(conn)
}

/// Every deposit in a block at or before `block`, whatever its status.
pub fn deposits_up_to(conn: &mut DbConnection, block: i64) -> QueryResult<Vec<DepositRow>> {
    deposits::table.filter(deposits::block_number.le(block)).select(DepositRow::as_select()).load(conn)
}

/// Every withdrawal (few: an audit reads them all).
pub fn all_withdrawals(conn: &mut DbConnection) -> QueryResult<Vec<WithdrawalRow>> {
    withdrawals::table.select(WithdrawalRow::as_select()).load(conn)
}

/// A settlement window as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = settlement_windows, treat_none_as_null = true)]
pub struct WindowRow {
    pub id: String,
    pub status: WindowStatus,
    pub trades: i32,
    pub reason: Option<String>,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub settled_at: Option<i64>,
    pub updated_at: i64,
}

/// One side of a settled trade in one chain currency (`owner`: a user's id, or `fees`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = settlement_legs)]
pub struct LegRow {
    pub trade_id: String,
    pub order_id: String,
    pub owner: String,
    pub currency: String,
    pub delta: Amount,
    pub window_id: String,
}

/// Makes the calling transaction the only one adding legs to, or closing, windows.
pub fn lock_windows(conn: &mut DbConnection) -> QueryResult<()> {
    /// "sttl" in ASCII.
    const WINDOWS: i32 = 0x7374_746c;
    bourse_common::db::lock_key(conn, WINDOWS, "windows")
}

/// The window taking trades, if one is open.
pub fn open_window(conn: &mut DbConnection) -> QueryResult<Option<WindowRow>> {
    settlement_windows::table
        .filter(settlement_windows::status.eq(WindowStatus::Open))
        .order(settlement_windows::opened_at)
        .select(WindowRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_window(conn: &mut DbConnection, row: &WindowRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(settlement_windows::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

pub fn window(conn: &mut DbConnection, id: &str) -> QueryResult<Option<WindowRow>> {
    settlement_windows::table.find(id).select(WindowRow::as_select()).first(conn).optional()
}

/// The windows in `statuses`, oldest first.
pub fn windows_in(conn: &mut DbConnection, statuses: &[WindowStatus]) -> QueryResult<Vec<WindowRow>> {
    settlement_windows::table
        .filter(settlement_windows::status.eq_any(statuses))
        .order((settlement_windows::opened_at, settlement_windows::id))
        .select(WindowRow::as_select())
        .load(conn)
}

/// Every window, newest first, and how many there are.
pub fn windows_page(conn: &mut DbConnection, limit: i64, offset: i64) -> QueryResult<(Vec<WindowRow>, i64)> {
    let total = settlement_windows::table.count().get_result(conn)?;
    let rows = settlement_windows::table
        .order((settlement_windows::opened_at.desc(), settlement_windows::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(WindowRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Moves a window on from `from` (`false`: it is elsewhere, nothing written).
pub fn set_window_status(
    conn: &mut DbConnection,
    id: &str,
    from: WindowStatus,
    to: WindowStatus,
    reason: Option<&str>,
    now: i64,
) -> QueryResult<bool> {
    let closed = (to == WindowStatus::Collecting).then_some(now);
    let settled = (to == WindowStatus::Settled).then_some(now);
    let changed =
        diesel::update(settlement_windows::table.find(id).filter(settlement_windows::status.eq(from)))
            .set((
                settlement_windows::status.eq(to),
                settlement_windows::reason.eq(reason),
                settlement_windows::updated_at.eq(now),
            ))
            .execute(conn)?;
    if changed == 1 && (closed.is_some() || settled.is_some()) {
        let window = settlement_windows::table.find(id);
        if let Some(at) = closed {
            diesel::update(window).set(settlement_windows::closed_at.eq(at)).execute(conn)?;
        }
        if let Some(at) = settled {
            diesel::update(window).set(settlement_windows::settled_at.eq(at)).execute(conn)?;
        }
    }
    Ok(changed == 1)
}

/// Adds a trade side's legs to `window` (a side already recorded is left as
/// it is: `false`) and counts the trade once.
pub fn insert_legs(conn: &mut DbConnection, window: &str, legs: &[LegRow]) -> QueryResult<bool> {
    let Some(first) = legs.first() else { return Ok(false) };
    let recorded: i64 = settlement_legs::table
        .filter(settlement_legs::trade_id.eq(&first.trade_id))
        .filter(settlement_legs::order_id.eq(&first.order_id))
        .count()
        .get_result(conn)?;
    if recorded > 0 {
        return Ok(false);
    }
    let new_trade: i64 = settlement_legs::table
        .filter(settlement_legs::trade_id.eq(&first.trade_id))
        .count()
        .get_result(conn)?;
    bourse_common::on_backend!(conn, |c| diesel::insert_into(settlement_legs::table)
        .values(legs)
        .execute(c))?;
    if new_trade == 0 {
        diesel::update(settlement_windows::table.find(window))
            .set(settlement_windows::trades.eq(settlement_windows::trades + 1))
            .execute(conn)?;
    }
    Ok(true)
}

/// Moves the legs of `trades` from window `from` to `to`, and counts each
/// window's trades again.
pub fn move_trades(conn: &mut DbConnection, trades: &[String], from: &str, to: &str) -> QueryResult<()> {
    diesel::update(
        settlement_legs::table
            .filter(settlement_legs::window_id.eq(from))
            .filter(settlement_legs::trade_id.eq_any(trades)),
    )
    .set(settlement_legs::window_id.eq(to))
    .execute(conn)?;
    for window in [from, to] {
        let trades: Vec<String> = settlement_legs::table
            .filter(settlement_legs::window_id.eq(window))
            .select(settlement_legs::trade_id)
            .distinct()
            .load(conn)?;
        diesel::update(settlement_windows::table.find(window))
            .set(settlement_windows::trades.eq(i32::try_from(trades.len()).unwrap_or(i32::MAX)))
            .execute(conn)?;
    }
    Ok(())
}

/// The legs of `window`.
pub fn legs_of(conn: &mut DbConnection, window: &str) -> QueryResult<Vec<LegRow>> {
    settlement_legs::table
        .filter(settlement_legs::window_id.eq(window))
        .select(LegRow::as_select())
        .load(conn)
}

/// Every leg (an audit reads them).
pub fn all_legs(conn: &mut DbConnection) -> QueryResult<Vec<LegRow>> {
    settlement_legs::table.select(LegRow::as_select()).load(conn)
}

/// The transactions of a window (ids `settle:<window>:...`).
pub fn window_txs(conn: &mut DbConnection, window: &str) -> QueryResult<Vec<TxRow>> {
    chain_txs::table
        .filter(chain_txs::purpose.eq(TxPurpose::Settlement))
        .filter(chain_txs::id.like(format!("settle:{window}:%")))
        .select(TxRow::as_select())
        .load(conn)
}

/// Every settlement transaction.
pub fn settlement_txs(conn: &mut DbConnection) -> QueryResult<Vec<TxRow>> {
    chain_txs::table
        .filter(chain_txs::purpose.eq(TxPurpose::Settlement))
        .select(TxRow::as_select())
        .load(conn)
}

/// Does a window not settled yet owe `owner` some `currency` (a net it receives)?
pub fn owed_by_a_window(conn: &mut DbConnection, owner: &str, currency: &str) -> QueryResult<bool> {
    let live = [WindowStatus::Open, WindowStatus::Collecting, WindowStatus::Paying];
    let windows: Vec<String> = settlement_windows::table
        .filter(settlement_windows::status.eq_any(live))
        .select(settlement_windows::id)
        .load(conn)?;
    let legs: Vec<Amount> = settlement_legs::table
        .filter(settlement_legs::owner.eq(owner))
        .filter(settlement_legs::currency.eq(currency))
        .filter(settlement_legs::window_id.eq_any(windows))
        .select(settlement_legs::delta)
        .load(conn)?;
    Ok(legs.iter().map(|d| d.value()).sum::<rust_decimal::Decimal>() > rust_decimal::Decimal::ZERO)
}
