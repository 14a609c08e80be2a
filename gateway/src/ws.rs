//! The WebSocket feed at `/ws`.
//!
//! A client sends `{"op": "subscribe", "channels": [..]}` (and
//! `{"op": "auth", "token": ".."}` before private channels) and receives
//! `{"channel": "trades:ETH-USDT", "seq": 17, "data": {..}}`, `seq` growing
//! by one per channel and connection, so a gap means lost messages: re-read
//! the snapshot. Channels: `trades:<market>`, `candles:<market>:<interval>`
//! (each candle as matching-service computed it after a trade, `market.candles`),
//! `book:<market>` (a snapshot, then `{"bids": [..], "asks": [..]}` deltas
//! where quantity `"0"` removes a level), and with a token `orders` (every
//! change of the user's orders: `pending`, `open`, `partially_filled`,
//! `filled`, `cancel_requested`, `cancelled` and `rejected`, with its reason;
//! `open` is matching-service's word that the order is in its book, so a
//! cancel asked in the moment between funds reserved and booked shows
//! `cancel_requested` before `open`),
//! `fills` (each trade of the user's once it is settled in the ledger: order,
//! price, quantity, paid, received, fee), `balances`, `triggers` (a price trigger active, fired with its order id, cancelled, expired or rejected) and `transfers` (a deposit seen, credited, or reverted by a reorg; a withdrawal held, refused, sent, confirmed or failed; a settlement of their trades confirmed on chain). Books and balances are read from the service that owns their
//! public route. Each connection has a bounded queue; a client that does not
//! keep up is disconnected, never allowed to slow the others.
//!
//! Limits ([`WsLimits`], `GATEWAY__SETTINGS__WS__*`): connections per client
//! address (one more is refused with 429 `too_many_connections`), channels
//! per connection (`too_many_channels`), requests per connection and second
//! (`rate_limited`); private channels end when the token that opened them
//! expires (`token_expired`: send a fresh `auth` to subscribe again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message as WsMessage;
use bourse_common::auth::{Caller, InternalSecret, Role};
use bourse_common::bus::Bus;
use bourse_common::catalog::{
    BookChanged, CandlesUpdated, DepositConfirmed, DepositReverted, DepositSeen, FundsReleased,
    FundsReserved, FundsSettled, Interval, MarketTrade, OrderCancelled, OrderRejected, OrderStatusChanged,
    OrderUpdated, SettlementConfirmed, ToppedUp, TradeExecuted, TriggerUpdated, WithdrawalConfirmed,
    WithdrawalFailed, WithdrawalHeld, WithdrawalRefused, WithdrawalSent,
};
use bourse_common::config::MessagingConfig;
use bourse_common::db::Db;
use bourse_common::envelope::Envelope;
use bourse_common::error::ApiError;
use bourse_common::inbox::Inbound;
use bourse_common::metrics::Metrics;
use bourse_common::service::BackgroundTask;
use bourse_common::{lock, registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::settings::Upstreams;
use crate::tokens::Tokens;
use crate::users::sessions::Sessions;

/// Messages a connection may fall behind by before it is dropped.
const QUEUE: usize = 256;

bourse_common::inbound! {
    /// What the feed follows: public market data from `bourse.market`, and
    /// the events that change a user's orders and balances.
    pub enum FeedMessage {
        Trade(MarketTrade),
        Candles(CandlesUpdated),
        Book(BookChanged),
        Executed(TradeExecuted),
        Order(OrderUpdated),
        OrderStatus(OrderStatusChanged),
        Rejected(OrderRejected),
        Cancelled(OrderCancelled),
        Settled(FundsSettled),
        ToppedUp(ToppedUp),
        Reserved(FundsReserved),
        Released(FundsReleased),
        DepositSeen(DepositSeen),
        Deposit(DepositConfirmed),
        DepositReverted(DepositReverted),
        WithdrawalHeld(WithdrawalHeld),
        WithdrawalRefused(WithdrawalRefused),
        WithdrawalSent(WithdrawalSent),
        WithdrawalConfirmed(WithdrawalConfirmed),
        WithdrawalFailed(WithdrawalFailed),
        SettlementConfirmed(SettlementConfirmed),
        Trigger(TriggerUpdated),
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

/// What one client may hold and do on the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsLimits {
    /// Channels one connection may be subscribed to at once.
    pub max_channels: usize,
    /// Open connections per client address.
    pub max_connections_per_client: usize,
    /// Requests (`subscribe`, `unsubscribe`, `auth`) per connection and
    /// second, sustained, and in a burst.
    pub requests_per_second: u32,
    pub request_burst: u32,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self { max_channels: 20, max_connections_per_client: 10, requests_per_second: 5, request_burst: 20 }
    }
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    per_second: f64,
    burst: f64,
}

impl Bucket {
    fn new(limits: &WsLimits) -> Self {
        let burst = f64::from(limits.request_burst.max(1));
        Self { tokens: burst, at: Instant::now(), per_second: f64::from(limits.requests_per_second), burst }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Subscriber {
    user: Option<Uuid>,
    /// When the token behind `user` expires (seconds since the epoch).
    expires_at: Option<u64>,
    channels: HashSet<String>,
    tx: mpsc::Sender<(String, Value)>,
}

/// Channels only a token opens.
const PRIVATE: [&str; 5] = ["orders", "fills", "balances", "transfers", "triggers"];

/// A client's place among its address's connections, given back when dropped.
struct Admitted {
    hub: web::Data<Hub>,
    client: Option<IpAddr>,
    metrics: Option<Arc<Metrics>>,
}

impl Admitted {
    /// Shows the connections open now as `bourse_websocket_clients`.
    fn count(&self, change: i64) {
        let open = self.hub.open.fetch_add(change, Ordering::Relaxed) + change;
        if let Some(metrics) = &self.metrics {
            metrics.set_gauge("bourse_websocket_clients", &[], open);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.count(-1);
        if let Some(client) = self.client {
            let mut clients = lock(&self.hub.clients);
            if let Some(n) = clients.get_mut(&client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    clients.remove(&client);
                }
            }
        }
    }
}

/// Who listens to what; the book it last sent per market.
pub struct Hub {
    next_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    books: tokio::sync::Mutex<HashMap<String, Value>>,
    upstreams: Upstreams,
    client: reqwest::Client,
    secret: InternalSecret,
    limits: WsLimits,
    /// Open connections per client address.
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// Open connections.
    open: AtomicI64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
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
            limits: WsLimits::default(),
            clients: Mutex::default(),
            open: AtomicI64::new(0),
        }
    }

    pub fn with_limits(mut self, limits: WsLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts a new connection from `client`, or refuses it past the cap.
    fn admit(
        hub: &web::Data<Hub>,
        client: Option<IpAddr>,
        metrics: Option<Arc<Metrics>>,
    ) -> Option<Admitted> {
        if let Some(ip) = client {
            let mut clients = lock(&hub.clients);
            let n = clients.entry(ip).or_default();
            if *n >= hub.limits.max_connections_per_client {
                return None;
            }
            *n += 1;
        }
        let admitted = Admitted { hub: hub.clone(), client, metrics };
        admitted.count(1);
        Some(admitted)
    }

    /// The token of connection `id` expired: its private channels end.
    fn expire(&self, id: u64) {
        if let Some(s) = lock(&self.subscribers).get_mut(&id) {
            s.user = None;
            s.expires_at = None;
            s.channels.retain(|c| !PRIVATE.contains(&c.as_str()));
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
            // Computed by matching-service: each interval's sent on as it is.
            FeedMessage::Candles(update) => {
                for candle in &update.candles {
                    if let Some(data) = to_json(candle) {
                        self.publish(&format!("candles:{}:{}", candle.market, candle.interval), None, &data);
                    }
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
            // The same shape as matching-service's `order.updated`.
            FeedMessage::OrderStatus(change) => {
                if let Some(mut data) = to_json(&change) {
                    data["reason"] = Value::Null;
                    self.publish("orders", Some(change.user_id), &data);
                }
            }
            FeedMessage::Rejected(r) => {
                let data = json!({
                    "order_id": r.order_id, "user_id": r.user_id, "market": r.market, "quantity": r.quantity,
                    "filled_quantity": "0", "status": "rejected", "reason": r.reason,
                });
                self.publish("orders", Some(r.user_id), &data);
            }
            // Cancelled before its book had it: no `order.updated` says so.
            FeedMessage::Cancelled(c) if !c.in_book => {
                let data = json!({
                    "order_id": c.order_id, "user_id": c.user_id, "market": c.market, "quantity": c.quantity,
                    "filled_quantity": "0", "status": "cancelled", "reason": Value::Null,
                });
                self.publish("orders", Some(c.user_id), &data);
            }
            FeedMessage::Cancelled(_) => {}
            // A fill of the user's, in the ledger: what was paid and received, the fee.
            FeedMessage::Settled(e) => {
                if let Some(data) = to_json(&e) {
                    self.publish("fills", Some(e.user_id), &data);
                }
                self.balances(e.user_id).await;
            }
            FeedMessage::ToppedUp(e) => self.balances(e.user_id).await,
            FeedMessage::Reserved(e) => self.balances(e.user_id).await,
            FeedMessage::Released(e) => self.balances(e.user_id).await,
            FeedMessage::DepositSeen(d) => {
                let data = json!({
                    "kind": "deposit", "status": "pending", "id": d.deposit_id, "currency": d.currency,
                    "amount": d.amount, "tx_hash": d.tx_hash, "block_number": d.block_number,
                    "required_confirmations": d.required_confirmations,
                });
                self.publish("transfers", Some(d.user_id), &data);
            }
            FeedMessage::Deposit(d) => {
                let data = json!({
                    "kind": "deposit", "status": "credited", "id": d.deposit_id, "currency": d.currency,
                    "amount": d.amount, "tx_hash": d.tx_hash, "block_number": d.block_number,
                });
                self.publish("transfers", Some(d.user_id), &data);
            }
            FeedMessage::DepositReverted(d) => {
                let data = json!({
                    "kind": "deposit", "status": "reverted", "id": d.deposit_id, "currency": d.currency,
                    "amount": d.amount, "tx_hash": d.tx_hash,
                });
                self.publish("transfers", Some(d.user_id), &data);
            }
            FeedMessage::WithdrawalHeld(w) => {
                self.balances(w.user_id).await;
                let data = json!({"kind": "withdrawal", "status": "held", "id": w.withdrawal_id});
                self.publish("transfers", Some(w.user_id), &data);
            }
            FeedMessage::WithdrawalRefused(w) => {
                let data = json!({"kind": "withdrawal", "status": "refused", "id": w.withdrawal_id, "reason": w.reason});
                self.publish("transfers", Some(w.user_id), &data);
            }
            FeedMessage::WithdrawalSent(w) => {
                let data = json!({
                    "kind": "withdrawal", "status": "sent", "id": w.withdrawal_id, "currency": w.currency,
                    "amount": w.amount, "address": w.address, "tx_hash": w.tx_hash,
                });
                self.publish("transfers", Some(w.user_id), &data);
            }
            FeedMessage::WithdrawalConfirmed(w) => {
                let data = json!({
                    "kind": "withdrawal", "status": "confirmed", "id": w.withdrawal_id, "currency": w.currency,
                    "amount": w.amount, "fee": w.fee, "address": w.address, "tx_hash": w.tx_hash,
                    "block_number": w.block_number,
                });
                self.publish("transfers", Some(w.user_id), &data);
            }
            FeedMessage::WithdrawalFailed(w) => {
                let data = json!({
                    "kind": "withdrawal", "status": "failed", "id": w.withdrawal_id, "currency": w.currency,
                    "amount": w.amount, "address": w.address, "reason": w.reason, "tx_hash": w.tx_hash,
                });
                self.publish("transfers", Some(w.user_id), &data);
            }
            FeedMessage::SettlementConfirmed(s) => {
                let data = json!({
                    "kind": "settlement", "status": "confirmed", "id": s.window_id, "trades": s.trades,
                    "legs": s.legs.iter().map(|l| json!({
                        "currency": l.currency, "amount": l.amount, "tx_hash": l.tx_hash,
                        "block_number": l.block_number,
                    })).collect::<Vec<_>>(),
                });
                self.publish("transfers", Some(s.user_id), &data);
            }
            FeedMessage::Trigger(t) => {
                let data = json!({
                    "id": t.trigger_id, "market": t.market, "kind": t.kind, "side": t.side,
                    "status": t.status, "order_id": t.order_id, "reason": t.reason,
                });
                self.publish("triggers", Some(t.user_id), &data);
            }
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
    /// one the snapshot, and no change can slip in between. While the book
    /// has subscribers the hub follows its every change, so a new subscriber
    /// gets the copy the hub holds: only the first one makes it fetch.
    async fn subscribe_book(
        &self,
        id: u64,
        channel: String,
        market: &str,
        tx: &mpsc::Sender<(String, Value)>,
    ) {
        let mut books = self.books.lock().await;
        let followed = books.get(market).filter(|_| self.listens(&channel, None)).cloned();
        let snapshot = match followed {
            Some(book) => book,
            None => self.refresh_book(&mut books, market).await.unwrap_or(Value::Null),
        };
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
        [private] if PRIVATE.contains(private) && user.is_some() => Ok(()),
        [private] if PRIVATE.contains(private) => {
            Err(format!("{channel} needs {{\"op\": \"auth\", \"token\": ..}} first"))
        }
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
    sessions: web::Data<Sessions>,
    db: web::Data<Db>,
    markets: web::Data<Vec<String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let auth = Auth { tokens, sessions, db };
    let client = req.peer_addr().map(|a| a.ip());
    let metrics = req.app_data::<web::Data<Bus>>().map(|bus| bus.metrics.clone());
    let Some(admitted) = Hub::admit(&hub, client, metrics) else {
        let max = hub.limits.max_connections_per_client;
        tracing::info!(client = ?client, max, "WebSocket connection refused: too many from this address");
        return Ok(HttpResponse::TooManyRequests().content_type("application/json").body(error(
            "too_many_connections",
            &format!("at most {max} WebSocket connections per client: close one first"),
        )));
    };
    let (response, mut session, mut incoming) = actix_ws::handle(&req, body)?;
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<(String, Value)>(QUEUE);
    let subscriber = Subscriber { user: None, expires_at: None, channels: HashSet::new(), tx: tx.clone() };
    lock(&hub.subscribers).insert(id, subscriber);
    actix_web::rt::spawn(async move {
        let _admitted = admitted;
        let mut seq: HashMap<String, u64> = HashMap::new();
        let mut bucket = Bucket::new(&hub.limits);
        loop {
            let expires_at = lock(&hub.subscribers).get(&id).and_then(|s| s.expires_at);
            tokio::select! {
                () = until(expires_at) => {
                    hub.expire(id);
                    let reply = error("token_expired", "your token expired: private channels closed; send a new auth to subscribe again");
                    if session.text(reply).await.is_err() {
                        break;
                    }
                }
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
                        Some(Ok(WsMessage::Text(_))) if !bucket.take(Instant::now()) => Some(error(
                            "rate_limited",
                            &format!("at most {} requests per second on a connection: slow down", hub.limits.requests_per_second),
                        )),
                        Some(Ok(WsMessage::Text(text))) => handle_request(&hub, &auth, &markets, id, &tx, &text).await,
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

/// Resolves at `expires_at` (seconds since the epoch); never without one.
async fn until(expires_at: Option<u64>) {
    let Some(at) = expires_at else { return std::future::pending().await };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(at).saturating_sub(now)).await;
}

/// Applies one client request; returns an error to send back, if any.
/// What checks a token sent with `auth`: as on the REST routes, a valid
/// signature and the user's current token version (a revoked token is refused).
struct Auth {
    tokens: web::Data<Tokens>,
    sessions: web::Data<Sessions>,
    db: web::Data<Db>,
}

impl Auth {
    /// The caller and when the token expires.
    async fn check(&self, token: &str) -> Result<(Caller, u64), ApiError> {
        let verified = self.tokens.verify(token)?;
        let expires_at = verified.expires_at;
        Ok((self.sessions.check(&self.db, verified).await?, expires_at))
    }
}

async fn handle_request(
    hub: &Hub,
    auth: &Auth,
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
        Request::Auth { token } => match auth.check(&token).await {
            Ok((caller, expires_at)) => {
                if let Some(s) = lock(&hub.subscribers).get_mut(&id) {
                    // Another user's token: the private channels opened before are not theirs.
                    if s.user.is_some_and(|u| u != caller.user_id) {
                        s.channels.retain(|c| !PRIVATE.contains(&c.as_str()));
                    }
                    s.user = Some(caller.user_id);
                    s.expires_at = Some(expires_at);
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
            let held = lock(&hub.subscribers).get(&id).map(|s| s.channels.clone()).unwrap_or_default();
            let more: HashSet<&String> = channels.iter().filter(|c| !held.contains(*c)).collect();
            let max = hub.limits.max_channels;
            if held.len() + more.len() > max {
                return Some(error(
                    "too_many_channels",
                    &format!(
                        "at most {max} channels per connection: {} subscribed, {} more asked; unsubscribe some or open another connection",
                        held.len(),
                        more.len()
                    ),
                ));
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
    use bourse_common::catalog::CandleUpdated;
    use bourse_common::money::Amount;

    use super::*;

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_the_others_still_served() {
        let hub = Hub::new(Upstreams::default(), reqwest::Client::new(), InternalSecret::generate());
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        for (id, tx) in [(1, slow_tx), (2, fast_tx)] {
            let channels = HashSet::from(["trades:ETH-USDT".to_string()]);
            lock(&hub.subscribers).insert(id, Subscriber { user: None, expires_at: None, channels, tx });
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
        lock(&hub.subscribers).insert(1, Subscriber { user: None, expires_at: None, channels, tx });
        let open_time = chrono::DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let amount = |s: &str| s.parse::<Amount>().unwrap();
        let candle = |interval| CandleUpdated {
            market: "ETH-USDT".into(),
            interval,
            open_time,
            open: amount("100"),
            high: amount("101.5"),
            low: amount("99"),
            close: amount("100.25"),
            volume: amount("3"),
        };
        let update = CandlesUpdated {
            market: "ETH-USDT".into(),
            candles: vec![candle(Interval::M5), candle(Interval::H1)],
        };
        hub.dispatch(Envelope::new("matching-service", "ETH-USDT", &update, open_time)).await;
        let (channel, data) = rx.try_recv().unwrap();
        assert_eq!(channel, "candles:ETH-USDT:5m");
        let expected = json!({
            "market": "ETH-USDT", "interval": "5m", "open_time": "2023-11-14T22:15:00Z",
            "open": "100", "high": "101.5", "low": "99", "close": "100.25", "volume": "3",
        });
        assert_eq!(data, expected);
        assert!(rx.try_recv().is_err(), "nobody listens to the 1h candles");
    }

    #[actix_web::test]
    async fn only_the_first_subscriber_of_a_book_makes_the_hub_fetch_it() {
        use std::sync::atomic::AtomicUsize;
        // matching-service's book route, counting how often it is asked.
        let fetches = web::Data::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().app_data(counter.clone()).route(
                "/api/markets/ETH-USDT/book",
                web::get().to(|n: web::Data<AtomicUsize>| async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    HttpResponse::Ok().json(json!({"bids": [{"price": "10", "quantity": "1"}], "asks": []}))
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let mut upstreams = Upstreams::default();
        upstreams.insert("matching-service", url);
        let hub = Hub::new(upstreams, reqwest::Client::new(), InternalSecret::generate());

        let mut receivers = Vec::new();
        for id in 1..=3 {
            let (tx, rx) = mpsc::channel(8);
            let channels = HashSet::new();
            lock(&hub.subscribers)
                .insert(id, Subscriber { user: None, expires_at: None, channels, tx: tx.clone() });
            hub.subscribe_book(id, "book:ETH-USDT".into(), "ETH-USDT", &tx).await;
            receivers.push(rx);
        }
        for rx in &mut receivers {
            let (channel, data) = rx.try_recv().unwrap();
            assert_eq!(channel, "book:ETH-USDT");
            assert_eq!(data["bids"], json!([{"price": "10", "quantity": "1"}]), "{data}");
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "the second and third snapshots come from the hub's copy"
        );
        // A change is fetched once for all of them.
        hub.book_changed("ETH-USDT").await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        handle.stop(false).await;
    }

    #[test]
    fn requests_past_the_burst_wait_for_the_rate() {
        let limits = WsLimits { requests_per_second: 2, request_burst: 3, ..WsLimits::default() };
        let mut bucket = Bucket::new(&limits);
        let start = Instant::now();
        assert_eq!((0..4).map(|_| bucket.take(start)).collect::<Vec<_>>(), [true, true, true, false]);
        assert!(bucket.take(start + Duration::from_millis(500)), "half a second refills one at 2/s");
        assert!(!bucket.take(start + Duration::from_millis(500)));
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back_when_closed() {
        let limits = WsLimits { max_connections_per_client: 2, ..WsLimits::default() };
        let hub = web::Data::new(
            Hub::new(Upstreams::default(), reqwest::Client::new(), InternalSecret::generate())
                .with_limits(limits),
        );
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = Hub::admit(&hub, Some(a), None).unwrap();
        let _second = Hub::admit(&hub, Some(a), None).unwrap();
        assert!(Hub::admit(&hub, Some(a), None).is_none(), "a third from the same address");
        let _other = Hub::admit(&hub, Some(b), None).unwrap();
        drop(first);
        assert!(Hub::admit(&hub, Some(a), None).is_some(), "a closed connection makes room");
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
