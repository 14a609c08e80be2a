//! Deposits: chain-service follows the chain block by block, with its place
//! (the blocks read, with their hashes) in its database, so that a restart
//! resumes where it stopped without missing or reading a block twice.
//!
//! Each round: ask the head; check that the newest block read is still on the
//! chain (else a reorg: go back to the fork and forget what was read above
//! it); read the next blocks, each in one transaction with the deposits to
//! users' wallets in it (`pending`: native transfers, and `Transfer` logs of
//! the configured tokens; not what the gas or clearing wallet sends); then credit, in one transaction with
//! its `deposit.confirmed`, every pending deposit with its confirmations.
//!
//! A reorg forgets the blocks above the fork: their pending deposits are
//! `orphaned` (they never happened); a credited one is `reverted` and
//! `deposit.reverted` raises the alarm (the ledger is not debited behind the
//! operators' back). A node that does not answer stops the rounds, not the
//! deposits: the watcher waits and asks again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bourse_common::catalog::{DepositConfirmed, DepositReverted, DepositSeen};
use bourse_common::db::{Db, DbConnection, DbError};
use bourse_common::money::Amount;
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::service::BackgroundTask;
use uuid::Uuid;

use crate::PRODUCER;
use crate::domain::{self, DepositStatus};
use crate::node::{self, Block, Node};
use crate::rounds::{self, Leader, RoundError};
use crate::settings::Settings;
use crate::storage::{self, BlockRow, DepositRow};

/// The watcher as a background task of the service; its health is the
/// `chain` component of the service's readiness.
pub fn task(settings: Settings, node: Node, leader: Arc<Leader>) -> BackgroundTask {
    Box::new(move |bus, shutdown| {
        let db = bus.db.clone();
        let health = bus.metrics.component("chain");
        let tokens = settings.tokens.iter().map(|t| t.address).collect();
        let gas = settings.gas_signer().ok().flatten().map(|s| s.address());
        let clearing = settings.clearing_signer().ok().flatten().map(|(s, _)| s.address());
        let exchange = gas.into_iter().chain(clearing).map(|a| node::key(&a)).collect();
        let watcher = Watcher {
            settings,
            node,
            db,
            tokens,
            exchange,
            chain_checked: AtomicBool::new(false),
            credited_at: AtomicU64::new(u64::MAX),
        };
        Box::pin(async move {
            let interval = Duration::from_millis(watcher.settings.poll_interval_ms.max(10));
            let leads = (leader.as_ref(), &watcher.db);
            rounds::run("deposit watcher", interval, leads, health, shutdown, || watcher.round()).await;
        })
    })
}

struct Watcher {
    settings: Settings,
    node: Node,
    db: Db,
    /// The tokens' contracts, whose `Transfer` logs are read.
    tokens: Vec<alloy::primitives::Address>,
    /// The exchange's own sending wallets (gas, clearing; lower-case hex):
    /// what they send a user's wallet is the exchange's gas or a settlement, not a deposit.
    exchange: Vec<String>,
    /// The node serves the configured chain (asked once per run).
    chain_checked: AtomicBool,
    /// The head the last credit pass ran at: another pass at the same head
    /// with no block read since would find nothing new.
    credited_at: AtomicU64,
}

impl Watcher {
    /// One round; `true` when blocks are left to read at once.
    async fn round(&self) -> Result<bool, RoundError> {
        if !self.chain_checked.load(Ordering::Relaxed) {
            let chain_id = self.node.chain_id().await?;
            if chain_id != self.settings.chain_id {
                return Err(RoundError::Config(format!(
                    "the node at {} serves chain {chain_id}, settings.chain_id is {}",
                    self.settings.rpc_url, self.settings.chain_id
                )));
            }
            self.chain_checked.store(true, Ordering::Relaxed);
        }
        let head = self.node.head().await?;
        let last = self.db.read(|c| storage::last_block(c).map_err(DbError::from)).await?;
        if let Some(last) = &last
            && !self.still_on_chain(last).await?
        {
            self.rewind(last).await?;
            self.credited_at.store(u64::MAX, Ordering::Relaxed);
            return Ok(true);
        }
        let first = match &last {
            Some(b) => u64::try_from(b.number + 1).unwrap_or(0),
            None => self.settings.start_block.unwrap_or(head),
        };
        let end = head.min(first.saturating_add(self.settings.max_blocks_per_round.max(1)) - 1);
        // The wallets after the head: every block read here was mined before
        // this read, so a wallet missing from it had no address anyone could
        // send to yet when those blocks were mined.
        let watched: HashMap<String, String> = self
            .db
            .read(|c| storage::wallet_owners(c).map_err(DbError::from))
            .await?
            .into_iter()
            .map(|(address, user)| (address.to_lowercase(), user))
            .collect();
        let mut parent = last;
        let mut read = 0;
        for number in first..=end {
            let Some(block) = self.node.block(number, &watched, &self.tokens).await? else { break };
            if let Some(p) = &parent
                && p.hash != block.id.parent_hash
            {
                // The chain changed under the round: the next one finds the fork.
                return Ok(true);
            }
            parent = Some(self.record(block, &watched, head).await?);
            read += 1;
        }
        if read > 0 || self.credited_at.load(Ordering::Relaxed) != head {
            self.credit(head).await?;
            self.credited_at.store(head, Ordering::Relaxed);
        }
        Ok(end < head)
    }

    async fn still_on_chain(&self, block: &BlockRow) -> Result<bool, RoundError> {
        let number = u64::try_from(block.number).unwrap_or(0);
        Ok(self.node.block_id(number).await?.is_some_and(|on_chain| on_chain.hash == block.hash))
    }

    /// Stores a block read and its deposits, in one transaction.
    async fn record(
        &self,
        block: Block,
        watched: &HashMap<String, String>,
        head: u64,
    ) -> Result<BlockRow, RoundError> {
        let row = BlockRow {
            number: i64::try_from(block.id.number).map_err(|e| RoundError::Config(e.to_string()))?,
            hash: block.id.hash.clone(),
            parent_hash: block.id.parent_hash.clone(),
        };
        let now = now_micros();
        let mut deposits = Vec::new();
        for t in &block.transfers {
            let Some(user) = watched.get(&t.to) else { continue };
            if self.exchange.contains(&t.from) {
                continue;
            }
            let asset = match &t.token {
                None => self.settings.asset(&self.settings.native_currency),
                Some(token) => self.settings.token(token),
            };
            let Some(asset) = asset else { continue };
            let scale =
                self.settings.reference.currency(&asset.currency).map(|c| c.scale).ok_or_else(|| {
                    RoundError::Config(format!("no currency {} in settings.reference", asset.currency))
                })?;
            let converted = match domain::to_ledger(t.value, asset.decimals, scale) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(tx = %t.tx_hash, error = %e, "a deposit the ledger cannot hold: not credited");
                    continue;
                }
            };
            // A token's deposit is one of its transaction's logs: `log<index>`.
            let index = if t.token.is_some() { format!("log{}", t.index) } else { t.index.to_string() };
            deposits.push(DepositRow {
                id: format!("{}:{}:{index}", self.settings.chain_id, t.tx_hash),
                user_id: user.clone(),
                address: t.to.clone(),
                currency: asset.currency,
                amount: Amount::new(converted.credited),
                dust: Amount::new(converted.dust),
                tx_hash: t.tx_hash.clone(),
                block_number: row.number,
                block_hash: row.hash.clone(),
                status: DepositStatus::Pending,
                seen_at: now,
                updated_at: now,
            });
        }
        let stored = row.clone();
        let head = i64::try_from(head).unwrap_or(i64::MAX);
        let required = self.settings.confirmations.max(1);
        self.db
            .write(move |c| {
                storage::insert_block(c, &stored)?;
                let mut out = Emitter::new(PRODUCER);
                for d in &deposits {
                    if storage::insert_deposit(c, d)? {
                        tracing::info!(deposit = %d.id, user = %d.user_id, amount = %d.amount.value(), "deposit seen");
                        out.send(
                            &d.id,
                            &DepositSeen {
                                deposit_id: d.id.clone(),
                                user_id: user_of(d)?,
                                currency: d.currency.clone(),
                                amount: d.amount,
                                tx_hash: d.tx_hash.clone(),
                                block_number: u64::try_from(d.block_number).unwrap_or(0),
                                required_confirmations: required,
                            },
                        );
                    }
                }
                out.flush(c)?;
                storage::set_head(c, head, now)?;
                Ok::<_, DbError>(())
            })
            .await?;
        Ok(row)
    }

    /// Credits every pending deposit with its confirmations at `head`.
    async fn credit(&self, head: u64) -> Result<(), RoundError> {
        let required = self.settings.confirmations.max(1);
        let Some(deepest) = head.checked_sub(required - 1) else { return Ok(()) };
        let deepest = i64::try_from(deepest).unwrap_or(i64::MAX);
        let keep_from = deepest.saturating_sub(i64::try_from(required).unwrap_or(0) + 64);
        let head = i64::try_from(head).unwrap_or(i64::MAX);
        self.db
            .write(move |c| {
                storage::set_head(c, head, now_micros())?;
                let mut out = Emitter::new(PRODUCER);
                for d in storage::pending_up_to(c, deepest)? {
                    credit_one(c, &d, &mut out)?;
                }
                out.flush(c)?;
                storage::prune_blocks_before(c, keep_from)?;
                Ok::<_, DbError>(())
            })
            .await?;
        Ok(())
    }

    /// Goes back to where the stored blocks meet the chain again and forgets
    /// what was read above.
    async fn rewind(&self, last: &BlockRow) -> Result<(), RoundError> {
        let mut number = last.number;
        let fork = loop {
            number -= 1;
            let stored = self.db.read(move |c| storage::block(c, number).map_err(DbError::from)).await?;
            match stored {
                Some(block) if self.still_on_chain(&block).await? => break number,
                Some(_) => {}
                // Older than what is kept: start again from there.
                None => break number,
            }
        };
        tracing::warn!(from = fork + 1, to = last.number, "reorg: the blocks above the fork are forgotten");
        self.db
            .write(move |c| {
                let now = now_micros();
                let mut out = Emitter::new(PRODUCER);
                for d in storage::live_from(c, fork + 1)? {
                    forget_one(c, &d, now, &mut out)?;
                }
                out.flush(c)?;
                storage::drop_blocks_from(c, fork + 1)?;
                Ok::<_, DbError>(())
            })
            .await?;
        Ok(())
    }
}

/// The deposit's user (stored from a wallet row: a bad one fails the read).
fn user_of(d: &DepositRow) -> Result<Uuid, DbError> {
    Uuid::parse_str(&d.user_id)
        .map_err(|e| DbError::Query(diesel::result::Error::DeserializationError(Box::new(e))))
}

fn credit_one(c: &mut DbConnection, d: &DepositRow, out: &mut Emitter) -> Result<(), DbError> {
    let user_id = user_of(d)?;
    storage::set_status(c, &d.id, DepositStatus::Credited, now_micros())?;
    out.send(
        &d.id,
        &DepositConfirmed {
            deposit_id: d.id.clone(),
            user_id,
            currency: d.currency.clone(),
            amount: d.amount,
            tx_hash: d.tx_hash.clone(),
            block_number: u64::try_from(d.block_number).unwrap_or(0),
        },
    );
    tracing::info!(deposit = %d.id, amount = %d.amount.value(), "deposit confirmed: crediting");
    Ok(())
}

fn forget_one(c: &mut DbConnection, d: &DepositRow, now: i64, out: &mut Emitter) -> Result<(), DbError> {
    match d.status {
        DepositStatus::Pending => {
            storage::set_status(c, &d.id, DepositStatus::Orphaned, now)?;
            tracing::info!(deposit = %d.id, "deposit orphaned by a reorg before its confirmations");
        }
        DepositStatus::Credited => {
            storage::set_status(c, &d.id, DepositStatus::Reverted, now)?;
            let user_id = user_of(d)?;
            out.send(
                &d.id,
                &DepositReverted {
                    deposit_id: d.id.clone(),
                    user_id,
                    currency: d.currency.clone(),
                    amount: d.amount,
                    tx_hash: d.tx_hash.clone(),
                },
            );
            tracing::error!(deposit = %d.id, amount = %d.amount.value(), "ALERT: a credited deposit left the chain (reorg deeper than the confirmations)");
        }
        DepositStatus::Orphaned | DepositStatus::Reverted => {}
    }
    Ok(())
}
