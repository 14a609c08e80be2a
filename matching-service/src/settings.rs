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
