//! A stack of its own on this machine, as a test starts one: its own
//! RabbitMQ vhost, fresh databases of a back end, its own SMTP server and its
//! own dev chain, all removed afterwards. `bourse chaos` and the benchmarks
//! run on one (they need the `BOURSE_TEST_*` servers that `scripts/test.sh`
//! or `eval "$(bash scripts/infra.sh env)"` provide).

use std::collections::HashMap;

use bourse_common::db::Backend;
use bourse_common::testkit::{TestEnv, free_port};

use crate::anvil::Anvil;
use crate::mailbox::Mailbox;
use crate::stack::{self, Stack, StackOptions, StackSecrets};

pub struct Isolated {
    pub env: TestEnv,
    pub options: StackOptions,
    pub stack: Stack,
    pub mailbox: Mailbox,
    pub chain: Anvil,
}

impl Isolated {
    /// Starts it; `configs`: a TOML configuration for some services, as
    /// `(service name, TOML)`.
    pub async fn start(backend: Backend, configs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut env = TestEnv::new(backend).await;
        let smtp_port = free_port();
        let mailbox = Mailbox::start(&env.tmp_dir().join("mail"), smtp_port, &[]).await?;
        let chain = Anvil::start(0, None, None).await?;
        let databases = stack::service_names()
            .map(|name| (name.to_string(), env.database(&name.replace('-', "_")).url))
            .collect();
        let mut config_files = HashMap::new();
        for (service, toml) in configs {
            let file = env.tmp_dir().join(format!("{service}.toml"));
            std::fs::write(&file, toml)?;
            config_files.insert(service.to_string(), file);
        }
        let options = StackOptions {
            data_dir: env.tmp_dir().to_path_buf(),
            amqp_url: env.amqp_url.clone(),
            port: Some(0),
            databases,
            smtp: Some(notify_service::mailer::SmtpSettings { port: smtp_port, ..Default::default() }),
            messaging: None,
            secrets: StackSecrets::random(),
            faucet: true,
            top_up_chain_currencies: true,
            auth_limit_per_minute: Some(100_000),
            config_files,
            dev_chain: Some(chain.dev_chain()),
        };
        let stack = stack::start(&options).await?;
        Ok(Self { env, options, stack, mailbox, chain })
    }

    pub async fn stop(mut self) {
        self.stack.stop().await;
        self.mailbox.stop().await;
        drop(self.chain);
        self.env.cleanup().await;
    }
}
