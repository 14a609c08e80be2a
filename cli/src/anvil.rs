//! The dev chain: anvil (Foundry), spawned on a port of 127.0.0.1, for
//! `bourse up` and the tests, with the dev USDT (an ERC-20,
//! `chain-service/contracts/DevUSDT.sol`) deployed on it; and what a
//! developer does to it: send ETH from its funded account (the faucet) or
//! mint USDT, mine blocks, take and go back to snapshots (a reorg). Nothing
//! here is for a real network.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use chain_service::node::Faucet;
use tokio::process::{Child, Command};

/// anvil's first funded account (a published development key, 10,000 ETH on
/// every fresh anvil): the dev stack's faucet. Never on a real network.
pub const FAUCET_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// anvil's second funded account: the dev stacks' gas wallet (pays the gas of
/// token withdrawals).
pub const GAS_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// anvil's tenth funded account: deploys the dev USDT as its first
/// transaction, so that the token has the same address on every dev chain.
const DEPLOYER_KEY: &str = "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

/// The dev USDT's bytecode (`bash scripts/build-contracts.sh` rebuilds it).
const DEV_USDT: &str = include_str!("../../chain-service/contracts/DevUSDT.bin");

/// The dev USDT's decimals (Tether's).
pub const USDT_DECIMALS: u32 = 6;

/// anvil's chain id.
pub const CHAIN_ID: u64 = 31_337;

/// A dev chain as a stack uses it: where it answers, and its USDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevChain {
    pub rpc_url: String,
    pub usdt: Address,
}

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
    /// The dev USDT's contract.
    pub usdt: Address,
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
        let mut command = Command::new(&bin);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", &CHAIN_ID.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(state) = state {
            command.arg("--state").arg(state);
        }
        if let Some(seconds) = block_seconds {
            command.args(["--block-time", &seconds.to_string()]);
        }
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("anvil's output"))?;
        // Port 0: anvil binds a free one itself and says which (no other
        // process can take it between a probe and anvil's bind).
        let port = listening_port(stdout).await.map_err(|e| anyhow::anyhow!("anvil did not start: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let faucet = Faucet::new(&url, FAUCET_KEY)?;
        let provider = ProviderBuilder::new().connect_http(url.parse()?).erased();
        let deployer: PrivateKeySigner = DEPLOYER_KEY.parse()?;
        let usdt = deployer.address().create(0);
        let mut anvil = Self { child, port, url, provider, faucet, usdt };
        anvil.wait_answering().await?;
        anvil.deploy_usdt(deployer).await?;
        Ok(anvil)
    }

    /// The chain as a stack configures it.
    pub fn dev_chain(&self) -> DevChain {
        DevChain { rpc_url: self.url.clone(), usdt: self.usdt }
    }

    /// Deploys the dev USDT (the faucet its minter) unless a kept state has it already.
    async fn deploy_usdt(&self, deployer: PrivateKeySigner) -> anyhow::Result<()> {
        use alloy::network::TransactionBuilder;
        if !self.provider.get_code_at(self.usdt).await?.is_empty() {
            return Ok(());
        }
        let sent = self.provider.get_transaction_count(deployer.address()).await?;
        anyhow::ensure!(
            sent == 0,
            "the dev USDT's deployer has sent {sent} transactions: not at {}",
            self.usdt
        );
        let minter: PrivateKeySigner = FAUCET_KEY.parse()?;
        let mut code = alloy::hex::decode(DEV_USDT.trim())?;
        code.extend_from_slice(minter.address().into_word().as_slice());
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(deployer))
            .connect_http(self.url.parse()?);
        let tx = alloy::rpc::types::TransactionRequest::default().with_deploy_code(code);
        let receipt = provider.send_transaction(tx).await?.get_receipt().await?;
        anyhow::ensure!(
            receipt.status() && receipt.contract_address == Some(self.usdt),
            "the dev USDT was not deployed at {}: {receipt:?}",
            self.usdt
        );
        Ok(())
    }

    /// Mints `units` of the dev USDT to `to`; returns the transaction hash once mined.
    pub async fn mint_usdt(&self, to: &str, units: u128) -> anyhow::Result<String> {
        let hash = self.faucet.mint(self.usdt, to, units).await?;
        self.mined(&hash).await?;
        Ok(hash)
    }

    /// `owner`'s dev USDT, in token units.
    pub async fn usdt_balance(&self, owner: &str) -> anyhow::Result<u128> {
        let node = chain_service::node::Node::connect(&self.url)?;
        Ok(node.token_balance(self.usdt, owner.parse()?).await?)
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
        self.mined(&hash).await?;
        Ok(hash)
    }

    /// Waits until the faucet's transaction `hash` is mined (and did not revert).
    async fn mined(&self, hash: &str) -> anyhow::Result<()> {
        for _ in 0..3_000 {
            if let Some(receipt) = self.provider.get_transaction_receipt(hash.parse()?).await? {
                anyhow::ensure!(receipt.status(), "the faucet's transaction {hash} reverted");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the faucet's transaction {hash} was not mined in 30 s")
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

    /// What the mined transaction `hash` burnt in gas (gas used times its price), in wei.
    pub async fn gas_cost(&self, hash: &str) -> anyhow::Result<u128> {
        let receipt = self
            .provider
            .get_transaction_receipt(hash.parse()?)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{hash} is not mined"))?;
        Ok(u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price))
    }

    /// Sends `wei` out of `from` without its key (anvil impersonates the
    /// address): a transfer the exchange does not know about, as a thief with
    /// a leaked key would make. Returns the hash once mined.
    pub async fn transfer_out_of(&self, from: &str, to: &str, wei: u128) -> anyhow::Result<String> {
        use alloy::network::TransactionBuilder;
        let (from, to): (Address, Address) = (from.parse()?, to.parse()?);
        let _: serde_json::Value =
            self.provider.raw_request("anvil_impersonateAccount".into(), (from,)).await?;
        let request = alloy::rpc::types::TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_value(U256::from(wei));
        let hash = format!("{:#x}", self.provider.send_transaction(request).await?.tx_hash());
        let _: serde_json::Value =
            self.provider.raw_request("anvil_stopImpersonatingAccount".into(), (from,)).await?;
        self.mined(&hash).await?;
        Ok(hash)
    }

    /// The transaction `hash` as the node has it (`None`: unknown to it).
    pub async fn transaction(&self, hash: &str) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(self.provider.raw_request("eth_getTransactionByHash".into(), (hash,)).await?)
    }
}

/// Reads anvil's output until it says where it listens (`Listening on
/// 127.0.0.1:PORT`), then keeps draining it (a full pipe would stop anvil).
async fn listening_port(stdout: tokio::process::ChildStdout) -> anyhow::Result<u16> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(address) = line.trim().strip_prefix("Listening on ") {
                let port = address.rsplit(':').next().and_then(|p| p.parse().ok());
                return port.ok_or_else(|| anyhow::anyhow!("no port in `{line}`"));
            }
        }
        anyhow::bail!("it exited before listening (is the port taken?)")
    })
    .await
    .map_err(|_| anyhow::anyhow!("it did not say where it listens within 30 s"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}
