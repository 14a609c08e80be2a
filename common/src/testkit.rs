//! The test kit every crate's integration tests use (feature `testkit`): an
//! isolated RabbitMQ vhost and fresh databases (SQLite files or PostgreSQL
//! databases) per test, and polling until a condition holds. It talks to the
//! real broker and real databases that `scripts/test.sh` starts.

use std::future::Future;
use std::time::Duration;

use diesel::{Connection, RunQueryDsl};

use crate::config::DatabaseConfig;
use crate::db::Backend;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A broker vhost and databases that belong to one test.
pub struct TestEnv {
    pub backend: Backend,
    pub amqp_url: String,
    vhost: String,
    /// The lock that makes the vhost this test's until it ends.
    _slot: std::fs::File,
    broker: Management,
    pg_databases: Vec<String>,
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        let mgmt_url = env("BOURSE_TEST_AMQP_MGMT_URL", "http://127.0.0.1:15672").replace("guest:guest@", "");
        let (slot, vhost) = claim_vhost().await;
        let broker = Management { http: reqwest::Client::new(), url: mgmt_url };
        broker.prepare(&vhost).await;
        let base = env("BOURSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let base = base.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(base);
        TestEnv {
            backend,
            amqp_url: format!("{base}/{vhost}"),
            vhost,
            _slot: slot,
            broker,
            pg_databases: Vec::new(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// What the broker holds in this test's vhost, for a failing test to
    /// print: each queue with messages ready or unacknowledged (and its
    /// consumers), and the connections open to the vhost.
    pub async fn broker_report(&self) -> String {
        self.broker.report(&self.vhost).await
    }

    /// A fresh, empty database of this test's back end.
    pub fn database(&mut self, name: &str) -> DatabaseConfig {
        let url = match self.backend {
            Backend::Sqlite => self.tmp.path().join(format!("{name}.db")).display().to_string(),
            Backend::Postgres => {
                let admin = std::env::var("BOURSE_TEST_PG_URL").expect(
                    "BOURSE_TEST_PG_URL must point at a PostgreSQL server (scripts/test.sh starts one)",
                );
                let db = format!("{name}_{}", uuid::Uuid::new_v4().simple()).replace('-', "_");
                let mut conn = diesel::PgConnection::establish(&admin).expect("connect to PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {db}"))
                    .execute(&mut conn)
                    .expect("create database");
                self.pg_databases.push(db.clone());
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
                format!("{base}/{db}")
            }
        };
        DatabaseConfig { url, pool_size: 8 }
    }

    pub fn tmp_dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// Empties the vhost (the next test to claim it empties it again) and
    /// removes the PostgreSQL databases.
    pub async fn cleanup(self) {
        self.broker.empty(&self.vhost).await;
        if let Ok(admin) = std::env::var("BOURSE_TEST_PG_URL")
            && let Ok(mut conn) = diesel::PgConnection::establish(&admin)
        {
            for db in &self.pg_databases {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

/// The vhosts tests run in: `bourse-test-<n>`, made once on a machine and
/// reused. RabbitMQ 3.10 was seen to hang for good (every later vhost
/// operation with it) on a vhost added while another one's message stores
/// were starting; making a vhost per test met that within an hour of runs,
/// reusing them never makes one after the first runs.
const VHOST_SLOTS: usize = 64;

/// Claims a free vhost slot for this test: an exclusive lock on its file
/// (nextest runs each test in a process of its own), held until the
/// returned file is dropped.
async fn claim_vhost() -> (std::fs::File, String) {
    tokio::task::spawn_blocking(|| {
        loop {
            for n in 0..VHOST_SLOTS {
                let file = lock_file(&format!("bourse-test-vhost-{n}.lock"));
                if file.try_lock().is_ok() {
                    return (file, format!("bourse-test-{n}"));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("a vhost slot")
}

/// RabbitMQ's management API, for a test's vhost.
struct Management {
    http: reqwest::Client,
    url: String,
}

impl Management {
    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/{path}", self.url))
            .basic_auth("guest", Some("guest"))
            .timeout(Duration::from_secs(60))
    }

    /// Makes the vhost if it does not exist yet (one at a time on this
    /// machine), lets guest use it, and empties it of an earlier test's queues
    /// and exchanges.
    async fn prepare(&self, vhost: &str) {
        let exists = self
            .call(reqwest::Method::GET, &format!("vhosts/{vhost}"))
            .send()
            .await
            .expect("ask RabbitMQ's management API (is RabbitMQ running? see scripts/test.sh)")
            .status()
            .is_success();
        if !exists {
            let _one_at_a_time = global_lock("bourse-test-vhosts.lock").await;
            self.call(reqwest::Method::PUT, &format!("vhosts/{vhost}"))
                .json(&serde_json::json!({}))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .expect("create a RabbitMQ vhost");
        }
        self.call(reqwest::Method::PUT, &format!("permissions/{vhost}/guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("grant guest the vhost");
        self.empty(vhost).await;
    }

    async fn report(&self, vhost: &str) -> String {
        let get = |path: String| async move {
            let answer =
                self.call(reqwest::Method::GET, &path).send().await.and_then(|r| r.error_for_status());
            match answer {
                Ok(response) => response.json::<Vec<serde_json::Value>>().await.unwrap_or_default(),
                Err(e) => vec![serde_json::json!({"error": e.to_string()})],
            }
        };
        let columns = "name,messages_ready,messages_unacknowledged,consumers";
        let mut lines: Vec<String> = get(format!("queues/{vhost}?columns={columns}"))
            .await
            .iter()
            .filter(|q| {
                q["messages_ready"].as_u64() != Some(0) || q["messages_unacknowledged"].as_u64() != Some(0)
            })
            .map(|q| {
                format!(
                    "queue {}: {} ready, {} unacknowledged, {} consumers",
                    q["name"], q["messages_ready"], q["messages_unacknowledged"], q["consumers"]
                )
            })
            .collect();
        let connections: Vec<String> = get("connections?columns=name,vhost,client_properties".into())
            .await
            .iter()
            .filter(|c| c["vhost"] == vhost)
            .map(|c| c["client_properties"]["connection_name"].as_str().unwrap_or("?").to_string())
            .collect();
        lines.push(format!("{} connections: {}", connections.len(), connections.join(", ")));
        lines.join("\n")
    }

    /// Deletes the vhost's queues and its own exchanges (not the `amq.*` ones).
    async fn empty(&self, vhost: &str) {
        for (kind, keep) in [("queues", None), ("exchanges", Some("amq."))] {
            let names: Vec<serde_json::Value> = match self
                .call(reqwest::Method::GET, &format!("{kind}/{vhost}?columns=name"))
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(_) => continue,
            };
            for name in names.iter().filter_map(|n| n["name"].as_str()) {
                if name.is_empty() || keep.is_some_and(|prefix| name.starts_with(prefix)) {
                    continue;
                }
                let _ = self.call(reqwest::Method::DELETE, &format!("{kind}/{vhost}/{name}")).send().await;
            }
        }
    }
}

/// An exclusive lock on a file of the temporary folder, shared by every
/// test process of this machine; held until the returned file is dropped.
async fn global_lock(name: &'static str) -> std::fs::File {
    tokio::task::spawn_blocking(move || {
        let file = lock_file(name);
        file.lock().unwrap_or_else(|e| panic!("lock {name}: {e}"));
        file
    })
    .await
    .expect("a lock")
}

/// The file `name` of the temporary folder, made if missing, to lock.
fn lock_file(name: &str) -> std::fs::File {
    let path = std::env::temp_dir().join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_or(what, timeout, || {
        let next = check();
        async move { next.await.ok_or_else(String::new) }
    })
    .await
}

/// Like [`eventually`], but `check` says what it saw instead (`Err`), and the
/// panic after `timeout` shows the last of it: where a saga stopped.
pub async fn eventually_or<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}{seen}"
                )
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Generates a `#[tokio::test]` per back end (`sqlite`, `postgres`) for each
/// `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::db::Backend;
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}
