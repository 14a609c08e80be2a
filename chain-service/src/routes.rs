//! chain-service's REST routes (reached through the gateway, which sets the caller).

use actix_web::{HttpResponse, web};
use bourse_common::auth::Caller;
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use bourse_common::money::Amount;
use bourse_common::paging::{Page, PageQuery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain;
use crate::node::Faucet;
use crate::settings::Settings;
use crate::storage::{self, DepositRow};

/// Where a user deposits a currency.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wallet {
    pub currency: String,
    /// EIP-55 checksummed address on the chain.
    pub address: String,
    pub chain_id: u64,
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

/// How much ETH the development faucet sends.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaucetRequest {
    pub amount: Amount,
}

/// The faucet's transfer: a deposit like any other from here.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaucetTransfer {
    pub address: String,
    pub amount: Amount,
    pub tx_hash: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(wallets, deposits, faucet_deposit),
    components(schemas(Wallet, Deposit, Page<Deposit>, FaucetRequest, FaucetTransfer)),
    tags((name = "wallets", description = "deposit addresses and deposits on the chain"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig, faucet: &web::Data<Option<Faucet>>) {
    cfg.app_data(faucet.clone())
        .route("/api/users/me/wallets", web::get().to(wallets))
        .route("/api/users/me/wallets/faucet", web::post().to(faucet_deposit))
        .route("/api/users/me/deposits", web::get().to(deposits));
}

/// The caller's deposit addresses: one per currency on the chain (empty for a
/// moment after registration, until the wallet is made).
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
        .into_iter()
        .map(|w| Wallet {
            currency: settings.native_currency.clone(),
            address: w.address,
            chain_id: settings.chain_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(wallets))
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
    let (page, per_page, offset) = query.into_inner().resolve()?;
    let user = caller.user_id;
    let (rows, total, head) = db
        .read(move |c| {
            let (rows, total) = storage::deposits_of(c, user, per_page, offset)?;
            Ok::<_, DbError>((rows, total, storage::head(c)?))
        })
        .await?;
    let required = settings.confirmations;
    let items = rows.into_iter().map(|r| Deposit::new(r, head, required)).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

/// Development only: sends ETH from the dev chain's funded account to the
/// caller's wallet. It is credited like any deposit, after its confirmations
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
        (status = 422, description = "amount not positive, over the scale, or above the faucet's maximum (`faucet_above_maximum`)"),
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
    let currency = settings
        .reference
        .currency(&settings.native_currency)
        .ok_or_else(|| ApiError::internal("the native currency is not in the reference data"))?;
    let amount = body.amount.positive_in(currency)?;
    if amount.value() > settings.faucet_max {
        return Err(ApiError::unprocessable(
            "faucet_above_maximum",
            format!("the faucet sends at most {} {} at a time", settings.faucet_max, currency.code),
        ));
    }
    let wei = domain::to_units(amount.value(), domain::NATIVE_DECIMALS).ok_or_else(|| {
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
    let tx_hash =
        faucet.send(&wallet.address, wei).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(user = %user, amount = %amount.value(), tx = %tx_hash, "faucet deposit sent");
    Ok(HttpResponse::Accepted().json(FaucetTransfer { address: wallet.address, amount, tx_hash }))
}
