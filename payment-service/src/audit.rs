//! The audit: does the ledger add up, and does it agree with the financial
//! log? Run as a job (every `audit_interval_ms`), on demand
//! (`POST /api/admin/audit`) and by `bourse audit`. Each run reads the
//! ledger under the ledger's lock (one consistent picture) and the event log
//! from its start, checks, and keeps a report:
//!
//! 1. **ledger integrity**: every ledger transaction sums to zero per currency;
//!    every user account's stored balance (available, reserved) equals the sum
//!    of its entries; what a user has reserved equals what their live orders
//!    and withdrawals hold (nothing reserved for an ended one);
//! 2. **conservation per currency**: users' balances + fees = top-ups +
//!    deposits - withdrawals;
//! 3. **the event log against the ledger**: every `trade.executed` settled
//!    exactly once (each side's change in each currency as the trade and the
//!    fee rates say), every `deposit.confirmed` credited once, every
//!    `withdrawal.confirmed` debited once; and no settlement, deposit or
//!    withdrawal in the ledger that the log does not have. Messages younger
//!    than `audit_grace_ms` are in flight and not checked yet.
//!
//! 4. **the chain against the ledger** (when `chain_service_url` is set):
//!    for every custodial wallet and chain asset, its balance on chain at
//!    the block chain-service names equals its owner's ledger balance
//!    (available + reserved; the fee wallet: the `fees` account) plus what is
//!    in flight between them (deposits not credited, withdrawals not
//!    debited, settlement not on chain yet, the gas float); the clearing
//!    wallet holds only what is in flight. A settlement window that failed
//!    is a discrepancy of its own. The two sides are read a moment apart: a
//!    difference is checked again (up to [`CHAIN_ATTEMPTS`] times, a second
//!    apart) before it is reported.
//!
//! Each discrepancy names its check, the account, the expected and found
//! values and the messages involved. The checks are pure ([`check`]); the
//! edges load and store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bourse_common::auth::InternalSecret;
use bourse_common::bus::Bus;
use bourse_common::catalog::{AuditFailed, DepositConfirmed, Side, TradeExecuted, WithdrawalConfirmed};
use bourse_common::db::{Db, DbError};
use bourse_common::eventlog::{self, LoggedMessage, StreamOffset};
use bourse_common::holdings::Holdings;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use bourse_common::service::BackgroundTask;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{self, HoldStatus, Kind, LedgerAccount, ReservationStatus};
use crate::settings::Settings;
use crate::storage::{self, AccountRow, EntryRow, HoldRow, ReservationRow};

/// One thing that does not add up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Discrepancy {
    /// `ledger_transaction_unbalanced`, `balance_differs_from_entries`,
    /// `reserved_differs_from_holds`, `currency_not_conserved`,
    /// `trade_not_settled_once`, `deposit_not_credited_once`,
    /// `withdrawal_not_debited_once`, `ledger_movement_without_message`,
    /// `chain_differs_from_ledger`, `settlement_window_failed`.
    pub check: String,
    /// The account (`user:<id>:<currency>:available`, `fees:USDT`), the
    /// currency, or the ledger transaction.
    pub account: String,
    #[schema(value_type = String)]
    pub expected: Decimal,
    #[schema(value_type = String)]
    pub found: Decimal,
    /// The messages involved (ids from the event log), or ledger references.
    pub messages: Vec<String>,
}

/// What one currency adds up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrencyTotals {
    pub currency: String,
    #[schema(value_type = String)]
    pub users: Decimal,
    #[schema(value_type = String)]
    pub fees: Decimal,
    #[schema(value_type = String)]
    pub top_ups: Decimal,
    #[schema(value_type = String)]
    pub deposits: Decimal,
    #[schema(value_type = String)]
    pub withdrawals: Decimal,
}

/// One run of the audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Ledger entries, accounts and event-log messages read.
    pub entries: usize,
    pub accounts: usize,
    pub messages: usize,
    pub totals: Vec<CurrencyTotals>,
    /// The block the chain was read at (check 4); `None`: not reconciled
    /// with the chain (no `chain_service_url`).
    pub chain_block: Option<u64>,
    /// Wallet holdings compared with the ledger (one per wallet and asset).
    pub wallets_checked: usize,
    pub discrepancies: Vec<Discrepancy>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }

    /// As a person reads it in a terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "audit {} at {}: {} entries, {} accounts, {} messages of the event log\n",
            self.id,
            self.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.entries,
            self.accounts,
            self.messages
        );
        out.push_str(&format!(
            "{:<6} {:>20} {:>16} {:>20} {:>20} {:>16}\n",
            "", "users", "fees", "top-ups", "deposits", "withdrawals"
        ));
        for t in &self.totals {
            out.push_str(&format!(
                "{:<6} {:>20} {:>16} {:>20} {:>20} {:>16}\n",
                t.currency, t.users, t.fees, t.top_ups, t.deposits, t.withdrawals
            ));
        }
        match self.chain_block {
            Some(block) => out.push_str(&format!(
                "chain: {} wallet holdings reconciled with the ledger at block {block}\n",
                self.wallets_checked
            )),
            None => out.push_str("chain: not reconciled (no chain_service_url)\n"),
        }
        if self.is_clean() {
            out.push_str("clean: every check holds\n");
        } else {
            out.push_str(&format!("{} discrepancies:\n", self.discrepancies.len()));
            for d in &self.discrepancies {
                out.push_str(&format!(
                    "  {} {}: expected {}, found {} ({})\n",
                    d.check,
                    d.account,
                    d.expected,
                    d.found,
                    d.messages.join(", ")
                ));
            }
        }
        out
    }
}

/// What the checks read from the database, in one consistent picture.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub entries: Vec<EntryRow>,
    pub accounts: Vec<AccountRow>,
    pub reservations: Vec<ReservationRow>,
    pub holds: Vec<HoldRow>,
}

/// The financial log's messages the checks read, old enough to be settled.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub trades: Vec<(String, TradeExecuted)>,
    pub deposits: Vec<(String, DepositConfirmed)>,
    pub withdrawals: Vec<(String, WithdrawalConfirmed)>,
    /// Ledger references of messages too young to check (in flight).
    pub in_flight: BTreeSet<String>,
}

impl Log {
    /// The log's messages published before `settled_before`; younger ones are in flight.
    pub fn of(messages: &[LoggedMessage], settled_before: DateTime<Utc>) -> Self {
        let mut log = Log::default();
        let mut seen = BTreeSet::new();
        for m in messages {
            let e = &m.envelope;
            let young = e.occurred_at > settled_before;
            match e.message_type.as_str() {
                "trade.executed" => {
                    if let Ok(t) = e.payload::<TradeExecuted>() {
                        let reference = format!("trade:{}", t.trade_id);
                        if young {
                            log.in_flight.insert(reference);
                        } else if seen.insert(reference) {
                            log.trades.push((e.message_id.to_string(), t));
                        }
                    }
                }
                "deposit.confirmed" => {
                    if let Ok(d) = e.payload::<DepositConfirmed>() {
                        let reference = format!("deposit:{}", d.deposit_id);
                        if young {
                            log.in_flight.insert(reference);
                        } else if seen.insert(reference) {
                            log.deposits.push((e.message_id.to_string(), d));
                        }
                    }
                }
                "withdrawal.confirmed" => {
                    if let Ok(w) = e.payload::<WithdrawalConfirmed>() {
                        let reference = format!("withdrawal:{}", w.withdrawal_id);
                        if young {
                            log.in_flight.insert(reference);
                        } else if seen.insert(reference) {
                            log.withdrawals.push((e.message_id.to_string(), w));
                        }
                    }
                }
                _ => {}
            }
        }
        log
    }
}

/// The name of a user's account, as the ledger writes it.
fn user_account(user: &str, currency: &str, account: LedgerAccount) -> String {
    format!("user:{user}:{currency}:{account}")
}

/// Every check, on what was read. Pure.
pub fn check(ledger: &Ledger, log: &Log, settings: &Settings) -> (Vec<CurrencyTotals>, Vec<Discrepancy>) {
    let mut found = Vec::new();
    let d = |check: &str, account: String, expected: Decimal, got: Decimal, messages: Vec<String>| {
        Discrepancy { check: check.into(), account, expected, found: got, messages }
    };

    // 1a. Every ledger transaction sums to zero, per currency.
    let mut txns: BTreeMap<(&str, &str), (Decimal, &str)> = BTreeMap::new();
    for e in &ledger.entries {
        let sum =
            txns.entry((e.txn_id.as_str(), e.currency.as_str())).or_insert((Decimal::ZERO, &e.reference));
        sum.0 += e.amount.value();
    }
    for ((txn, currency), (sum, reference)) in &txns {
        if !sum.is_zero() {
            let account = format!("ledger transaction {txn} ({currency})");
            found.push(d(
                "ledger_transaction_unbalanced",
                account,
                Decimal::ZERO,
                *sum,
                vec![reference.to_string()],
            ));
        }
    }

    // 1b. Each user account's stored balance is the sum of its entries.
    let mut sums: HashMap<String, Decimal> = HashMap::new();
    let mut exchange: HashMap<(LedgerAccount, &str), Decimal> = HashMap::new();
    for e in &ledger.entries {
        match &e.user_id {
            Some(user) if e.account.is_users() => {
                *sums.entry(user_account(user, &e.currency, e.account)).or_default() += e.amount.value();
            }
            _ => *exchange.entry((e.account, e.currency.as_str())).or_default() += e.amount.value(),
        }
    }
    for a in &ledger.accounts {
        for (account, stored) in
            [(LedgerAccount::Available, a.available.value()), (LedgerAccount::Reserved, a.reserved.value())]
        {
            let name = user_account(&a.user_id, &a.currency, account);
            let entries = sums.get(&name).copied().unwrap_or_default();
            if entries != stored {
                found.push(d("balance_differs_from_entries", name, entries, stored, Vec::new()));
            }
        }
    }

    // 1c. What is reserved is what live orders and withdrawals hold.
    let mut held: HashMap<(&str, &str), (Decimal, Vec<String>)> = HashMap::new();
    for r in &ledger.reservations {
        if matches!(r.status, ReservationStatus::Active | ReservationStatus::Ending) {
            let h = held.entry((r.user_id.as_str(), r.currency.as_str())).or_default();
            h.0 += r.remaining.value();
            h.1.push(format!("order:{}", r.order_id));
        }
    }
    for w in &ledger.holds {
        if w.status == HoldStatus::Held {
            let h = held.entry((w.user_id.as_str(), w.currency.as_str())).or_default();
            h.0 += w.amount.value() + w.fee.value();
            h.1.push(format!("withdrawal:{}", w.withdrawal_id));
        }
    }
    for a in &ledger.accounts {
        let (expected, holders) = held.remove(&(a.user_id.as_str(), a.currency.as_str())).unwrap_or_default();
        if expected != a.reserved.value() {
            let name = user_account(&a.user_id, &a.currency, LedgerAccount::Reserved);
            found.push(d("reserved_differs_from_holds", name, expected, a.reserved.value(), holders));
        }
    }

    // 2. Conservation per currency: users + fees = top-ups + deposits - withdrawals.
    fn totals_of<'a, 'm>(
        totals: &'m mut BTreeMap<&'a str, CurrencyTotals>,
        currency: &'a str,
    ) -> &'m mut CurrencyTotals {
        totals.entry(currency).or_insert_with(|| CurrencyTotals {
            currency: currency.to_string(),
            users: Decimal::ZERO,
            fees: Decimal::ZERO,
            top_ups: Decimal::ZERO,
            deposits: Decimal::ZERO,
            withdrawals: Decimal::ZERO,
        })
    }
    let mut totals: BTreeMap<&str, CurrencyTotals> = BTreeMap::new();
    for a in &ledger.accounts {
        totals_of(&mut totals, &a.currency).users += a.available.value() + a.reserved.value();
    }
    for e in &ledger.entries {
        let t = totals_of(&mut totals, &e.currency);
        match (e.kind, e.account) {
            (Kind::TopUp, LedgerAccount::Available) => t.top_ups += e.amount.value(),
            (Kind::Deposit, LedgerAccount::Available) => t.deposits += e.amount.value(),
            (Kind::Withdrawal, LedgerAccount::External) => t.withdrawals += e.amount.value(),
            _ => {}
        }
    }
    for ((account, currency), sum) in &exchange {
        if *account == LedgerAccount::Fees {
            totals_of(&mut totals, currency).fees += sum;
        }
    }
    for t in totals.values() {
        let expected = t.top_ups + t.deposits - t.withdrawals;
        if t.users + t.fees != expected {
            let account = format!("currency {}", t.currency);
            found.push(d("currency_not_conserved", account, expected, t.users + t.fees, Vec::new()));
        }
    }

    // 3. The event log against the ledger: each message's change, once.
    let mut by_reference: HashMap<&str, BTreeMap<String, Decimal>> = HashMap::new();
    for e in &ledger.entries {
        let Some(user) = &e.user_id else { continue };
        if matches!(e.kind, Kind::Settle | Kind::Deposit | Kind::Withdrawal) && e.account.is_users() {
            *by_reference
                .entry(e.reference.as_str())
                .or_default()
                .entry(format!("user:{user}:{}", e.currency))
                .or_default() += e.amount.value();
        }
    }
    // A message about users this ledger never had is another stack's (two
    // stacks sharing one broker): not this ledger's to check.
    let known: BTreeSet<&str> = ledger.accounts.iter().map(|a| a.user_id.as_str()).collect();
    let ours = |user: &Uuid| known.contains(user.to_string().as_str());
    let mut checked = BTreeSet::new();
    let mut compare = |check: &str, reference: String, message: &str, expected: BTreeMap<String, Decimal>| {
        let actual = by_reference.get(reference.as_str()).cloned().unwrap_or_default();
        let accounts: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
        for account in accounts {
            let (want, got) = (
                expected.get(account).copied().unwrap_or_default(),
                actual.get(account).copied().unwrap_or_default(),
            );
            if want != got {
                found.push(d(
                    check,
                    account.clone(),
                    want,
                    got,
                    vec![message.to_string(), reference.clone()],
                ));
            }
        }
        checked.insert(reference);
    };
    for (message, t) in log.trades.iter().filter(|(_, t)| ours(&t.taker_user_id) || ours(&t.maker_user_id)) {
        if let Some(expected) = trade_changes(t, &settings.reference, settings) {
            compare("trade_not_settled_once", format!("trade:{}", t.trade_id), message, expected);
        }
    }
    for (message, dep) in log.deposits.iter().filter(|(_, d)| ours(&d.user_id)) {
        let expected =
            BTreeMap::from([(format!("user:{}:{}", dep.user_id, dep.currency), dep.amount.value())])
                .into_iter()
                .filter(|(_, v)| !v.is_zero())
                .collect();
        compare("deposit_not_credited_once", format!("deposit:{}", dep.deposit_id), message, expected);
    }
    for (message, w) in log.withdrawals.iter().filter(|(_, w)| ours(&w.user_id)) {
        let account = format!("user:{}:{}", w.user_id, w.currency);
        let expected = -(w.amount.value() + w.fee.value());
        let reference = format!("withdrawal:{}", w.withdrawal_id);
        // Only the debit: the hold and its release net to nothing.
        let debited: Decimal = ledger
            .entries
            .iter()
            .filter(|e| e.reference == reference && e.kind == Kind::Withdrawal && e.account.is_users())
            .map(|e| e.amount.value())
            .sum();
        if expected != debited {
            let messages = vec![message.clone(), reference.clone()];
            found.push(d("withdrawal_not_debited_once", account, expected, debited, messages));
        }
        checked.insert(reference);
    }
    // And nothing in the ledger that the log does not have.
    for (reference, changes) in &by_reference {
        let logged = checked.contains(*reference) || log.in_flight.contains(*reference);
        let kind = reference.split(':').next().unwrap_or_default();
        if !logged && matches!(kind, "trade" | "deposit") {
            for (account, amount) in changes {
                found.push(d(
                    "ledger_movement_without_message",
                    account.clone(),
                    Decimal::ZERO,
                    *amount,
                    vec![reference.to_string()],
                ));
            }
        }
    }
    let totals = totals
        .into_values()
        .map(|t| CurrencyTotals {
            users: t.users.normalize(),
            fees: t.fees.normalize(),
            top_ups: t.top_ups.normalize(),
            deposits: t.deposits.normalize(),
            withdrawals: t.withdrawals.normalize(),
            ..t
        })
        .collect();
    let found = found
        .into_iter()
        .map(|d| Discrepancy { expected: d.expected.normalize(), found: d.found.normalize(), ..d })
        .collect();
    (totals, found)
}

/// Each side's change, in each currency, that settling `trade` makes (its
/// fee taken from what it receives, at its maker or taker rate).
fn trade_changes(
    trade: &TradeExecuted,
    reference: &ReferenceData,
    settings: &Settings,
) -> Option<BTreeMap<String, Decimal>> {
    let market = reference.market(&trade.market)?;
    let (base, quote) = (reference.currency(&market.base)?, reference.currency(&market.quote)?);
    let quantity = trade.quantity.value();
    let cost = trade.price.value() * quantity;
    let (buyer, seller, buyer_rate, seller_rate) = match trade.taker_side {
        Side::Buy => {
            (trade.taker_user_id, trade.maker_user_id, settings.taker_fee_rate, settings.maker_fee_rate)
        }
        Side::Sell => {
            (trade.maker_user_id, trade.taker_user_id, settings.maker_fee_rate, settings.taker_fee_rate)
        }
    };
    let mut changes = BTreeMap::new();
    let mut add = |user: Uuid, currency: &str, amount: Decimal| {
        *changes.entry(format!("user:{user}:{currency}")).or_default() += amount;
    };
    add(buyer, &base.code, quantity - domain::fee(quantity, buyer_rate, base.scale));
    add(buyer, &quote.code, -cost);
    add(seller, &base.code, -quantity);
    add(seller, &quote.code, cost - domain::fee(cost, seller_rate, quote.scale));
    Some(changes.into_iter().filter(|(_, v): &(String, Decimal)| !v.is_zero()).collect())
}

/// Why a run could not read what it checks.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the event log: {0}")]
    EventLog(anyhow::Error),
    #[error("the chain's holdings: {0}")]
    Chain(String),
}

impl From<diesel::result::Error> for AuditError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// How often a difference between the chain and the ledger is read again
/// before it is reported (the two are read a moment apart).
pub const CHAIN_ATTEMPTS: usize = 4;

/// Where the audit reads the custodial wallets' holdings: chain-service,
/// asked as an administrator with the stack's internal secret.
#[derive(Debug, Clone)]
pub struct ChainSource {
    pub url: String,
    pub secret: InternalSecret,
}

impl ChainSource {
    /// From payment-service's configuration: `None` without a `chain_service_url`.
    pub fn of(config: &crate::Config) -> Option<Self> {
        let url = config.settings.chain_service_url.clone()?;
        let secret = config.security.internal_secret.clone()?;
        Some(Self { url, secret })
    }

    async fn holdings(&self) -> Result<Holdings, AuditError> {
        const PATH: &str = "/api/admin/chain/holdings";
        let client = reqwest::Client::new();
        let mut request =
            client.get(format!("{}{PATH}", self.url.trim_end_matches('/'))).timeout(Duration::from_secs(30));
        for (name, value) in self.secret.admin_headers("GET", PATH) {
            request = request.header(name, value);
        }
        let chain = |e: String| AuditError::Chain(format!("chain-service at {}: {e}", self.url));
        let answer = request.send().await.map_err(|e| chain(e.to_string()))?;
        if !answer.status().is_success() {
            let status = answer.status();
            return Err(chain(format!("{status}: {}", answer.text().await.unwrap_or_default())));
        }
        answer.json().await.map_err(|e| chain(e.to_string()))
    }
}

/// Check 4, pure: each wallet's holding against its owner's ledger balance
/// (`accounts`: user -> currency -> available + reserved; `fees`: the fees
/// account per currency), and the failed settlement windows.
pub fn check_chain(
    holdings: &Holdings,
    accounts: &HashMap<(String, String), Decimal>,
    fees: &HashMap<String, Decimal>,
) -> Vec<Discrepancy> {
    let mut found = Vec::new();
    for h in &holdings.holdings {
        let ledger = match h.owner.as_str() {
            "clearing" => Decimal::ZERO,
            "fees" => fees.get(&h.currency).copied().unwrap_or_default(),
            user => accounts.get(&(user.to_string(), h.currency.clone())).copied().unwrap_or_default(),
        };
        let expected = ledger + h.in_flight.total();
        if expected != h.on_chain {
            let f = &h.in_flight;
            found.push(Discrepancy {
                check: "chain_differs_from_ledger".into(),
                account: format!("wallet {} ({}) {}", h.address, h.owner, h.currency),
                expected,
                found: h.on_chain,
                messages: vec![
                    format!("block {}", holdings.block),
                    format!("ledger {ledger}"),
                    format!(
                        "in flight: deposits {}, withdrawals {}, settlement {}, gas {}",
                        f.deposits, f.withdrawals, f.settlement, f.gas
                    ),
                ],
            });
        }
    }
    for w in &holdings.failed_windows {
        found.push(Discrepancy {
            check: "settlement_window_failed".into(),
            account: format!("settlement window {}", w.id),
            expected: Decimal::ZERO,
            found: Decimal::ZERO,
            messages: w.reason.iter().cloned().collect(),
        });
    }
    found
}

/// The ledger side of check 4: each user's balance per currency, and the fees account's.
fn ledger_balances(ledger: &Ledger) -> (HashMap<(String, String), Decimal>, HashMap<String, Decimal>) {
    let accounts = ledger
        .accounts
        .iter()
        .map(|a| ((a.user_id.clone(), a.currency.clone()), a.available.value() + a.reserved.value()))
        .collect();
    let mut fees: HashMap<String, Decimal> = HashMap::new();
    for e in ledger.entries.iter().filter(|e| e.account == LedgerAccount::Fees) {
        *fees.entry(e.currency.clone()).or_default() += e.amount.value();
    }
    (accounts, fees)
}

/// Reads the ledger under its lock: one consistent picture.
async fn read_ledger(db: &Db) -> Result<Ledger, AuditError> {
    db.write(|c| {
        // Under the ledger's lock: no money moves while it is read.
        storage::lock_ledger(c)?;
        Ok::<_, AuditError>(Ledger {
            entries: storage::all_entries(c)?,
            accounts: storage::all_accounts(c)?,
            reservations: storage::all_reservations(c)?,
            holds: storage::all_holds(c)?,
        })
    })
    .await
}

/// Reads, checks, and returns the report (not stored: see [`Auditor::audit`]).
pub async fn run(
    db: &Db,
    amqp_url: &str,
    settings: &Settings,
    chain: Option<&ChainSource>,
) -> Result<Report, AuditError> {
    let started_at = Utc::now();
    // Messages older than the grace have had their effect, unless something is wrong.
    let settled_before = started_at - chrono::Duration::milliseconds(settings.audit_grace_ms as i64);
    let messages = eventlog::read(amqp_url, StreamOffset::First, usize::MAX, Duration::from_millis(500))
        .await
        .map_err(AuditError::EventLog)?;
    let log = Log::of(&messages, settled_before);
    let mut ledger = read_ledger(db).await?;
    let (mut chain_block, mut wallets_checked, mut chain_found) = (None, 0, Vec::new());
    if let Some(chain) = chain {
        for attempt in 1..=CHAIN_ATTEMPTS {
            let holdings = chain.holdings().await?;
            if attempt > 1 {
                ledger = read_ledger(db).await?;
            }
            let (accounts, fees) = ledger_balances(&ledger);
            chain_found = check_chain(&holdings, &accounts, &fees);
            (chain_block, wallets_checked) = (Some(holdings.block), holdings.holdings.len());
            if chain_found.is_empty() || attempt == CHAIN_ATTEMPTS {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let (totals, mut discrepancies) = check(&ledger, &log, settings);
    discrepancies.extend(chain_found);
    Ok(Report {
        id: Uuid::now_v7(),
        started_at,
        finished_at: Utc::now(),
        entries: ledger.entries.len(),
        accounts: ledger.accounts.len(),
        messages: messages.len(),
        totals,
        chain_block,
        wallets_checked,
        discrepancies,
    })
}

/// Runs the audit and keeps its report, for the job, the route and `bourse audit`.
#[derive(Debug, Clone)]
pub struct Auditor {
    pub settings: Settings,
    pub bus: Bus,
    pub chain: Option<ChainSource>,
}

impl Auditor {
    /// Runs, keeps the report (a report with discrepancies sends `audit.failed`
    /// in the same transaction), and sets the gauges
    /// `bourse_audit_discrepancies` and `bourse_audit_last_clean_seconds`.
    pub async fn audit(&self) -> Result<Report, AuditError> {
        let report = run(&self.bus.db, &self.bus.amqp_url, &self.settings, self.chain.as_ref()).await?;
        let json = serde_json::to_string(&report).map_err(|e| AuditError::EventLog(e.into()))?;
        let (id, finished) = (report.id, report.finished_at.timestamp_micros());
        let count = report.discrepancies.len();
        let checks: BTreeSet<String> = report.discrepancies.iter().map(|d| d.check.clone()).collect();
        let producer = self.bus.producer.clone();
        self.bus
            .db
            .write(move |c| {
                storage::insert_report(
                    c,
                    &id.to_string(),
                    finished,
                    i32::try_from(count).unwrap_or(i32::MAX),
                    &json,
                )?;
                if count > 0 {
                    let mut out = Emitter::new(&producer);
                    let failed = AuditFailed {
                        report_id: id,
                        discrepancies: count as u64,
                        checks: checks.into_iter().collect(),
                    };
                    out.send(&id.to_string(), &failed);
                    out.flush(c)?;
                }
                Ok::<_, AuditError>(())
            })
            .await?;
        let metrics = &self.bus.metrics;
        metrics.set_gauge("bourse_audit_discrepancies", &[], count as i64);
        if count == 0 {
            metrics.set_gauge("bourse_audit_last_clean_seconds", &[], report.finished_at.timestamp());
            tracing::info!(report = %id, "audit clean");
        } else {
            tracing::error!(report = %id, discrepancies = count, "ALERT: the audit found discrepancies");
        }
        Ok(report)
    }
}

/// The audit as a background job of the service: every `audit_interval_ms`.
pub fn job(settings: Settings, chain: Option<ChainSource>) -> BackgroundTask {
    Box::new(move |bus, shutdown| {
        let interval = Duration::from_millis(settings.audit_interval_ms);
        let auditor = Auditor { settings, bus: bus.clone(), chain };
        Box::pin(async move {
            if interval.is_zero() {
                return;
            }
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if let Err(e) = auditor.audit().await {
                    tracing::warn!(error = %e, "the audit could not run; it runs again at its next time");
                }
            }
        })
    })
}
