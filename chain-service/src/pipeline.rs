//! The transaction pipeline: every outgoing transaction (withdrawals now,
//! settlement later) goes the same way, each step stored before the next is
//! taken, so that a restart at any point goes on from the last stored one:
//!
//! | status | what happened | what the pipeline does next |
//! | --- | --- | --- |
//! | `queued` | an intent (stored with the message that asked for it) | check the wallet can pay amount and gas (a token transfer's gas is sent to the wallet by the gas wallet first, a transaction of its own); take the nonce kept for the sender (the node's count only when it is ahead); sign; store nonce and signed bytes |
//! | `signed` | signed bytes stored | broadcast those bytes, the same after a restart (the node knows them, or mined them: taken); refused before ever pending: `failed`, the nonce free again |
//! | `broadcast` | the node has it | look for a receipt of every attempt; reverted: `failed`; not mined after `replace_after_ms`: sign again with the same nonce and higher fees |
//! | `mined` | in a block | count confirmations: `confirmed`; the block left the chain: back to `signed`, broadcast again |
//!
//! One transaction per sender is between `signed` and `mined` at a time: a
//! failure before the mempool then frees its nonce without a gap. A
//! transaction is never signed twice with two nonces: the intent's row moves
//! from `queued` once (a compare-and-set on its status).

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use bourse_common::db::{Db, DbConnection, DbError};
use bourse_common::faults::Faults;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::service::BackgroundTask;
use uuid::Uuid;

use crate::PRODUCER;
use crate::domain::{self, TxPurpose, TxStatus};
use crate::node::{self, Broadcast, Erc20, Node};
use crate::rounds::{self, Leader, RoundError};
use crate::settings::Asset;
use crate::settings::Settings;
use crate::storage::{self, Intent, TxRow};
use crate::wallets::Wallets;
use crate::{settlement, withdrawals};

/// Transactions taken per status and round.
const BATCH: i64 = 100;

/// The pipeline as a background task of the service; its health is the
/// `sender` component of the service's readiness.
pub fn task(settings: Settings, node: Node, wallets: Wallets, leader: Arc<Leader>) -> BackgroundTask {
    Box::new(move |bus, shutdown| {
        // Checked when the service was put together (`Settings::validate_assets`).
        let gas = settings.gas_signer().ok().flatten();
        let clearing = settings.clearing_signer().ok().flatten();
        let (db, faults) = (bus.db.clone(), bus.faults.clone());
        let settings = Arc::new(settings);
        let pipeline = Pipeline { settings, node, wallets, gas, clearing, db, faults, leader };
        let health = bus.metrics.component("sender");
        Box::pin(async move {
            let interval = Duration::from_millis(pipeline.settings.poll_interval_ms.max(10));
            let leads = (pipeline.leader.as_ref(), &pipeline.db);
            rounds::run("transaction pipeline", interval, leads, health, shutdown, || pipeline.round()).await;
        })
    })
}

struct Pipeline {
    settings: Arc<Settings>,
    node: Node,
    wallets: Wallets,
    /// The gas wallet, paying token transfers' and settlement transactions' gas.
    gas: Option<PrivateKeySigner>,
    /// The clearing wallet and the fee wallet's address, when trades settle on chain.
    clearing: Option<(PrivateKeySigner, Address)>,
    db: Db,
    faults: Arc<Faults>,
    leader: Arc<Leader>,
}

/// What a step tells the transaction's owner (a withdrawal).
#[derive(Debug, Clone, Copy)]
enum Told {
    Nothing,
    Sent,
    Confirmed,
    Failed,
}

impl Pipeline {
    async fn round(&self) -> Result<bool, RoundError> {
        if let Some((clearing, fees)) = &self.clearing {
            let wallets = settlement::Wallets { clearing: clearing.address(), fees: *fees };
            let settings = self.settings.clone();
            self.db.write(move |c| settlement::round(c, &settings, wallets)).await?;
        }
        for tx in self.load(TxStatus::Queued).await? {
            self.sign(tx).await?;
        }
        for tx in self.load(TxStatus::Signed).await? {
            self.broadcast(tx).await?;
        }
        for tx in self.load(TxStatus::Broadcast).await? {
            self.follow(tx).await?;
        }
        let mined = self.load(TxStatus::Mined).await?;
        // Confirmations counted on the head the watcher recorded: the one
        // the API shows them against, and deposits are credited on.
        let head = self.db.read(|c| storage::head(c).map_err(DbError::from)).await?;
        if let Some(head) = head.and_then(|h| u64::try_from(h).ok()) {
            for tx in mined {
                self.confirm(tx, head).await?;
            }
        }
        Ok(false)
    }

    async fn load(&self, status: TxStatus) -> Result<Vec<TxRow>, RoundError> {
        Ok(self.db.read(move |c| storage::txs_in(c, status, BATCH).map_err(DbError::from)).await?)
    }

    /// The key that signs `tx`: the user's wallet's, or the gas wallet's.
    async fn signer(&self, tx: &TxRow) -> Result<PrivateKeySigner, RoundError> {
        if tx.purpose == TxPurpose::Gas {
            return self
                .gas
                .clone()
                .ok_or_else(|| RoundError::Config("no gas wallet (settings.gas_key)".into()));
        }
        if tx.user_id == domain::CLEARING_OWNER {
            return self.clearing.as_ref().map(|(signer, _)| signer.clone()).ok_or_else(|| {
                RoundError::Config("no clearing wallet (settings.settlement.clearing_key)".into())
            });
        }
        let user = Uuid::parse_str(&tx.user_id).map_err(|e| RoundError::Config(e.to_string()))?;
        let wallet = self.db.read(move |c| storage::wallet_of(c, user).map_err(DbError::from)).await?;
        let wallet = wallet.ok_or_else(|| RoundError::Config(format!("transaction {}: no wallet", tx.id)))?;
        self.wallets.signer(&wallet).ok_or_else(|| {
            RoundError::Config(format!(
                "the key of wallet {} does not open with this master key",
                wallet.address
            ))
        })
    }

    /// A queued intent: once the wallet can pay it (a token transfer's gas
    /// paid by the gas wallet first, if need be), nonce and signature,
    /// stored; then broadcast.
    async fn sign(&self, tx: TxRow) -> Result<(), RoundError> {
        let from = tx.from_address.clone();
        if self.db.read(move |c| storage::sender_busy(c, &from).map_err(DbError::from)).await? {
            return Ok(());
        }
        let signer = self.signer(&tx).await?;
        let address = signer.address();
        let value = units(&tx.value)?;
        let gas = u64::try_from(tx.gas_limit).map_err(|e| RoundError::Config(e.to_string()))?;
        let base_fee = self.node.base_fee().await?;
        let (max_fee, tip) = domain::first_fees(base_fee, self.settings.withdrawals.priority_fee_wei.into());
        let gas_cost = u128::from(gas).saturating_mul(max_fee);
        if tx.purpose == TxPurpose::Settlement && !self.gas_paid(&tx).await? {
            // Never from what the wallet holds for its user: the chain would fall short of the ledger.
            return self.pay_gas(tx, gas_cost).await;
        }
        let eth_held = self.node.balance(address).await?;
        if let (Some(token), Some(amount)) = (&tx.token, &tx.token_amount) {
            let token: Address = token.parse().map_err(|e| RoundError::Config(format!("{e}")))?;
            let (amount, held) = (units(amount)?, self.node.token_balance(token, address).await?);
            if held < amount {
                let asset = self.settings.token(&token);
                let (currency, decimals) = asset.map_or(("tokens".into(), 0), |a| (a.currency, a.decimals));
                if self.awaits_settlement(&tx, &currency).await? {
                    return Ok(());
                }
                let why = format!(
                    "the wallet holds {} {currency} on the chain; {} are needed",
                    exact(held, decimals),
                    exact(amount, decimals)
                );
                return self.fail(tx, TxStatus::Queued, why).await;
            }
            if eth_held < gas_cost {
                return self.pay_gas(tx, gas_cost).await;
            }
        } else if eth_held < value.saturating_add(gas_cost) {
            if self.awaits_settlement(&tx, &self.settings.native_currency).await? {
                return Ok(());
            }
            let why = format!(
                "the wallet holds {} ETH on the chain; {} ETH are needed with the gas",
                eth(eth_held),
                eth(value.saturating_add(gas_cost))
            );
            return self.fail(tx, TxStatus::Queued, why).await;
        }
        let on_chain = self.node.nonce(address).await?;
        let from = tx.from_address.clone();
        let kept = self.db.read(move |c| storage::next_nonce(c, &from).map_err(DbError::from)).await?;
        // The kept nonce, unless the chain counts more (the address sent
        // something this service did not): never below what the chain took.
        let nonce = kept.and_then(|n| u64::try_from(n).ok()).map_or(on_chain, |n| n.max(on_chain));
        let (raw, hash) = self.signed(&signer, &tx, nonce, max_fee, tip)?;
        let mut next = tx;
        next.status = TxStatus::Signed;
        next.nonce = Some(i64::try_from(nonce).map_err(|e| RoundError::Config(e.to_string()))?);
        next.max_fee = Some(max_fee.to_string());
        next.priority_fee = Some(tip.to_string());
        next.raw = Some(raw);
        next.hashes = hash.clone();
        next.tx_hash = Some(hash);
        next.updated_at = now_micros();
        let row = next.clone();
        let leader = self.leader.clone();
        let stored = self
            .db
            .write(move |c| {
                // A nonce is given only by the lease's holder, under its row lock.
                if !leader.still_holds(c)? || !storage::update_tx(c, &row, TxStatus::Queued)? {
                    return Ok::<_, DbError>(false);
                }
                storage::set_next_nonce(c, &row.from_address, row.nonce.unwrap_or(0) + 1)?;
                Ok(true)
            })
            .await?;
        if !stored {
            return Ok(());
        }
        tracing::info!(tx = %next.id, nonce, hash = ?next.tx_hash, "transaction signed");
        if self.faults.sender_should_crash_after_signing() {
            return Err(RoundError::Crashed);
        }
        self.broadcast(next).await
    }

    /// A withdrawal whose wallet holds too little on chain while a window
    /// owes its user `currency` waits for that window (the ledger has the
    /// funds; the chain follows) instead of failing.
    async fn awaits_settlement(&self, tx: &TxRow, currency: &str) -> Result<bool, RoundError> {
        if tx.purpose != TxPurpose::Withdrawal || self.clearing.is_none() {
            return Ok(false);
        }
        let (user, currency) = (tx.user_id.clone(), currency.to_string());
        Ok(self
            .db
            .read(move |c| storage::owed_by_a_window(c, &user, &currency).map_err(DbError::from))
            .await?)
    }

    /// Has the gas wallet's payment for `tx` arrived (in a block)?
    async fn gas_paid(&self, tx: &TxRow) -> Result<bool, RoundError> {
        let id = tx.id.clone();
        let payments = self.db.read(move |c| storage::gas_payments(c, &id).map_err(DbError::from)).await?;
        Ok(payments.iter().any(|p| matches!(p.status, TxStatus::Mined | TxStatus::Confirmed)))
    }

    /// `tx` cannot be paid from its wallet: a final failure, with `why`.
    async fn fail(&self, tx: TxRow, expected: TxStatus, why: String) -> Result<(), RoundError> {
        tracing::warn!(tx = %tx.id, %why, "transaction failed");
        let mut failed = tx;
        failed.status = TxStatus::Failed;
        failed.error = Some(why);
        failed.updated_at = now_micros();
        self.advance(failed, expected, Told::Failed).await
    }

    /// A token transfer whose wallet lacks the ETH for its gas: the gas
    /// wallet sends it twice the cost (a transaction of its own, `gas:<id>:<n>`),
    /// and the transfer waits in `queued` until it arrived. At most three
    /// payments (fees can rise meanwhile); a payment that fails fails the transfer.
    async fn pay_gas(&self, tx: TxRow, gas_cost: u128) -> Result<(), RoundError> {
        let id = tx.id.clone();
        let payments = self.db.read(move |c| storage::gas_payments(c, &id).map_err(DbError::from)).await?;
        if payments
            .iter()
            .any(|p| matches!(p.status, TxStatus::Queued | TxStatus::Signed | TxStatus::Broadcast))
        {
            return Ok(());
        }
        if let Some(failed) = payments.last().filter(|p| p.status == TxStatus::Failed) {
            let why = format!(
                "the gas wallet could not pay the gas: {}",
                failed.error.as_deref().unwrap_or("failed")
            );
            return self.fail(tx, TxStatus::Queued, why).await;
        }
        let Some(gas_wallet) = &self.gas else {
            let why = "the wallet holds no ETH for the gas and no gas wallet is configured".to_string();
            return self.fail(tx, TxStatus::Queued, why).await;
        };
        if payments.len() >= 3 {
            return self.fail(tx, TxStatus::Queued, "three gas payments did not cover the gas".into()).await;
        }
        let intent = Intent {
            id: format!("gas:{}:{}", tx.id, payments.len() + 1),
            purpose: TxPurpose::Gas,
            user_id: tx.user_id.clone(),
            from_address: gas_wallet.address().to_checksum(None),
            to_address: tx.from_address.clone(),
            value: gas_cost.saturating_mul(2),
            input: String::new(),
            gas_limit: domain::NATIVE_TRANSFER_GAS,
            token: None,
        };
        let payment = TxRow::queued(intent, now_micros());
        tracing::info!(tx = %payment.id, to = %payment.to_address, wei = %payment.value, "the gas wallet pays a token transfer's gas");
        self.db.write(move |c| storage::insert_tx(c, &payment).map_err(DbError::from)).await?;
        Ok(())
    }

    /// `tx`'s EIP-1559 transaction with `nonce` and fees, signed: its bytes (hex) and hash.
    fn signed(
        &self,
        signer: &PrivateKeySigner,
        tx: &TxRow,
        nonce: u64,
        max_fee: u128,
        tip: u128,
    ) -> Result<(String, String), RoundError> {
        let config = |e: &dyn std::fmt::Display| RoundError::Config(format!("transaction {}: {e}", tx.id));
        let to: Address = tx.to_address.parse().map_err(|e| config(&e))?;
        let input = alloy::hex::decode(&tx.input).map_err(|e| config(&e))?;
        let mut unsigned = TxEip1559 {
            chain_id: self.settings.chain_id,
            nonce,
            gas_limit: u64::try_from(tx.gas_limit).map_err(|e| config(&e))?,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(to),
            value: U256::from(units(&tx.value)?),
            access_list: Default::default(),
            input: input.into(),
        };
        let signature = signer.sign_transaction_sync(&mut unsigned).map_err(|e| config(&e))?;
        let signed = unsigned.into_signed(signature);
        let hash = format!("{:#x}", signed.hash());
        let raw = TxEnvelope::from(signed).encoded_2718();
        Ok((alloy::hex::encode_prefixed(raw), hash))
    }

    /// Hands the stored signed bytes to the node.
    async fn broadcast(&self, tx: TxRow) -> Result<(), RoundError> {
        let raw = tx.raw.as_deref().map(alloy::hex::decode).transpose().ok().flatten();
        let raw = raw.ok_or_else(|| RoundError::Config(format!("transaction {}: no signed bytes", tx.id)))?;
        let answer = self.node.send_raw(&raw).await?;
        let mut next = tx;
        next.updated_at = now_micros();
        match answer {
            Broadcast::Taken => {
                if self.faults.sender_should_crash_after_broadcast() {
                    return Err(RoundError::Crashed);
                }
                tracing::info!(tx = %next.id, hash = ?next.tx_hash, "transaction broadcast");
                next.status = TxStatus::Broadcast;
                next.sent_at = Some(next.updated_at);
                self.advance(next, TxStatus::Signed, Told::Sent).await
            }
            // Never pending (the first attempt, refused): it will not be
            // mined, and its nonce is free for the sender's next transaction.
            Broadcast::Refused(reason) if next.replacements == 0 => {
                tracing::warn!(tx = %next.id, %reason, "the node refused the transaction");
                next.status = TxStatus::Failed;
                next.error = Some(format!("the node refused the transaction: {reason}"));
                self.advance(next, TxStatus::Signed, Told::Failed).await
            }
            // A replacement refused: the attempt before it is still pending.
            Broadcast::Refused(reason) => {
                tracing::warn!(tx = %next.id, %reason, "the node refused a replacement; the earlier attempt stands");
                next.status = TxStatus::Broadcast;
                next.sent_at = Some(next.updated_at);
                self.advance(next, TxStatus::Signed, Told::Nothing).await
            }
        }
    }

    /// A broadcast transaction: mined (or reverted) under one of its
    /// attempts' hashes, its nonce taken by another, or replaced when it waits too long.
    async fn follow(&self, tx: TxRow) -> Result<(), RoundError> {
        let from: Address = tx.from_address.parse().map_err(|e| RoundError::Config(format!("{e}")))?;
        // Read before the receipts: a nonce counted here that none of them
        // explains was taken by another transaction.
        let on_chain = self.node.nonce(from).await?;
        for hash in tx.hashes() {
            let Some(receipt) = self.node.receipt(hash).await? else { continue };
            let mut next = tx.clone();
            next.tx_hash = Some(hash.to_string());
            next.block_number = i64::try_from(receipt.block.number).ok();
            next.block_hash = Some(receipt.block.hash.clone());
            next.gas_cost = Some(receipt.gas_cost.to_string());
            next.updated_at = now_micros();
            if receipt.success {
                next.status = TxStatus::Mined;
                return self.advance(next, TxStatus::Broadcast, Told::Nothing).await;
            }
            next.status = TxStatus::Failed;
            next.error = Some(format!("the transaction reverted in block {}", receipt.block.number));
            return self.advance(next, TxStatus::Broadcast, Told::Failed).await;
        }
        let nonce = tx.nonce.and_then(|n| u64::try_from(n).ok()).unwrap_or(u64::MAX);
        if on_chain > nonce {
            let mut next = tx;
            next.status = TxStatus::Failed;
            next.error = Some(format!("its nonce {nonce} was taken by another transaction of the wallet"));
            next.updated_at = now_micros();
            return self.advance(next, TxStatus::Broadcast, Told::Failed).await;
        }
        let waited_ms = (now_micros() - tx.sent_at.unwrap_or(0)) / 1_000;
        if waited_ms >= i64::try_from(self.settings.withdrawals.replace_after_ms).unwrap_or(i64::MAX) {
            self.replace(tx, nonce).await?;
        }
        Ok(())
    }

    /// Signs `tx` again with its nonce and higher fees, stores and broadcasts it.
    async fn replace(&self, tx: TxRow, nonce: u64) -> Result<(), RoundError> {
        let signer = self.signer(&tx).await?;
        let percent = self.settings.withdrawals.fee_bump_percent.max(10);
        let (floor, _) = domain::first_fees(
            self.node.base_fee().await?,
            self.settings.withdrawals.priority_fee_wei.into(),
        );
        let tip = domain::bumped(units(tx.priority_fee.as_deref().unwrap_or("0"))?, percent);
        let max_fee =
            domain::bumped(units(tx.max_fee.as_deref().unwrap_or("0"))?, percent).max(floor).max(tip);
        let (raw, hash) = self.signed(&signer, &tx, nonce, max_fee, tip)?;
        tracing::info!(tx = %tx.id, nonce, old = ?tx.tx_hash, new = %hash, max_fee, "transaction replaced with a higher fee");
        let mut next = tx;
        next.status = TxStatus::Signed;
        next.max_fee = Some(max_fee.to_string());
        next.priority_fee = Some(tip.to_string());
        next.raw = Some(raw);
        next.hashes = format!("{} {hash}", next.hashes);
        next.tx_hash = Some(hash);
        next.replacements += 1;
        next.updated_at = now_micros();
        if self.store(next.clone(), TxStatus::Broadcast, Told::Nothing).await? {
            self.broadcast(next).await?;
        }
        Ok(())
    }

    /// A mined transaction: confirmed once deep enough; back to `signed` when
    /// its block left the chain (broadcast again, the same bytes).
    async fn confirm(&self, tx: TxRow, head: u64) -> Result<(), RoundError> {
        let number = tx.block_number.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let on_chain = self.node.block_id(number).await?;
        let mut next = tx;
        next.updated_at = now_micros();
        if on_chain.is_some_and(|b| Some(&b.hash) == next.block_hash.as_ref()) {
            if !domain::is_final(number, head, self.settings.confirmations) {
                return Ok(());
            }
            next.status = TxStatus::Confirmed;
            tracing::info!(tx = %next.id, hash = ?next.tx_hash, block = number, "transaction confirmed");
            return self.advance(next, TxStatus::Mined, Told::Confirmed).await;
        }
        tracing::warn!(tx = %next.id, block = number, "the transaction's block left the chain: sending it again");
        next.status = TxStatus::Signed;
        next.block_number = None;
        next.block_hash = None;
        next.gas_cost = None;
        self.advance(next, TxStatus::Mined, Told::Nothing).await
    }

    async fn advance(&self, next: TxRow, expected: TxStatus, told: Told) -> Result<(), RoundError> {
        self.store(next, expected, told).await.map(|_| ())
    }

    /// Stores `next` over the transaction still in `expected`, tells its
    /// owner, and frees the nonce of one that failed before it was pending;
    /// all in one database transaction. `false`: moved on meanwhile, nothing done.
    async fn store(&self, next: TxRow, expected: TxStatus, told: Told) -> Result<bool, RoundError> {
        let stored = self
            .db
            .write(move |c| {
                if !storage::update_tx(c, &next, expected)? {
                    return Ok::<_, DbError>(false);
                }
                if next.status == TxStatus::Failed && next.block_number.is_none() {
                    free_nonce(c, &next)?;
                }
                let mut out = Emitter::new(PRODUCER);
                let now = next.updated_at;
                match (next.purpose, told) {
                    // The gas wallet's payments are followed by the transfer waiting for them.
                    // A settlement window follows its transactions in its own round.
                    (TxPurpose::Gas | TxPurpose::Settlement, _) | (_, Told::Nothing) => {}
                    (TxPurpose::Withdrawal, Told::Sent) => withdrawals::sent(c, &next, now, &mut out)?,
                    (TxPurpose::Withdrawal, Told::Confirmed) => {
                        withdrawals::confirmed(c, &next, now, &mut out)?
                    }
                    (TxPurpose::Withdrawal, Told::Failed) => withdrawals::failed(c, &next, now, &mut out)?,
                }
                out.flush(c)?;
                Ok(true)
            })
            .await?;
        Ok(stored)
    }
}

/// The transaction moving `units` of `asset` from `from` to `to`, no nonce
/// yet: the amount in wei, or a token's `transfer` of it.
pub fn transfer_intent(
    id: String,
    purpose: TxPurpose,
    user_id: &str,
    from: Address,
    asset: &Asset,
    to: Address,
    units: u128,
) -> Intent {
    let (to, value, input, token) = match asset.token {
        None => (to, units, String::new(), None),
        Some(token) => {
            let call = Erc20::transferCall { to, value: U256::from(units) };
            (token, 0, alloy::hex::encode_prefixed(call.abi_encode()), Some((node::key(&token), units)))
        }
    };
    Intent {
        id,
        purpose,
        user_id: user_id.to_string(),
        from_address: from.to_checksum(None),
        to_address: to.to_checksum(None),
        value,
        input,
        gas_limit: asset.transfer_gas,
        token,
    }
}

/// A transaction that failed without ever being pending gives its nonce
/// back, when it was the sender's last (one at a time per sender: it is).
fn free_nonce(conn: &mut DbConnection, tx: &TxRow) -> diesel::QueryResult<()> {
    let Some(nonce) = tx.nonce else { return Ok(()) };
    if storage::next_nonce(conn, &tx.from_address)? == Some(nonce + 1) {
        storage::set_next_nonce(conn, &tx.from_address, nonce)?;
    }
    Ok(())
}

/// Chain units stored as decimal text.
fn units(text: &str) -> Result<u128, RoundError> {
    text.parse().map_err(|e| RoundError::Config(format!("`{text}` is not an amount in chain units: {e}")))
}

/// Chain units with `decimals`, as a person reads them, exactly.
fn exact(units: u128, decimals: u32) -> String {
    domain::to_ledger(units, decimals, decimals)
        .map(|c| c.credited.normalize().to_string())
        .unwrap_or_else(|_| format!("{units} units"))
}

/// Wei as ETH, exactly.
fn eth(wei: u128) -> String {
    exact(wei, domain::NATIVE_DECIMALS)
}
