//! The database layer: diesel over SQLite (the embedded default, a WAL-mode file)
//! or PostgreSQL (chosen by a `postgres://` URL), behind one connection type so
//! that every query is written once. Migrations are embedded per back end and
//! run at start-up. Diesel is synchronous: [`Db::read`] and [`Db::write`] run
//! the closure on tokio's blocking pool.
//!
//! SQLite has one writer at a time; write transactions of one process are
//! serialised by a mutex, and each begins `IMMEDIATE`, so that none has to
//! upgrade a read snapshot to a write lock (which SQLite refuses with
//! `SQLITE_BUSY` instead of waiting). Other processes wait on `busy_timeout`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use tokio::sync::Notify;

use crate::config::DatabaseConfig;

/// One connection to either back end; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which back end a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("database task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A service's embedded migrations, one set per back end. Build it with
/// [`migration_set!`](crate::migration_set).
#[derive(Debug)]
pub struct MigrationSet {
    pub sqlite: fn() -> EmbeddedMigrations,
    pub postgres: fn() -> EmbeddedMigrations,
}

/// `migration_set!("migrations/sqlite", "migrations/postgres")`: both folders
/// embedded at compile time, relative to the calling crate.
#[macro_export]
macro_rules! migration_set {
    ($sqlite:literal, $postgres:literal) => {{
        const SQLITE: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!($sqlite);
        const POSTGRES: diesel_migrations::EmbeddedMigrations =
            diesel_migrations::embed_migrations!($postgres);
        $crate::db::MigrationSet { sqlite: || SQLITE, postgres: || POSTGRES }
    }};
}

/// The machinery tables (outbox, inbox) every service database has.
pub const MESSAGING_MIGRATIONS: MigrationSet = migration_set!("migrations/sqlite", "migrations/postgres");

/// Runs `$body` with `$c` bound to the concrete connection of either back end:
/// for the few statements diesel cannot build for both at once (batch inserts).
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}

struct Manager {
    backend: Backend,
    url: String,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        // Chosen by the URL, never by trial: a PostgreSQL that is down must not
        // turn into a new SQLite file named after its URL.
        match self.backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?;
                // Diesel prepares every statement, and after five runs PostgreSQL
                // may keep a generic plan, made without the parameters' values.
                // For `col = ANY($n)` that plan filtered the array over every row
                // the other key matched (a consumer's whole inbox, a user's every
                // order): each run slower than the one before. A plan for the
                // values at hand costs tens of microseconds and never does that.
                conn.batch_execute("SET plan_cache_mode = force_custom_plan")
                    .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Postgres(conn))
            }
            Backend::Sqlite => {
                let mut conn =
                    SqliteConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(
                    // busy_timeout first: switching to WAL needs a lock another process may hold.
                    "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// One write transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the
/// write lock when it starts, waiting on `busy_timeout` while another process
/// writes, instead of at its first write, where SQLite refuses at once with
/// `SQLITE_BUSY` when another writer committed since the transaction's first read.
fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    E: From<diesel::result::Error>,
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
{
    type Manager = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Postgres(_) => conn.transaction(f),
        DbConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(value) => {
                    Manager::commit_transaction(conn)?;
                    Ok(value)
                }
                Err(e) => {
                    Manager::rollback_transaction(conn)?;
                    Err(e)
                }
            }
        }
    }
}

/// A pooled database handle. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    write_lock: Arc<Mutex<()>>,
    committed: Arc<Notify>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish()
    }
}

impl Db {
    /// Opens the pool (creating the SQLite file's folder when needed).
    pub fn connect(config: &DatabaseConfig) -> Result<Self, DbError> {
        let backend = Backend::of_url(&config.url);
        if backend == Backend::Sqlite
            && let Some(dir) = Path::new(&config.url).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Migration(format!("creating {}: {e}", dir.display())))?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(Manager { backend, url: config.url.clone() })?;
        Ok(Self { pool, backend, write_lock: Arc::new(Mutex::new(())), committed: Arc::new(Notify::new()) })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Signalled after every committed [`Db::write`]: the outbox relay waits on it.
    pub fn committed(&self) -> &Arc<Notify> {
        &self.committed
    }

    /// Runs every pending migration of `sets`, in order. Safe when several
    /// instances start at once on one PostgreSQL database.
    pub async fn migrate(&self, sets: &[&'static MigrationSet]) -> Result<(), DbError> {
        let sets = sets.to_vec();
        self.with_conn(move |conn| {
            let migrate = |conn: &mut DbConnection| -> Result<(), DbError> {
                for set in &sets {
                    let result = match conn {
                        DbConnection::Postgres(c) => c.run_pending_migrations((set.postgres)()).map(drop),
                        DbConnection::Sqlite(c) => c.run_pending_migrations((set.sqlite)()).map(drop),
                    };
                    result.map_err(|e| DbError::Migration(e.to_string()))?;
                }
                Ok(())
            };
            match conn {
                DbConnection::Postgres(_) => {
                    diesel::sql_query("SELECT pg_advisory_lock(7270736901)").execute(conn)?;
                    let result = migrate(conn);
                    diesel::sql_query("SELECT pg_advisory_unlock(7270736901)").execute(conn)?;
                    result
                }
                DbConnection::Sqlite(_) => migrate(conn),
            }
        })
        .await
    }

    /// Runs `f` with a pooled connection outside any transaction (reads).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        let trace = crate::tracecontext::current();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            crate::tracecontext::on_thread(trace, || f(&mut conn))
        })
        .await
        .map_err(DbError::from)?
    }

    /// Runs `f` inside one transaction: committed if it returns `Ok`, rolled
    /// back otherwise.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        let lock = (self.backend == Backend::Sqlite).then(|| self.write_lock.clone());
        let committed = self.committed.clone();
        let trace = crate::tracecontext::current();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            // A poisoned lock only means another writer panicked; the database
            // rolled its transaction back, so the lock is safe to take.
            let _guard = lock.as_ref().map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
            let result = crate::tracecontext::on_thread(trace, || write_transaction(&mut conn, f));
            if result.is_ok() {
                committed.notify_one();
            }
            result
        })
        .await
        .map_err(DbError::from)?
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.read(f).await
    }

    /// `SELECT 1`: readiness.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.with_conn(|conn| Ok(conn.ping()?)).await
    }
}

/// Is this the error of a unique constraint?
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// Serializes the transactions that name the same `key` of `space` until each
/// ends: on PostgreSQL a transaction-scoped advisory lock (shared by every
/// instance of a service, re-entrant within the transaction); SQLite has one
/// writer at a time already (`BEGIN IMMEDIATE`), so nothing to take there.
/// `space` keeps unrelated locks apart (a short ASCII tag as an integer).
pub fn lock_key(conn: &mut DbConnection, space: i32, key: &str) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl;
    if let DbConnection::Postgres(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(space)
            .bind::<diesel::sql_types::Text, _>(key)
            .execute(c)?;
    }
    Ok(())
}
