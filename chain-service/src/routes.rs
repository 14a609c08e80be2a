//! chain-service's REST routes (reached through the gateway, which sets the caller).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bourse_common::auth::Caller;
use bourse_common::catalog::HoldWithdrawal;
use bourse_common::db::{Db, DbConnection, DbError, is_unique_violation};
use bourse_common::error::ApiError;
use bourse_common::idempotency::IdempotencyKey;
use bourse_common::money::{Amount, Currency};
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::paging::{Page, PageQuery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::PRODUCER;
use crate::domain::WindowStatus;
use crate::domain::{self, WithdrawalError, WithdrawalStatus};
use crate::holdings::{FailedWindow, Holding, Holdings, InFlight};
use crate::node::{Faucet, Node};
use crate::settings::{Asset, Settings};
use crate::storage::{self, DepositRow, TxRow, WithdrawalRow};

/// Where a user deposits a currency (one address for all of them).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wallet {
    pub currency: String,
    /// EIP-55 checksummed address on the chain.
    pub address: String,
    pub chain_id: u64,
    /// The token's contract (send this token to the address); `None`: the native coin.
    pub token: Option<String>,
}

/// A deposit to the user's wallet, from the moment its block is read.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deposit {
    /// `<chain id>:<tx hash>:<index in the block>`.
    pub id: String,
    pub currency: String,
    /// What the ledger credits: the chain amount in the currency's scale.
    pub amount: Amount,
    /// What the chain amount had below that scale: stays in the wallet, not credited.
    pub dust: Amount,
    pub tx_hash: String,
    pub block_number: i64,
    /// `pending`, `credited`, `orphaned` (its block left the chain before it
    /// was credited), `reverted` (after: the operators are alerted).
    pub status: String,
    /// Blocks on top of its block (its own counted) at the last head read.
    pub confirmations: u64,
    /// Confirmations that credit it.
    pub required_confirmations: u64,
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

impl Deposit {
    fn new(row: DepositRow, head: Option<i64>, required: u64) -> Self {
        let block = u64::try_from(row.block_number).unwrap_or(0);
        let head = head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0);
        Self {
            id: row.id,
            currency: row.currency,
            amount: row.amount,
            dust: row.dust,
            tx_hash: row.tx_hash,
            block_number: row.block_number,
            status: row.status.to_string(),
            confirmations: match row.status {
                domain::DepositStatus::Pending | domain::DepositStatus::Credited => {
                    domain::confirmations(block, head)
                }
                domain::DepositStatus::Orphaned | domain::DepositStatus::Reverted => 0,
            },
            required_confirmations: required.max(1),
            seen_at: bourse_common::micros_to_time(row.seen_at),
        }
    }
}

/// What the development faucet sends: ETH, or a dev token (minted).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaucetRequest {
    /// A currency on the chain; the native coin (ETH) when absent.
    pub currency: Option<String>,
    pub amount: Amount,
}

/// The faucet's transfer: a deposit like any other from here.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaucetTransfer {
    pub currency: String,
    pub address: String,
    pub amount: Amount,
    pub tx_hash: String,
}

/// A withdrawal to an address on the chain.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalRequest {
    /// A currency on the chain (ETH, and the configured tokens: USDT).
    pub currency: String,
    /// What reaches the address; the fee is held and debited on top.
    pub amount: Amount,
    /// 0x and 40 hex digits; in mixed case its EIP-55 checksum must hold.
    pub address: String,
}

/// A withdrawal and its transaction.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawal {
    pub id: Uuid,
    pub currency: String,
    pub amount: Amount,
    /// The exchange's fee, debited with the amount.
    pub fee: Amount,
    /// EIP-55 checksummed.
    pub address: String,
    pub status: WithdrawalStatus,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// The transaction's hash: its latest attempt (a replacement with a
    /// higher fee has another), or the mined one.
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
    /// Blocks on top of its block (its own counted) at the last head read.
    pub confirmations: u64,
    pub required_confirmations: u64,
    /// How often its transaction was sent again with a higher fee.
    pub replacements: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Withdrawal {
    fn new(w: WithdrawalRow, tx: Option<TxRow>, head: Option<i64>, required: u64) -> Result<Self, ApiError> {
        let block = tx.as_ref().and_then(|t| t.block_number);
        let confirmations = match (block, head) {
            (Some(b), Some(h)) => {
                domain::confirmations(u64::try_from(b).unwrap_or(0), u64::try_from(h).unwrap_or(0))
            }
            _ => 0,
        };
        Ok(Self {
            id: Uuid::parse_str(&w.id).map_err(ApiError::internal)?,
            currency: w.currency,
            amount: w.amount,
            fee: w.fee,
            address: w.address,
            status: w.status,
            reason: w.reason,
            tx_hash: tx.as_ref().and_then(|t| t.tx_hash.clone()),
            block_number: block,
            confirmations,
            required_confirmations: required.max(1),
            replacements: tx.map_or(0, |t| t.replacements),
            created_at: bourse_common::micros_to_time(w.created_at),
            updated_at: bourse_common::micros_to_time(w.updated_at),
        })
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(wallets, deposits, faucet_deposit, request_withdrawal, withdrawals, withdrawal, holdings, windows),
    components(schemas(
        Wallet, Deposit, Page<Deposit>, FaucetRequest, FaucetTransfer, WithdrawalRequest, Withdrawal,
        Page<Withdrawal>, WithdrawalStatus, Holdings, Holding, InFlight, FailedWindow, Window, WindowTx, Page<Window>,
        WindowStatus
    )),
    tags(
        (name = "wallets", description = "deposit addresses and deposits on the chain"),
        (name = "withdrawals", description = "withdrawals to addresses on the chain"),
        (name = "admin", description = "the custodial wallets on chain against the ledger; settlement windows"),
    )
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig, faucet: &web::Data<Option<Faucet>>, node: &web::Data<Node>) {
    cfg.app_data(faucet.clone())
        .app_data(node.clone())
        .route("/api/admin/chain/holdings", web::get().to(holdings))
        .route("/api/admin/chain/settlements", web::get().to(windows))
        .route("/api/users/me/wallets", web::get().to(wallets))
        .route("/api/users/me/wallets/faucet", web::post().to(faucet_deposit))
        .route("/api/users/me/deposits", web::get().to(deposits))
        .route("/api/withdrawals", web::post().to(request_withdrawal))
        .route("/api/withdrawals", web::get().to(withdrawals))
        .route("/api/withdrawals/{id}", web::get().to(withdrawal));
}

/// The caller's deposit addresses: one per currency on the chain, the same
/// address for all (empty for a moment after registration, until the wallet is made).
#[utoipa::path(
    get,
    path = "/api/users/me/wallets",
    tag = "wallets",
    security(("bearer" = [])),
    responses((status = 200, body = [Wallet]))
)]
pub async fn wallets(
    caller: Caller,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let user: Uuid = caller.user_id;
    let row = db.read(move |c| storage::wallet_of(c, user).map_err(DbError::from)).await?;
    let wallets: Vec<Wallet> = row
        .iter()
        .flat_map(|w| {
            settings.assets().map(|asset| Wallet {
                currency: asset.currency,
                address: w.address.clone(),
                chain_id: settings.chain_id,
                token: asset.token.map(|t| t.to_checksum(None)),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(wallets))
}

/// Where a page is: its number, its size and how many rows there are in all.
struct PageOf {
    page: i64,
    per_page: i64,
    total: i64,
}

impl PageOf {
    fn with<T>(self, items: Vec<T>) -> Page<T> {
        Page { items, page: self.page, per_page: self.per_page, total: self.total }
    }
}

/// Reads one page of a user's rows (limit, offset): the rows and how many in all.
type PageReader<R> = fn(&mut DbConnection, Uuid, i64, i64) -> diesel::QueryResult<(Vec<R>, i64)>;

/// One page of `user`'s rows read by `fetch` (limit, offset), with the head
/// their confirmations count against, read together.
async fn page_of<R: Send + 'static>(
    db: &Db,
    user: Uuid,
    query: PageQuery,
    fetch: PageReader<R>,
) -> Result<(Vec<R>, PageOf, Option<i64>), ApiError> {
    let (page, per_page, offset) = query.resolve()?;
    let (rows, total, head) = db
        .read(move |c| {
            let (rows, total) = fetch(c, user, per_page, offset)?;
            Ok::<_, DbError>((rows, total, storage::head(c)?))
        })
        .await?;
    Ok((rows, PageOf { page, per_page, total }, head))
}

/// The caller's deposits, newest first, with their confirmations.
#[utoipa::path(
    get,
    path = "/api/users/me/deposits",
    tag = "wallets",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Deposit>), (status = 400, description = "bad page or per_page"))
)]
pub async fn deposits(
    caller: Caller,
    query: web::Query<PageQuery>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let (rows, page, head) = page_of(&db, caller.user_id, query.into_inner(), storage::deposits_of).await?;
    let items = rows.into_iter().map(|r| Deposit::new(r, head, settings.confirmations)).collect();
    Ok(HttpResponse::Ok().json(page.with(items)))
}

/// Development only: sends ETH from the dev chain's funded account to the
/// caller's wallet, or mints it a dev token (USDT). It is credited like any deposit, after its confirmations
/// (follow it at `GET /api/users/me/deposits`), so the ledger and the chain agree.
#[utoipa::path(
    post,
    path = "/api/users/me/wallets/faucet",
    tag = "wallets",
    security(("bearer" = [])),
    request_body = FaucetRequest,
    responses(
        (status = 202, body = FaucetTransfer, description = "sent; a pending deposit once its block is read"),
        (status = 403, description = "no faucet on this exchange (`faucet_disabled`)"),
        (status = 409, description = "the wallet is not made yet (`no_wallet_yet`)"),
        (status = 422, description = "unknown_currency, currency_not_on_chain, amount not positive, over the scale, or above the faucet's maximum (`faucet_above_maximum`)"),
        (status = 503, description = "the chain node did not take the transfer"),
    )
)]
pub async fn faucet_deposit(
    caller: Caller,
    body: web::Json<FaucetRequest>,
    db: web::Data<Db>,
    faucet: web::Data<Option<Faucet>>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let Some(faucet) = faucet.get_ref() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "faucet_disabled",
            "this exchange has no faucet: deposit to your wallet's address",
        ));
    };
    let request = body.into_inner();
    let code = request.currency.unwrap_or_else(|| settings.native_currency.clone());
    let (currency, asset) = on_chain(&settings, &code)?;
    let amount = request.amount.positive_in(currency)?;
    let max = settings.faucet_max.get(&code).copied().unwrap_or_default();
    if amount.value() > max {
        return Err(ApiError::unprocessable(
            "faucet_above_maximum",
            format!("the faucet sends at most {max} {code} at a time"),
        ));
    }
    let units = domain::to_units(amount.value(), asset.decimals).ok_or_else(|| {
        ApiError::unprocessable("amount_too_large", "the amount does not fit the chain's units")
    })?;
    let user = caller.user_id;
    let wallet =
        db.read(move |c| storage::wallet_of(c, user).map_err(DbError::from)).await?.ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "no_wallet_yet",
                "your wallet is being made: try again in a moment",
            )
        })?;
    let sent = match asset.token {
        None => faucet.send(&wallet.address, units).await,
        Some(token) => faucet.mint(token, &wallet.address, units).await,
    };
    let tx_hash = sent.map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(user = %user, amount = %amount.value(), currency = %code, tx = %tx_hash, "faucet deposit sent");
    Ok(HttpResponse::Accepted().json(FaucetTransfer {
        currency: code,
        address: wallet.address,
        amount,
        tx_hash,
    }))
}

impl From<WithdrawalError> for ApiError {
    fn from(e: WithdrawalError) -> Self {
        ApiError::unprocessable(e.code(), e.to_string())
    }
}

/// `code`'s currency and where it lives on the chain (422 when it is no
/// currency, or not on the chain).
fn on_chain<'a>(settings: &'a Settings, code: &str) -> Result<(&'a Currency, Asset), ApiError> {
    let refused = |e: WithdrawalError| ApiError::unprocessable(e.code(), e.to_string());
    let currency = settings
        .reference
        .currency(code)
        .ok_or_else(|| refused(WithdrawalError::UnknownCurrency(code.into())))?;
    let asset = settings.asset(code).ok_or_else(|| refused(WithdrawalError::OffChain(code.into())))?;
    Ok((currency, asset))
}

/// Asks for a withdrawal: `requested` until payment-service holds its amount
/// and fee, then `sending`, `sent`, and `confirmed` after its confirmations
/// (or `failed`, everything held given back). The request waits a moment for
/// the hold: a refusal (insufficient funds) is answered 422.
#[utoipa::path(
    post,
    path = "/api/withdrawals",
    tag = "withdrawals",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body return the same withdrawal")),
    request_body = WithdrawalRequest,
    responses(
        (status = 202, body = Withdrawal, description = "accepted; follow it at GET /api/withdrawals/{id}"),
        (status = 400, description = "bad Idempotency-Key"),
        (status = 401, description = "no valid token"),
        (status = 409, description = "the wallet is not made yet (`no_wallet_yet`)"),
        (status = 422, description = "unknown_currency, currency_not_on_chain, amount not positive or over the scale, withdrawal_above_maximum, address_malformed, address_checksum, address_zero, too_many_withdrawals, idempotency_key_reused, insufficient_funds (refused by the ledger: nothing held)"),
    )
)]
pub async fn request_withdrawal(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<WithdrawalRequest>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let (currency, asset) = on_chain(&settings, &request.currency)?;
    let amount = request.amount.positive_in(currency)?;
    let limits = &settings.withdrawals;
    if let Some(max) = limits.max_amount.get(&currency.code)
        && amount.value() > *max
    {
        return Err(WithdrawalError::AboveMaximum { max: *max, currency: currency.code.clone() }.into());
    }
    domain::to_units(amount.value(), asset.decimals).ok_or_else(|| {
        ApiError::unprocessable("amount_too_large", "the amount does not fit the chain's units")
    })?;
    let address = domain::parse_address(request.address.trim())
        .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))?
        .to_checksum(None);
    let fee = Amount::from(limits.fee.get(&currency.code).copied().unwrap_or_default());
    let key = IdempotencyKey::of(&req)?;
    let request_body = serde_json::to_string(&request).map_err(ApiError::internal)?;
    let user = caller.user_id;
    let now = now_micros();
    let row = WithdrawalRow {
        id: Uuid::now_v7().to_string(),
        user_id: user.to_string(),
        currency: currency.code.clone(),
        amount,
        fee,
        address,
        status: WithdrawalStatus::Requested,
        reason: None,
        idempotency_key: key.as_ref().map(|k| k.as_str().to_string()),
        request_body: request_body.clone(),
        created_at: now,
        updated_at: now,
    };
    let max_in_flight = limits.max_in_flight;
    let raced_key = key.clone();
    let stored = db
        .write(move |c| {
            storage::lock_withdrawals(c, user)?;
            if let Some(key) = &key
                && let Some(existing) = storage::withdrawal_by_key(c, user, key.as_str())?
            {
                return Ok(Ok(existing));
            }
            if storage::wallet_of(c, user)?.is_none() {
                return Ok(Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "no_wallet_yet",
                    "your wallet is being made: try again in a moment",
                )));
            }
            if let Err(full) =
                domain::room_for_another(storage::withdrawals_in_flight(c, user)?, max_in_flight)
            {
                return Ok(Err(full.into()));
            }
            storage::insert_withdrawal(c, &row)?;
            let mut out = Emitter::new(PRODUCER);
            out.send(
                &row.id,
                &HoldWithdrawal {
                    withdrawal_id: Uuid::parse_str(&row.id).unwrap_or_default(),
                    user_id: user,
                    currency: row.currency.clone(),
                    amount: row.amount,
                    fee: row.fee,
                },
            );
            out.flush(c)?;
            Ok::<_, DbError>(Ok(row))
        })
        .await;
    let stored = match stored {
        Ok(Ok(row)) => row,
        Ok(Err(refusal)) => return Err(refusal),
        // The same key raced in from another request: that one won.
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            let key = raced_key.ok_or_else(|| ApiError::internal("idempotency key vanished"))?;
            db.read(move |c| storage::withdrawal_by_key(c, user, key.as_str()).map_err(DbError::from))
                .await?
                .ok_or_else(|| ApiError::internal("idempotency key vanished"))?
        }
        Err(e) => return Err(e.into()),
    };
    if stored.request_body != request_body {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different withdrawal",
        ));
    }
    let decided =
        held_or_refused(&db, stored, Duration::from_millis(settings.withdrawals.hold_wait_ms)).await?;
    if decided.status == WithdrawalStatus::Refused {
        let reason = decided.reason.unwrap_or_default();
        let code = if reason.starts_with("insufficient funds") {
            "insufficient_funds"
        } else {
            "withdrawal_refused"
        };
        return Err(ApiError::unprocessable(code, format!("withdrawal {} refused: {reason}", decided.id)));
    }
    tracing::info!(user = %user, withdrawal = %decided.id, amount = %decided.amount, "withdrawal requested");
    Ok(HttpResponse::Accepted().json(Withdrawal::new(decided, None, None, settings.confirmations)?))
}

/// `w` once payment-service decided its hold, or as it is after `wait`.
async fn held_or_refused(db: &Db, w: WithdrawalRow, wait: Duration) -> Result<WithdrawalRow, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let id = Uuid::parse_str(&w.id).map_err(ApiError::internal)?;
    let mut current = w;
    while current.status == WithdrawalStatus::Requested && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Some(now) = db.read(move |c| storage::withdrawal(c, id).map_err(DbError::from)).await? {
            current = now;
        }
    }
    Ok(current)
}

/// The caller's withdrawals, newest first.
#[utoipa::path(
    get,
    path = "/api/withdrawals",
    tag = "withdrawals",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Withdrawal>), (status = 400, description = "bad page or per_page"))
)]
pub async fn withdrawals(
    caller: Caller,
    query: web::Query<PageQuery>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let (rows, page, head) =
        page_of(&db, caller.user_id, query.into_inner(), storage::withdrawals_of).await?;
    let items = rows
        .into_iter()
        .map(|(w, tx)| Withdrawal::new(w, tx, head, settings.confirmations))
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(page.with(items)))
}

/// One of the caller's withdrawals, with its transaction's hash and confirmations.
#[utoipa::path(
    get,
    path = "/api/withdrawals/{id}",
    tag = "withdrawals",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Withdrawal), (status = 404, description = "no such withdrawal of the caller"))
)]
pub async fn withdrawal(
    caller: Caller,
    id: web::Path<String>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::not_found("withdrawal_not_found", format!("no withdrawal {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let user = caller.user_id.to_string();
    let found = db
        .read(move |c| {
            let Some(w) = storage::withdrawal(c, parsed)?.filter(|w| w.user_id == user) else {
                return Ok::<_, DbError>(None);
            };
            Ok(Some((w, storage::tx(c, parsed)?, storage::head(c)?)))
        })
        .await?;
    let (w, tx, head) = found.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(Withdrawal::new(w, tx, head, settings.confirmations)?))
}

/// Every custodial wallet's balance on chain, per asset, at the block the
/// watcher last read, with what is in flight between it and the ledger (the
/// audit compares it with the ledger: `on_chain = ledger + in_flight`).
#[utoipa::path(
    get,
    path = "/api/admin/chain/holdings",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Holdings),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
        (status = 503, description = "no block read yet, or the node does not answer", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn holdings(
    caller: Caller,
    db: web::Data<Db>,
    node: web::Data<Node>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let holdings = crate::holdings::read(&db, &node, &settings)
        .await
        .map_err(|e| ApiError::unavailable(format!("the holdings cannot be read now: {e}")))?;
    Ok(HttpResponse::Ok().json(holdings))
}

/// A settlement window: its trades, where it stands, and its transactions.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    pub id: String,
    pub status: WindowStatus,
    pub trades: i32,
    /// Why it failed.
    pub reason: Option<String>,
    pub opened_at: chrono::DateTime<chrono::Utc>,
    pub closed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub settled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its transactions: `settle:<window>:<owner>:<currency>`, status and hash.
    pub transactions: Vec<WindowTx>,
}

/// One transaction of a window.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowTx {
    pub id: String,
    pub from: String,
    pub status: String,
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
}

/// The settlement windows, newest first (administrators).
#[utoipa::path(
    get,
    path = "/api/admin/chain/settlements",
    tag = "admin",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<Window>),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn windows(
    caller: Caller,
    db: web::Data<Db>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (number, per_page, offset) = page.into_inner().resolve()?;
    let (rows, total) = db
        .read(move |c| {
            let (windows, total) = storage::windows_page(c, per_page, offset)?;
            let mut out = Vec::new();
            for w in windows {
                let txs = storage::window_txs(c, &w.id)?;
                out.push((w, txs));
            }
            Ok::<_, DbError>((out, total))
        })
        .await?;
    let at = |t: Option<i64>| t.map(bourse_common::micros_to_time);
    let items = rows
        .into_iter()
        .map(|(w, txs)| Window {
            transactions: txs
                .into_iter()
                .map(|t| WindowTx {
                    id: t.id,
                    from: t.from_address,
                    status: t.status.to_string(),
                    tx_hash: t.tx_hash,
                    block_number: t.block_number,
                })
                .collect(),
            id: w.id,
            status: w.status,
            trades: w.trades,
            reason: w.reason,
            opened_at: bourse_common::micros_to_time(w.opened_at),
            closed_at: at(w.closed_at),
            settled_at: at(w.settled_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PageOf { page: number, per_page, total }.with(items)))
}
