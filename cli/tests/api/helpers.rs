//! A whole stack per test (its own RabbitMQ vhost and databases) and a client
//! that talks to it only through the gateway, as a user would.

use std::collections::HashMap;
use std::time::Duration;

use bourse_cli::anvil::Anvil;
use bourse_cli::mailbox::{Mail, Mailbox};
use bourse_cli::stack::{self, Stack, StackOptions};
use bourse_common::config::MessagingConfig;
use bourse_common::db::Backend;
use bourse_common::testkit::{TestEnv, eventually, eventually_or, free_port};
use notify_service::mailer::SmtpSettings;
use serde_json::{Value, json};

pub struct TestStack {
    pub env: TestEnv,
    /// The options it was started with (its databases, its secrets).
    pub options: StackOptions,
    pub stack: Stack,
    pub http: reqwest::Client,
    /// The stack's own SMTP server (notify-service sends there).
    pub mailbox: Mailbox,
    /// The stack's own chain (chain-service follows it).
    pub chain: Anvil,
}

pub const WAIT: Duration = Duration::from_secs(30);

/// The subject of the e-mail with a new user's deposit address.
pub const WALLET_MAIL: &str = "Your deposit address";

/// chain-service in a test stack: quick rounds, 3 confirmations.
pub const CHAIN_SETTINGS: &str = "[settings]\npoll_interval_ms = 100\nconfirmations = 3\n[settings.withdrawals]\nreplace_after_ms = 1000\n";

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";

impl TestStack {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, None, &[], SmtpSettings::default()).await
    }

    /// With `messaging` for every service, `mailbox_args` for the SMTP server
    /// (`--reject REGEX`) and `smtp` for notify-service's client (its port is the mailbox's).
    pub async fn start_with(
        backend: Backend,
        messaging: Option<MessagingConfig>,
        mailbox_args: &[&str],
        smtp: SmtpSettings,
    ) -> Self {
        Self::launch(backend, messaging, mailbox_args, smtp, &[], |_| {}).await
    }

    /// As [`TestStack::start_with`], with the stack's options changed by `tune`
    /// (the faucet off, the gateway's real limits).
    pub async fn start_tuned(
        backend: Backend,
        messaging: Option<MessagingConfig>,
        mailbox_args: &[&str],
        smtp: SmtpSettings,
        tune: impl FnOnce(&mut StackOptions),
    ) -> Self {
        Self::launch(backend, messaging, mailbox_args, smtp, &[], tune).await
    }

    /// As `bourse up` runs: ETH and USDT only from the chain, trades settled
    /// on chain (chain-service configured by `chain_toml`), the audit
    /// reconciling the wallets; payment-service's audit on demand, no grace.
    pub async fn start_settling(backend: Backend, chain_toml: &str) -> Self {
        let payment = "[settings]\naudit_grace_ms = 0\naudit_interval_ms = 0\n";
        let configs = [("chain-service", chain_toml), ("payment-service", payment)];
        Self::launch(backend, None, &[], SmtpSettings::default(), &configs, |o| {
            o.top_up_chain_currencies = false;
        })
        .await
    }

    /// With a TOML configuration for some services: `(service name, TOML)`,
    /// read as that service's `--config` (e.g. `("order-service", "[settings]\nmax_open_orders = 3")`).
    pub async fn start_configured(backend: Backend, configs: &[(&str, &str)]) -> Self {
        Self::launch(backend, None, &[], SmtpSettings::default(), configs, |_| {}).await
    }

    async fn launch(
        backend: Backend,
        messaging: Option<MessagingConfig>,
        mailbox_args: &[&str],
        smtp: SmtpSettings,
        configs: &[(&str, &str)],
        tune: impl FnOnce(&mut StackOptions),
    ) -> Self {
        // The services' logs, shown by nextest when a test fails.
        bourse_common::telemetry::init();
        let mut env = TestEnv::new(backend).await;
        let smtp_port = free_port();
        let mailbox = Mailbox::start(&env.tmp_dir().join("mail"), smtp_port, mailbox_args).await.unwrap();
        let chain = Anvil::start(0, None, None).await.unwrap();
        let databases = stack::service_names()
            .map(|name| (name.to_string(), env.database(&name.replace('-', "_")).url))
            .collect();
        let mut options = StackOptions {
            data_dir: env.tmp_dir().to_path_buf(),
            amqp_url: env.amqp_url.clone(),
            port: Some(0),
            databases,
            smtp: Some(SmtpSettings { port: smtp_port, ..smtp }),
            messaging,
            // Each test stack its own secrets; top-up on as the dev faucet;
            // many registrations from one address.
            secrets: stack::StackSecrets::random(),
            faucet: true,
            top_up_chain_currencies: true,
            auth_limit_per_minute: Some(100_000),
            dev_chain: Some(chain.dev_chain()),
            // chain-service reads the chain often and credits after 3 blocks,
            // unless the test configures it.
            config_files: std::iter::once(&("chain-service", CHAIN_SETTINGS))
                .filter(|_| !configs.iter().any(|(service, _)| *service == "chain-service"))
                .chain(configs)
                .map(|(service, toml)| {
                    let file = env.tmp_dir().join(format!("{service}.toml"));
                    std::fs::write(&file, toml).unwrap();
                    (service.to_string(), file)
                })
                .collect(),
        };
        tune(&mut options);
        let stack = stack::start(&options).await.expect("the stack starts");
        Self { env, options, stack, http: reqwest::Client::new(), mailbox, chain }
    }

    pub async fn stop(mut self) {
        self.stack.stop().await;
        self.mailbox.stop().await;
        self.env.cleanup().await;
    }

    /// `bourse audit` on this stack's payment-service database with `config`
    /// (payment-service's TOML): its exit code and what it printed. Awaited,
    /// never blocking: the stack runs on this test's runtime, and a blocked
    /// runtime would stall every connection its tasks own (the chain node's).
    pub async fn bourse_audit(&self, config: &str) -> (i32, String) {
        let file = self.env.tmp_dir().join("bourse-audit.toml");
        std::fs::write(&file, config).unwrap();
        let payment = &self.options.databases["payment-service"];
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bourse"))
            .args(["audit", "--database", payment, "--amqp-url", &self.env.amqp_url])
            .arg("--config")
            .arg(&file)
            .output()
            .await
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code().unwrap_or(-1), text)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.gateway_url())
    }

    /// Sends a request through the gateway; returns the status and the JSON body (or `null`).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// As [`TestStack::call`], waiting out the gateway's per-client rate
    /// limit (429) as a client would: for tests of something else that send
    /// bursts of requests.
    pub async fn call_patiently(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        loop {
            let answer = self.call(method, path, token, body.clone()).await;
            if answer.0 != 429 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The e-mails received for `address` so far, oldest first, but the
    /// deposit address every registration also brings (chain-service's, sent
    /// a moment before or after the welcome): the tests of e-mail flows count
    /// theirs; the chain tests read that one with [`TestStack::all_mails_to`].
    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        let mut mails = self.all_mails_to(address);
        mails.retain(|m| m.subject.as_deref() != Some(WALLET_MAIL));
        mails
    }

    /// Every e-mail received for `address` so far, oldest first.
    pub fn all_mails_to(&self, address: &str) -> Vec<Mail> {
        self.mailbox
            .received()
            .unwrap()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == address))
            .collect()
    }

    /// Waits until `address` has received `n` e-mails; returns them.
    pub async fn wait_mails(&self, address: &str, n: usize) -> Vec<Mail> {
        eventually(&format!("{n} e-mail(s) to {address}"), WAIT, || async {
            let mails = self.mails_to(address);
            (mails.len() >= n).then_some(mails)
        })
        .await
    }

    /// Registers a user and returns their token.
    pub async fn user(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        let (status, body) = self.call("POST", "/api/auth/users", None, Some(credentials)).await;
        assert_eq!(status, 201, "{body}");
        self.token(email).await
    }

    /// Registers a user, makes them an administrator the way an operator
    /// does (`bourse admin grant`, on the gateway's database) and returns
    /// their token.
    pub async fn admin(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        let (status, body) = self.call("POST", "/api/auth/users", None, Some(credentials)).await;
        assert_eq!(status, 201, "{body}");
        self.grant_admin(email).await;
        self.token(email).await
    }

    /// `bourse admin grant <email>` against this stack's gateway database.
    pub async fn grant_admin(&self, email: &str) {
        let database = &self.options.databases[bourse_common::registry::GATEWAY.name];
        bourse_cli::admin::grant(database, email, bourse_common::auth::Role::Admin).await.unwrap();
    }

    /// A token for a user registered with [`PASSWORD`].
    pub async fn token(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        let (status, body) = self.call("POST", "/api/token", None, Some(credentials)).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Publishes `envelope` on `exchange` (`""`: straight into the queue
    /// `routing_key`), as a producer would, confirmed by the broker.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &bourse_common::envelope::Envelope,
    ) {
        let conn = bourse_common::amqp::connect(&self.env.amqp_url, "test-publisher").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let options = lapin::options::BasicPublishOptions::default();
        let (body, properties) = (envelope.to_json(), envelope.amqp_properties());
        ch.basic_publish(exchange.into(), routing_key.into(), options, body.as_bytes(), properties)
            .await
            .unwrap()
            .await
            .unwrap();
        conn.close(200, "published".into()).await.unwrap();
    }

    pub async fn top_up(&self, token: &str, currency: &str, amount: &str) {
        let path = format!("/api/users/me/accounts/{currency}/top-up");
        let (status, body) = self.call("POST", &path, Some(token), Some(json!({"amount": amount}))).await;
        assert_eq!(status, 200, "{body}");
    }

    /// `currency -> (available, reserved)`, as the user sees them.
    pub async fn accounts(&self, token: &str) -> HashMap<String, (String, String)> {
        let (status, body) = self.call("GET", "/api/users/me/accounts", Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let s = |k: &str| {
                    a[k].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap().normalize().to_string()
                };
                (a["currency"].as_str().unwrap().to_string(), (s("available"), s("reserved")))
            })
            .collect()
    }

    pub async fn place(&self, token: &str, order: Value) -> Value {
        let (status, body) = self.call_patiently("POST", "/api/orders", Some(token), Some(order)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "pending");
        body
    }

    /// Waits until the order has `status`; returns it.
    pub async fn order_reaches(&self, token: &str, id: &str, status: &str) -> Value {
        let path = format!("/api/orders/{id}");
        eventually_or(&format!("order {id} {status}"), WAIT, || async {
            let (code, body) = self.call("GET", &path, Some(token), None).await;
            // What the order looks like when it never gets there says where it stopped.
            if code == 200 && body["status"] == status {
                Ok(body)
            } else {
                Err(format!(", last seen: {code} {body}"))
            }
        })
        .await
    }
}

pub fn limit_buy(market: &str, price: &str, quantity: &str) -> Value {
    json!({"market": market, "side": "buy", "type": "limit", "price": price, "quantity": quantity})
}

pub fn pair(available: &str, reserved: &str) -> (String, String) {
    (available.to_string(), reserved.to_string())
}

/// Waits until the user's `currency` account shows `expected` (settlement is
/// asynchronous: an order can be `filled` a moment before its money moves);
/// returns every account.
pub async fn settled(
    t: &TestStack,
    token: &str,
    currency: &str,
    expected: (String, String),
) -> HashMap<String, (String, String)> {
    let mut last = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        last = t.accounts(token).await;
        if last.get(currency) == Some(&expected) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{currency} never became {expected:?}: {last:?}");
}

/// The fee account, as an administrator sees it.
pub async fn fees(t: &TestStack) -> Vec<(String, String)> {
    let admin = t.admin("admin@bourse.local").await;
    let (status, body) = t.call("GET", "/api/admin/payments/fees", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let amount: rust_decimal::Decimal = f["amount"].as_str().unwrap().parse().unwrap();
            (f["currency"].as_str().unwrap().to_string(), amount.normalize().to_string())
        })
        .collect()
}
