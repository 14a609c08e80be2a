//! payment-service's own settings (`PAYMENT__SETTINGS__*`): whether top-up
//! answers, the reference data amounts are checked against, the fee rates.

use bourse_common::reference::ReferenceData;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// payment-service's own settings (`PAYMENT__SETTINGS__TOP_UP_ENABLED=false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `POST /api/users/me/accounts/{currency}/top-up` answers: a development
    /// faucet that credits money out of nothing. Off unless configured
    /// (`bourse up` and the test stacks switch it on); never in production.
    pub top_up_enabled: bool,
    /// The most one top-up credits, in the currency's units.
    pub top_up_max_per_call: Decimal,
    /// The most one user tops up in one currency within 24 hours.
    pub top_up_max_per_day: Decimal,
    /// Currencies that live on the chain: only a deposit credits them, never
    /// a top-up (409 `deposit_on_chain`: on a dev stack, the dev faucet sends
    /// them to the user's wallet), so that the ledger and the chain agree.
    /// `bourse up` lists ETH and USDT; the test stacks leave it empty, for speed.
    pub on_chain_currencies: Vec<String>,
    pub reference: ReferenceData,
    /// How often the audit runs (0: only on demand).
    pub audit_interval_ms: u64,
    /// Messages of the event log younger than this are in flight: the audit
    /// checks them at its next run.
    pub audit_grace_ms: u64,
    /// chain-service's base URL (`http://127.0.0.1:8084`): the audit
    /// reconciles each custodial wallet on chain with the ledger through its
    /// holdings (`GET /api/admin/chain/holdings`, asked with the internal
    /// secret). Unset: that check is skipped (a stack whose chain currencies
    /// also come from top-ups cannot reconcile); `bourse up` sets it.
    pub chain_service_url: Option<String>,
    /// Fee of the resting side of a trade, as a fraction of what it receives (`"0.001"` = 0.1%).
    pub maker_fee_rate: Decimal,
    /// Fee of the side that took liquidity.
    pub taker_fee_rate: Decimal,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            top_up_enabled: false,
            top_up_max_per_call: Decimal::from(100_000),
            top_up_max_per_day: Decimal::from(1_000_000),
            on_chain_currencies: Vec::new(),
            audit_interval_ms: 600_000,
            audit_grace_ms: 10_000,
            chain_service_url: None,
            reference: ReferenceData::default(),
            maker_fee_rate: Decimal::new(1, 3),
            taker_fee_rate: Decimal::new(2, 3),
        }
    }
}
