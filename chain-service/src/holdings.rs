//! What each custodial wallet holds on chain, at a block, against what the
//! ledger should show: the audit's chain reconciliation (payment-service
//! reads it from `GET /api/admin/chain/holdings` and compares with its
//! ledger). For every wallet (each user's, the fee wallet, the clearing
//! wallet) and every chain asset:
//!
//! ```text
//! on chain = ledger (available + reserved) + in flight
//! in flight = deposits      (in a block, not credited: amount + dust; credited: the dust; reverted: - amount)
//!           + withdrawals   (mined, not yet debited: - amount; debited: + fee, the exchange's, still in the wallet)
//!           + settlement    (the ledger moved it, the window's transaction is not mined yet: - net)
//!           + gas           (ETH: what the gas wallet sent - the gas the wallet's transactions burnt)
//! ```
//!
//! The fee wallet's ledger is the `fees` account, less the withdrawal fees
//! kept in the users' wallets; the clearing wallet has no ledger account: it
//! holds what it collected and has not paid yet, and its gas float.
//! Everything counted is in a block at or before the block the watcher last
//! read, and the balances are read at that block.

use std::collections::BTreeMap;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use bourse_common::db::{Db, DbError};
pub use bourse_common::holdings::{FailedWindow, Holding, Holdings, InFlight};
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;

use crate::domain::{
    self, CLEARING_OWNER, DepositStatus, FEES_OWNER, TxPurpose, TxStatus, WindowStatus, WithdrawalStatus,
};
use crate::node::{self, Node};
use crate::rounds::RoundError;
use crate::settings::{Asset, Settings};
use crate::storage::{self, DepositRow, LegRow, TxRow, WindowRow, WithdrawalRow};

/// chain-service's records up to a block.
struct Records {
    wallets: Vec<(String, String)>,
    deposits: Vec<DepositRow>,
    txs: Vec<TxRow>,
    withdrawals: Vec<WithdrawalRow>,
    legs: Vec<LegRow>,
    windows: Vec<WindowRow>,
}

/// Balance reads in flight at once (the node answers them in parallel).
const BALANCE_READS_AT_ONCE: usize = 32;

/// Reads the records and the balances at the watcher's last block.
pub async fn read(db: &Db, node: &Node, settings: &Settings) -> Result<Holdings, RoundError> {
    let block = db
        .read(|c| storage::last_block(c).map_err(DbError::from))
        .await?
        .ok_or_else(|| RoundError::Config("no block read yet".into()))?;
    let number = block.number;
    let records = db
        .read(move |c| {
            Ok::<_, DbError>(Records {
                wallets: storage::wallet_owners(c)?,
                deposits: storage::deposits_up_to(c, number)?,
                txs: storage::txs_mined_up_to(c, number)?,
                withdrawals: storage::all_withdrawals(c)?,
                legs: storage::all_legs(c)?,
                windows: storage::windows_in(c, WindowStatus::ALL)?,
            })
        })
        .await?;
    let at = BlockNumberOrTag::Number(u64::try_from(number).unwrap_or(0));
    let mut wallets: Vec<(String, Address)> = Vec::new();
    for (address, user) in &records.wallets {
        wallets.push((
            user.clone(),
            address.parse().map_err(|e| RoundError::Config(format!("{address}: {e}")))?,
        ));
    }
    if let Some((clearing, fees)) =
        settings.clearing_signer().map_err(|e| RoundError::Config(e.to_string()))?
    {
        wallets.push((FEES_OWNER.into(), fees));
        wallets.push((CLEARING_OWNER.into(), clearing.address()));
    }
    // Every balance at one block, many calls to the node at a time.
    let assets: Vec<Asset> = settings.assets().collect();
    let balances: Vec<_> =
        futures::stream::iter(wallets.iter().flat_map(|w| assets.iter().map(move |a| (w, a))))
            .map(|((_, address), asset)| async move {
                match asset.token {
                    None => node.balance_at(*address, at).await,
                    Some(token) => node.token_balance_at(token, *address, at).await,
                }
            })
            .buffered(BALANCE_READS_AT_ONCE)
            .try_collect()
            .await?;
    let mut balances = balances.into_iter();
    let mut holdings = Vec::new();
    for (owner, address) in &wallets {
        for asset in &assets {
            let units = balances.next().unwrap_or_default();
            let on_chain = exact(units, asset.decimals);
            let in_flight = in_flight(&records, owner, *address, asset);
            holdings.push(Holding {
                owner: owner.clone(),
                address: address.to_checksum(None),
                currency: asset.currency.clone(),
                on_chain,
                in_flight,
            });
        }
    }
    let failed_windows = records
        .windows
        .iter()
        .filter(|w| w.status == WindowStatus::Failed)
        .map(|w| FailedWindow { id: w.id.clone(), reason: w.reason.clone() })
        .collect();
    Ok(Holdings { block: u64::try_from(number).unwrap_or(0), holdings, failed_windows })
}

/// Chain units as an exact decimal.
fn exact(units: u128, decimals: u32) -> Decimal {
    domain::to_ledger(units, decimals, decimals).map_or(Decimal::MAX, |c| c.credited)
}

/// What `owner`'s wallet at `address` holds of `asset` on chain beyond its ledger. Pure.
fn in_flight(records: &Records, owner: &str, address: Address, asset: &Asset) -> InFlight {
    let mut f = InFlight::default();
    let me = address.to_checksum(None);
    let is_me = |a: &str| a.eq_ignore_ascii_case(&me);
    let native = asset.token.is_none();
    let units = |tx: &TxRow| -> Decimal {
        let text = if native { &tx.value } else { tx.token_amount.as_deref().unwrap_or("0") };
        exact(text.parse().unwrap_or(0), asset.decimals)
    };
    let of_asset = |tx: &TxRow| match asset.token {
        None => tx.token.is_none(),
        Some(token) => tx.token.as_deref() == Some(node::key(&token).as_str()),
    };
    let mined = |tx: &TxRow| matches!(tx.status, TxStatus::Mined | TxStatus::Confirmed);

    // Deposits: only users' wallets receive them.
    for d in records.deposits.iter().filter(|d| is_me(&d.address) && d.currency == asset.currency) {
        f.deposits += match d.status {
            DepositStatus::Pending => d.amount.value() + d.dust.value(),
            DepositStatus::Credited => d.dust.value(),
            DepositStatus::Reverted => -d.amount.value(),
            DepositStatus::Orphaned => Decimal::ZERO,
        };
    }

    // Withdrawals: mined and not yet debited, or debited with the fee kept in the wallet.
    let withdrawals: BTreeMap<&str, &WithdrawalRow> =
        records.withdrawals.iter().map(|w| (w.id.as_str(), w)).collect();
    for tx in records.txs.iter().filter(|t| t.purpose == TxPurpose::Withdrawal && mined(t)) {
        let Some(w) = withdrawals.get(tx.id.as_str()).filter(|w| w.currency == asset.currency) else {
            continue;
        };
        let debited = w.status == WithdrawalStatus::Confirmed;
        if is_me(&tx.from_address) {
            f.withdrawals += if debited { w.fee.value() } else { -w.amount.value() };
        } else if owner == FEES_OWNER && debited {
            // The fees account has it; the fee wallet does not.
            f.withdrawals -= w.fee.value();
        }
    }

    // Settlement: the ledger has every leg; the chain, each window's
    // transaction once it is mined.
    let on_chain: BTreeMap<&str, &TxRow> = records
        .txs
        .iter()
        .filter(|t| t.purpose == TxPurpose::Settlement && mined(t))
        .map(|t| (t.id.as_str(), t))
        .collect();
    if owner == CLEARING_OWNER {
        for tx in on_chain.values().filter(|t| of_asset(t)) {
            // A token transfer's `to` is the contract: the clearing wallet pays in
            // one step and is paid in the other.
            if tx.user_id == CLEARING_OWNER {
                f.settlement -= units(tx);
            } else {
                f.settlement += units(tx);
            }
        }
    } else {
        let mine = records.legs.iter().filter(|l| l.owner == owner && l.currency == asset.currency);
        let nets = domain::net(mine.map(|l| (l.window_id.as_str(), l.currency.as_str(), l.delta.value())));
        for ((window, currency), net) in nets {
            if !on_chain.contains_key(domain::settlement_tx_id(&window, owner, &currency).as_str()) {
                f.settlement -= net;
            }
        }
    }

    // Gas (ETH): what the gas wallet sent this wallet, less what its transactions burnt.
    if native {
        for tx in &records.txs {
            if tx.purpose == TxPurpose::Gas && is_me(&tx.to_address) && mined(tx) {
                f.gas += units(tx);
            }
            if is_me(&tx.from_address) {
                f.gas -= exact(tx.gas_cost.as_deref().unwrap_or("0").parse().unwrap_or(0), asset.decimals);
            }
        }
    }
    f
}
