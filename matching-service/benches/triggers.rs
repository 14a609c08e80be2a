//! Trades per second on one market with 100,000 armed triggers.
//!
//! The book: 40 % fixed `Falls` stops at 50.00..=99.00 (below the price of 100), 40 % fixed `Rises` at
//! 101.00..=150.00, 20 % trailing (both directions, amount and percent trails of 2..=20), armed at
//! best prices within 0.5 of 100, so 100 different best prices to begin with.
//!
//! Measured: (a) trades that fire nothing while the price wanders in 99.50..=100.50; (b) trades that
//! each make a new high (moving every trailing `Falls` stop). Plain figures are printed first.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bourse_common::catalog::{PriceMove as Direction, Trail};
use criterion::{Criterion, Throughput};
use matching_service::triggers::{Armed, Level, TriggerBook};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Triggers armed on the market.
const TRIGGERS: u64 = 100_000;

/// Trades in each plain measurement.
const PLAIN_TRADES: usize = 2_000_000;

/// A small deterministic pseudo-random source (no extra dependency).
struct Lcg(u64);

impl Lcg {
    /// A number in `0..n`.
    fn below(&mut self, n: i64) -> i64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        i64::try_from(self.0 >> 33).unwrap_or(0) % n
    }
}

/// `c` hundredths.
fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

/// A trail of 2.00..=20.00, by amount or by percent.
fn trail(rng: &mut Lcg, percent: bool) -> Trail {
    let param = cents(200 + rng.below(1801));
    if percent { Trail::Percent(param) } else { Trail::Amount(param) }
}

/// The mix of triggers described in the file's doc.
fn armed(seq: u64, rng: &mut Lcg) -> Armed {
    let percent = seq % 20 >= 10;
    let (direction, level) = match seq % 10 {
        0..=3 => (Direction::Falls, Level::Fixed(cents(5000 + rng.below(4901)))),
        4..=7 => (Direction::Rises, Level::Fixed(cents(10100 + rng.below(4901)))),
        8 => {
            let best = cents(10000 + rng.below(50));
            (Direction::Falls, Level::Trailing { trail: trail(rng, percent), best })
        }
        _ => {
            let best = cents(9951 + rng.below(50));
            (Direction::Rises, Level::Trailing { trail: trail(rng, percent), best })
        }
    };
    Armed { id: Uuid::now_v7(), seq, direction, level }
}

/// A book with [`TRIGGERS`] armed.
fn armed_book() -> TriggerBook {
    let mut rng = Lcg(42);
    let mut book = TriggerBook::default();
    for seq in 0..TRIGGERS {
        book.insert(armed(seq, &mut rng));
    }
    book
}

/// A random walk by steps of 0.01 within 99.50..=100.50, starting at 100.
fn wander_prices() -> Vec<Decimal> {
    let mut rng = Lcg(7);
    let mut c = 10000;
    (0..1 << 16)
        .map(|_| {
            c = (c + rng.below(3) - 1).clamp(9950, 10050);
            cents(c)
        })
        .collect()
}

/// Runs `trades` trades at the prices `price(i)` and prints the rate and how many fired.
fn plain(name: &str, book: &mut TriggerBook, trades: usize, mut price: impl FnMut(usize) -> Decimal) {
    let (mut fired, start) = (0, Instant::now());
    for i in 0..trades {
        fired += black_box(book.trade(price(i))).len();
    }
    let elapsed = start.elapsed();
    println!("plain: {name}: {:.0} trades/s over {trades} trades, {fired} fired", rate(trades, elapsed));
}

/// Events per second.
fn rate(events: usize, elapsed: Duration) -> f64 {
    f64::from(u32::try_from(events).unwrap_or(u32::MAX)) / elapsed.as_secs_f64()
}

/// The figures printed without criterion, on one book.
fn plain_figures(prices: &[Decimal]) {
    let start = Instant::now();
    let mut book = armed_book();
    println!("plain: arming {TRIGGERS} triggers: {:?}", start.elapsed());

    let start = Instant::now();
    let fired = book.trade(cents(10050)).len();
    println!(
        "plain: first trade at 100.50 (merges all trailing groups): {:?}, {fired} fired",
        start.elapsed()
    );

    plain("(a) wander, no fire", &mut book, PLAIN_TRADES, |i| prices[i % prices.len()]);
    let tick = Decimal::new(1, 10);
    let mut high = cents(10050);
    plain("(b) new high each trade", &mut book, PLAIN_TRADES, |_| {
        high += tick;
        high
    });

    let mut gap = book.clone();
    let start = Instant::now();
    let fired = gap.trade(cents(9000)).len();
    let elapsed = start.elapsed();
    println!("plain: gap down to 90: {fired} fired in {elapsed:?} ({:.0} fired/s)", rate(fired, elapsed));
}

/// The criterion measurements.
fn criterion_figures(c: &mut Criterion, prices: &[Decimal]) {
    let mut book = armed_book();
    let mut group = c.benchmark_group("trade");
    group.throughput(Throughput::Elements(1));
    let (mut i, mut fired) = (0, 0);
    group.bench_function("a_wander_no_fire", |b| {
        b.iter(|| {
            i += 1;
            fired += black_box(book.trade(prices[i % prices.len()])).len();
        });
    });
    let tick = Decimal::new(1, 10);
    let mut high = cents(10050);
    group.bench_function("b_new_high", |b| {
        b.iter(|| {
            high += tick;
            fired += black_box(book.trade(high)).len();
        });
    });
    group.finish();
    println!("criterion: {fired} fired in all, {} still armed", book.len());
}

fn main() {
    let prices = wander_prices();
    plain_figures(&prices);
    let mut c = Criterion::default().configure_from_args();
    criterion_figures(&mut c, &prices);
    c.final_summary();
}
