//! Custodial wallets: one random key per user, made when the user registers
//! (`user.registered`, in the inbox transaction), sealed with the master key
//! before it is stored; `wallet.created` tells the others the address. A
//! key is opened only to sign, never logged, never in an API or a message.

use alloy::signers::local::PrivateKeySigner;
use bourse_common::catalog::{UserRegistered, WalletCreated};
use bourse_common::db::DbConnection;
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handle, HandlerError};
use bourse_common::now_micros;
use bourse_common::outbox::Emitter;
use bourse_common::secret::Secret;
use uuid::Uuid;

use crate::storage::{self, WalletRow};

bourse_common::inbound! {
    /// What the queue `chain-service.users` takes.
    pub enum Users {
        Registered(UserRegistered),
    }
}

/// Makes the wallets, with the key that seals them.
#[derive(Clone)]
pub struct Wallets {
    master_key: Secret,
    chain_id: u64,
}

impl std::fmt::Debug for Wallets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallets").field("chain_id", &self.chain_id).finish_non_exhaustive()
    }
}

impl Wallets {
    pub fn new(master_key: Secret, chain_id: u64) -> Self {
        Self { master_key, chain_id }
    }

    /// A fresh wallet for `user`: its row, the key sealed.
    pub fn make(&self, user: Uuid) -> Result<WalletRow, HandlerError> {
        let signer = PrivateKeySigner::random();
        let key = alloy::hex::encode(signer.to_bytes());
        let sealed_key = self
            .master_key
            .seal(&key)
            .ok_or_else(|| HandlerError::Transient(anyhow::anyhow!("no randomness to seal a wallet key")))?;
        Ok(WalletRow {
            user_id: user.to_string(),
            address: signer.address().to_checksum(None),
            sealed_key,
            created_at: now_micros(),
        })
    }

    /// The signer of a stored wallet (`None`: sealed with another master key).
    pub fn signer(&self, row: &WalletRow) -> Option<PrivateKeySigner> {
        let key = self.master_key.open(&row.sealed_key)?;
        key.parse().ok()
    }
}

impl Handle<Users> for Wallets {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: Users,
        _: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        let Users::Registered(event) = message;
        if storage::wallet_of(conn, event.user_id)?.is_some() {
            return Ok(());
        }
        let row = self.make(event.user_id)?;
        storage::insert_wallet(conn, &row)?;
        tracing::info!(user = %event.user_id, address = %row.address, "wallet created");
        out.send(
            &event.user_id.to_string(),
            &WalletCreated { user_id: event.user_id, address: row.address, chain_id: self.chain_id },
        );
        Ok(())
    }
}
