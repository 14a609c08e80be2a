//! The chain, as chain-service reads it: through alloy's JSON-RPC provider
//! (the maintained successor of the `web3` crate). Only what the service
//! needs: the head, a block's identity and its native transfers, receipts,
//! balances and nonces, and handing signed transactions to the node.

use std::collections::HashMap;

use alloy::consensus::Transaction as _;
use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};

/// A node that did not answer, or answered nonsense: the watcher waits and
/// asks again (a failing node is never a failing deposit).
#[derive(Debug, thiserror::Error)]
#[error("chain node: {0}")]
pub struct NodeError(pub String);

fn node_error(e: impl std::fmt::Display) -> NodeError {
    NodeError(e.to_string())
}

/// A block's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockId {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
}

impl BlockId {
    fn of(header: &alloy::rpc::types::Header) -> Self {
        Self {
            number: header.number,
            hash: format!("{:#x}", header.hash),
            parent_hash: format!("{:#x}", header.parent_hash),
        }
    }
}

alloy::sol! {
    /// What chain-service calls on a token: ERC-20's `transfer`, `balanceOf`
    /// and `Transfer` event, and the dev token's `mint` (the dev faucet's).
    interface Erc20 {
        event Transfer(address indexed from, address indexed to, uint256 value);
        function transfer(address to, uint256 value) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        function mint(address to, uint256 value) external;
    }
}

/// A transfer that executed, to one of the addresses asked about: native, or
/// of a token (a `Transfer` log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub tx_hash: String,
    /// Native: the transaction's index in its block; a token's: the log's index.
    pub index: u64,
    /// `None`: native; else the token's contract.
    pub token: Option<Address>,
    /// Lower-case hex, as [`key`] spells addresses.
    pub from: String,
    pub to: String,
    /// In chain units (wei, token units).
    pub value: u128,
}

/// How addresses are compared: lower-case hex with `0x`.
pub fn key(address: &Address) -> String {
    format!("{address:#x}")
}

/// A block with the transfers to watched addresses in it.
#[derive(Debug, Clone)]
pub struct Block {
    pub id: BlockId,
    pub transfers: Vec<Transfer>,
}

/// The development faucet: an account that sends ETH, one transfer at a time
/// (its nonce read from the chain under a lock, so two calls never share one).
pub struct Faucet {
    provider: DynProvider,
    from: Address,
    sending: tokio::sync::Mutex<()>,
}

impl Faucet {
    pub fn new(rpc_url: &str, key: &str) -> anyhow::Result<Self> {
        let signer: alloy::signers::local::PrivateKeySigner =
            key.parse().map_err(|e| anyhow::anyhow!("settings.faucet_key: {e}"))?;
        let from = signer.address();
        let url = rpc_url.parse().map_err(|e| anyhow::anyhow!("settings.rpc_url `{rpc_url}`: {e}"))?;
        let wallet = alloy::network::EthereumWallet::from(signer);
        Ok(Self {
            provider: ProviderBuilder::new().wallet(wallet).connect_http(url).erased(),
            from,
            sending: Default::default(),
        })
    }

    /// Sends `wei` to `to`; returns the transaction hash once the node took it.
    pub async fn send(&self, to: &str, wei: u128) -> Result<String, NodeError> {
        use alloy::network::TransactionBuilder;
        let to: Address = to.parse().map_err(node_error)?;
        self.submit(alloy::rpc::types::TransactionRequest::default().with_to(to).with_value(U256::from(wei)))
            .await
    }

    /// Mints `units` of the dev `token` to `to` (the faucet's account is its minter).
    pub async fn mint(&self, token: Address, to: &str, units: u128) -> Result<String, NodeError> {
        use alloy::network::TransactionBuilder;
        use alloy::sol_types::SolCall;
        let to: Address = to.parse().map_err(node_error)?;
        let call = Erc20::mintCall { to, value: U256::from(units) };
        self.submit(
            alloy::rpc::types::TransactionRequest::default().with_to(token).with_input(call.abi_encode()),
        )
        .await
    }

    /// Sends `tx` with the account's next nonce (one at a time).
    async fn submit(&self, tx: alloy::rpc::types::TransactionRequest) -> Result<String, NodeError> {
        use alloy::network::TransactionBuilder;
        let _one_at_a_time = self.sending.lock().await;
        let nonce = self.provider.get_transaction_count(self.from).pending().await.map_err(node_error)?;
        let pending = self.provider.send_transaction(tx.with_nonce(nonce)).await.map_err(node_error)?;
        Ok(format!("{:#x}", pending.tx_hash()))
    }
}

impl std::fmt::Debug for Faucet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faucet").field("from", &self.from).finish_non_exhaustive()
    }
}

/// A mined transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub success: bool,
    pub block: BlockId,
    /// Gas used times its effective price, in wei: what the sender paid.
    pub gas_cost: u128,
}

/// What the node said to a signed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    /// Taken, or known already (sent before a restart, or mined: its nonce is used).
    Taken,
    /// Refused, with the node's reason (insufficient funds, underpriced, ...).
    Refused(String),
}

#[derive(Clone)]
pub struct Node {
    provider: DynProvider,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Node")
    }
}

impl Node {
    pub fn connect(rpc_url: &str) -> anyhow::Result<Self> {
        let url = rpc_url.parse().map_err(|e| anyhow::anyhow!("settings.rpc_url `{rpc_url}`: {e}"))?;
        Ok(Self { provider: ProviderBuilder::new().connect_http(url).erased() })
    }

    pub async fn chain_id(&self) -> Result<u64, NodeError> {
        self.provider.get_chain_id().await.map_err(node_error)
    }

    pub async fn head(&self) -> Result<u64, NodeError> {
        self.provider.get_block_number().await.map_err(node_error)
    }

    /// The block at `number` on the chain as the node has it now (`None`: not there).
    pub async fn block_id(&self, number: u64) -> Result<Option<BlockId>, NodeError> {
        let block =
            self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).await.map_err(node_error)?;
        Ok(block.map(|b| BlockId::of(&b.header)))
    }

    /// Transactions `address` has had mined (the next nonce the chain expects from it).
    pub async fn nonce(&self, address: Address) -> Result<u64, NodeError> {
        self.provider.get_transaction_count(address).latest().await.map_err(node_error)
    }

    /// `address`'s native balance at the head, in wei.
    pub async fn balance(&self, address: Address) -> Result<u128, NodeError> {
        self.balance_at(address, BlockNumberOrTag::Latest).await
    }

    /// `address`'s native balance at `block`, in wei.
    pub async fn balance_at(&self, address: Address, block: BlockNumberOrTag) -> Result<u128, NodeError> {
        let wei = self.provider.get_balance(address).block_id(block.into()).await.map_err(node_error)?;
        u128::try_from(wei).map_err(|_| NodeError(format!("{address}: a balance beyond 128 bits")))
    }

    /// `owner`'s balance of `token` at the head, in token units.
    pub async fn token_balance(&self, token: Address, owner: Address) -> Result<u128, NodeError> {
        self.token_balance_at(token, owner, BlockNumberOrTag::Latest).await
    }

    /// `owner`'s balance of `token` at `block`, in token units.
    pub async fn token_balance_at(
        &self,
        token: Address,
        owner: Address,
        block: BlockNumberOrTag,
    ) -> Result<u128, NodeError> {
        use alloy::network::TransactionBuilder;
        use alloy::sol_types::SolCall;
        let call = Erc20::balanceOfCall { owner };
        let request =
            alloy::rpc::types::TransactionRequest::default().with_to(token).with_input(call.abi_encode());
        let answer = self.provider.call(request).block(block.into()).await.map_err(node_error)?;
        let units = Erc20::balanceOfCall::abi_decode_returns(&answer).map_err(node_error)?;
        u128::try_from(units).map_err(|_| NodeError(format!("{token}: a balance beyond 128 bits")))
    }

    /// The head block's base fee per gas, in wei.
    pub async fn base_fee(&self) -> Result<u128, NodeError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(node_error)?
            .ok_or_else(|| NodeError("no head block".into()))?;
        Ok(block.header.base_fee_per_gas.map_or(0, u128::from))
    }

    /// Hands signed bytes to the node.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<Broadcast, NodeError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(Broadcast::Taken),
            Err(alloy::transports::RpcError::ErrorResp(e)) => {
                let message = e.message.to_lowercase();
                let known = ["already known", "known transaction", "already imported", "nonce too low"];
                if known.iter().any(|k| message.contains(k)) {
                    Ok(Broadcast::Taken)
                } else {
                    Ok(Broadcast::Refused(e.message.to_string()))
                }
            }
            Err(e) => Err(node_error(e)),
        }
    }

    /// The receipt of `hash`, once it is in a block.
    pub async fn receipt(&self, hash: &str) -> Result<Option<Receipt>, NodeError> {
        let hash: alloy::primitives::TxHash = hash.parse().map_err(node_error)?;
        let Some(receipt) = self.provider.get_transaction_receipt(hash).await.map_err(node_error)? else {
            return Ok(None);
        };
        let (Some(number), Some(block_hash)) = (receipt.block_number, receipt.block_hash) else {
            return Ok(None);
        };
        let Some(block) = self.block_id(number).await? else { return Ok(None) };
        if block.hash != format!("{block_hash:#x}") {
            // Read across a reorg: the block it names is not on the chain any more.
            return Ok(None);
        }
        Ok(Some(Receipt {
            success: receipt.status(),
            block,
            gas_cost: u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price),
        }))
    }

    /// The block at `number` with the transfers in it to `watched`
    /// addresses that executed (a reverted one moved nothing): native ones,
    /// and `Transfer` logs of `tokens`.
    pub async fn block(
        &self,
        number: u64,
        watched: &HashMap<String, String>,
        tokens: &[Address],
    ) -> Result<Option<Block>, NodeError> {
        let Some(block) = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .map_err(node_error)?
        else {
            return Ok(None);
        };
        let id = BlockId::of(&block.header);
        let mut transfers = Vec::new();
        for (index, tx) in block.transactions.txns().enumerate() {
            let Some(to) = tx.to().map(|a| key(&a)) else { continue };
            if tx.value().is_zero() || !watched.contains_key(&to) {
                continue;
            }
            let hash = tx.tx_hash();
            let receipt = self.provider.get_transaction_receipt(hash).await.map_err(node_error)?;
            let Some(receipt) = receipt else {
                return Err(NodeError(format!("no receipt yet for {hash:#x} in block {number}")));
            };
            if !receipt.status() {
                continue;
            }
            let value = u128::try_from(tx.value())
                .map_err(|_| NodeError(format!("{hash:#x}: a value beyond 128 bits")))?;
            transfers.push(Transfer {
                tx_hash: format!("{hash:#x}"),
                index: index as u64,
                token: None,
                from: key(&tx.from()),
                to,
                value,
            });
        }
        if !tokens.is_empty() {
            use alloy::sol_types::SolEvent;
            // By the block's hash: the logs of exactly this block, not of another at its height.
            let filter = alloy::rpc::types::Filter::new()
                .at_block_hash(block.header.hash)
                .address(tokens.to_vec())
                .event_signature(Erc20::Transfer::SIGNATURE_HASH);
            for log in self.provider.get_logs(&filter).await.map_err(node_error)? {
                let Ok(decoded) = log.log_decode::<Erc20::Transfer>() else { continue };
                let event = &decoded.inner.data;
                let to = key(&event.to);
                if log.removed || !watched.contains_key(&to) {
                    continue;
                }
                let (Some(tx_hash), Some(index)) = (log.transaction_hash, log.log_index) else { continue };
                let value = u128::try_from(event.value)
                    .map_err(|_| NodeError(format!("{tx_hash:#x}: a value beyond 128 bits")))?;
                transfers.push(Transfer {
                    tx_hash: format!("{tx_hash:#x}"),
                    index,
                    token: Some(decoded.inner.address),
                    from: key(&event.from),
                    to,
                    value,
                });
            }
        }
        Ok(Some(Block { id, transfers }))
    }
}
