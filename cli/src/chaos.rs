//! `bourse chaos`: a load of concurrent orders from many users through the
//! gateway (limit, market, IOC, cancels) while services are killed where they
//! stand and started again, RabbitMQ restarts and the database stops for a
//! while; then, once everything is quiet, the checks a careful operator would
//! make, printed as a table:
//!
//! - every order ended (nothing stuck), the book is empty once every order is;
//! - per currency: what the users and the fee account hold = what was topped
//!   up (nothing made, nothing lost), no negative balance, nothing reserved;
//! - per user: each balance = top-ups + what their trades gave - what they
//!   took, recomputed from the trades in the event log (matching-service's
//!   record, not payment-service's): a trade filled but never settled, or
//!   settled twice, shows up here even when every total is intact;
//! - every dead-letter queue empty; no e-mail twice beyond what a killed
//!   notify-service may repeat (see README, "E-mail").
//!
//! The load and the fault schedule come from one seed, printed with the table,
//! so that a failing run can be run again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bourse_common::catalog::{Side, TradeExecuted};
use bourse_common::db::Backend;
use bourse_common::deadletter;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::messages::Message;
use bourse_common::reference::ReferenceData;
use bourse_common::registry;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::Gateway;
use crate::mailbox::Mailbox;
use crate::stack::Stack;

/// Every consumer queue of a stack trading `reference`'s markets, but
/// chain-service's (the load never touches the chain): each must end with an
/// empty `.dlq`.
pub fn queues(reference: &ReferenceData) -> Vec<String> {
    registry::queues(reference.markets.iter().map(|m| m.id.as_str()))
        .into_iter()
        .filter(|(service, _)| service.name != registry::CHAIN.name)
        .map(|(_, queue)| queue)
        .collect()
}

/// The market the load trades on.
const MARKET: &str = "ETH-USDT";

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub seed: u64,
    pub users: usize,
    /// Orders (and cancels) in all, over `clients` concurrent clients.
    pub orders: usize,
    pub clients: usize,
    /// Services killed and started again, in turn (each of them, when at least six).
    pub kills: usize,
    pub broker_restart: bool,
    /// How long PostgreSQL is stopped (PostgreSQL runs only).
    pub database_outage: Option<Duration>,
    /// Where `scripts/` is (the broker restart and the outage are its scripts).
    pub scripts_dir: std::path::PathBuf,
}

/// The stack under test and how to reach it.
pub struct Target<'a> {
    pub stack: &'a mut Stack,
    pub mailbox: &'a Mailbox,
    pub amqp_url: String,
    pub backend: Backend,
    pub reference: ReferenceData,
    /// The fee rates of payment-service (maker, taker).
    pub fee_rates: (Decimal, Decimal),
}

/// A user of the run.
#[derive(Debug, Clone)]
struct Trader {
    id: Uuid,
    email: String,
    token: String,
}

/// What a run found. `violations` empty: everything held.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub orders_placed: usize,
    /// Orders the gateway refused (4xx, or 5xx after every retry), by status and code.
    pub orders_refused: BTreeMap<String, usize>,
    pub orders_by_status: BTreeMap<String, usize>,
    pub stuck: usize,
    pub trades: usize,
    pub kills: BTreeMap<&'static str, usize>,
    pub broker_restarts: usize,
    pub database_outage: Option<Duration>,
    /// Per currency: (topped up, users + fee account now).
    pub totals: BTreeMap<String, (Decimal, Decimal)>,
    /// Users whose balance disagrees with their trades, with how.
    pub wrong_users: Vec<String>,
    pub dead_letters: BTreeMap<String, usize>,
    pub emails: usize,
    pub duplicate_emails: usize,
    pub book_left: usize,
    pub elapsed: Duration,
    pub violations: Vec<String>,
    /// What the broker held when a failed run ended (each queue with messages
    /// ready or unacknowledged, and the connections): where a stuck saga waits.
    pub broker_at_end: Option<String>,
}

impl Report {
    /// The table a person reads.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |what: &str, value: String| {
            let _ = writeln!(t, "| {what:<34} | {value:<44} |");
        };
        row("seed", self.seed.to_string());
        row("orders placed (and cancels)", self.orders_placed.to_string());
        let refused: Vec<String> = self.orders_refused.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        row("orders refused", if refused.is_empty() { "0".into() } else { refused.join(", ") });
        let statuses: Vec<String> = self.orders_by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
        row("orders by end state", statuses.join(", "));
        row("orders stuck (not final)", self.stuck.to_string());
        row("trades (event log)", self.trades.to_string());
        let kills: Vec<String> = self.kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
        row("kill -9 and restart", kills.join(", "));
        row("RabbitMQ restarts", self.broker_restarts.to_string());
        row(
            "database outage",
            self.database_outage.map(|d| format!("{} s", d.as_secs())).unwrap_or("-".into()),
        );
        for (currency, (topped_up, held)) in &self.totals {
            let verdict = if topped_up == held { "conserved" } else { "NOT CONSERVED" };
            row(&format!("{currency}: topped up / held"), format!("{topped_up} / {held} ({verdict})"));
        }
        row("users whose balance != their fills", self.wrong_users.len().to_string());
        let dlq: usize = self.dead_letters.values().sum();
        row("dead letters", dlq.to_string());
        row("e-mails / sent twice", format!("{} / {}", self.emails, self.duplicate_emails));
        row("orders left in the book", self.book_left.to_string());
        row("run time", format!("{:.1} s", self.elapsed.as_secs_f64()));
        row("verdict", if self.violations.is_empty() { "all checks hold".into() } else { "FAILED".into() });
        for v in &self.violations {
            let _ = writeln!(t, "  ! {v}");
        }
        if let Some(broker) = &self.broker_at_end {
            let _ = writeln!(t, "  the broker at the end:");
            for line in broker.lines() {
                let _ = writeln!(t, "    {line}");
            }
        }
        t
    }
}

/// A small deterministic generator (xorshift64*): the same seed, the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The gateway, asked again while the stack answers 5xx or not at all (a
/// service being restarted, the database away), for up to [`PATIENCE`].
/// Status 0: it never answered.
#[derive(Debug, Clone)]
struct Client {
    gateway: Gateway,
    /// Longer than any outage the run makes.
    patience: Duration,
}

impl Client {
    async fn insist(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let deadline = Instant::now() + self.patience;
        loop {
            let (status, body) =
                self.gateway.call(method, path, token, body, key).await.unwrap_or((0, Value::Null));
            if (status != 0 && status < 500) || Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How long a request is retried while the stack is down, and how long the
/// end of the run waits for orders to end and balances to settle.
const PATIENCE: Duration = Duration::from_secs(90);

fn dec(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

/// Registers the traders and tops each up; returns them and what was topped up per currency.
async fn traders(
    client: &Client,
    n: usize,
    seed: u64,
) -> anyhow::Result<(Vec<Trader>, BTreeMap<String, Decimal>)> {
    let mut traders = Vec::new();
    let mut topped_up = BTreeMap::new();
    for i in 0..n {
        let email = format!("trader-{seed}-{i}@chaos.example");
        let credentials = json!({"email": email, "password": "chaos password 1"});
        let (status, body) = client.insist("POST", "/api/auth/users", None, Some(&credentials), None).await;
        anyhow::ensure!(status == 201, "registration of {email}: {status} {body}");
        let id = body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no id: {body}"))?;
        let (status, body) = client.insist("POST", "/api/token", None, Some(&credentials), None).await;
        anyhow::ensure!(status == 200, "token of {email}: {status} {body}");
        let token = body["access_token"].as_str().unwrap_or_default().to_string();
        for (currency, amount) in [("ETH", "50"), ("USDT", "10000")] {
            let path = format!("/api/users/me/accounts/{currency}/top-up");
            let (status, body) =
                client.insist("POST", &path, Some(&token), Some(&json!({"amount": amount})), None).await;
            anyhow::ensure!(status == 200, "top-up of {email}: {status} {body}");
            *topped_up.entry(currency.to_string()).or_default() += amount.parse::<Decimal>()?;
        }
        traders.push(Trader { id, email, token });
    }
    Ok((traders, topped_up))
}

/// One client's share of the load: orders of every kind, and cancels of its
/// own. Returns how many were accepted, and the codes of those refused.
async fn load(
    client: Client,
    traders: Vec<Trader>,
    mut rng: Rng,
    ops: usize,
    name: usize,
) -> (usize, Vec<String>) {
    let mut mine: Vec<(String, String)> = Vec::new(); // (token, order id)
    let mut placed = 0;
    let mut refused = Vec::new();
    for i in 0..ops {
        let trader = &traders[rng.below(traders.len() as u64) as usize];
        let roll = rng.below(100);
        if roll < 8 && !mine.is_empty() {
            let (token, id) = mine[rng.below(mine.len() as u64) as usize].clone();
            client.insist("DELETE", &format!("/api/orders/{id}"), Some(&token), None, None).await;
            placed += 1;
            continue;
        }
        let side = if rng.below(2) == 0 { "buy" } else { "sell" };
        let price = Decimal::new(9_500 + rng.below(1_000) as i64, 2); // 95.00 .. 104.99
        let quantity = Decimal::new(10 + rng.below(990) as i64, 3); // 0.010 .. 0.999
        let order = match roll {
            8..=14 => {
                json!({"market": MARKET, "side": side, "type": "market", "quantity": quantity.to_string(),
                             "price": if side == "buy" { Some("110") } else { None }})
            }
            15..=24 => json!({"market": MARKET, "side": side, "type": "limit", "price": price.to_string(),
                              "quantity": quantity.to_string(), "time_in_force": "ioc"}),
            _ => json!({"market": MARKET, "side": side, "type": "limit", "price": price.to_string(),
                        "quantity": quantity.to_string()}),
        };
        let key = format!("chaos-{name}-{i}");
        let (status, body) =
            client.insist("POST", "/api/orders", Some(&trader.token), Some(&order), Some(&key)).await;
        if status == 202 {
            if let Some(id) = body["id"].as_str() {
                mine.push((trader.token.clone(), id.to_string()));
            }
            placed += 1;
        } else {
            refused.push(format!("{status} {}", body["error"]["code"].as_str().unwrap_or("-")));
        }
    }
    (placed, refused)
}

/// The faults, in the order the seed drew them, while the load runs.
async fn faults(
    target: &mut Target<'_>,
    options: &ChaosOptions,
    rng: &mut Rng,
    report: &mut Report,
) -> anyhow::Result<()> {
    let names: Vec<&'static str> = target.stack.services.iter().map(|s| s.name).collect();
    // Each at one of the kill points 0..=kills, so that it always happens.
    let broker_at = options.broker_restart.then(|| rng.below(options.kills as u64 + 1) as usize);
    let outage_at = match (options.database_outage, target.backend) {
        (Some(_), Backend::Postgres) => Some(rng.below(options.kills as u64 + 1) as usize),
        _ => None,
    };
    // In turn, so that each service is killed as often as the others; the seed picks where to start.
    let first = rng.below(names.len() as u64) as usize;
    for k in 0..=options.kills {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1_200))).await;
        if broker_at == Some(k) {
            run_script(&options.scripts_dir.join("rabbitmq-restart.sh"), &[]).await?;
            report.broker_restarts += 1;
        }
        if outage_at == Some(k)
            && let Some(outage) = options.database_outage
        {
            let seconds = outage.as_secs().to_string();
            run_script(&options.scripts_dir.join("postgres-outage.sh"), &[&seconds]).await?;
            report.database_outage = Some(outage);
        }
        if k < options.kills {
            let name = names[(first + k) % names.len()];
            target.stack.crash_and_restart(name).await?;
            *report.kills.entry(name).or_default() += 1;
        }
    }
    Ok(())
}

async fn run_script(script: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("bash").arg(script).args(args).status().await?;
    anyhow::ensure!(status.success(), "{} failed", script.display());
    Ok(())
}

const NOT_FINAL: [&str; 4] = ["pending", "open", "partially_filled", "cancel_requested"];

/// Every order of `trader` in `status` (all pages).
async fn orders_in(client: &Client, trader: &Trader, status: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let path = format!("/api/orders?status={status}&per_page=100&page={page}");
        let (code, body) = client.insist("GET", &path, Some(&trader.token), None, None).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if code != 200 || items.is_empty() {
            break;
        }
        out.extend(items);
    }
    out
}

/// Cancels what has not ended, again until every order is final (an order
/// can move between two listings). Returns those that never got there, as `id status`.
async fn quiesce(client: &Client, traders: &[Trader]) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut left = Vec::new();
        for trader in traders {
            for status in NOT_FINAL {
                for order in orders_in(client, trader, status).await {
                    let id = order["id"].as_str().unwrap_or_default();
                    if status != "cancel_requested" {
                        let path = format!("/api/orders/{id}");
                        client.insist("DELETE", &path, Some(&trader.token), None, None).await;
                    }
                    left.push(format!("{id} {status}"));
                }
            }
        }
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tracing::info!(left = left.len(), first = %left[0], "chaos: waiting for every order to end");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every account of every trader, once two readings a second apart agree
/// (settlement and releases follow the orders' ends by a moment).
async fn settled_balances(
    client: &Client,
    traders: &[Trader],
) -> HashMap<(Uuid, String), (Decimal, Decimal)> {
    let read = || async {
        let mut all = HashMap::new();
        for trader in traders {
            let (_, body) =
                client.insist("GET", "/api/users/me/accounts", Some(&trader.token), None, None).await;
            for account in body.as_array().cloned().unwrap_or_default() {
                let currency = account["currency"].as_str().unwrap_or_default().to_string();
                all.insert((trader.id, currency), (dec(&account["available"]), dec(&account["reserved"])));
            }
        }
        all
    };
    let deadline = Instant::now() + PATIENCE;
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read().await;
        let reserved = now.values().filter(|(_, reserved)| !reserved.is_zero()).count();
        let quiet = now == last && reserved == 0;
        if quiet || Instant::now() > deadline {
            return now;
        }
        tracing::info!(
            accounts_with_reserved = reserved,
            changing = now != last,
            "chaos: waiting for the balances to settle"
        );
        last = now;
    }
}

/// What each trade did to its two users, as payment-service's rules say (the fee in what each receives).
fn expected_from_trades(
    trades: &[TradeExecuted],
    reference: &ReferenceData,
    (maker_rate, taker_rate): (Decimal, Decimal),
) -> (HashMap<(Uuid, String), Decimal>, BTreeMap<String, Decimal>) {
    let mut users: HashMap<(Uuid, String), Decimal> = HashMap::new();
    let mut fees: BTreeMap<String, Decimal> = BTreeMap::new();
    for trade in trades {
        let Some(market) = reference.market(&trade.market) else { continue };
        let (Some(base), Some(quote)) = (reference.currency(&market.base), reference.currency(&market.quote))
        else {
            continue;
        };
        let (price, quantity) = (trade.price.value(), trade.quantity.value());
        let notional = price * quantity;
        let taker_buys = trade.taker_side == Side::Buy;
        let (buyer, seller) = if taker_buys {
            (trade.taker_user_id, trade.maker_user_id)
        } else {
            (trade.maker_user_id, trade.taker_user_id)
        };
        let (buyer_rate, seller_rate) =
            if taker_buys { (taker_rate, maker_rate) } else { (maker_rate, taker_rate) };
        let buyer_fee = payment_service::domain::fee(quantity, buyer_rate, base.scale);
        let seller_fee = payment_service::domain::fee(notional, seller_rate, quote.scale);
        *users.entry((buyer, quote.code.clone())).or_default() -= notional;
        *users.entry((buyer, base.code.clone())).or_default() += quantity - buyer_fee;
        *users.entry((seller, base.code.clone())).or_default() -= quantity;
        *users.entry((seller, quote.code.clone())).or_default() += notional - seller_fee;
        *fees.entry(base.code.clone()).or_default() += buyer_fee;
        *fees.entry(quote.code.clone()).or_default() += seller_fee;
    }
    (users, fees)
}

/// Runs the load with its faults, waits for quiet, checks. The stack must be
/// ready; `admin_token` is an administrator's (for the fee account).
pub async fn run(
    target: &mut Target<'_>,
    options: &ChaosOptions,
    admin_token: &str,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let client = Client {
        gateway: Gateway::new(&target.stack.gateway_url()),
        patience: PATIENCE + options.database_outage.unwrap_or_default(),
    };
    let mut report = Report { seed: options.seed, ..Report::default() };
    let mut rng = Rng::new(options.seed);
    let (traders, topped_up) = traders(&client, options.users, options.seed).await?;

    let per_client = options.orders / options.clients.max(1);
    let mut load_tasks = tokio::task::JoinSet::new();
    for n in 0..options.clients.max(1) {
        let client_rng = Rng::new(rng.next_u64());
        load_tasks.spawn(load(client.clone(), traders.clone(), client_rng, per_client, n));
    }
    faults(target, options, &mut rng, &mut report).await?;
    while let Some(done) = load_tasks.join_next().await {
        let (placed, refused) = done?;
        report.orders_placed += placed;
        for code in refused {
            *report.orders_refused.entry(code).or_default() += 1;
        }
    }
    tracing::info!(orders = report.orders_placed, "chaos: load done; cancelling what rests");

    let stuck = quiesce(&client, &traders).await;
    report.stuck = stuck.len();
    let balances = settled_balances(&client, &traders).await;
    for trader in &traders {
        for status in ["filled", "cancelled", "rejected"] {
            let n = orders_in(&client, trader, status).await.len();
            *report.orders_by_status.entry(status.to_string()).or_default() += n;
        }
    }

    // The trades, as matching-service logged them: each once, whatever was published twice.
    let log =
        eventlog::read(&target.amqp_url, StreamOffset::First, usize::MAX, Duration::from_secs(3)).await?;
    let mut seen = HashSet::new();
    let trades: Vec<TradeExecuted> = log
        .iter()
        .filter(|e| e.envelope.message_type == TradeExecuted::TYPE)
        .filter_map(|e| e.envelope.payload::<TradeExecuted>().ok())
        .filter(|t| seen.insert(t.trade_id))
        .collect();
    report.trades = trades.len();
    let (moved, expected_fees) = expected_from_trades(&trades, &target.reference, target.fee_rates);

    let (_, fee_body) = client.insist("GET", "/api/admin/payments/fees", Some(admin_token), None, None).await;
    let fees: BTreeMap<String, Decimal> = fee_body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| (f["currency"].as_str().unwrap_or_default().to_string(), dec(&f["amount"])))
        .collect();

    let per_user_top_up =
        |currency: &str| if currency == "ETH" { Decimal::from(50) } else { Decimal::from(10_000) };
    for trader in &traders {
        for currency in topped_up.keys() {
            let (available, reserved) =
                balances.get(&(trader.id, currency.clone())).copied().unwrap_or_default();
            let expected = per_user_top_up(currency)
                + moved.get(&(trader.id, currency.clone())).copied().unwrap_or_default();
            if available + reserved != expected || reserved != Decimal::ZERO || available < Decimal::ZERO {
                report.wrong_users.push(format!(
                    "{} {currency}: holds {available} + {reserved} reserved, its trades say {expected}",
                    trader.email
                ));
            }
        }
    }
    for (currency, topped) in &topped_up {
        let held: Decimal = traders
            .iter()
            .map(|t| balances.get(&(t.id, currency.clone())).map(|(a, r)| a + r).unwrap_or_default())
            .sum::<Decimal>()
            + fees.get(currency).copied().unwrap_or_default();
        report.totals.insert(currency.clone(), (*topped, held));
        let fee = fees.get(currency).copied().unwrap_or_default();
        let expected_fee = expected_fees.get(currency).copied().unwrap_or_default();
        if fee != expected_fee {
            report
                .violations
                .push(format!("fee account {currency}: {fee}, the trades' fees say {expected_fee}"));
        }
    }

    for queue in queues(&target.reference) {
        let n = deadletter::list(&target.amqp_url, &queue, 1_000).await?.len();
        report.dead_letters.insert(queue, n);
    }
    let mails = target.mailbox.received()?;
    report.emails = mails.len();
    let mut ids = HashSet::new();
    report.duplicate_emails =
        mails.iter().filter_map(|m| m.message_id.clone()).filter(|id| !ids.insert(id.clone())).count();
    let (_, book) = client.insist("GET", &format!("/api/markets/{MARKET}/book"), None, None, None).await;
    report.book_left = ["bids", "asks"].iter().map(|side| book[side].as_array().map_or(0, Vec::len)).sum();
    report.elapsed = started.elapsed();

    if !stuck.is_empty() {
        report.violations.push(format!("{} order(s) never ended", stuck.len()));
        // Each with its saga as the event log tells it, to start the diagnosis from.
        for order in stuck.iter().take(5) {
            let id = order.split(' ').next().unwrap_or_default();
            let saga: Vec<&str> = log
                .iter()
                .filter(|e| e.envelope.correlation_id == id)
                .map(|e| e.envelope.message_type.as_str())
                .collect();
            report.violations.push(format!("order {order}: {}", saga.join(" -> ")));
        }
    }
    for (currency, (topped, held)) in &report.totals {
        if topped != held {
            report
                .violations
                .push(format!("{currency}: {topped} topped up, {held} held: money made or lost"));
        }
    }
    let unanswered: usize =
        report.orders_refused.iter().filter(|(code, _)| !code.starts_with('4')).map(|(_, n)| n).sum();
    if unanswered > 0 {
        report.violations.push(format!("{unanswered} order(s) never accepted: the stack did not recover"));
    }
    if !report.wrong_users.is_empty() {
        report.violations.push(format!("{} balance(s) disagree with their trades", report.wrong_users.len()));
        report.violations.extend(report.wrong_users.iter().take(10).cloned());
    }
    for (queue, n) in &report.dead_letters {
        if *n > 0 {
            report.violations.push(format!("{n} dead letter(s) in {queue}.dlq"));
        }
    }
    // A kill of notify-service, or the database failing, between the SMTP server's reply and the
    // commit repeats the one e-mail in flight (README, "E-mail"): at most one each.
    let notify_kills = report.kills.get("notify-service").copied().unwrap_or(0);
    let allowed = notify_kills + usize::from(report.database_outage.is_some());
    if report.duplicate_emails > allowed {
        report.violations.push(format!(
            "{} e-mail(s) sent twice, {notify_kills} notify-service kill(s) and {} database outage(s)",
            report.duplicate_emails,
            usize::from(report.database_outage.is_some())
        ));
    }
    if report.book_left > 0 {
        report
            .violations
            .push(format!("{} price level(s) left in the book after every order ended", report.book_left));
    }
    Ok(report)
}

/// A stack of its own for the run (a RabbitMQ vhost, fresh databases of
/// `backend`, its own SMTP server), as the tests start one; `arm` sees it
/// before the load starts (a test injects a fault there). Everything is
/// removed afterwards.
pub async fn run_isolated(
    backend: Backend,
    options: &ChaosOptions,
    arm: impl FnOnce(&Stack),
) -> anyhow::Result<Report> {
    let mut isolated = crate::isolated::Isolated::start(backend, &[]).await?;
    let gateway_db =
        isolated.options.databases.get(bourse_common::registry::GATEWAY.name).cloned().unwrap_or_default();
    let payment = crate::stack::configure::<payment_service::PaymentService>(&isolated.options)?.settings;
    let stack = &mut isolated.stack;
    let client = Client { gateway: Gateway::new(&stack.gateway_url()), patience: PATIENCE };
    let admin = json!({"email": "chaos-admin@bourse.local", "password": "chaos password 1"});
    client.insist("POST", "/api/auth/users", None, Some(&admin), None).await;
    crate::admin::grant(&gateway_db, "chaos-admin@bourse.local", bourse_common::auth::Role::Admin).await?;
    let (_, token) = client.insist("POST", "/api/token", None, Some(&admin), None).await;
    let admin_token = token["access_token"].as_str().unwrap_or_default().to_string();
    arm(stack);
    let report = {
        let mut target = Target {
            stack,
            mailbox: &isolated.mailbox,
            amqp_url: isolated.env.amqp_url.clone(),
            backend,
            reference: payment.reference.clone(),
            fee_rates: (payment.maker_fee_rate, payment.taker_fee_rate),
        };
        run(&mut target, options, &admin_token).await
    };
    let report = match report {
        Ok(mut r) if !r.violations.is_empty() => {
            r.broker_at_end = Some(isolated.env.broker_report().await);
            Ok(r)
        }
        other => other,
    };
    isolated.stop().await;
    report
}
