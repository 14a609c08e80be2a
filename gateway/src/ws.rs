//! The WebSocket feed at `/ws`.
//!
//! A client sends `{"op": "subscribe", "channels": [..]}` (and
//! `{"op": "auth", "token": ".."}` before private channels) and receives
//! `{"channel": "trades:ETH-USDT", "seq": 17, "data": {..}}`, `seq` growing
//! by one per channel and connection, so a gap means lost messages: re-read
//! the snapshot. Channels: `trades:<market>`, `candles:<market>:<interval>`,
//! `book:<market>` (a snapshot, then `{"bids": [..], "asks": [..]}` deltas
//! where quantity `"0"` removes a level), and with a token `orders` and
//! `balances`. Each connection has a bounded queue; a client that does not
//! keep up is disconnected, never allowed to slow the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message as WsMessage;
use bourse_common::auth::{ROLE_HEADER, USER_ID_HEADER};
use bourse_common::catalog::{
    BookChanged, FundsReleased, FundsReserved, MarketTrade, OrderUpdated, TradeExecuted,
};
use bourse_common::envelope::Envelope;
use bourse_common::messages::{Kind, Message};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Upstreams;
use crate::tokens::Tokens;

/// Messages a connection may fall behind by before it is dropped.
const QUEUE: usize = 256;

/// What the feed follows: public market data from `bourse.market`, and the
/// events that change a user's orders and balances.
pub const FOLLOWS: [(Kind, &str); 6] = [
    (Kind::Market, MarketTrade::TYPE),
    (Kind::Market, BookChanged::TYPE),
    (Kind::Event, TradeExecuted::TYPE),
    (Kind::Event, OrderUpdated::TYPE),
    (Kind::Event, FundsReserved::TYPE),
    (Kind::Event, FundsReleased::TYPE),
];

const INTERVALS: [(&str, i64); 6] =
    [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14_400), ("1d", 86_400)];

struct Subscriber {
    user: Option<Uuid>,
    channels: HashSet<String>,
    tx: mpsc::Sender<(String, Value)>,
}

/// Who listens to what; the book and candles it last sent.
pub struct Hub {
    next_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    books: tokio::sync::Mutex<HashMap<String, Value>>,
    candles: Mutex<HashMap<(String, &'static str), Value>>,
    upstreams: Upstreams,
    client: reqwest::Client,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(upstreams: Upstreams, client: reqwest::Client) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            subscribers: Mutex::default(),
            books: tokio::sync::Mutex::default(),
            candles: Mutex::default(),
            upstreams,
            client,
        }
    }

    fn listens(&self, channel: &str, user: Option<Uuid>) -> bool {
        lock(&self.subscribers)
            .values()
            .any(|s| s.channels.contains(channel) && (user.is_none() || s.user == user))
    }

    /// Sends to every subscriber of `channel` (only `user`'s, for a private one);
    /// a subscriber whose queue is full is dropped.
    fn publish(&self, channel: &str, user: Option<Uuid>, data: &Value) {
        let mut subscribers = lock(&self.subscribers);
        let mut slow = Vec::new();
        for (id, s) in subscribers.iter() {
            let wants = s.channels.contains(channel) && (user.is_none() || s.user == user);
            if wants && s.tx.try_send((channel.to_string(), data.clone())).is_err() {
                slow.push(*id);
            }
        }
        for id in slow {
            tracing::info!(subscriber = id, "WebSocket client too slow: disconnected");
            subscribers.remove(&id);
        }
    }

    async fn get(&self, service: &str, path: &str, user: Option<Uuid>) -> Option<Value> {
        let base = self.upstreams.url(service)?;
        let mut request = self.client.get(format!("{base}{path}"));
        if let Some(user) = user {
            request = request.header(USER_ID_HEADER, user.to_string()).header(ROLE_HEADER, "user");
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn book(&self, market: &str) -> Option<Value> {
        self.get("matching-service", &format!("/api/markets/{market}/book?depth=100"), None).await
    }

    /// One event into the channels it concerns.
    pub async fn dispatch(&self, event: Envelope) {
        match event.message_type.as_str() {
            MarketTrade::TYPE => {
                let Ok(trade) = event.payload::<MarketTrade>() else { return };
                let data = json!({
                    "id": trade.trade_id, "market": trade.market, "price": trade.price,
                    "quantity": trade.quantity, "taker_side": trade.taker_side, "executed_at": trade.executed_at,
                });
                self.publish(&format!("trades:{}", trade.market), None, &data);
                self.candles(&trade);
            }
            BookChanged::TYPE => {
                if let Ok(change) = event.payload::<BookChanged>() {
                    self.book_changed(&change.market).await;
                }
            }
            TradeExecuted::TYPE => {
                let Ok(trade) = event.payload::<TradeExecuted>() else { return };
                for user in [trade.taker_user_id, trade.maker_user_id] {
                    self.balances(user).await;
                }
            }
            OrderUpdated::TYPE => {
                let Ok(update) = event.payload::<OrderUpdated>() else { return };
                self.publish(
                    "orders",
                    Some(update.user_id),
                    &serde_json::to_value(&update).unwrap_or_default(),
                );
            }
            FundsReserved::TYPE => {
                if let Ok(e) = event.payload::<FundsReserved>() {
                    self.balances(e.user_id).await;
                }
            }
            FundsReleased::TYPE => {
                if let Ok(e) = event.payload::<FundsReleased>() {
                    self.balances(e.user_id).await;
                }
            }
            _ => {}
        }
    }

    fn candles(&self, trade: &MarketTrade) {
        let at = trade.executed_at.timestamp();
        for (interval, seconds) in INTERVALS {
            let channel = format!("candles:{}:{interval}", trade.market);
            let open = at.div_euclid(seconds) * seconds;
            let open_time = chrono::DateTime::from_timestamp(open, 0).unwrap_or_default();
            let mut candles = lock(&self.candles);
            let key = (trade.market.clone(), interval);
            let (price, quantity) = (trade.price.value(), trade.quantity.value());
            let dec =
                |v: &Value, k: &str| v[k].as_str().and_then(|s| s.parse::<rust_decimal::Decimal>().ok());
            let candle = match candles.get(&key) {
                Some(c) if c["open_time"] == json!(open_time) => json!({
                    "market": trade.market, "interval": interval, "open_time": open_time,
                    "open": c["open"], "close": price.to_string(),
                    "high": dec(c, "high").map_or(price, |h| h.max(price)).to_string(),
                    "low": dec(c, "low").map_or(price, |l| l.min(price)).to_string(),
                    "volume": (dec(c, "volume").unwrap_or_default() + quantity).to_string(),
                }),
                _ => json!({
                    "market": trade.market, "interval": interval, "open_time": open_time,
                    "open": price.to_string(), "high": price.to_string(), "low": price.to_string(),
                    "close": price.to_string(), "volume": quantity.to_string(),
                }),
            };
            candles.insert(key, candle.clone());
            drop(candles);
            self.publish(&channel, None, &candle);
        }
    }

    /// Sends the levels that changed since the last book sent for `market`.
    async fn book_changed(&self, market: &str) {
        let channel = format!("book:{market}");
        if self.listens(&channel, None) {
            let mut books = self.books.lock().await;
            self.refresh_book(&mut books, market).await;
        }
    }

    /// Fetches the book, sends what changed to its subscribers, remembers it.
    async fn refresh_book(&self, books: &mut HashMap<String, Value>, market: &str) -> Option<Value> {
        let now = self.book(market).await?;
        let before = books.insert(market.to_string(), now.clone());
        let delta = |side: &str| {
            let levels = |book: Option<&Value>| -> BTreeMap<String, String> {
                book.and_then(|b| b[side].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|l| {
                        Some((l["price"].as_str()?.to_string(), l["quantity"].as_str()?.to_string()))
                    })
                    .collect()
            };
            let (old, new) = (levels(before.as_ref()), levels(Some(&now)));
            let mut changes: Vec<Value> = new
                .iter()
                .filter(|(p, q)| old.get(*p) != Some(q))
                .map(|(p, q)| json!({"price": p, "quantity": q}))
                .collect();
            changes.extend(
                old.keys().filter(|p| !new.contains_key(*p)).map(|p| json!({"price": p, "quantity": "0"})),
            );
            changes
        };
        let (bids, asks) = (delta("bids"), delta("asks"));
        if !bids.is_empty() || !asks.is_empty() {
            self.publish(
                &format!("book:{market}"),
                None,
                &json!({"type": "delta", "bids": bids, "asks": asks}),
            );
        }
        Some(now)
    }

    /// Subscribes a connection to a book: the others get what changed, this
    /// one the snapshot, and no change can slip in between.
    async fn subscribe_book(
        &self,
        id: u64,
        channel: String,
        market: &str,
        tx: &mpsc::Sender<(String, Value)>,
    ) {
        let mut books = self.books.lock().await;
        let snapshot = self.refresh_book(&mut books, market).await.unwrap_or(Value::Null);
        let data = json!({"type": "snapshot", "bids": snapshot["bids"], "asks": snapshot["asks"]});
        let _ = tx.try_send((channel.clone(), data));
        if let Some(s) = lock(&self.subscribers).get_mut(&id) {
            s.channels.insert(channel);
        }
    }

    async fn balances(&self, user: Uuid) {
        if !self.listens("balances", Some(user)) {
            return;
        }
        if let Some(accounts) = self.get("payment-service", "/api/users/me/accounts", Some(user)).await {
            self.publish("balances", Some(user), &accounts);
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Subscribe { channels: Vec<String> },
    Unsubscribe { channels: Vec<String> },
    Auth { token: String },
}

/// Is `channel` one the feed serves? Private ones need a token.
fn check_channel(channel: &str, markets: &[String], user: Option<Uuid>) -> Result<(), String> {
    let parts: Vec<&str> = channel.split(':').collect();
    let known_market = |m: &str| markets.iter().any(|k| k == m);
    match parts.as_slice() {
        ["trades" | "book", m] if known_market(m) => Ok(()),
        ["candles", m, i] if known_market(m) && INTERVALS.iter().any(|(n, _)| n == i) => Ok(()),
        ["orders" | "balances"] if user.is_some() => Ok(()),
        ["orders" | "balances"] => Err(format!("{channel} needs {{\"op\": \"auth\", \"token\": ..}} first")),
        _ => Err(format!("no channel {channel}")),
    }
}

fn error(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

/// Upgrades to a WebSocket and serves one client until it leaves or falls behind.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
    tokens: web::Data<Tokens>,
    markets: web::Data<Vec<String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, mut incoming) = actix_ws::handle(&req, body)?;
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<(String, Value)>(QUEUE);
    lock(&hub.subscribers).insert(id, Subscriber { user: None, channels: HashSet::new(), tx: tx.clone() });
    actix_web::rt::spawn(async move {
        let mut seq: HashMap<String, u64> = HashMap::new();
        loop {
            tokio::select! {
                outgoing = rx.recv() => {
                    let Some((channel, data)) = outgoing else { break };
                    let n = seq.entry(channel.clone()).or_default();
                    *n += 1;
                    let text = json!({"channel": channel, "seq": *n, "data": data}).to_string();
                    if session.text(text).await.is_err() {
                        break;
                    }
                }
                incoming = incoming.recv() => {
                    let reply = match incoming {
                        Some(Ok(WsMessage::Text(text))) => handle_request(&hub, &tokens, &markets, id, &tx, &text).await,
                        Some(Ok(WsMessage::Ping(bytes))) => {
                            if session.pong(&bytes).await.is_err() { break }
                            None
                        }
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => None,
                    };
                    if let Some(reply) = reply && session.text(reply).await.is_err() {
                        break;
                    }
                }
            }
            // Dropped by the hub (too slow): the queue is closed once drained.
            if !lock(&hub.subscribers).contains_key(&id) && rx.is_empty() {
                break;
            }
        }
        lock(&hub.subscribers).remove(&id);
        let _ = session.close(None).await;
    });
    Ok(response)
}

/// Applies one client request; returns an error to send back, if any.
async fn handle_request(
    hub: &Hub,
    tokens: &Tokens,
    markets: &[String],
    id: u64,
    tx: &mpsc::Sender<(String, Value)>,
    text: &str,
) -> Option<String> {
    let request: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return Some(error("invalid_request", &e.to_string())),
    };
    match request {
        Request::Auth { token } => match tokens.verify(&token) {
            Ok(caller) => {
                if let Some(s) = lock(&hub.subscribers).get_mut(&id) {
                    s.user = Some(caller.user_id);
                }
                None
            }
            Err(e) => Some(error("unauthorized", &e.message)),
        },
        Request::Unsubscribe { channels } => {
            if let Some(s) = lock(&hub.subscribers).get_mut(&id) {
                for c in &channels {
                    s.channels.remove(c);
                }
            }
            None
        }
        Request::Subscribe { channels } => {
            let user = lock(&hub.subscribers).get(&id).and_then(|s| s.user);
            if let Some(Err(e)) =
                channels.iter().map(|c| check_channel(c, markets, user)).find(Result::is_err)
            {
                return Some(error("invalid_channel", &e));
            }
            for channel in channels {
                // A book starts with a snapshot.
                match channel.strip_prefix("book:").map(str::to_string) {
                    Some(market) => hub.subscribe_book(id, channel, &market, tx).await,
                    None => {
                        if let Some(s) = lock(&hub.subscribers).get_mut(&id) {
                            s.channels.insert(channel);
                        }
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_the_others_still_served() {
        let hub = Hub::new(Upstreams::default(), reqwest::Client::new());
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        for (id, tx) in [(1, slow_tx), (2, fast_tx)] {
            let channels = HashSet::from(["trades:ETH-USDT".to_string()]);
            lock(&hub.subscribers).insert(id, Subscriber { user: None, channels, tx });
        }
        for n in 0..3 {
            hub.publish("trades:ETH-USDT", None, &json!({"n": n}));
        }
        assert!(!lock(&hub.subscribers).contains_key(&1), "the slow client is gone");
        let received: Vec<Value> = std::iter::from_fn(|| fast_rx.try_recv().ok()).map(|(_, d)| d).collect();
        assert_eq!(received, [json!({"n": 0}), json!({"n": 1}), json!({"n": 2})]);
    }

    #[test]
    fn channels_are_checked() {
        let markets = vec!["ETH-USDT".to_string()];
        assert!(check_channel("trades:ETH-USDT", &markets, None).is_ok());
        assert!(check_channel("candles:ETH-USDT:5m", &markets, None).is_ok());
        assert!(check_channel("candles:ETH-USDT:7m", &markets, None).is_err());
        assert!(check_channel("book:DOGE-USDT", &markets, None).is_err());
        assert!(check_channel("orders", &markets, None).is_err());
        assert!(check_channel("orders", &markets, Some(Uuid::nil())).is_ok());
    }
}
