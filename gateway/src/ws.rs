//! The WebSocket feed at `/ws`.
//!
//! A client sends `{"op": "subscribe", "channels": [..]}` (and
//! `{"op": "auth", "token": ".."}` before private channels) and receives
//! `{"channel": "trades:ETH-USDT", "seq": 17, "data": {..}}`, `seq` growing
//! by one per channel and connection, so a gap means lost messages: re-read
//! the snapshot. Channels: `trades:<market>`, `candles:<market>:<interval>`
//! (each candle as matching-service computed it after a trade, `market.candle`),
//! `book:<market>` (a snapshot, then `{"bids": [..], "asks": [..]}` deltas
//! where quantity `"0"` removes a level), and with a token `orders` and
//! `balances`. Books and balances are read from the service that owns their
//! public route. Each connection has a bounded queue; a client that does not
//! keep up is disconnected, never allowed to slow the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message as WsMessage;
use bourse_common::auth::{Caller, InternalSecret, Role};
use bourse_common::catalog::{
    BookChanged, CandleUpdated, FundsReleased, FundsReserved, Interval, MarketTrade, OrderUpdated,
    TradeExecuted,
};
use bourse_common::config::MessagingConfig;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::Inbound;
use bourse_common::registry;
use bourse_common::service::BackgroundTask;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::settings::Upstreams;
use crate::tokens::Tokens;

/// Messages a connection may fall behind by before it is dropped.
const QUEUE: usize = 256;

bourse_common::inbound! {
    /// What the feed follows: public market data from `bourse.market`, and
    /// the events that change a user's orders and balances.
    pub enum FeedMessage {
        Trade(MarketTrade),
        Candle(CandleUpdated),
        Book(BookChanged),
        Executed(TradeExecuted),
        Order(OrderUpdated),
        Reserved(FundsReserved),
        Released(FundsReleased),
    }
}

/// The task that follows the feed's messages into `hub`; its health is the
/// `feed` component of the gateway's readiness.
pub fn follower(hub: web::Data<Hub>, amqp_url: String, messaging: MessagingConfig) -> BackgroundTask {
    Box::new(move |bus, shutdown| {
        Box::pin(bourse_common::feed::follow(
            amqp_url,
            format!("{}.feed", bus.producer),
            FeedMessage::BINDINGS.to_vec(),
            messaging,
            bus.metrics.component("feed"),
            shutdown,
            move |event| {
                let hub = hub.clone();
                async move { hub.dispatch(event).await }
            },
        ))
    })
}

struct Subscriber {
    user: Option<Uuid>,
    channels: HashSet<String>,
    tx: mpsc::Sender<(String, Value)>,
}

/// Who listens to what; the book it last sent per market.
pub struct Hub {
    next_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    books: tokio::sync::Mutex<HashMap<String, Value>>,
    upstreams: Upstreams,
    client: reqwest::Client,
    secret: InternalSecret,
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
    pub fn new(upstreams: Upstreams, client: reqwest::Client, secret: InternalSecret) -> Self {
        Self {
            secret,
            next_id: AtomicU64::new(1),
            subscribers: Mutex::default(),
            books: tokio::sync::Mutex::default(),
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

    /// A public `/api/...` route, read from the service that owns it (as the
    /// registry says), for `user` if given.
    async fn get(&self, path_and_query: &str, user: Option<Uuid>) -> Option<Value> {
        let path = path_and_query.split_once('?').map_or(path_and_query, |(path, _)| path);
        let (service, _) = registry::route(path)?;
        let base = self.upstreams.url(service.name)?;
        let url = reqwest::Url::parse(&format!("{base}{path_and_query}")).ok()?;
        let caller = user.map(|user_id| Caller { user_id, role: Role::User });
        let request_id = Uuid::now_v7().to_string();
        let request =
            crate::proxy::signed(&self.client, &self.secret, reqwest::Method::GET, url, caller, &request_id);
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn book(&self, market: &str) -> Option<Value> {
        self.get(&format!("/api/markets/{market}/book?depth=100"), None).await
    }

    /// One message into the channels it concerns.
    pub async fn dispatch(&self, event: Envelope) {
        let message = match FeedMessage::decode(&event) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(r#type = %event.message_type, error = %e, "feed message skipped");
                return;
            }
        };
        match message {
            FeedMessage::Trade(trade) => {
                let data = json!({
                    "id": trade.trade_id, "market": trade.market, "price": trade.price,
                    "quantity": trade.quantity, "taker_side": trade.taker_side, "executed_at": trade.executed_at,
                });
                self.publish(&format!("trades:{}", trade.market), None, &data);
            }
            // Computed by matching-service: sent on as it is.
            FeedMessage::Candle(candle) => {
                if let Some(data) = to_json(&candle) {
                    self.publish(&format!("candles:{}:{}", candle.market, candle.interval), None, &data);
                }
            }
            FeedMessage::Book(change) => self.book_changed(&change.market).await,
            FeedMessage::Executed(trade) => {
                for user in [trade.taker_user_id, trade.maker_user_id] {
                    self.balances(user).await;
                }
            }
            FeedMessage::Order(update) => {
                if let Some(data) = to_json(&update) {
                    self.publish("orders", Some(update.user_id), &data);
                }
            }
            FeedMessage::Reserved(e) => self.balances(e.user_id).await,
            FeedMessage::Released(e) => self.balances(e.user_id).await,
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
        if let Some(accounts) = self.get("/api/users/me/accounts", Some(user)).await {
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
        ["candles", m, i] if known_market(m) && i.parse::<Interval>().is_ok() => Ok(()),
        ["orders" | "balances"] if user.is_some() => Ok(()),
        ["orders" | "balances"] => Err(format!("{channel} needs {{\"op\": \"auth\", \"token\": ..}} first")),
        _ => Err(format!("no channel {channel}")),
    }
}

fn to_json<T: Serialize>(data: &T) -> Option<Value> {
    serde_json::to_value(data).map_err(|e| tracing::warn!(error = %e, "feed message not sent")).ok()
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
        Request::Auth { token } => match tokens.verify(&token).map(|v| v.caller) {
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
    use bourse_common::money::Amount;

    use super::*;

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_the_others_still_served() {
        let hub = Hub::new(Upstreams::default(), reqwest::Client::new(), InternalSecret::generate());
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

    #[tokio::test]
    async fn a_candle_goes_on_its_channel_as_matching_service_computed_it() {
        let hub = Hub::new(Upstreams::default(), reqwest::Client::new(), InternalSecret::generate());
        let (tx, mut rx) = mpsc::channel(8);
        let channels = HashSet::from(["candles:ETH-USDT:5m".to_string()]);
        lock(&hub.subscribers).insert(1, Subscriber { user: None, channels, tx });
        let open_time = chrono::DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let amount = |s: &str| s.parse::<Amount>().unwrap();
        for interval in [Interval::M5, Interval::H1] {
            let candle = CandleUpdated {
                market: "ETH-USDT".into(),
                interval,
                open_time,
                open: amount("100"),
                high: amount("101.5"),
                low: amount("99"),
                close: amount("100.25"),
                volume: amount("3"),
            };
            hub.dispatch(Envelope::new("matching-service", "ETH-USDT", &candle, open_time)).await;
        }
        let (channel, data) = rx.try_recv().unwrap();
        assert_eq!(channel, "candles:ETH-USDT:5m");
        let expected = json!({
            "market": "ETH-USDT", "interval": "5m", "open_time": "2023-11-14T22:15:00Z",
            "open": "100", "high": "101.5", "low": "99", "close": "100.25", "volume": "3",
        });
        assert_eq!(data, expected);
        assert!(rx.try_recv().is_err(), "nobody listens to the 1h candles");
    }

    #[test]
    fn channels_are_checked() {
        let markets = vec!["ETH-USDT".to_string()];
        assert!(check_channel("trades:ETH-USDT", &markets, None).is_ok());
        assert!(check_channel("candles:ETH-USDT:5m", &markets, None).is_ok());
        assert!(check_channel("candles:ETH-USDT:7m", &markets, None).is_err());
        for interval in Interval::ALL {
            assert!(check_channel(&format!("candles:ETH-USDT:{interval}"), &markets, None).is_ok());
        }
        assert!(check_channel("book:DOGE-USDT", &markets, None).is_err());
        assert!(check_channel("orders", &markets, None).is_err());
        assert!(check_channel("orders", &markets, Some(Uuid::nil())).is_ok());
    }
}
