//! matching-service's own settings (`MATCHING__SETTINGS__*`).

use bourse_common::reference::ReferenceData;
use serde::{Deserialize, Serialize};

/// matching-service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The markets whose books it keeps (and their currencies).
    pub reference: ReferenceData,
    /// Bounds of the public reads (anyone may call them, unauthenticated).
    pub public_reads: PublicReads,
    /// The markets whose books this instance keeps (none: every market of
    /// `reference`), each from its own queue
    /// ([`orders_queue`](bourse_common::registry::orders_queue)). Markets
    /// spread over instances by giving each its own
    /// (`MATCHING__SETTINGS__MARKETS='["ETH-USDT"]'`); two instances given one
    /// market are safe: one consumes its queue, the other stands by.
    pub markets: Vec<String>,
}

impl Settings {
    /// The markets this instance keeps.
    pub fn kept_markets(&self) -> Result<Vec<String>, UnknownMarket> {
        let all = self.reference.markets.iter().map(|m| m.id.clone());
        if self.markets.is_empty() {
            return Ok(all.collect());
        }
        match self.markets.iter().find(|m| self.reference.market(m).is_none()) {
            Some(unknown) => Err(UnknownMarket(unknown.clone())),
            None => Ok(self.markets.clone()),
        }
    }
}

/// `settings.markets` names a market the reference data does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("settings.markets: no market {0} in the reference data")]
pub struct UnknownMarket(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_keeps_every_market_or_those_it_is_given() {
        let given = |markets: &[&str]| {
            Settings { markets: markets.iter().map(|m| m.to_string()).collect(), ..Settings::default() }
                .kept_markets()
        };
        assert_eq!(given(&[]), Ok(vec!["BTC-USDT".to_string(), "ETH-USDT".to_string()]));
        assert_eq!(given(&["ETH-USDT"]), Ok(vec!["ETH-USDT".to_string()]));
        assert_eq!(
            given(&["ETH-USDT", "DOGE-USDT"]).unwrap_err().to_string(),
            "settings.markets: no market DOGE-USDT in the reference data"
        );
    }
}

/// How much one public request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicReads {
    /// `GET /api/markets/{market}/book` without `depth`: levels per side.
    pub default_book_depth: usize,
    /// The largest `depth` (past it: 400 `invalid_depth`).
    pub max_book_depth: usize,
    /// The most candles one request may span, `(to - from) / interval`
    /// (past it: 400 `too_many_candles`).
    pub max_candles: i64,
    /// The most trades one candles request may fold (past it: 400
    /// `too_many_trades`: a shorter range or a wider interval).
    pub max_candle_trades: i64,
}

impl Default for PublicReads {
    fn default() -> Self {
        Self { default_book_depth: 50, max_book_depth: 200, max_candles: 1440, max_candle_trades: 100_000 }
    }
}
