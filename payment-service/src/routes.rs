//! payment-service's REST routes (reached through the gateway, which sets the caller).

use actix_web::{HttpResponse, web};
use bourse_common::auth::Caller;
use bourse_common::catalog::ToppedUp;
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::paging::{Page, PageQuery};
use serde::{Deserialize, Serialize};

use crate::audit::{Auditor, CurrencyTotals, Discrepancy, Report};
use crate::settings::Settings;
use crate::storage::{self, AccountRow, EntryRow};

/// An account: what a user holds in one currency.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    pub currency: String,
    /// Free to use.
    pub available: Amount,
    /// Held for open orders.
    pub reserved: Amount,
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Self {
        Self { currency: r.currency, available: r.available, reserved: r.reserved }
    }
}

/// A ledger entry of the user: one leg of a balanced transaction.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinanceEntry {
    pub id: i64,
    /// The ledger transaction this entry belongs to.
    pub txn_id: String,
    pub currency: String,
    /// `available` or `reserved`.
    pub account: String,
    /// Signed: what this entry added to the account.
    pub amount: Amount,
    /// `top_up`, `reserve`, `release`, `settle`.
    pub kind: String,
    /// What caused it, e.g. `order:<id>`.
    pub reference: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<EntryRow> for FinanceEntry {
    fn from(r: EntryRow) -> Self {
        Self {
            id: r.id,
            txn_id: r.txn_id,
            currency: r.currency,
            account: r.account.to_string(),
            amount: r.amount,
            kind: r.kind.to_string(),
            reference: r.reference,
            created_at: bourse_common::micros_to_time(r.created_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// A positive amount within the currency's scale, as a string: `"100.5"`.
    pub amount: Amount,
}

pub fn configure(cfg: &mut web::ServiceConfig, auditor: Auditor) {
    cfg.app_data(web::Data::new(auditor))
        .route("/api/users/me/accounts", web::get().to(list_accounts))
        .route("/api/users/me/accounts/{currency}/top-up", web::post().to(top_up))
        .route("/api/history/finance", web::get().to(finance_history))
        .route("/api/admin/payments/fees", web::get().to(fees))
        .route("/api/admin/audit", web::get().to(latest_audit))
        .route("/api/admin/audit", web::post().to(run_audit));
}

/// What the exchange's fee account holds in one currency.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeeBalance {
    pub currency: String,
    pub amount: Amount,
}

/// The fees collected, per currency (administrators only).
#[utoipa::path(
    get,
    path = "/api/admin/payments/fees",
    tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<FeeBalance>), (status = 403, description = "not an administrator"))
)]
pub async fn fees(
    caller: Caller,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let codes: Vec<String> = settings.reference.currencies.iter().map(|c| c.code.clone()).collect();
    let balances = db
        .read(move |c| {
            codes
                .into_iter()
                .map(|code| {
                    let amount = storage::fees_collected(c, &code)?;
                    Ok(FeeBalance { currency: code, amount: amount.into() })
                })
                .collect::<Result<Vec<_>, DbError>>()
        })
        .await?;
    Ok(HttpResponse::Ok().json(balances))
}

/// The caller's accounts, one per currency.
#[utoipa::path(
    get,
    path = "/api/users/me/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<Account>), (status = 401, description = "no valid token"))
)]
pub async fn list_accounts(
    caller: Caller,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let rows = db.read(move |c| storage::accounts_of(c, caller.user_id).map_err(DbError::from)).await?;
    // Every currency is listed, opened or not yet (the user was just registered).
    let accounts: Vec<Account> = settings
        .reference
        .currencies
        .iter()
        .map(|cur| match rows.iter().find(|r| r.currency == cur.code) {
            Some(row) => Account::from(row.clone()),
            None => Account { currency: cur.code.clone(), available: Amount::ZERO, reserved: Amount::ZERO },
        })
        .collect();
    Ok(HttpResponse::Ok().json(accounts))
}

/// Credits the caller's account (a demo and test convenience; off in production).
#[utoipa::path(
    post,
    path = "/api/users/me/accounts/{currency}/top-up",
    tag = "accounts",
    security(("bearer" = [])),
    params(("currency" = String, Path, description = "e.g. USDT")),
    request_body = TopUp,
    responses(
        (status = 200, body = Account, description = "the account after the top-up"),
        (status = 403, description = "top-up is switched off (`top_up_disabled`)"),
        (status = 404, description = "unknown currency"),
        (status = 409, description = "a currency on the chain: only a deposit credits it (`deposit_on_chain`)"),
        (status = 422, description = "amount not positive or over the currency's scale; above the maximum per call (`top_up_above_maximum`) or per day (`top_up_daily_maximum`)"),
    )
)]
pub async fn top_up(
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<TopUp>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    if !settings.top_up_enabled {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "top_up_disabled",
            "top-up is switched off on this exchange",
        ));
    }
    let code = path.into_inner();
    let currency = settings
        .reference
        .currency(&code)
        .ok_or_else(|| ApiError::not_found("unknown_currency", format!("no currency {code}")))?;
    if settings.on_chain_currencies.contains(&code) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "deposit_on_chain",
            format!(
                "{code} lives on the chain: deposit it to your wallet (GET /api/users/me/wallets); on a \
                 development stack the faucet sends it: POST /api/users/me/wallets/faucet \
                 {{\"currency\": \"{code}\", \"amount\": ...}}"
            ),
        ));
    }
    let amount = body.amount.positive_in(currency)?;
    let (per_call, per_day) = (settings.top_up_max_per_call, settings.top_up_max_per_day);
    if amount.value() > per_call {
        return Err(ApiError::unprocessable(
            "top_up_above_maximum",
            format!("a top-up credits at most {per_call} {code}"),
        ));
    }
    let user = caller.user_id;
    let account = db
        .write(move |c| {
            storage::lock_ledger(c)?;
            let now = now_micros();
            let today = storage::top_ups_since(c, user, &code, now - 86_400_000_000)?;
            if today + amount.value() > per_day {
                return Ok(Err(ApiError::unprocessable(
                    "top_up_daily_maximum",
                    format!("top-ups credit at most {per_day} {code} per user in 24 hours ({today} so far)"),
                )));
            }
            let balance = storage::lock_balance(c, user, &code, now)?;
            // A sum that would overflow is refused, never a panic.
            let fits = balance
                .available
                .checked_add(balance.reserved)
                .and_then(|held| held.checked_add(amount.value()))
                .is_some();
            if !fits {
                return Ok(Err(ApiError::unprocessable(
                    "balance_too_large",
                    "the balance would be too large",
                )));
            }
            let movement = balance.top_up(amount.value());
            let after = storage::apply(c, user, &code, balance, &movement, "top-up", now)?;
            let credited = ToppedUp { user_id: user, currency: code.clone(), amount };
            let mut out = Emitter::new(bourse_common::registry::PAYMENT.name);
            out.send(&user.to_string(), &credited);
            out.flush(c)?;
            Ok::<_, DbError>(Ok(Account {
                currency: code,
                available: after.available.into(),
                reserved: after.reserved.into(),
            }))
        })
        .await??;
    Ok(HttpResponse::Ok().json(account))
}

/// The caller's ledger entries, newest first.
#[utoipa::path(
    get,
    path = "/api/history/finance",
    tag = "accounts",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<FinanceEntry>))
)]
pub async fn finance_history(
    caller: Caller,
    query: web::Query<PageQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let (page, per_page, offset) = query.into_inner().resolve()?;
    let (rows, total) = db
        .read(move |c| storage::entries_of(c, caller.user_id, per_page, offset).map_err(DbError::from))
        .await?;
    let items = rows.into_iter().map(FinanceEntry::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_accounts, top_up, finance_history, fees, latest_audit, run_audit),
    components(schemas(Account, TopUp, FinanceEntry, Page<FinanceEntry>, FeeBalance, Report, Discrepancy, CurrencyTotals)),
    tags(
        (name = "accounts", description = "balances, top-ups and the ledger"),
        (name = "admin", description = "for administrators"),
        (name = "audit", description = "the ledger checked against itself and the event log (administrators)"),
    )
)]
pub struct Api;

/// The latest audit's report (administrators only).
#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Report),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no audit has run yet (`no_audit_yet`)"),
    )
)]
pub async fn latest_audit(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let report = db.read(|c| storage::latest_report(c).map_err(DbError::from)).await?;
    let report = report
        .ok_or_else(|| ApiError::not_found("no_audit_yet", "no audit has run yet: POST /api/admin/audit"))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(report))
}

/// Runs the audit now and answers its report (administrators only); a report
/// with discrepancies also raises `audit.failed`.
#[utoipa::path(
    post,
    path = "/api/admin/audit",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Report, description = "the run's report: `discrepancies` empty when clean"),
        (status = 403, description = "not an administrator"),
        (status = 503, description = "the database or the event log did not answer"),
    )
)]
pub async fn run_audit(caller: Caller, auditor: web::Data<Auditor>) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let report =
        auditor.audit().await.map_err(|e| ApiError::unavailable(format!("the audit could not run: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}
