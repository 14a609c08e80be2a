//! chain-service's own settings (`CHAIN__SETTINGS__*`): the node it follows,
//! how many confirmations credit a deposit, the key that seals the wallets'
//! private keys, and which currencies live on the chain.

use bourse_common::reference::ReferenceData;
use bourse_common::secret::Secret;
use serde::{Deserialize, Serialize};

/// chain-service's settings (`CHAIN__SETTINGS__RPC_URL=http://127.0.0.1:8545`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The node's JSON-RPC endpoint (anvil in development; any EVM node).
    pub rpc_url: String,
    /// The chain the node must serve: chain-service refuses to follow another.
    pub chain_id: u64,
    /// Blocks on top of a deposit's block (its own included) before it is credited.
    pub confirmations: u64,
    /// How often the node is asked for new blocks.
    pub poll_interval_ms: u64,
    /// The most blocks read in one round (a restart far behind catches up in steps).
    pub max_blocks_per_round: u64,
    /// The first block followed when the database has no cursor yet (`None`:
    /// the node's head at that moment: nothing older is a deposit).
    pub start_block: Option<u64>,
    /// Seals each wallet's private key at rest (required; `bourse up`
    /// generates one in its data folder). Never logged, never sent.
    pub wallet_master_key: Option<Secret>,
    /// The native coin of the chain (ETH), credited in the ledger's scale.
    pub native_currency: String,
    /// A development faucet: `POST /api/users/me/wallets/faucet` sends ETH from
    /// this key's account to the caller's wallet on the chain, credited as any
    /// deposit. Off unless set (the dev stacks set anvil's funded account);
    /// never on a real network.
    pub faucet_key: Option<Secret>,
    /// The most one faucet call sends, in ETH.
    pub faucet_max: rust_decimal::Decimal,
    pub reference: ReferenceData,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 31_337,
            confirmations: 6,
            poll_interval_ms: 1_000,
            max_blocks_per_round: 200,
            start_block: None,
            wallet_master_key: None,
            native_currency: "ETH".into(),
            faucet_key: None,
            faucet_max: rust_decimal::Decimal::from(10),
            reference: ReferenceData::default(),
        }
    }
}

impl Settings {
    /// The master key, or why the service cannot start without one.
    pub fn master_key(&self) -> anyhow::Result<&Secret> {
        match &self.wallet_master_key {
            Some(key) if key.expose().len() >= 32 => Ok(key),
            Some(_) => anyhow::bail!("settings.wallet_master_key: at least 32 characters"),
            None => anyhow::bail!(
                "settings.wallet_master_key is not set (CHAIN__SETTINGS__WALLET_MASTER_KEY): \
                 it seals the users' private keys; `bourse up` generates one in its data folder"
            ),
        }
    }
}
