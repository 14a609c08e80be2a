//! Market data over REST: the book, the trades and the candles.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use bourse_common::catalog::Side;
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use bourse_common::money::Amount;
use bourse_common::paging::{Page, PageQuery};
use bourse_common::reference::Market;
use bourse_common::{micros_to_time, now_micros};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::candles::{self, CandleUpdated, Interval};
use crate::storage::{self, TradeRow};

/// One price level: the quantity resting at a price.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Level {
    pub price: Amount,
    pub quantity: Amount,
}

/// The book, best prices first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookSnapshot {
    pub market: String,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// A trade as clients see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trade {
    pub id: String,
    pub market: String,
    pub price: Amount,
    pub quantity: Amount,
    pub taker_side: Side,
    pub executed_at: chrono::DateTime<chrono::Utc>,
}

impl From<TradeRow> for Trade {
    fn from(r: TradeRow) -> Self {
        Self {
            id: r.id,
            market: r.market,
            price: r.price,
            quantity: r.quantity,
            taker_side: r.taker_side,
            executed_at: micros_to_time(r.executed_at),
        }
    }
}

/// A candle as clients see it: what `market.candles` carries for each interval.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CandleView {
    pub market: String,
    pub interval: Interval,
    pub open_time: chrono::DateTime<chrono::Utc>,
    pub open: Amount,
    pub high: Amount,
    pub low: Amount,
    pub close: Amount,
    pub volume: Amount,
}

impl From<CandleUpdated> for CandleView {
    fn from(c: CandleUpdated) -> Self {
        Self {
            market: c.market,
            interval: c.interval,
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    /// Price levels per side (1 to `max_book_depth`, 200 by default; default 50).
    pub depth: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    pub market: String,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    pub market: String,
    /// `1m`, `5m`, `15m`, `1h`, `4h` or `1d`.
    pub interval: Interval,
    /// RFC 3339; default: 24 hours before `to`. The range spans at most
    /// `max_candles` intervals (1440 by default: a day of minutes).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339, exclusive; default: now.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn configure(cfg: &mut web::ServiceConfig, books: &web::Data<BookCache>) {
    cfg.app_data(books.clone())
        .route("/api/markets/{market}/book", web::get().to(book))
        .route("/api/history/trades", web::get().to(trades))
        .route("/api/history/candles", web::get().to(candles));
}

fn market<'a>(settings: &'a Settings, id: &str) -> Result<&'a Market, ApiError> {
    settings
        .reference
        .market(id)
        .ok_or_else(|| ApiError::not_found("unknown_market", format!("no market {id}")))
}

/// A market's resting orders summed per price level, as of a stored book version.
#[derive(Debug, Default)]
pub struct Levels {
    version: i64,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

/// The levels last read per market: a request reads the book's version (one
/// row) and loads the resting orders only when the book changed since, so
/// requests on an unchanged book cost no load, whatever the depth asked.
#[derive(Debug, Default)]
pub struct BookCache(Mutex<HashMap<String, Arc<Levels>>>);

impl BookCache {
    async fn levels(&self, db: &Db, market: &str) -> Result<Arc<Levels>, DbError> {
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(market).cloned();
        let id = market.to_string();
        let read = db
            .read(move |c| {
                // The version first: a book read after it is as new or newer,
                // so a cached book is never older than its version says.
                let version = storage::version(c, &id)?;
                if let Some(levels) = cached.filter(|l| l.version == version) {
                    return Ok(levels);
                }
                let mut levels = Levels { version, ..Levels::default() };
                for order in storage::load_book(c, &id)? {
                    let side = if order.side == Side::Buy { &mut levels.bids } else { &mut levels.asks };
                    *side.entry(order.price).or_default() += order.remaining();
                }
                Ok::<_, DbError>(Arc::new(levels))
            })
            .await?;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(market.to_string(), read.clone());
        Ok(read)
    }
}

/// The resting orders of a market, summed per price level.
#[utoipa::path(
    get,
    path = "/api/markets/{market}/book",
    tag = "market data",
    params(("market" = String, Path, description = "e.g. ETH-USDT"), DepthQuery),
    responses((status = 200, body = BookSnapshot), (status = 404, description = "unknown market"))
)]
pub async fn book(
    path: web::Path<String>,
    query: web::Query<DepthQuery>,
    db: web::Data<Db>,
    books: web::Data<BookCache>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let market = market(&settings, &path)?.id.clone();
    let bounds = settings.public_reads;
    let depth = query.depth.unwrap_or(bounds.default_book_depth.min(bounds.max_book_depth));
    if !(1..=bounds.max_book_depth).contains(&depth) {
        return Err(ApiError::bad_request(
            "invalid_depth",
            format!("depth must be between 1 and {}", bounds.max_book_depth),
        ));
    }
    let levels = books.levels(&db, &market).await?;
    let level = |(price, quantity): (&Decimal, &Decimal)| Level {
        price: (*price).into(),
        quantity: (*quantity).into(),
    };
    Ok(HttpResponse::Ok().json(BookSnapshot {
        market,
        bids: levels.bids.iter().rev().take(depth).map(level).collect(),
        asks: levels.asks.iter().take(depth).map(level).collect(),
    }))
}

/// A market's trades, newest first.
#[utoipa::path(
    get,
    path = "/api/history/trades",
    tag = "market data",
    params(TradesQuery),
    responses((status = 200, body = Page<Trade>), (status = 404, description = "unknown market"))
)]
pub async fn trades(
    query: web::Query<TradesQuery>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let market = market(&settings, &q.market)?.id.clone();
    let (page, per_page, offset) = PageQuery { page: q.page, per_page: q.per_page }.resolve()?;
    let (rows, total) =
        db.read(move |c| storage::trades_page(c, &market, per_page, offset).map_err(DbError::from)).await?;
    let items = rows.into_iter().map(Trade::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

/// Candles of a market, built from its trades (intervals without trades are left out).
#[utoipa::path(
    get,
    path = "/api/history/candles",
    tag = "market data",
    params(CandlesQuery),
    responses(
        (status = 200, body = Vec<CandleView>),
        (status = 400, description = "bad interval or range (invalid_range, too_many_candles, too_many_trades)"),
        (status = 404, description = "unknown market"),
    )
)]
pub async fn candles(
    query: web::Query<CandlesQuery>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let market = market(&settings, &q.market)?.id.clone();
    let bounds = settings.public_reads;
    let width = q.interval.micros();
    let to = q.to.map(|t| t.timestamp_micros()).unwrap_or_else(now_micros);
    let from = q.from.map(|t| t.timestamp_micros()).unwrap_or(to.saturating_sub(Interval::D1.micros()));
    if from >= to {
        return Err(ApiError::bad_request("invalid_range", "`from` must be before `to`"));
    }
    let span = to.saturating_sub(from);
    let spanned = span / width + i64::from(span % width != 0);
    if spanned > bounds.max_candles {
        return Err(ApiError::bad_request(
            "too_many_candles",
            format!(
                "the range spans {spanned} {} intervals, at most {} are served per request",
                q.interval, bounds.max_candles
            ),
        ));
    }
    let (id, limit) = (market.clone(), bounds.max_candle_trades);
    let ticks =
        db.read(move |c| storage::ticks_between(c, &id, from, to, limit + 1).map_err(DbError::from)).await?;
    if ticks.len() as i64 > limit {
        return Err(ApiError::bad_request(
            "too_many_trades",
            format!("more than {limit} trades in this range: ask for a shorter range or a wider interval"),
        ));
    }
    let views: Vec<CandleView> = candles::candles(&ticks, q.interval)
        .iter()
        .map(|c| CandleView::from(c.message(&market, q.interval)))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(book, trades, candles),
    components(schemas(Level, BookSnapshot, Trade, Page<Trade>, CandleView, Interval, Side)),
    tags((name = "market data", description = "order books, trades and candles"))
)]
pub struct Api;
