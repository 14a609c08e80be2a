//! The `bourse` command.

use std::path::PathBuf;
use std::time::Duration;

/// jemalloc: under load glibc's malloc kept its per-thread arenas' freed
/// memory (the stack's resident memory more than doubled after a few
/// thousand orders and stayed there idle); jemalloc gives unused pages back
/// to the system after its decay time (10 s).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use bourse_cli::anvil::{self, Anvil};
use bourse_cli::mailbox::Mailbox;
use bourse_cli::stack::{self, StackOptions};
use bourse_common::auth::Role;
use bourse_common::db::{Db, DbError};
use bourse_common::eventlog::{self, LoggedMessage, StreamOffset};
use bourse_common::logindex;
use bourse_common::{deadletter, registry, service};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bourse", version, about = "Bourse: start the stack, and debug its messages")]
struct Cli {
    /// The RabbitMQ the stack and the debugging commands use.
    #[arg(
        long,
        global = true,
        env = "BOURSE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every service in this process (SQLite files under --data-dir) until Ctrl-C.
    Up {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Walk through the demo scenario once the stack is up.
        #[arg(long)]
        demo: bool,
        /// Instances of each service behind the gateway, sharing their
        /// databases and queues as separate machines would (the load bench's
        /// scale-out run; one process all the same).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
        instances: u8,
    },
    /// Walk through the order saga against a running gateway (register, top up, order, reject, cancel).
    Demo {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        gateway: String,
    },
    /// Read the event log again: from `first`, `next`, an offset, or an RFC 3339 time.
    Events {
        #[arg(long, default_value = "first")]
        from: StreamOffset,
        #[arg(long, default_value_t = 1_000)]
        max: usize,
        /// Print each entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publishes one logged message again, with its id, where it first went: a
    /// redelivery, which every consumer recognises and skips, while it is
    /// younger than the inbox window; older only with --force. Found in the
    /// gateway's index of the log (as `POST /api/admin/messages/{id}/republish`).
    Republish {
        message_id: uuid::Uuid,
        /// The gateway's database, which holds the log's index.
        #[arg(long, default_value = "data/gateway.db")]
        database: String,
        /// The consumers' `messaging.inbox_retention_hours`.
        #[arg(long, default_value_t = 168)]
        inbox_retention_hours: u64,
        /// Publish it even when its consumers no longer remember it (they apply it again).
        #[arg(long)]
        force: bool,
    },
    /// Every logged message of one saga (an order id, a user id), causes
    /// first, from the gateway's index of the log (as `GET /api/admin/trace/{id}`).
    Trace {
        correlation_id: String,
        /// The gateway's database, which holds the log's index.
        #[arg(long, default_value = "data/gateway.db")]
        database: String,
        #[arg(long)]
        json: bool,
    },
    /// Messages parked in `<queue>.dlq`.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// The chaos harness: orders from many users while services are killed,
    /// RabbitMQ restarts and PostgreSQL stops; then every check, as a table.
    /// Runs on a stack of its own (its own vhost and databases: needs the
    /// variables of `eval "$(bash scripts/infra.sh env)"`). Exits 1 if a check fails.
    Chaos {
        /// `sqlite` or `postgres`.
        #[arg(long, default_value = "postgres")]
        backend: String,
        /// The run's seed (printed with the table): the same seed, the same load and faults.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 3000)]
        orders: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Services killed (kill -9 where they stand) and started again, each in turn.
        #[arg(long, default_value_t = 12)]
        kills: usize,
        #[arg(long)]
        no_broker_restart: bool,
        /// Seconds PostgreSQL is stopped (0: never).
        #[arg(long, default_value_t = 30)]
        database_outage: u64,
    },
    /// Load through the gateway: traders registered and funded, a mix of
    /// orders at a fixed rate or as fast as possible; accepted/s,
    /// filled-and-settled/s, submit -> filled and -> settled latency, and a
    /// zero-work six-hop chain on the same broker for comparison. Fails (exit
    /// 1) unless every order ends final and every balance agrees with its fills.
    Bench {
        #[command(flatten)]
        options: bourse_cli::bench::Options,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Administrators: `grant <email>` makes the user registered with that
    /// address an administrator (audited as `user.role-granted`).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Run the audit on payment-service's database and the event log: print
    /// the report (kept with the others, `GET /api/admin/audit`); exit 1 on a
    /// discrepancy. The fee rates and reference data are the defaults unless
    /// --config names payment-service's TOML.
    Audit {
        /// payment-service's database: a SQLite file or a postgres:// URL.
        #[arg(long, default_value = "./data/payment-service.db")]
        database: String,
        /// payment-service's configuration file (its `[settings]`).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Outbox rows of a service database that are not published yet.
    Outbox {
        /// The service's database: a SQLite file or a postgres:// URL.
        #[arg(long, default_value = "./data/order-service.db")]
        database: String,
        #[arg(long, default_value_t = 50)]
        max: i64,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Make a registered user an administrator (or, with --revoke, a user again).
    Grant {
        email: String,
        /// The gateway's database: a SQLite file or a postgres:// URL.
        #[arg(long, default_value = "./data/gateway.db")]
        database: String,
        /// Take the administrator role away instead.
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Show them (they stay parked).
    List {
        queue: String,
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Move them back into their queue for a fresh round of attempts. A message
    /// older than the consuming service's inbox window stays parked unless --force.
    Replay {
        queue: String,
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// The consuming service's `messaging.inbox_retention_hours`.
        #[arg(long, default_value_t = 168)]
        inbox_retention_hours: u64,
        /// Replay messages older than the inbox window too (it no longer recognises a duplicate).
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { data_dir, demo, instances } => up(&cli.amqp_url, data_dir, demo, instances).await,
        Command::Demo { gateway } => bourse_cli::demo::run(&gateway).await,
        Command::Events { from, max, json } => {
            let entries = eventlog::read(&cli.amqp_url, from, max, Duration::from_secs(2)).await?;
            print_entries(&entries, json);
            Ok(())
        }
        Command::Republish { message_id, database, inbox_retention_hours, force } => {
            let db = index_db(database)?;
            let plan = db
                .read(move |c| logindex::Republish::find(c, message_id).map_err(DbError::from))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no message {message_id} in the event log's index"))?;
            let window = Duration::from_secs(inbox_retention_hours * 3600);
            if let Some(why) = plan.refusal(window).filter(|_| !force) {
                anyhow::bail!("refused: {why} (--force)");
            }
            eventlog::republish(&cli.amqp_url, &plan.entry).await?;
            let what = if plan.is_redelivery(window) { "a redelivery its consumers skip" } else { "forced" };
            println!(
                "republished {} {message_id} to {} ({what})",
                plan.entry.envelope.message_type, plan.entry.exchange
            );
            Ok(())
        }
        Command::Trace { correlation_id, database, json } => {
            let db = index_db(database)?;
            let saga = correlation_id.clone();
            let entries: Vec<LoggedMessage> = db
                .read(move |c| logindex::saga(c, &saga).map_err(DbError::from))
                .await?
                .into_iter()
                .map(|t| t.entry)
                .collect();
            if entries.is_empty() {
                eprintln!("no message of saga {correlation_id} in the event log");
            }
            print_entries(&entries, json);
            Ok(())
        }
        Command::DeadLetters { action: DeadLetterAction::List { queue, max } } => {
            let letters = deadletter::list(&cli.amqp_url, &queue, max).await?;
            println!("{} dead letter(s) in {queue}.dlq", letters.len());
            for letter in letters {
                println!("{}", serde_json::to_string_pretty(&letter)?);
            }
            Ok(())
        }
        Command::DeadLetters {
            action: DeadLetterAction::Replay { queue, max, inbox_retention_hours, force },
        } => {
            let policy = if force {
                deadletter::ReplayPolicy::forced()
            } else {
                deadletter::ReplayPolicy::within(Duration::from_secs(inbox_retention_hours * 3600))
            };
            let outcome = deadletter::replay(&cli.amqp_url, &queue, max, policy).await?;
            println!("replayed {} message(s) from {queue}.dlq into {queue}", outcome.replayed);
            for refused in &outcome.refused {
                eprintln!("{refused}");
            }
            anyhow::ensure!(
                outcome.refused.is_empty(),
                "{} message(s) refused (--force replays them)",
                outcome.refused.len()
            );
            Ok(())
        }
        Command::Outbox { database, max } => outbox(database, max).await,
        Command::Audit { database, config } => {
            let report = bourse_cli::admin::audit(&database, &cli.amqp_url, config.as_deref()).await?;
            print!("{}", report.table());
            anyhow::ensure!(
                report.is_clean(),
                "the audit found {} discrepancies",
                report.discrepancies.len()
            );
            Ok(())
        }
        Command::Admin { action: AdminAction::Grant { email, database, revoke } } => {
            let role = if revoke { Role::User } else { Role::Admin };
            let user = bourse_cli::admin::grant(&database, &email, role).await?;
            println!(
                "{} ({}) is now {}; their older tokens no longer work (ask for a new one)",
                user.email, user.id, user.role
            );
            Ok(())
        }
        Command::Bench { options, json } => {
            let report = bourse_cli::bench::run(options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Chaos {
            backend,
            seed,
            users,
            orders,
            clients,
            kills,
            no_broker_restart,
            database_outage,
        } => {
            let backend = match backend.as_str() {
                "sqlite" => bourse_common::db::Backend::Sqlite,
                "postgres" => bourse_common::db::Backend::Postgres,
                other => anyhow::bail!("--backend is sqlite or postgres, not {other}"),
            };
            let seed = seed.unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
            let options = bourse_cli::chaos::ChaosOptions {
                seed,
                users,
                orders,
                clients,
                kills,
                broker_restart: !no_broker_restart,
                database_outage: (database_outage > 0).then(|| Duration::from_secs(database_outage)),
                scripts_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts")),
            };
            println!(
                "chaos: seed {seed}, {orders} orders from {users} users over {clients} clients, {kills} kills"
            );
            let report = bourse_cli::chaos::run_isolated(backend, &options, |_| {}).await?;
            println!("{}", report.table());
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn up(amqp_url: &str, data_dir: PathBuf, demo: bool, instances: u8) -> anyhow::Result<()> {
    bourse_common::telemetry::init();
    let started_broker = ensure_broker(amqp_url).await?;
    let mut options = StackOptions {
        data_dir: data_dir.clone(),
        amqp_url: amqp_url.to_string(),
        port: None,
        databases: Default::default(),
        smtp: None,
        messaging: None,
        // Made at the first start, kept in the data folder (0600), the same at every start.
        secrets: stack::StackSecrets::load_or_create(&data_dir)?,
        // The development faucet: top-up on, within payment-service's maximums.
        faucet: true,
        // ETH and USDT only from the dev chain (its faucet): the ledger and the chain agree.
        top_up_chain_currencies: false,
        auth_limit_per_minute: None,
        config_files: Default::default(),
        dev_chain: None,
    };
    let mail_dir = data_dir.join("mail");
    let mailbox = ensure_mailbox(&options, &mail_dir).await?;
    let chain = ensure_chain(&options, &data_dir).await?;
    // Our own dev chain: chain-service's faucet sends from its funded account.
    options.dev_chain = chain.as_ref().map(|anvil| anvil.dev_chain());
    let mut stack = stack::start(&options).await?;
    for _ in 1..instances {
        for service in registry::BEHIND_GATEWAY {
            stack.add_instance(service.name).await?;
        }
    }
    println!();
    for s in stack.services.iter().chain(&stack.more) {
        println!("  {:<18} {}   (Swagger UI: {}/swagger-ui/)", s.name, s.url(), s.url());
    }
    if demo && let Err(e) = bourse_cli::demo::run(&stack.gateway_url()).await {
        eprintln!("the demo failed: {e:#}");
    }
    if let Some(mailbox) = &mailbox {
        if demo {
            // The last e-mails follow the demo's last trade by a moment.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mails = mailbox.received().unwrap_or_default();
        println!("\nE-mails: {} so far, in {}/ (each as .eml and .json)", mails.len(), mail_dir.display());
        for mail in &mails {
            let to = mail.rcpt_tos.join(", ");
            println!("  to {:<28} {}", to, mail.subject.as_deref().unwrap_or("-"));
        }
    }
    println!("\nBourse is up. Gateway: {}   Stop with Ctrl-C.", stack.gateway_url());
    service::shutdown_signal().await;
    println!("stopping...");
    stack.stop().await;
    drop(mailbox);
    drop(chain);
    if started_broker {
        println!("stopping the RabbitMQ this command started...");
        let _ = std::process::Command::new("rabbitmqctl").arg("stop").status();
    }
    Ok(())
}

/// Starts the local mailbox (an SMTP server keeping e-mails in `dir`) when
/// notify-service sends to this machine and nothing answers there yet.
async fn ensure_mailbox(options: &StackOptions, dir: &std::path::Path) -> anyhow::Result<Option<Mailbox>> {
    let notify = stack::configure::<notify_service::NotifyService>(options)?;
    let smtp = notify.settings.smtp;
    let address = format!("{}:{}", smtp.host, smtp.port);
    if tokio::net::TcpStream::connect(&address).await.is_ok() {
        println!("SMTP: using the server already answering at {address}");
        return Ok(None);
    }
    if !matches!(smtp.host.as_str(), "127.0.0.1" | "localhost") {
        println!("SMTP: nothing answers at {address} yet; e-mails wait in notify-service's queue");
        return Ok(None);
    }
    let mailbox = Mailbox::start(dir, smtp.port, &[]).await?;
    println!("SMTP: local mailbox on {address}, e-mails kept in {}/", dir.display());
    Ok(Some(mailbox))
}

/// Starts the dev chain (anvil, its state kept in the data folder) when
/// chain-service follows a node on this machine and nothing answers there yet.
async fn ensure_chain(options: &StackOptions, data_dir: &std::path::Path) -> anyhow::Result<Option<Anvil>> {
    let chain = stack::configure::<chain_service::ChainService>(options)?.settings;
    let url: reqwest::Url = chain.rpc_url.parse()?;
    let (host, port) =
        (url.host_str().unwrap_or_default().to_string(), url.port_or_known_default().unwrap_or(0));
    if tokio::net::TcpStream::connect((host.as_str(), port)).await.is_ok() {
        println!("chain: using the node already answering at {url}");
        return Ok(None);
    }
    if !matches!(host.as_str(), "127.0.0.1" | "localhost") {
        println!("chain: nothing answers at {url} yet; chain-service waits for it");
        return Ok(None);
    }
    // A block a second, as a chain has: deposits gather their confirmations by themselves.
    let anvil = Anvil::start(port, Some(&data_dir.join("anvil-state.json")), Some(1)).await?;
    println!(
        "chain: anvil (dev chain {}) on {}, its state kept in {}/",
        anvil::CHAIN_ID,
        anvil.url,
        data_dir.display()
    );
    Ok(Some(anvil))
}

fn print_entries(entries: &[LoggedMessage], json: bool) {
    for entry in entries {
        let e = &entry.envelope;
        if json {
            println!("{}", serde_json::to_string(entry).unwrap_or_default());
        } else {
            let cause = e.causation_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "{:>8}  {}  {:<32} saga={} id={} cause={} by={}",
                entry.offset,
                e.occurred_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                e.message_type,
                e.correlation_id,
                e.message_id,
                cause,
                e.producer
            );
        }
    }
}

/// The gateway's database, where the event log's index is.
fn index_db(url: String) -> anyhow::Result<Db> {
    Ok(Db::connect(&bourse_common::config::DatabaseConfig { url, pool_size: 1 })?)
}

async fn outbox(database: String, max: i64) -> anyhow::Result<()> {
    use bourse_common::outbox;
    let db = Db::connect(&bourse_common::config::DatabaseConfig { url: database, pool_size: 1 })?;
    let (backlog, rows) =
        db.read(move |c| Ok::<_, DbError>((outbox::backlog(c)?, outbox::pending(c, max)?))).await?;
    println!(
        "{} pending row(s); oldest {} ms old",
        backlog.pending,
        backlog.oldest_age_ms.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
    );
    for row in rows {
        println!("{:>8}  {:<32} saga={} id={}", row.id, row.message_type, row.correlation_id, row.message_id);
    }
    Ok(())
}

/// Starts the local RabbitMQ when nothing answers at the broker's address
/// and `rabbitmq-server` is installed. Returns whether it started one.
async fn ensure_broker(amqp_url: &str) -> anyhow::Result<bool> {
    let rest = amqp_url.split_once("://").map(|(_, r)| r).unwrap_or(amqp_url);
    let host_port = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_port = host_port.split('/').next().unwrap_or("127.0.0.1:5672");
    let address = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:5672") };
    if tokio::net::TcpStream::connect(&address).await.is_ok() {
        return Ok(false);
    }
    let local = address.starts_with("127.0.0.1:") || address.starts_with("localhost:");
    if !local {
        anyhow::bail!("no RabbitMQ answers at {address}");
    }
    println!("RabbitMQ is not running at {address}: starting the local one (rabbitmq-server -detached)...");
    let started = std::process::Command::new("rabbitmq-server").arg("-detached").status();
    if !started.is_ok_and(|s| s.success()) {
        anyhow::bail!(
            "no RabbitMQ at {address} and `rabbitmq-server` could not be started; install it (bash scripts/up.sh does)"
        );
    }
    let ready = std::process::Command::new("rabbitmqctl").args(["await_startup", "--timeout", "60"]).status();
    if !ready.is_ok_and(|s| s.success()) {
        anyhow::bail!("RabbitMQ did not start within 60 s");
    }
    Ok(true)
}
