//! chain-service's own settings (`CHAIN__SETTINGS__*`): the node it follows,
//! how many confirmations credit a deposit, the key that seals the wallets'
//! private keys, and which currencies live on the chain.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use bourse_common::reference::ReferenceData;
use bourse_common::secret::Secret;
use rust_decimal::Decimal;
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
    /// ERC-20 tokens credited and withdrawn as ledger currencies (`[[settings.tokens]]`).
    pub tokens: Vec<TokenSettings>,
    /// The gas wallet: pays the gas of token withdrawals by sending the
    /// user's wallet the ETH its transfer costs first (each such payment is a
    /// transaction of its own, counted). Token withdrawals fail without it.
    pub gas_key: Option<Secret>,
    /// A development faucet: `POST /api/users/me/wallets/faucet` sends ETH from
    /// this key's account to the caller's wallet on the chain, credited as any
    /// deposit. Off unless set (the dev stacks set anvil's funded account);
    /// never on a real network.
    pub faucet_key: Option<Secret>,
    /// The most one faucet call sends, per currency (a chain currency missing here: none).
    pub faucet_max: BTreeMap<String, Decimal>,
    pub withdrawals: WithdrawalSettings,
    pub settlement: SettlementSettings,
    pub reference: ReferenceData,
}

/// Trades mirrored on the chain (`CHAIN__SETTINGS__SETTLEMENT__*`): each
/// window's net per wallet and asset moves through the clearing wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettlementSettings {
    /// Off: trades settle in the ledger alone (a stack whose chain
    /// currencies also come from ledger top-ups cannot mirror them).
    pub enabled: bool,
    /// A window closes this long after its first trade...
    pub window_ms: u64,
    /// ... or at this many trades, whichever comes first.
    pub window_trades: u32,
    /// The clearing wallet: collects what each window's payers owe, then pays
    /// the receivers and the fee wallet. Required when enabled.
    pub clearing_key: Option<Secret>,
    /// Where the trading fees go on chain (a wallet of the treasury; only its
    /// address is needed here). Required when enabled.
    pub fee_address: Option<Address>,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self { enabled: false, window_ms: 10_000, window_trades: 500, clearing_key: None, fee_address: None }
    }
}

/// An ERC-20 token on the chain, held in the ledger as `currency` (a new
/// token is a new entry here and a currency in the reference data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub currency: String,
    /// The token's contract.
    pub address: Address,
    /// The token's decimals (USDT: 6); at least the currency's ledger scale.
    pub decimals: u32,
    /// Gas of one `transfer` (a withdrawal).
    #[serde(default = "TokenSettings::default_transfer_gas")]
    pub transfer_gas: u64,
}

impl TokenSettings {
    fn default_transfer_gas() -> u64 {
        100_000
    }
}

/// A currency on the chain, as deposits and withdrawals move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub currency: String,
    /// Chain units per ledger unit: 10^decimals.
    pub decimals: u32,
    /// `None`: the native coin; else the token's contract.
    pub token: Option<Address>,
    /// Gas of one transfer.
    pub transfer_gas: u64,
}

/// Withdrawals and the transactions that send them (`CHAIN__SETTINGS__WITHDRAWALS__*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WithdrawalSettings {
    /// The exchange's fee per withdrawal, per currency: held with the amount,
    /// debited when the chain confirms it (it pays the gas). A chain currency
    /// missing here withdraws for free.
    pub fee: BTreeMap<String, Decimal>,
    /// The most one withdrawal may send, per currency (missing: no cap).
    pub max_amount: BTreeMap<String, Decimal>,
    /// Withdrawals one user may have on their way at once.
    pub max_in_flight: u32,
    /// How long a request waits for payment-service to hold the funds, so
    /// that a refusal (insufficient funds) is its answer (422); past that it
    /// answers `requested` (202) and the refusal shows on the withdrawal.
    pub hold_wait_ms: u64,
    /// A transaction not mined this long is sent again, same nonce, higher fee.
    pub replace_after_ms: u64,
    /// The tip (priority fee per gas) of a first attempt, in wei.
    pub priority_fee_wei: u64,
    /// How much a replacement raises both fees, in percent (nodes take no
    /// replacement under 10 %).
    pub fee_bump_percent: u32,
}

impl Default for WithdrawalSettings {
    fn default() -> Self {
        Self {
            fee: BTreeMap::from([("ETH".into(), Decimal::new(5, 4)), ("USDT".into(), Decimal::ONE)]),
            max_amount: BTreeMap::from([
                ("ETH".into(), Decimal::from(100)),
                ("USDT".into(), Decimal::from(1_000_000)),
            ]),
            max_in_flight: 5,
            hold_wait_ms: 5_000,
            replace_after_ms: 60_000,
            priority_fee_wei: 1_000_000_000,
            fee_bump_percent: 25,
        }
    }
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
            tokens: Vec::new(),
            gas_key: None,
            faucet_key: None,
            faucet_max: BTreeMap::from([
                ("ETH".into(), Decimal::from(10)),
                ("USDT".into(), Decimal::from(100_000)),
            ]),
            withdrawals: WithdrawalSettings::default(),
            settlement: SettlementSettings::default(),
            reference: ReferenceData::default(),
        }
    }
}

impl Settings {
    /// The currencies on the chain: the native coin, then the tokens.
    pub fn assets(&self) -> impl Iterator<Item = Asset> + '_ {
        let native = Asset {
            currency: self.native_currency.clone(),
            decimals: crate::domain::NATIVE_DECIMALS,
            token: None,
            transfer_gas: crate::domain::NATIVE_TRANSFER_GAS,
        };
        std::iter::once(native).chain(self.tokens.iter().map(|t| Asset {
            currency: t.currency.clone(),
            decimals: t.decimals,
            token: Some(t.address),
            transfer_gas: t.transfer_gas,
        }))
    }

    /// `currency` on the chain, if it lives there.
    pub fn asset(&self, currency: &str) -> Option<Asset> {
        self.assets().find(|a| a.currency == currency)
    }

    /// The token whose contract is `address`.
    pub fn token(&self, address: &Address) -> Option<Asset> {
        self.assets().find(|a| a.token.as_ref() == Some(address))
    }

    /// The gas wallet's signer, if one is configured.
    pub fn gas_signer(&self) -> anyhow::Result<Option<PrivateKeySigner>> {
        let Some(key) = &self.gas_key else { return Ok(None) };
        let signer = key.expose().parse().map_err(|e| anyhow::anyhow!("settings.gas_key: {e}"))?;
        Ok(Some(signer))
    }

    /// Every chain currency is a currency of the reference data, with no
    /// more decimals in the ledger than on the chain.
    pub fn validate_assets(&self) -> anyhow::Result<()> {
        for asset in self.assets() {
            let Some(currency) = self.reference.currency(&asset.currency) else {
                anyhow::bail!("chain currency `{}` is not in settings.reference.currencies", asset.currency);
            };
            anyhow::ensure!(
                currency.scale <= asset.decimals,
                "{}: a ledger scale of {} is finer than its {} decimals on the chain",
                asset.currency,
                currency.scale,
                asset.decimals
            );
        }
        self.gas_signer()?;
        self.clearing_signer()?;
        Ok(())
    }

    /// The clearing wallet's signer and the fee wallet's address, when
    /// settlement on chain is on (both required then, with a gas wallet).
    pub fn clearing_signer(&self) -> anyhow::Result<Option<(PrivateKeySigner, Address)>> {
        let s = &self.settlement;
        if !s.enabled {
            return Ok(None);
        }
        let key = s.clearing_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!("settings.settlement.clearing_key is required when settlement is enabled")
        })?;
        let signer =
            key.expose().parse().map_err(|e| anyhow::anyhow!("settings.settlement.clearing_key: {e}"))?;
        let fees = s.fee_address.ok_or_else(|| {
            anyhow::anyhow!("settings.settlement.fee_address is required when settlement is enabled")
        })?;
        anyhow::ensure!(
            self.gas_key.is_some(),
            "settlement on chain needs a gas wallet (settings.gas_key): it pays every settlement transaction's gas"
        );
        Ok(Some((signer, fees)))
    }

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
