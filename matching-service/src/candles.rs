//! Candles from trades, pure: the same trades always give the same candles.
//!
//! [`candles`] folds a range of trades (the REST history); [`Live`] keeps the
//! latest candle of every interval up to date trade by trade (the
//! `market.candles` feed). Both add a trade with [`Candle::add`], so a candle
//! of the feed is the history's candle of that interval so far.

pub use bourse_common::catalog::{CandleUpdated, Interval};
use bourse_common::micros_to_time;
use rust_decimal::Decimal;

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

/// The start of the interval that holds `at_micros`.
pub fn start_of(at_micros: i64, interval: Interval) -> i64 {
    let width = interval.micros();
    at_micros.div_euclid(width) * width
}

impl Candle {
    /// The candle of `interval` that `tick` opens.
    pub fn first(tick: &Tick, interval: Interval) -> Self {
        Self {
            open_micros: start_of(tick.at_micros, interval),
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume: tick.quantity,
        }
    }

    /// Adds the next trade of the same interval.
    pub fn add(&mut self, tick: &Tick) {
        self.high = self.high.max(tick.price);
        self.low = self.low.min(tick.price);
        self.close = tick.price;
        self.volume += tick.quantity;
    }

    /// The candle as sent on `bourse.market` (and, field for field, as REST shows it).
    pub fn message(&self, market: &str, interval: Interval) -> CandleUpdated {
        CandleUpdated {
            market: market.to_string(),
            interval,
            open_time: micros_to_time(self.open_micros),
            open: self.open.into(),
            high: self.high.into(),
            low: self.low.into(),
            close: self.close.into(),
            volume: self.volume.into(),
        }
    }
}

/// Candles of the intervals that have trades, oldest first. `ticks` must be
/// in execution order.
pub fn candles(ticks: &[Tick], interval: Interval) -> Vec<Candle> {
    let mut out: Vec<Candle> = Vec::new();
    for tick in ticks {
        match out.last_mut() {
            Some(c) if c.open_micros == start_of(tick.at_micros, interval) => c.add(tick),
            _ => out.push(Candle::first(tick, interval)),
        }
    }
    out
}

/// The latest candle of every interval of one market, as its trades come.
///
/// It has seen every trade executed since `from` ([`Live::rebuild`] reads
/// them from storage); [`Live::add`] takes the next trade only when that
/// still holds and the trade is not older than the last one seen (the
/// clock went back, or the trade is before `from`): then the caller
/// rebuilds, the trade included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    from: i64,
    /// When the last trade seen was executed.
    last: i64,
    /// One per interval of [`Interval::ALL`], in its order: the candle that holds `last`.
    latest: Vec<Option<Candle>>,
}

impl Live {
    /// Where a rebuild for a trade at `at_micros` starts reading trades: the
    /// start of the widest interval that holds it (every narrower interval
    /// that holds it starts there or later).
    pub fn window_start(at_micros: i64) -> i64 {
        Interval::ALL.iter().map(|i| start_of(at_micros, *i)).min().unwrap_or(at_micros)
    }

    /// From every trade executed since `from`, in execution order; with the
    /// candles that hold the trade executed at `at_micros` (one of `ticks`),
    /// one per interval of [`Interval::ALL`].
    pub fn rebuild(from: i64, ticks: &[Tick], at_micros: i64) -> (Self, Vec<(Interval, Candle)>) {
        let mut latest = Vec::with_capacity(Interval::ALL.len());
        let mut holding = Vec::with_capacity(Interval::ALL.len());
        for &interval in Interval::ALL {
            let all = candles(ticks, interval);
            let start = start_of(at_micros, interval);
            holding.extend(all.iter().rev().find(|c| c.open_micros == start).map(|c| (interval, *c)));
            latest.push(all.last().copied());
        }
        let last = ticks.last().map_or(from, |t| t.at_micros);
        (Self { from, last, latest }, holding)
    }

    /// Adds the next trade: the candles that now hold it, one per interval
    /// of [`Interval::ALL`]; `None` (and nothing changed) when the trade is
    /// before `from` or before the last trade seen.
    pub fn add(&mut self, tick: &Tick) -> Option<Vec<(Interval, Candle)>> {
        if tick.at_micros < self.from || tick.at_micros < self.last {
            return None;
        }
        self.last = tick.at_micros;
        let updated = Interval::ALL
            .iter()
            .zip(self.latest.iter_mut())
            .map(|(&interval, slot)| {
                let candle = match slot {
                    Some(c) if c.open_micros == start_of(tick.at_micros, interval) => {
                        c.add(tick);
                        *c
                    }
                    // A later interval: it has no trade before this one.
                    _ => *slot.insert(Candle::first(tick, interval)),
                };
                (interval, candle)
            })
            .collect();
        Some(updated)
    }
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

    /// The candle of each interval that holds `ticks[n]`, from the history of `ticks[..=n]`.
    fn from_history(ticks: &[Tick], n: usize) -> Vec<(Interval, Candle)> {
        Interval::ALL.iter().filter_map(|&i| candles(&ticks[..=n], i).last().map(|c| (i, *c))).collect()
    }

    #[test]
    fn the_live_candles_are_the_historys_candles_so_far() {
        let day = Interval::D1.micros() / 1_000_000;
        // Across minutes, hours and a day boundary; two trades in the same microsecond.
        let ticks = [
            tick(day - 61, 10, 1),
            tick(day - 30, 12, 2),
            tick(day - 30, 8, 1),
            tick(day + 5, 11, 3),
            tick(day + 400, 9, 1),
            tick(day + 3_700, 14, 2),
        ];
        // Cold: rebuilt from the trades since the start of the day of the first one.
        let from = Live::window_start(ticks[0].at_micros);
        assert_eq!(from, 0);
        let (mut live, first) = Live::rebuild(from, &ticks[..1], ticks[0].at_micros);
        assert_eq!(first, from_history(&ticks, 0));
        for n in 1..ticks.len() {
            assert_eq!(live.add(&ticks[n]), Some(from_history(&ticks, n)), "trade {n}");
        }
        // Rebuilt from storage at any point, it goes on the same.
        let (again, holding) = Live::rebuild(from, &ticks[..4], ticks[3].at_micros);
        assert_eq!(holding, from_history(&ticks, 3));
        let mut again = again;
        assert_eq!(again.add(&ticks[4]), Some(from_history(&ticks, 4)));
    }

    #[test]
    fn a_trade_older_than_what_it_has_seen_calls_for_a_rebuild() {
        let ticks = [tick(100, 10, 1), tick(400, 12, 1), tick(200, 11, 1)];
        let from = Live::window_start(ticks[0].at_micros);
        let (mut live, _) = Live::rebuild(from, &ticks[..2], ticks[1].at_micros);
        let before = live.clone();
        assert_eq!(live.add(&ticks[2]), None);
        assert_eq!(live, before, "unchanged");
        assert_eq!(live.add(&tick(-1, 10, 1)), None, "before `from`");
        // The rebuild (the late trade stored among the others) gives the candles that hold it.
        let stored = [ticks[0], ticks[2], ticks[1]];
        let (_, holding) = Live::rebuild(from, &stored, ticks[2].at_micros);
        let one_minute = holding.iter().find(|(i, _)| *i == Interval::M1).map(|(_, c)| *c);
        assert_eq!(one_minute, candles(&stored, Interval::M1).get(1).copied());
        let five = holding.iter().find(|(i, _)| *i == Interval::M5).map(|(_, c)| c.volume);
        assert_eq!(five, Some(Decimal::from(2)), "the 5m candle of 0s..300s, not the latest");
    }
}
