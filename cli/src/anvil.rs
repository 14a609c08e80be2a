//! The dev chain: anvil (Foundry), spawned on a port of 127.0.0.1, for
//! `bourse up` and the tests; and what a developer does to it: send ETH from
//! its funded account (the faucet), mine blocks, take and go back to
//! snapshots (a reorg). Nothing here is for a real network.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use chain_service::node::Faucet;
use tokio::process::{Child, Command};

/// anvil's first funded account (a published development key, 10,000 ETH on
/// every fresh anvil): the dev stack's faucet. Never on a real network.
pub const FAUCET_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// anvil's chain id.
pub const CHAIN_ID: u64 = 31_337;

/// Where `scripts/infra.sh` (ensure_anvil) installs anvil, unless `$BOURSE_ANVIL_BIN` says.
pub fn binary() -> PathBuf {
    std::env::var_os("BOURSE_ANVIL_BIN").map_or_else(
        || PathBuf::from("/var/tmp/bourse-tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
        PathBuf::from,
    )
}

/// A running anvil; stopped when dropped.
pub struct Anvil {
    child: Child,
    pub port: u16,
    pub url: String,
    provider: DynProvider,
    faucet: Faucet,
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Anvil {
    /// Starts anvil on 127.0.0.1:`port` (0: a free one); `state`: a file it
    /// loads at start and writes on exit; `block_seconds`: a block every so
    /// many seconds (`None`: a block per transaction, and when asked).
    pub async fn start(port: u16, state: Option<&Path>, block_seconds: Option<u64>) -> anyhow::Result<Self> {
        let bin = binary();
        anyhow::ensure!(
            bin.exists(),
            "no anvil at {} (run `bash scripts/infra.sh ensure_anvil`, or set BOURSE_ANVIL_BIN)",
            bin.display()
        );
        let port = if port == 0 { free_port()? } else { port };
        let mut command = Command::new(&bin);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", &CHAIN_ID.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(state) = state {
            command.arg("--state").arg(state);
        }
        if let Some(seconds) = block_seconds {
            command.args(["--block-time", &seconds.to_string()]);
        }
        let child = command.spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let faucet = Faucet::new(&url, FAUCET_KEY)?;
        let provider = ProviderBuilder::new().connect_http(url.parse()?).erased();
        let mut anvil = Self { child, port, url, provider, faucet };
        anvil.wait_answering().await?;
        Ok(anvil)
    }

    async fn wait_answering(&mut self) -> anyhow::Result<()> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("anvil on {} exited at start ({status}); is the port taken?", self.url);
            }
            if self.provider.get_chain_id().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("anvil did not answer on {} within 10 s", self.url)
    }

    /// Sends `wei` from the faucet to `to`; returns the transaction hash once mined.
    pub async fn send_eth(&self, to: &str, wei: u128) -> anyhow::Result<String> {
        // chain-service's own faucet: its nonce is read from the chain each
        // time, so a revert to a snapshot does not leave it ahead.
        let hash = self.faucet.send(to, wei).await?;
        for _ in 0..600 {
            if let Some(receipt) = self.provider.get_transaction_receipt(hash.parse()?).await? {
                anyhow::ensure!(receipt.status(), "the faucet's transfer {hash} reverted");
                return Ok(hash);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the faucet's transfer {hash} was not mined in 30 s")
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) -> anyhow::Result<()> {
        let _: serde_json::Value =
            self.provider.raw_request("anvil_mine".into(), (U256::from(blocks),)).await?;
        Ok(())
    }

    pub async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.provider.get_block_number().await?)
    }

    /// The chain's state now, to go back to with [`Anvil::revert`].
    pub async fn snapshot(&self) -> anyhow::Result<U256> {
        Ok(self.provider.raw_request("evm_snapshot".into(), ()).await?)
    }

    /// Goes back to a snapshot: the blocks mined since leave the chain (a reorg
    /// once new blocks are mined in their place).
    pub async fn revert(&self, snapshot: U256) -> anyhow::Result<()> {
        let reverted: bool = self.provider.raw_request("evm_revert".into(), (snapshot,)).await?;
        anyhow::ensure!(reverted, "anvil did not revert to snapshot {snapshot}");
        Ok(())
    }

    /// The balance of `address` on chain, in wei.
    pub async fn balance(&self, address: &str) -> anyhow::Result<U256> {
        Ok(self.provider.get_balance(address.parse()?).await?)
    }

    /// Transactions `address` has had mined: one per nonce it used.
    pub async fn nonce(&self, address: &str) -> anyhow::Result<u64> {
        Ok(self.provider.get_transaction_count(address.parse()?).latest().await?)
    }

    /// Mining on every transaction (`true`, the default) or only on [`Anvil::mine`]
    /// (`false`: transactions wait in the mempool).
    pub async fn set_automine(&self, on: bool) -> anyhow::Result<()> {
        let _: serde_json::Value = self.provider.raw_request("evm_setAutomine".into(), (on,)).await?;
        Ok(())
    }

    /// Puts `code` at `address` (a contract that, say, refuses every payment).
    pub async fn set_code(&self, address: &str, code: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self.provider.raw_request("anvil_setCode".into(), (address, code)).await?;
        Ok(())
    }

    /// The transaction `hash` as the node has it (`None`: unknown to it).
    pub async fn transaction(&self, hash: &str) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(self.provider.raw_request("eth_getTransactionByHash".into(), (hash,)).await?)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
