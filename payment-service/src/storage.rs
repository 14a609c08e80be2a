//! Accounts, ledger entries and reservations in the service's database.
//! Amounts are TEXT (exact on both back ends); arithmetic happens in Rust on
//! a balance locked for the transaction (`FOR UPDATE` on PostgreSQL; SQLite
//! has one writer at a time). The words of the ledger and the reservations
//! are the domain's enums, mapped here once: a stored word that names no
//! variant fails the read.

use std::collections::{BTreeMap, BTreeSet};

use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::{
    AccountId, AccountLeg, AccountName, Balance, HoldStatus, Kind, LedgerAccount, Movement, Reservation,
    ReservationStatus,
};

// `ledger_entries.account` holds an account's full name (`user:<id>:USDT:available`, `fees:USDT`).
bourse_common::stored_as_text!(Kind, ReservationStatus, AccountName, HoldStatus);

diesel::table! {
    audit_reports (id) {
        id -> Text,
        finished_at -> BigInt,
        discrepancies -> Integer,
        report -> Text,
    }
}

diesel::table! {
    withdrawal_holds (withdrawal_id) {
        withdrawal_id -> Text,
        user_id -> Text,
        currency -> Text,
        amount -> Text,
        fee -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    accounts (user_id, currency) {
        user_id -> Text,
        currency -> Text,
        available -> Text,
        reserved -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> BigInt,
        txn_id -> Text,
        account -> Text,
        user_id -> Nullable<Text>,
        currency -> Text,
        amount -> Text,
        kind -> Text,
        reference -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    reservations (order_id) {
        order_id -> Text,
        user_id -> Text,
        currency -> Text,
        amount -> Text,
        remaining -> Text,
        status -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        settled -> Nullable<Text>,
        final_filled -> Nullable<Text>,
        limit_price -> Nullable<Text>,
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = accounts)]
pub struct AccountRow {
    pub user_id: String,
    pub currency: String,
    pub available: Amount,
    pub reserved: Amount,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_entries)]
pub struct EntryRow {
    pub id: i64,
    pub txn_id: String,
    /// Of the entry's user (`available` or `reserved`) or the exchange's, read from its full name.
    #[diesel(deserialize_as = AccountName)]
    pub account: LedgerAccount,
    pub user_id: Option<String>,
    pub currency: String,
    pub amount: Amount,
    pub kind: Kind,
    pub reference: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reservations)]
pub struct ReservationRow {
    pub order_id: String,
    pub user_id: String,
    pub currency: String,
    pub amount: Amount,
    pub remaining: Amount,
    pub status: ReservationStatus,
    pub created_at: i64,
    pub updated_at: i64,
    /// The order's quantity its settled trades filled (`None`: made before this was counted).
    pub settled: Option<Amount>,
    /// The order's filled quantity as its book's end said, once seen.
    pub final_filled: Option<Amount>,
    /// The order's limit, which its trades must respect (`None`: not checked).
    pub limit_price: Option<Amount>,
}

impl ReservationRow {
    /// The reservation as the rules see it.
    pub fn rules(&self) -> Reservation {
        Reservation {
            status: self.status,
            remaining: self.remaining.value(),
            settled: self.settled.map(Amount::value),
            final_filled: self.final_filled.map(Amount::value),
            limit_price: self.limit_price.map(Amount::value),
        }
    }
}

/// Opens the account if it is not open yet.
pub fn open_account(conn: &mut DbConnection, user: Uuid, currency: &str, now: i64) -> QueryResult<()> {
    let zero = Decimal::ZERO.to_string();
    let row = (
        accounts::user_id.eq(user.to_string()),
        accounts::currency.eq(currency),
        accounts::available.eq(&zero),
        accounts::reserved.eq(&zero),
        accounts::updated_at.eq(now),
    );
    bourse_common::on_backend!(conn, |c| diesel::insert_into(accounts::table)
        .values(row.clone())
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Makes the calling transaction the ledger's only writer until it ends:
/// every transaction that moves money (or opens accounts) takes it first.
/// With one lock taken before any row lock, two of them can never wait on
/// each other's rows, in whatever order their batches touch accounts and
/// reservations: no deadlock, so no retry that could reorder a saga.
pub fn lock_ledger(conn: &mut DbConnection) -> QueryResult<()> {
    /// The ledger's lock space: "ledg" in ASCII.
    const LEDGER: i32 = 0x6c65_6467;
    bourse_common::db::lock_key(conn, LEDGER, "ledger")
}

/// Are there ledger entries with this reference (a deposit credited already)?
pub fn has_entries(conn: &mut DbConnection, reference: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(ledger_entries::table.filter(ledger_entries::reference.eq(reference))))
        .get_result(conn)
}

/// The balance, locked until the transaction ends; the account is opened if
/// needed (one round trip when it is open already, as it almost always is).
pub fn lock_balance(conn: &mut DbConnection, user: Uuid, currency: &str, now: i64) -> QueryResult<Balance> {
    let row = match lock_account(conn, user, currency)? {
        Some(row) => row,
        None => {
            open_account(conn, user, currency, now)?;
            lock_account(conn, user, currency)?.ok_or(diesel::result::Error::NotFound)?
        }
    };
    Ok(Balance { available: row.available.value(), reserved: row.reserved.value() })
}

fn lock_account(conn: &mut DbConnection, user: Uuid, currency: &str) -> QueryResult<Option<AccountRow>> {
    let query = accounts::table.find((user.to_string(), currency.to_string()));
    match conn {
        DbConnection::Postgres(c) => query.select(AccountRow::as_select()).for_update().first(c).optional(),
        DbConnection::Sqlite(c) => query.select(AccountRow::as_select()).first(c).optional(),
    }
}

/// The balances of `wanted`, each locked until the transaction ends (opened
/// if needed): one round trip when every account is open.
pub fn lock_balances(
    conn: &mut DbConnection,
    wanted: &BTreeSet<AccountId>,
    now: i64,
) -> QueryResult<BTreeMap<AccountId, Balance>> {
    let users: BTreeSet<String> = wanted.iter().map(|a| a.user.to_string()).collect();
    let currencies: BTreeSet<&str> = wanted.iter().map(|a| a.currency.as_str()).collect();
    let query = accounts::table
        .filter(accounts::user_id.eq_any(users))
        .filter(accounts::currency.eq_any(currencies))
        .order((accounts::user_id.asc(), accounts::currency.asc()));
    let rows: Vec<AccountRow> = match conn {
        DbConnection::Postgres(c) => query.select(AccountRow::as_select()).for_update().load(c)?,
        DbConnection::Sqlite(c) => query.select(AccountRow::as_select()).load(c)?,
    };
    let mut found = BTreeMap::new();
    for row in rows {
        let Ok(user) = row.user_id.parse() else { continue };
        let id = AccountId { user, currency: row.currency };
        if wanted.contains(&id) {
            found.insert(id, Balance { available: row.available.value(), reserved: row.reserved.value() });
        }
    }
    for id in wanted {
        if !found.contains_key(id) {
            found.insert(id.clone(), lock_balance(conn, id.user, &id.currency, now)?);
        }
    }
    Ok(found)
}

/// Records `movement` in the ledger and in the balance (locked by [`lock_balance`]).
pub fn apply(
    conn: &mut DbConnection,
    user: Uuid,
    currency: &str,
    balance: Balance,
    movement: &Movement,
    reference: &str,
    now: i64,
) -> QueryResult<Balance> {
    let leg = AccountLeg {
        account: AccountId { user, currency: currency.to_string() },
        before: balance,
        movement: movement.clone(),
    };
    apply_legs(conn, std::slice::from_ref(&leg), reference, now)?;
    Ok(balance.apply(movement))
}

/// Records each leg's movement in its balance (locked), and all of their
/// ledger entries in one insert (a transaction id per movement).
pub fn apply_legs(
    conn: &mut DbConnection,
    legs: &[AccountLeg],
    reference: &str,
    now: i64,
) -> QueryResult<()> {
    let mut rows = Vec::new();
    for AccountLeg { account, before, movement } in legs {
        let (user, currency) = (account.user, account.currency.as_str());
        let after = before.apply(movement);
        diesel::update(accounts::table.find((user.to_string(), currency)))
            .set((
                accounts::available.eq(after.available.to_string()),
                accounts::reserved.eq(after.reserved.to_string()),
                accounts::updated_at.eq(now),
            ))
            .execute(conn)?;
        let txn_id = Uuid::now_v7().to_string();
        rows.extend(movement.legs.iter().map(|(name, amount)| {
            let name = AccountName::new(*name, user, currency);
            let owner = name.owner().map(|u| u.to_string());
            (
                ledger_entries::txn_id.eq(txn_id.clone()),
                ledger_entries::account.eq(name),
                ledger_entries::user_id.eq(owner),
                ledger_entries::currency.eq(currency.to_string()),
                ledger_entries::amount.eq(amount.to_string()),
                ledger_entries::kind.eq(movement.kind),
                ledger_entries::reference.eq(reference.to_string()),
                ledger_entries::created_at.eq(now),
            )
        }));
    }
    bourse_common::on_backend!(conn, |c| diesel::insert_into(ledger_entries::table)
        .values(&rows)
        .execute(c))?;
    Ok(())
}

pub fn accounts_of(conn: &mut DbConnection, user: Uuid) -> QueryResult<Vec<AccountRow>> {
    accounts::table
        .filter(accounts::user_id.eq(user.to_string()))
        .order(accounts::currency.asc())
        .select(AccountRow::as_select())
        .load(conn)
}

/// A page of a user's ledger entries, newest first, and how many there are.
pub fn entries_of(
    conn: &mut DbConnection,
    user: Uuid,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<EntryRow>, i64)> {
    let mine = || ledger_entries::table.filter(ledger_entries::user_id.eq(user.to_string()));
    let total = mine().count().get_result(conn)?;
    let rows = mine()
        .order(ledger_entries::id.desc())
        .limit(limit)
        .offset(offset)
        .select(EntryRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

pub fn reservation(conn: &mut DbConnection, order_id: Uuid) -> QueryResult<Option<ReservationRow>> {
    reservations::table.find(order_id.to_string()).select(ReservationRow::as_select()).first(conn).optional()
}

/// The reservations of `orders` that exist, in one round trip.
pub fn reservations_of(conn: &mut DbConnection, orders: &[Uuid]) -> QueryResult<Vec<ReservationRow>> {
    let ids: Vec<String> = orders.iter().map(Uuid::to_string).collect();
    reservations::table
        .filter(reservations::order_id.eq_any(ids))
        .select(ReservationRow::as_select())
        .load(conn)
}

pub fn insert_reservation(
    conn: &mut DbConnection,
    order_id: Uuid,
    user: Uuid,
    currency: &str,
    amount: Amount,
    limit_price: Option<Amount>,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(reservations::table)
        .values((
            reservations::order_id.eq(order_id.to_string()),
            reservations::user_id.eq(user.to_string()),
            reservations::currency.eq(currency),
            reservations::amount.eq(amount.to_string()),
            reservations::remaining.eq(amount.to_string()),
            reservations::status.eq(ReservationStatus::Active),
            reservations::created_at.eq(now),
            reservations::updated_at.eq(now),
            reservations::settled.eq(Some(Decimal::ZERO.to_string())),
            reservations::limit_price.eq(limit_price.map(|p| p.to_string())),
        ))
        .execute(conn)?;
    Ok(())
}

/// A tombstone: the order's funds were released before anything was
/// reserved (`void`, holding nothing), so that a later reserve is refused.
pub fn void_reservation(conn: &mut DbConnection, order_id: Uuid, user: Uuid, now: i64) -> QueryResult<()> {
    let zero = Decimal::ZERO.to_string();
    diesel::insert_into(reservations::table)
        .values((
            reservations::order_id.eq(order_id.to_string()),
            reservations::user_id.eq(user.to_string()),
            // Not known: the release does not say, and nothing was reserved.
            reservations::currency.eq(""),
            reservations::amount.eq(&zero),
            reservations::remaining.eq(&zero),
            reservations::status.eq(ReservationStatus::Void),
            reservations::created_at.eq(now),
            reservations::updated_at.eq(now),
            reservations::settled.eq(Some(zero.clone())),
        ))
        .execute(conn)?;
    Ok(())
}

/// What the order still holds reserved after a fill (`remaining`), and how
/// much of it its settled trades filled (`settled`).
pub fn fill_reservation(
    conn: &mut DbConnection,
    order_id: Uuid,
    remaining: Amount,
    settled: Option<Amount>,
    now: i64,
) -> QueryResult<()> {
    diesel::update(reservations::table.find(order_id.to_string()))
        .set((
            reservations::remaining.eq(remaining.to_string()),
            reservations::settled.eq(settled.map(|s| s.to_string())),
            reservations::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records the order's end (`filled` in all) on a reservation that still
/// waits for some of those fills: `ending`, still holding.
pub fn end_reservation(conn: &mut DbConnection, order_id: Uuid, filled: Amount, now: i64) -> QueryResult<()> {
    diesel::update(reservations::table.find(order_id.to_string()))
        .set((
            reservations::status.eq(ReservationStatus::Ending),
            reservations::final_filled.eq(Some(filled.to_string())),
            reservations::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The balance of the exchange's fee account in `currency`.
pub fn fees_collected(conn: &mut DbConnection, currency: &str) -> QueryResult<Decimal> {
    let amounts: Vec<Amount> = ledger_entries::table
        .filter(ledger_entries::account.eq(AccountName::fees(currency)))
        .select(ledger_entries::amount)
        .load(conn)?;
    Ok(amounts.into_iter().map(Amount::value).sum())
}

/// Ends the reservation in `status`: it holds nothing any more.
pub fn close_reservation(
    conn: &mut DbConnection,
    order_id: Uuid,
    status: ReservationStatus,
    now: i64,
) -> QueryResult<()> {
    diesel::update(reservations::table.find(order_id.to_string()))
        .set((
            reservations::remaining.eq(Decimal::ZERO.to_string()),
            reservations::status.eq(status),
            reservations::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// What `user` topped up in `currency` since `since` (microseconds).
pub fn top_ups_since(
    conn: &mut DbConnection,
    user: Uuid,
    currency: &str,
    since: i64,
) -> QueryResult<Decimal> {
    let amounts: Vec<String> = ledger_entries::table
        .filter(ledger_entries::user_id.eq(user.to_string()))
        .filter(ledger_entries::currency.eq(currency))
        .filter(ledger_entries::kind.eq(Kind::TopUp))
        .filter(ledger_entries::created_at.ge(since))
        .select(ledger_entries::amount)
        .load(conn)?;
    Ok(amounts.iter().filter_map(|a| a.parse::<Decimal>().ok()).filter(|a| a.is_sign_positive()).sum())
}

#[cfg(test)]
mod tests {
    use diesel::sqlite::SqliteConnection;

    use super::*;
    use crate::domain::Kind::{Reserve, Settle, TopUp};
    use crate::domain::LedgerAccount::{Available, Clearing, Fees, Reserved};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn db() -> DbConnection {
        use diesel_migrations::MigrationHarness;
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        c.run_pending_migrations((crate::MIGRATIONS.sqlite)()).unwrap();
        DbConnection::Sqlite(c)
    }

    #[test]
    fn the_stored_words_are_the_ones_written_before_and_a_word_out_of_place_fails_the_read() {
        let conn = &mut db();
        let (user, order) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let balance = lock_balance(conn, user, "USDT", 1).unwrap();
        let balance = apply(conn, user, "USDT", balance, &balance.top_up(d("100")), "top-up", 1).unwrap();
        let reserve = balance.reserve(d("40")).unwrap();
        let balance = apply(conn, user, "USDT", balance, &reserve, "order:2", 2).unwrap();
        let fee = Movement { kind: Settle, legs: vec![(Clearing, d("-0.5")), (Fees, d("0.5"))] };
        apply(conn, user, "USDT", balance, &fee, "trade:3", 3).unwrap();
        insert_reservation(conn, order, user, "USDT", d("40").into(), Some(d("2000").into()), 2).unwrap();

        let stored: Vec<(String, String)> = ledger_entries::table
            .order(ledger_entries::id.asc())
            .select((ledger_entries::account, ledger_entries::kind))
            .load(conn)
            .unwrap();
        let mine = |account: &str| format!("user:{user}:USDT:{account}");
        let words =
            |v: &[(&str, &str)]| v.iter().map(|(a, k)| (a.to_string(), k.to_string())).collect::<Vec<_>>();
        assert_eq!(
            stored,
            words(&[
                ("external:USDT", "top_up"),
                (&mine("available"), "top_up"),
                (&mine("available"), "reserve"),
                (&mine("reserved"), "reserve"),
                ("clearing:USDT", "settle"),
                ("fees:USDT", "settle"),
            ])
        );
        let (entries, total) = entries_of(conn, user, 10, 0).unwrap();
        let read: Vec<(LedgerAccount, Kind)> = entries.iter().map(|e| (e.account, e.kind)).collect();
        assert_eq!((read, total), (vec![(Reserved, Reserve), (Available, Reserve), (Available, TopUp)], 3));
        assert_eq!(fees_collected(conn, "USDT").unwrap(), d("0.5"));

        let status = |conn: &mut DbConnection| reservation(conn, order).unwrap().map(|r| r.status);
        assert_eq!(status(conn), Some(ReservationStatus::Active));
        close_reservation(conn, order, ReservationStatus::Released, 4).unwrap();
        assert_eq!(status(conn), Some(ReservationStatus::Released));
        let stored: String =
            reservations::table.find(order.to_string()).select(reservations::status).first(conn).unwrap();
        assert_eq!(stored, "released");

        // An order's fills and its end, as stored; a tombstone for an order never reserved.
        let (later, never) = (Uuid::from_u128(3), Uuid::from_u128(4));
        insert_reservation(conn, later, user, "USDT", d("10").into(), None, 5).unwrap();
        let rules = |conn: &mut DbConnection, order| reservation(conn, order).unwrap().unwrap().rules();
        assert_eq!(
            rules(conn, later),
            Reservation {
                status: ReservationStatus::Active,
                remaining: d("10"),
                settled: Some(Decimal::ZERO),
                final_filled: None,
                limit_price: None,
            }
        );
        fill_reservation(conn, later, d("4").into(), Some(d("0.5").into()), 6).unwrap();
        end_reservation(conn, later, d("1.5").into(), 7).unwrap();
        assert_eq!(
            rules(conn, later),
            Reservation {
                status: ReservationStatus::Ending,
                remaining: d("4"),
                settled: Some(d("0.5")),
                final_filled: Some(d("1.5")),
                limit_price: None,
            }
        );
        void_reservation(conn, never, user, 8).unwrap();
        let void = reservation(conn, never).unwrap().unwrap();
        assert_eq!(
            (void.status, void.remaining.value(), void.currency.as_str()),
            (ReservationStatus::Void, Decimal::ZERO, "")
        );
        // A reservation made before fills were counted reads as such.
        diesel::update(reservations::table.find(later.to_string()))
            .set(reservations::settled.eq(None::<String>))
            .execute(conn)
            .unwrap();
        assert_eq!(rules(conn, later).settled, None);

        diesel::update(reservations::table).set(reservations::status.eq("cancelled")).execute(conn).unwrap();
        assert!(reservation(conn, order).is_err());
        diesel::update(ledger_entries::table)
            .filter(ledger_entries::kind.eq("reserve"))
            .set(ledger_entries::account.eq("user:USDT:available"))
            .execute(conn)
            .unwrap();
        assert!(entries_of(conn, user, 10, 0).is_err());
    }
}

/// What a withdrawal holds, as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = withdrawal_holds)]
pub struct HoldRow {
    pub withdrawal_id: String,
    pub user_id: String,
    pub currency: String,
    pub amount: Amount,
    pub fee: Amount,
    pub status: HoldStatus,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn hold(conn: &mut DbConnection, withdrawal: Uuid) -> QueryResult<Option<HoldRow>> {
    withdrawal_holds::table.find(withdrawal.to_string()).select(HoldRow::as_select()).first(conn).optional()
}

pub fn insert_hold(conn: &mut DbConnection, row: &HoldRow) -> QueryResult<()> {
    bourse_common::on_backend!(conn, |c| diesel::insert_into(withdrawal_holds::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

pub fn set_hold_status(
    conn: &mut DbConnection,
    withdrawal: Uuid,
    status: HoldStatus,
    now: i64,
) -> QueryResult<()> {
    diesel::update(withdrawal_holds::table.find(withdrawal.to_string()))
        .set((withdrawal_holds::status.eq(status), withdrawal_holds::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// Every ledger entry, in order (the audit's read).
pub fn all_entries(conn: &mut DbConnection) -> QueryResult<Vec<EntryRow>> {
    ledger_entries::table.order(ledger_entries::id).select(EntryRow::as_select()).load(conn)
}

pub fn all_accounts(conn: &mut DbConnection) -> QueryResult<Vec<AccountRow>> {
    accounts::table.order((accounts::user_id, accounts::currency)).select(AccountRow::as_select()).load(conn)
}

pub fn all_reservations(conn: &mut DbConnection) -> QueryResult<Vec<ReservationRow>> {
    reservations::table.select(ReservationRow::as_select()).load(conn)
}

pub fn all_holds(conn: &mut DbConnection) -> QueryResult<Vec<HoldRow>> {
    withdrawal_holds::table.select(HoldRow::as_select()).load(conn)
}

/// Keeps an audit's report (JSON).
pub fn insert_report(
    conn: &mut DbConnection,
    id: &str,
    finished_at: i64,
    discrepancies: i32,
    report: &str,
) -> QueryResult<()> {
    diesel::insert_into(audit_reports::table)
        .values((
            audit_reports::id.eq(id),
            audit_reports::finished_at.eq(finished_at),
            audit_reports::discrepancies.eq(discrepancies),
            audit_reports::report.eq(report),
        ))
        .execute(conn)?;
    Ok(())
}

/// The newest report (JSON), if any.
pub fn latest_report(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    audit_reports::table
        .order((audit_reports::finished_at.desc(), audit_reports::id.desc()))
        .select(audit_reports::report)
        .first(conn)
        .optional()
}
