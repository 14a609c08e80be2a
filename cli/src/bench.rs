//! `bourse bench`: the exchange under load, end to end, as its clients use
//! it. Traders registered through the gateway, funded by top-ups, send a mix
//! of orders over HTTP at a fixed offered rate or as fast as the stack takes
//! them; each trader's WebSocket (`orders`, `fills`) says when each order
//! filled and when its trades were settled in the ledger. An order counts as
//! done once it is final and, if it traded, settled. At the end every order
//! must be final in order-service and every trader's balances must agree with
//! their own fills (top-up, less what they paid, plus what they received),
//! or the run fails. The same run measures a zero-work chain of six hops on
//! the same broker (publish with confirms, consume, publish the next) and
//! prints how the stack compares with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bourse_common::lock;
use futures::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// What to run (the options of `bourse bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// The broker of the six-hop chain (none: the chain is not run).
    #[arg(long)]
    pub amqp_url: Option<String>,
    /// Pairs of traders (a buyer and a seller); each trader is one WebSocket.
    #[arg(long, default_value_t = 5)]
    pub pairs: usize,
    /// Orders sent in all.
    #[arg(long, default_value_t = 2_000)]
    pub orders: usize,
    /// Orders offered per second (none: as fast as the stack takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value = "ETH-USDT")]
    pub market: String,
    #[arg(long, default_value = "2000")]
    pub price: Decimal,
    #[arg(long, default_value = "0.001")]
    pub quantity: Decimal,
    /// Percent of the pairs of orders placed away from the market and cancelled.
    #[arg(long, default_value_t = 0)]
    pub cancel_percent: u8,
    /// Percent of the pairs of orders that take liquidity on --taker-market:
    /// the seller's limit rests, then the buyer takes it, in turn with a market
    /// order (capped at --price) and an IOC limit. (The rest of the pairs cross.)
    #[arg(long, default_value_t = 0)]
    pub taker_percent: u8,
    /// The market of the taker pairs, apart from --market: there price
    /// priority would let a taker meet another pair's order instead of its maker.
    #[arg(long, default_value = "BTC-USDT")]
    pub taker_market: String,
    /// Seconds to wait for the last orders to be done once all are sent.
    #[arg(long, default_value = "120", value_parser = seconds)]
    pub drain: Duration,
    /// Messages through the six-hop chain.
    #[arg(long, default_value_t = 20_000)]
    pub chain_messages: usize,
    /// What the run is called in the report (e.g. the database).
    #[arg(long, default_value = "")]
    pub label: String,
    /// The stack's process: its resident memory is read before the run and
    /// after it and --idle more seconds (more than twice fails the run).
    #[arg(long)]
    pub watch_pid: Option<u32>,
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub idle: Duration,
}

fn seconds(text: &str) -> Result<Duration, std::num::ParseIntError> {
    text.parse().map(Duration::from_secs)
}

/// The run's figures and checks.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub offered_rate: Option<f64>,
    /// The pairs of orders sent, by kind.
    pub mix: Mix,
    pub sent: usize,
    pub accepted: usize,
    /// Answers other than 202, by status.
    pub refused: HashMap<u16, usize>,
    pub accepted_per_second: f64,
    /// Orders final and, if they traded, settled.
    pub done: usize,
    pub done_per_second: f64,
    pub submit_to_filled_ms: Option<Percentiles>,
    pub submit_to_settled_ms: Option<Percentiles>,
    pub six_hop_messages_per_second: Option<f64>,
    /// `done_per_second` over the six-hop chain's rate.
    pub stack_over_broker: Option<f64>,
    /// The watched process's resident memory before the run and after it and the idle time, in MB.
    pub memory_mb: Option<(f64, f64)>,
    /// Every way an order or a balance disagreed, or memory grew; empty when the run passed.
    pub violations: Vec<String>,
}

/// How many pairs of orders of each kind a run sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Limits that cross at --price.
    pub crossing: usize,
    /// Limits away from the market, cancelled.
    pub cancelled: usize,
    /// A resting limit taken by a market order.
    pub market: usize,
    /// A resting limit taken by an IOC limit.
    pub ioc: usize,
}

impl Mix {
    fn count(&mut self, step: Step) {
        match step {
            Step::Cross => self.crossing += 1,
            Step::Cancel => self.cancelled += 1,
            Step::Take { market_order: true } => self.market += 1,
            Step::Take { market_order: false } => self.ioc += 1,
        }
    }
}

/// Resident memory of process `pid`, in MB (Linux: `/proc/<pid>/status`).
fn resident_mb(pid: u32) -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1_000.0
        };
        Some(Self { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) })
    }
}

/// A trader of the run: a buyer (even index) or a seller (odd).
struct Trader {
    id: Uuid,
    token: String,
    /// What its top-ups gave it, per currency.
    funded: Vec<(String, Decimal)>,
}

impl Trader {
    fn funded(&self, currency: &str) -> Decimal {
        self.funded.iter().find(|(c, _)| c == currency).map_or(Decimal::ZERO, |(_, a)| *a)
    }
}

/// What a pair of orders (a step of the load) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The buyer's and the seller's limits at --price, which cross.
    Cross,
    /// Two of the buyer's limits far below the market, each cancelled.
    Cancel,
    /// The seller's limit rests on the taker market; once it is in the book,
    /// the buyer takes it with a market order or an IOC limit.
    Take { market_order: bool },
}

/// The kinds of the steps, spread evenly: step `s` takes place `s * 37 mod
/// 100` in each hundred (37 is prime to 100), the first `cancel_percent`
/// places cancel, the next `taker_percent` take, the rest cross.
fn steps(count: usize, cancel_percent: u8, taker_percent: u8) -> impl Iterator<Item = Step> {
    let (cancel, take) =
        (usize::from(cancel_percent), usize::from(cancel_percent) + usize::from(taker_percent));
    let mut takers = 0;
    (0..count).map(move |s| match s * 37 % 100 {
        place if place < cancel => Step::Cancel,
        place if place < take => {
            takers += 1;
            Step::Take { market_order: takers % 2 == 1 }
        }
        _ => Step::Cross,
    })
}

/// What an order is expected to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Filled,
    Cancelled,
}

/// One order as the run sees it.
#[derive(Debug, Default)]
struct Tracked {
    trader: usize,
    expect: Option<Expect>,
    quantity: Decimal,
    submitted: Option<Instant>,
    /// When the WebSocket said it ended (filled, cancelled, rejected).
    ended: Option<(Instant, String)>,
    filled: Option<Instant>,
    /// What its settled fills add up to, and when the last one came.
    settled: Decimal,
    settled_at: Option<Instant>,
    /// In the book (open, partially filled or filled).
    booked: bool,
    counted: bool,
}

impl Tracked {
    /// Final and, if it traded, settled in full.
    fn done(&self) -> bool {
        self.submitted.is_some()
            && match &self.ended {
                Some((_, status)) if status == "filled" => self.settled == self.quantity,
                Some(_) => true,
                None => false,
            }
    }
}

/// What the WebSockets and the senders learn, shared.
#[derive(Default)]
struct Board {
    orders: HashMap<Uuid, Tracked>,
    /// trader -> currency -> what their settled fills moved.
    moved: HashMap<usize, HashMap<String, Decimal>>,
    done: usize,
    last_done: Option<Instant>,
    /// Senders waiting for an order to be in the book (true) or to end without (false).
    waiting: HashMap<Uuid, tokio::sync::oneshot::Sender<bool>>,
}

impl Board {
    fn order(&mut self, id: Uuid) -> &mut Tracked {
        self.orders.entry(id).or_default()
    }

    /// Counts `id` once it is done.
    fn settle_count(&mut self, id: Uuid, now: Instant, progress: &indicatif::ProgressBar) {
        let Some(order) = self.orders.get_mut(&id) else { return };
        if !order.counted && order.done() {
            order.counted = true;
            self.done += 1;
            self.last_done = Some(now);
            progress.inc(1);
        }
    }
}

type Shared = Arc<Mutex<Board>>;

/// Runs the bench; the report says whether it passed (`violations` empty).
pub async fn run(options: Options) -> anyhow::Result<Report> {
    if options.pairs == 0 || options.orders == 0 || options.orders % 2 == 1 {
        bail!("--pairs must be at least 1 and --orders an even number (orders go in pairs)");
    }
    if u16::from(options.cancel_percent) + u16::from(options.taker_percent) > 100 {
        bail!("--cancel-percent and --taker-percent add up to more than 100");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .pool_idle_timeout(bourse_common::service::HTTP_CLIENT_IDLE)
        .build()?;
    let base = options.gateway.trim_end_matches('/').to_string();
    let split = |market: &str| {
        market
            .split_once('-')
            .map(|(b, q)| (b.to_string(), q.to_string()))
            .context("a market is BASE-QUOTE, e.g. ETH-USDT")
    };
    let (base_currency, quote_currency) = split(&options.market)?;
    let (taker_base, taker_quote) = split(&options.taker_market)?;
    if options.taker_percent > 0 && (taker_quote != quote_currency || options.taker_market == options.market)
    {
        bail!("--taker-market must be another market of {quote_currency}, e.g. BTC-{quote_currency}");
    }

    let memory_before = options.watch_pid.map(resident_mb).transpose()?;
    // Traders, funded for every order they may send (a seller in both base currencies when pairs take).
    let per_trader = Decimal::from(options.orders.div_ceil(options.pairs * 2) as u64 + 1);
    let run_id = Uuid::now_v7().simple().to_string();
    let mut traders = Vec::new();
    for i in 0..options.pairs * 2 {
        let buys = i % 2 == 0;
        let mut funded = if buys {
            vec![(quote_currency.clone(), options.price * options.quantity * per_trader)]
        } else {
            vec![(base_currency.clone(), options.quantity * per_trader)]
        };
        if !buys && options.taker_percent > 0 {
            funded.push((taker_base.clone(), options.quantity * per_trader));
        }
        let email = format!("bench-{}-{i}@bench.example", &run_id[20..]);
        let (id, token) = register(&http, &base, &email).await?;
        for (currency, amount) in &funded {
            fund(&http, &base, &token, currency, *amount)
                .await
                .with_context(|| format!("funding {email}"))?;
        }
        traders.push(Trader { id, token, funded });
    }
    for trader in &traders {
        funded_by_now(&http, &base, trader).await?;
    }
    eprintln!("{} traders registered and funded", traders.len());

    let board: Shared = Arc::default();
    let progress = indicatif::ProgressBar::new(options.orders as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} done, {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut feeds = Vec::new();
    for (index, trader) in traders.iter().enumerate() {
        feeds.push(follow(&base, &options.market, index, trader, board.clone(), progress.clone()).await?);
    }

    // The load: a pair of orders per step, the step's first order due at its place in the offered rate.
    let load = Load {
        http: http.clone(),
        base: base.clone(),
        board: board.clone(),
        traders: Arc::new(traders),
        refused: Arc::default(),
        progress: progress.clone(),
        quantity: options.quantity,
        patience: options.drain,
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let started = Instant::now();
    let mut sends = Vec::with_capacity(options.orders);
    let mut mix = Mix::default();
    for (n, step) in steps(options.orders / 2, options.cancel_percent, options.taker_percent).enumerate() {
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64((2 * n) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (buyer, seller) = ((n % options.pairs) * 2, (n % options.pairs) * 2 + 1);
        let order = |market: &str, trader: usize, kind: &str, price: Decimal| {
            let side = if trader == buyer { "buy" } else { "sell" };
            json!({"market": market, "side": side, "type": kind, "price": price, "quantity": options.quantity})
        };
        match step {
            Step::Cross => {
                for trader in [buyer, seller] {
                    let (load, order) =
                        (load.clone(), order(&options.market, trader, "limit", options.price));
                    let permit = permits.clone().acquire_owned().await?;
                    sends.push(tokio::spawn(async move {
                        let _permit = permit;
                        load.place(trader, order, Expect::Filled).await;
                    }));
                }
            }
            Step::Cancel => {
                let away = order(&options.market, buyer, "limit", (options.price / Decimal::TWO).round_dp(2));
                for _ in 0..2 {
                    let (load, order) = (load.clone(), away.clone());
                    let permit = permits.clone().acquire_owned().await?;
                    sends.push(tokio::spawn(async move {
                        let _permit = permit;
                        if let Some(id) = load.place(buyer, order, Expect::Cancelled).await {
                            load.cancel(buyer, id).await;
                        }
                    }));
                }
            }
            Step::Take { market_order } => {
                let maker = order(&options.taker_market, seller, "limit", options.price);
                let mut taker = order(&options.taker_market, buyer, "limit", options.price);
                if market_order {
                    taker["type"] = json!("market");
                } else {
                    taker["time_in_force"] = json!("ioc");
                }
                let load = load.clone();
                let permit = permits.clone().acquire_owned().await?;
                sends.push(tokio::spawn(async move {
                    let _permit = permit;
                    let Some(id) = load.place(seller, maker, Expect::Filled).await else { return };
                    if load.booked(id).await {
                        load.place(buyer, taker, Expect::Filled).await;
                    }
                }));
            }
        }
        mix.count(step);
        progress.set_message(format!("{} sent", 2 * (n + 1)));
    }
    for send in sends {
        send.await?;
    }
    let sent_in = started.elapsed();
    let accepted = lock(&board).orders.values().filter(|o| o.submitted.is_some()).count();
    progress.set_message(format!("all {} sent, {accepted} accepted; draining", options.orders));

    // Until every accepted order is done, or the drain time is over.
    let deadline = Instant::now() + options.drain;
    while lock(&board).done < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.finish_and_clear();
    for feed in feeds {
        feed.abort();
    }

    let board = std::mem::take(&mut *lock(&board));
    let mut violations = check(&http, &base, &load.traders, &board).await?;
    let undone = board.orders.values().filter(|o| o.submitted.is_some() && !o.counted).count();
    if undone > 0 {
        violations.insert(
            0,
            format!("{undone} accepted order(s) not done within {:?} of the last send", options.drain),
        );
    }
    let done_in = board.last_done.map_or(sent_in, |t| t.duration_since(started));
    let crossing = board.orders.values().filter(|o| o.expect == Some(Expect::Filled));
    let filled: Vec<Duration> =
        crossing.clone().filter_map(|o| Some(o.filled?.duration_since(o.submitted?))).collect();
    let settled: Vec<Duration> =
        crossing.filter_map(|o| Some(o.settled_at?.duration_since(o.submitted?))).collect();
    let done_per_second = board.done as f64 / done_in.as_secs_f64().max(1e-9);

    let six_hop = match &options.amqp_url {
        Some(url) => Some(six_hop_chain(url, options.chain_messages).await?),
        None => None,
    };
    let refused = std::mem::take(&mut *lock(&load.refused));
    let memory_mb = match (options.watch_pid, memory_before) {
        (Some(pid), Some(before)) => {
            eprintln!("idle for {:?}, then the memory of process {pid}", options.idle);
            tokio::time::sleep(options.idle).await;
            let after = resident_mb(pid)?;
            if after > before * 2.0 {
                violations.push(format!(
                    "process {pid}: {after:.0} MB resident after the run and {:?} idle, more than twice the {before:.0} MB before",
                    options.idle
                ));
            }
            Some((before, after))
        }
        _ => None,
    };
    Ok(Report {
        label: options.label,
        offered_rate: options.rate,
        mix,
        sent: options.orders,
        accepted,
        refused,
        accepted_per_second: accepted as f64 / sent_in.as_secs_f64().max(1e-9),
        done: board.done,
        done_per_second,
        submit_to_filled_ms: Percentiles::of(filled),
        submit_to_settled_ms: Percentiles::of(settled),
        six_hop_messages_per_second: six_hop,
        stack_over_broker: six_hop.map(|r| done_per_second / r),
        memory_mb,
        violations,
    })
}

/// What every send of the load shares.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    board: Shared,
    traders: Arc<Vec<Trader>>,
    /// Answers other than 202, by status (0: no answer).
    refused: Arc<Mutex<HashMap<u16, usize>>>,
    progress: indicatif::ProgressBar,
    quantity: Decimal,
    /// How long a taker waits for its maker to be in the book.
    patience: Duration,
}

impl Load {
    /// Places `order` for `trader`, to end as `expect`: its id once accepted
    /// (202). A trader at the exchange's limit of open orders waits for some
    /// to end, as a client would; the order's clock starts at the send it took.
    async fn place(&self, trader: usize, order: Value, expect: Expect) -> Option<Uuid> {
        let token = &self.traders[trader].token;
        let (answer, at) = loop {
            let at = Instant::now();
            match call(&self.http, &self.base, "POST", "/api/orders", token, Some(order.clone())).await {
                Ok((422, body)) if body["error"]["code"] == "too_many_open_orders" => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                answer => break (answer, at),
            }
        };
        let id = match answer {
            Ok((202, body)) => body["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()),
            Ok((status, _)) => {
                *lock(&self.refused).entry(status).or_default() += 1;
                None
            }
            Err(_) => {
                *lock(&self.refused).entry(0).or_default() += 1;
                None
            }
        }?;
        let mut b = lock(&self.board);
        let o = b.order(id);
        o.trader = trader;
        o.expect = Some(expect);
        o.quantity = self.quantity;
        o.submitted = Some(at);
        b.settle_count(id, Instant::now(), &self.progress);
        Some(id)
    }

    async fn cancel(&self, trader: usize, id: Uuid) {
        let path = format!("/api/orders/{id}");
        let _ = call(&self.http, &self.base, "DELETE", &path, &self.traders[trader].token, None).await;
    }

    /// Waits until order `id` is in the book: false if it ended without
    /// getting there, or did not get there within `patience`.
    async fn booked(&self, id: Uuid) -> bool {
        let answer = {
            let mut b = lock(&self.board);
            let o = b.order(id);
            if o.booked || o.ended.is_some() {
                return o.booked;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            b.waiting.insert(id, tx);
            rx
        };
        matches!(tokio::time::timeout(self.patience, answer).await, Ok(Ok(true)))
    }
}

/// One request through the gateway: its status and JSON body. A 429 is
/// waited out (its `Retry-After`), as a well-behaved client does.
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    loop {
        let mut request = http.request(method.parse()?, format!("{base}{path}"));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        if status == 429 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 60))).await;
            continue;
        }
        let text = response.text().await?;
        return Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
    }
}

const PASSWORD: &str = "bench-password-1";

/// Gives `amount` of `currency` to the caller: a top-up, or where the
/// currency lives on the chain, the development faucet (in as many sends as
/// its maximum needs), credited once the deposits are confirmed.
async fn fund(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    currency: &str,
    amount: Decimal,
) -> anyhow::Result<()> {
    let path = format!("/api/users/me/accounts/{currency}/top-up");
    let (status, body) = call(http, base, "POST", &path, token, Some(json!({"amount": amount}))).await?;
    match (status, body["error"]["code"].as_str()) {
        (200, _) => return Ok(()),
        (409, Some("deposit_on_chain")) => {}
        _ => bail!("top-up: {status} {body}"),
    }
    let (mut left, mut chunk) = (amount, amount);
    while left > Decimal::ZERO {
        let send = chunk.min(left);
        let request = json!({"currency": currency, "amount": send});
        let (status, body) =
            call(http, base, "POST", "/api/users/me/wallets/faucet", token, Some(request)).await?;
        match (status, body["error"]["code"].as_str()) {
            (202, _) => left -= send,
            (409, Some("no_wallet_yet")) => tokio::time::sleep(Duration::from_millis(200)).await,
            (422, Some("faucet_above_maximum")) if chunk > Decimal::ONE => {
                chunk = (chunk / Decimal::TWO).floor()
            }
            _ => bail!("faucet: {status} {body}"),
        }
    }
    Ok(())
}

/// Waits until `trader`'s funding shows in their balances (a deposit waits for its confirmations).
async fn funded_by_now(http: &reqwest::Client, base: &str, trader: &Trader) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, accounts) =
            call(http, base, "GET", "/api/users/me/accounts", &trader.token, None).await?;
        let available = |currency: &str| {
            accounts
                .as_array()
                .and_then(|a| a.iter().find(|x| x["currency"] == currency))
                .and_then(|x| x["available"].as_str()?.parse::<Decimal>().ok())
                .unwrap_or_default()
        };
        let short = trader.funded.iter().find(|(currency, amount)| available(currency) < *amount);
        match short {
            None if status == 200 => return Ok(()),
            Some((currency, amount)) if Instant::now() > deadline => bail!(
                "{amount} {currency} never credited to trader {} (has {})",
                trader.id,
                available(currency)
            ),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Registers `email`; returns its user id and a token.
async fn register(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<(Uuid, String)> {
    let credentials = json!({"email": email, "password": PASSWORD});
    let (status, body) = call(http, base, "POST", "/api/auth/users", "", Some(credentials.clone())).await?;
    if status != 201 {
        bail!("registering {email}: {status} {body}");
    }
    let id = body["id"].as_str().and_then(|s| s.parse().ok()).context("registration gave no id")?;
    let (status, body) = call(http, base, "POST", "/api/token", "", Some(credentials)).await?;
    let token = body["access_token"].as_str().filter(|_| status == 200);
    Ok((id, token.with_context(|| format!("token for {email}: {status} {body}"))?.to_string()))
}

/// Opens `trader`'s WebSocket on `orders` and `fills` (subscribed once the
/// book's snapshot, asked for last, arrives) and records what it says.
async fn follow(
    base: &str,
    market: &str,
    index: usize,
    trader: &Trader,
    board: Shared,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("{}/ws", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.with_context(|| {
        format!(
            "WebSocket {url} (the gateway allows settings.ws.max_connections_per_client per address: \
             GATEWAY__SETTINGS__WS__MAX_CONNECTIONS_PER_CLIENT)"
        )
    })?;
    let book = format!("book:{market}");
    for request in [
        json!({"op": "auth", "token": trader.token}),
        json!({"op": "subscribe", "channels": ["orders", "fills", book]}),
    ] {
        ws.send(Message::text(request.to_string())).await?;
    }
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no book snapshot on the WebSocket within 10 s")?
            .context("the WebSocket closed")??;
        let value: Value = serde_json::from_str(message.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if value["error"].is_object() {
            bail!("WebSocket: {value}");
        }
        if value["channel"] == book.as_str() {
            break;
        }
    }
    ws.send(Message::text(json!({"op": "unsubscribe", "channels": [book]}).to_string())).await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let Ok(text) = message.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<Value>(text) else { continue };
            record(&board, index, &value, &progress);
        }
    }))
}

/// Records one WebSocket message of trader `index`.
fn record(board: &Shared, index: usize, message: &Value, progress: &indicatif::ProgressBar) {
    let data = &message["data"];
    let Some(id) = data["order_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()) else { return };
    let now = Instant::now();
    let decimal = |v: &Value| v.as_str().and_then(|s| s.parse::<Decimal>().ok()).unwrap_or_default();
    let mut b = lock(board);
    match message["channel"].as_str() {
        Some("orders") => {
            let status = data["status"].as_str().unwrap_or_default().to_string();
            let o = b.order(id);
            if status == "filled" {
                o.filled = Some(now);
            }
            o.booked |= matches!(status.as_str(), "open" | "partially_filled" | "filled");
            let booked = o.booked;
            let ended = matches!(status.as_str(), "filled" | "cancelled" | "rejected");
            if ended {
                o.ended = Some((now, status));
            }
            if (booked || ended)
                && let Some(waiter) = b.waiting.remove(&id)
            {
                let _ = waiter.send(booked);
            }
        }
        Some("fills") => {
            let o = b.order(id);
            o.settled += decimal(&data["quantity"]);
            o.settled_at = Some(now);
            let moved = b.moved.entry(index).or_default();
            if let (Some(paid), Some(received)) =
                (data["paid_currency"].as_str(), data["received_currency"].as_str())
            {
                *moved.entry(paid.to_string()).or_default() -= decimal(&data["paid"]);
                *moved.entry(received.to_string()).or_default() += decimal(&data["received"]);
            }
        }
        _ => return,
    }
    b.settle_count(id, now, progress);
}

/// Every order final as order-service says, as expected, its fills settled
/// in full; every trader's balances what their top-up and fills make them.
async fn check(
    http: &reqwest::Client,
    base: &str,
    traders: &[Trader],
    board: &Board,
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    for (index, trader) in traders.iter().enumerate() {
        // Their orders, as order-service has them.
        let mut listed: HashMap<Uuid, Value> = HashMap::new();
        for page in 1.. {
            let path = format!("/api/orders?per_page=100&page={page}");
            let (status, body) = call(http, base, "GET", &path, &trader.token, None).await?;
            if status != 200 {
                bail!("{path}: {status} {body}");
            }
            let items = body["items"].as_array().cloned().unwrap_or_default();
            for item in &items {
                if let Some(id) = item["id"].as_str().and_then(|s| s.parse().ok()) {
                    listed.insert(id, item.clone());
                }
            }
            if items.len() < 100 {
                break;
            }
        }
        for (id, order) in board.orders.iter().filter(|(_, o)| o.trader == index && o.submitted.is_some()) {
            let Some(found) = listed.get(id) else {
                violations.push(format!("order {id}: accepted, unknown to order-service"));
                continue;
            };
            let status = found["status"].as_str().unwrap_or_default();
            let expected = match order.expect {
                Some(Expect::Filled) => "filled",
                _ => "cancelled",
            };
            if status != expected {
                violations.push(format!("order {id}: {status}, expected {expected}"));
            }
            let filled: Decimal =
                found["filled_quantity"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
            if filled != order.settled {
                violations.push(format!("order {id}: {filled} filled, {} settled", order.settled));
            }
        }
        // Their balances: the top-up and what their fills moved, nothing reserved.
        let (status, accounts) =
            call(http, base, "GET", "/api/users/me/accounts", &trader.token, None).await?;
        if status != 200 {
            bail!("accounts: {status} {accounts}");
        }
        let moved = board.moved.get(&index).cloned().unwrap_or_default();
        for account in accounts.as_array().cloned().unwrap_or_default() {
            let currency = account["currency"].as_str().unwrap_or_default();
            let amount =
                |k: &str| account[k].as_str().and_then(|s| s.parse::<Decimal>().ok()).unwrap_or_default();
            let expected = trader.funded(currency) + moved.get(currency).copied().unwrap_or_default();
            let (available, reserved) = (amount("available"), amount("reserved"));
            if available != expected || !reserved.is_zero() {
                violations.push(format!(
                    "trader {}: {currency} available {available} reserved {reserved}, expected {expected} and 0",
                    trader.id
                ));
            }
        }
    }
    Ok(violations)
}

/// Runs `n` messages through six durable quorum queues, each hop consuming
/// and publishing the next with confirms, as the stack's hops do without the
/// work; returns messages per second through all six.
pub async fn six_hop_chain(amqp_url: &str, n: usize) -> anyhow::Result<f64> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};

    const HOPS: usize = 6;
    const WINDOW: u16 = 256;
    let conn = bourse_common::amqp::connect(amqp_url, "bench.six-hop").await?;
    let tag = Uuid::now_v7().simple().to_string();
    let queues: Vec<String> = (0..HOPS).map(|i| format!("bench.hop.{tag}.{i}")).collect();
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let setup = conn.create_channel().await?;
    for q in &queues {
        let options = QueueDeclareOptions { durable: true, ..Default::default() };
        setup.queue_declare(q.as_str().into(), options, arguments.clone()).await?;
    }
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    let body = vec![b'x'; 256];
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut hops = Vec::new();
    for i in 0..HOPS {
        let ch = conn.create_channel().await?;
        ch.basic_qos(WINDOW, BasicQosOptions::default()).await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut consumer = ch
            .basic_consume(
                queues[i].as_str().into(),
                format!("hop-{i}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let next = queues.get(i + 1).cloned();
        let (props, done) = (persistent.clone(), done_tx.clone());
        hops.push(tokio::spawn(async move {
            let mut seen = 0;
            let mut pending = futures::stream::FuturesOrdered::new();
            loop {
                tokio::select! {
                    delivery = consumer.next() => {
                        let Some(Ok(delivery)) = delivery else { return };
                        match &next {
                            Some(q) => {
                                let Ok(confirm) = ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), &delivery.data, props.clone()).await else { return };
                                pending.push_back(async move {
                                    let _ = confirm.await;
                                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                                });
                            }
                            None => {
                                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                                seen += 1;
                                if seen == n {
                                    let _ = done.send(()).await;
                                    return;
                                }
                            }
                        }
                    }
                    Some(()) = pending.next(), if !pending.is_empty() => {}
                }
            }
        }));
    }
    let publisher = conn.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let started = Instant::now();
    let mut confirms = futures::stream::FuturesOrdered::new();
    for _ in 0..n {
        let confirm = publisher
            .basic_publish(
                "".into(),
                queues[0].as_str().into(),
                BasicPublishOptions::default(),
                &body,
                persistent.clone(),
            )
            .await?;
        confirms.push_back(confirm);
        if confirms.len() >= usize::from(WINDOW) {
            confirms.next().await.transpose()?;
        }
    }
    while confirms.next().await.transpose()?.is_some() {}
    tokio::time::timeout(Duration::from_secs(300), done_rx.recv())
        .await
        .context("the six-hop chain stalled")?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for hop in hops {
        hop.abort();
    }
    for q in &queues {
        let _ = setup.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = conn.close(200, "bench done".into()).await;
    Ok(rate)
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let ms = |p: &Option<Percentiles>| {
            p.map_or("—".to_string(), |p| {
                format!("p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms", p.p50, p.p90, p.p99, p.max)
            })
        };
        let mut rows = vec![
            ("run", self.label.clone()),
            (
                "offered",
                self.offered_rate.map_or("as fast as possible".into(), |r| format!("{r:.0} orders/s")),
            ),
            (
                "pairs of orders",
                format!(
                    "{} crossing, {} cancelled, {} taken by market, {} taken by IOC",
                    self.mix.crossing, self.mix.cancelled, self.mix.market, self.mix.ioc
                ),
            ),
            ("sent / accepted", format!("{} / {}", self.sent, self.accepted)),
            ("accepted per second", format!("{:.0}", self.accepted_per_second)),
            ("done (final, settled)", format!("{}", self.done)),
            ("filled-and-settled per second", format!("{:.0}", self.done_per_second)),
            ("submit -> filled", ms(&self.submit_to_filled_ms)),
            ("submit -> settled", ms(&self.submit_to_settled_ms)),
        ];
        if !self.refused.is_empty() {
            let mut refused: Vec<_> = self.refused.iter().collect();
            refused.sort();
            let text = refused.iter().map(|(s, n)| format!("{n}x {s}")).collect::<Vec<_>>().join(", ");
            rows.push(("refused (status 0: no answer)", text));
        }
        if let (Some(chain), Some(ratio)) = (self.six_hop_messages_per_second, self.stack_over_broker) {
            rows.push(("six-hop lapin chain", format!("{chain:.0} messages/s")));
            rows.push(("stack / six-hop chain", format!("{ratio:.2}")));
        }
        if let Some((before, after)) = self.memory_mb {
            rows.push(("resident memory", format!("{before:.0} MB before, {after:.0} MB after and idle")));
        }
        let verdict = if self.violations.is_empty() {
            "every order final, every balance agrees with its fills".to_string()
        } else {
            format!("{} violation(s)", self.violations.len())
        };
        rows.push(("checks", verdict));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        for v in self.violations.iter().take(20) {
            out.push_str(&format!("  ✗ {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_of_steps_come_in_their_percentages_spread_over_the_run() {
        let mut mix = Mix::default();
        let kinds: Vec<Step> = steps(1_000, 10, 20).collect();
        kinds.iter().for_each(|s| mix.count(*s));
        assert_eq!(mix, Mix { crossing: 700, cancelled: 100, market: 100, ioc: 100 });
        // Spread: no ten steps in a row without a crossing pair, and every hundred has its share.
        assert!(kinds.windows(10).all(|w| w.contains(&Step::Cross)));
        for hundred in kinds.chunks(100) {
            assert_eq!(hundred.iter().filter(|s| **s == Step::Cancel).count(), 10);
        }
        assert!(steps(50, 0, 0).all(|s| s == Step::Cross));
        assert!(steps(50, 0, 100).all(|s| matches!(s, Step::Take { .. })));
    }
}
