//! Candles from trades, pure: the same trades always give the same candles.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A candle width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "4h")]
    H4,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    pub fn micros(self) -> i64 {
        const MINUTE: i64 = 60_000_000;
        match self {
            Self::M1 => MINUTE,
            Self::M5 => 5 * MINUTE,
            Self::M15 => 15 * MINUTE,
            Self::H1 => 60 * MINUTE,
            Self::H4 => 240 * MINUTE,
            Self::D1 => 1440 * MINUTE,
        }
    }
}

/// A trade as candles see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub at_micros: i64,
    pub price: Decimal,
    pub quantity: Decimal,
}

/// One candle; `open_micros` is the start of its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candle {
    pub open_micros: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// Candles of the intervals that have trades, oldest first. `ticks` must be
/// in execution order.
pub fn candles(ticks: &[Tick], interval: Interval) -> Vec<Candle> {
    let width = interval.micros();
    let mut out: Vec<Candle> = Vec::new();
    for tick in ticks {
        let start = tick.at_micros.div_euclid(width) * width;
        match out.last_mut() {
            Some(c) if c.open_micros == start => {
                c.high = c.high.max(tick.price);
                c.low = c.low.min(tick.price);
                c.close = tick.price;
                c.volume += tick.quantity;
            }
            _ => out.push(Candle {
                open_micros: start,
                open: tick.price,
                high: tick.price,
                low: tick.price,
                close: tick.price,
                volume: tick.quantity,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(second: i64, price: i64, quantity: i64) -> Tick {
        Tick { at_micros: second * 1_000_000, price: Decimal::from(price), quantity: Decimal::from(quantity) }
    }

    #[test]
    fn trades_fold_into_open_high_low_close_volume_per_interval() {
        let ticks = [tick(0, 10, 1), tick(30, 12, 2), tick(59, 9, 1), tick(60, 11, 5), tick(200, 13, 1)];
        let one_minute = candles(&ticks, Interval::M1);
        assert_eq!(one_minute.len(), 3);
        let first = one_minute[0];
        let d = Decimal::from;
        assert_eq!(
            (first.open, first.high, first.low, first.close, first.volume),
            (d(10), d(12), d(9), d(9), d(4))
        );
        assert_eq!(one_minute[1].open_micros, 60_000_000);
        assert_eq!(one_minute[2].open_micros, 180_000_000);
        let five = candles(&ticks, Interval::M5);
        assert_eq!((five.len(), five[0].volume, five[0].close), (1, d(10), d(13)));
    }
}
