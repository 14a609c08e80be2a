//! The matching engine alone on an exchange-core-like mix, against the
//! `matchcore` crate on the same workload, in one run.
//!
//!     cargo bench -p matching-service --bench engine
//!
//! Workload (deterministic, generated once): a book of 1,000 resting GTC
//! orders over ~750 price levels from 1,000 accounts, then 100,000 commands:
//! ~9% GTC limit, ~3% IOC (aggressive), ~6% cancel, ~82% move (cancel and
//! replace at a new price; `matchcore` amends the price, which also loses
//! time priority). Prices and quantities are whole ticks. The live orders a
//! command targets are chosen by running the workload through this engine
//! once; `matchcore` has no self-trade prevention, so the two books may
//! differ slightly where an account would have traded with itself, and a
//! command for an order that is already gone is rejected cheaply there.
//! Orders are built before the clock starts (their terms carry the market's
//! name), on both sides.

use std::collections::HashMap;
use std::hint::black_box;

use bourse_common::catalog::{OrderTerms, OrderType, Side, TimeInForce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use matching_service::engine::{Book, NewOrder, Outcome, State};
use rust_decimal::Decimal;
use uuid::Uuid;

const RESTING: u64 = 1_000;
const COMMANDS: u64 = 100_000;
const ACCOUNTS: u64 = 1_000;
const MID: u64 = 10_000;
const BAND: u64 = 900;

#[derive(Debug, Clone, Copy)]
enum Op {
    Submit { id: u64, user: u64, buy: bool, price: u64, quantity: u64, ioc: bool },
    Cancel { id: u64 },
    Move { id: u64, user: u64, buy: bool, price: u64, quantity: u64 },
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn new_order(
    id: u64,
    user: u64,
    buy: bool,
    price: u64,
    quantity: u64,
    time_in_force: TimeInForce,
) -> NewOrder {
    let terms = OrderTerms {
        market: "ETH-USDT".to_string(),
        side: if buy { Side::Buy } else { Side::Sell },
        order_type: OrderType::Limit,
        price: Some(Decimal::from(price).into()),
        quantity: Decimal::from(quantity).into(),
        time_in_force,
    };
    NewOrder { id: Uuid::from_u64_pair(0, id), user: Uuid::from_u64_pair(1, user), terms }
}

/// An [`Op`] as the engine takes it; a move is a cancel and a new submit under the same id.
enum Command {
    Submit(NewOrder),
    Cancel(Uuid),
    Move(Uuid, NewOrder),
}

fn command(op: &Op) -> Command {
    match *op {
        Op::Submit { id, user, buy, price, quantity, ioc } => {
            let tif = if ioc { TimeInForce::Ioc } else { TimeInForce::Gtc };
            Command::Submit(new_order(id, user, buy, price, quantity, tif))
        }
        Op::Cancel { id } => Command::Cancel(Uuid::from_u64_pair(0, id)),
        Op::Move { id, user, buy, price, quantity } => Command::Move(
            Uuid::from_u64_pair(0, id),
            new_order(id, user, buy, price, quantity, TimeInForce::Gtc),
        ),
    }
}

/// Runs one command.
fn apply(book: &mut Book, command: &Command) -> [Option<Outcome>; 2] {
    match command {
        Command::Submit(order) => [Some(book.submit(order)), None],
        Command::Cancel(id) => [Some(book.cancel(*id)), None],
        Command::Move(id, order) => [Some(book.cancel(*id)), Some(book.submit(order))],
    }
}

/// The resting book, then the commands; live orders tracked through this engine.
fn workload() -> (Vec<Op>, Vec<Op>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut book = Book::default();
    let mut live: Vec<(u64, u64, bool)> = Vec::new(); // (id, user, buy)
    let mut position: HashMap<u64, usize> = HashMap::new();
    let mut next_id = 0;
    let track = |book: &Book,
                 outcomes: &[Option<Outcome>],
                 live: &mut Vec<(u64, u64, bool)>,
                 position: &mut HashMap<u64, usize>,
                 op: &Op| {
        for outcome in outcomes.iter().flatten() {
            for update in &outcome.updates {
                let id = update.order.as_u64_pair().1;
                let resting = update.state == State::Resting && book.get(update.order).is_some();
                match (resting, position.get(&id).copied()) {
                    (true, None) => {
                        let (user, buy) = match *op {
                            Op::Submit { user, buy, .. } | Op::Move { user, buy, .. } => (user, buy),
                            Op::Cancel { .. } => continue,
                        };
                        position.insert(id, live.len());
                        live.push((id, user, buy));
                    }
                    (false, Some(at)) => {
                        live.swap_remove(at);
                        position.remove(&id);
                        if let Some(moved) = live.get(at) {
                            position.insert(moved.0, at);
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    let mut resting = Vec::new();
    for _ in 0..RESTING {
        let buy = rng.below(2) == 0;
        let price = if buy { MID - rng.below(BAND) } else { MID + 1 + rng.below(BAND) };
        let op = Op::Submit {
            id: next_id,
            user: rng.below(ACCOUNTS),
            buy,
            price,
            quantity: 1 + rng.below(100),
            ioc: false,
        };
        next_id += 1;
        let outcomes = apply(&mut book, &command(&op));
        track(&book, &outcomes, &mut live, &mut position, &op);
        resting.push(op);
    }
    let mut commands = Vec::new();
    for _ in 0..COMMANDS {
        let roll = rng.below(100);
        let op = if roll < 9 || live.is_empty() {
            let buy = rng.below(2) == 0;
            // Mostly passive, now and then crossing the spread.
            let offset = rng.below(BAND + 10);
            let price = if buy { MID + 5 - offset } else { MID - 4 + offset };
            let op = Op::Submit {
                id: next_id,
                user: rng.below(ACCOUNTS),
                buy,
                price,
                quantity: 1 + rng.below(100),
                ioc: false,
            };
            next_id += 1;
            op
        } else if roll < 12 {
            let buy = rng.below(2) == 0;
            let price = if buy { MID + BAND } else { MID - BAND };
            let op = Op::Submit {
                id: next_id,
                user: rng.below(ACCOUNTS),
                buy,
                price,
                quantity: 1 + rng.below(50),
                ioc: true,
            };
            next_id += 1;
            op
        } else if roll < 18 {
            let (id, _, _) = live[rng.below(live.len() as u64) as usize];
            Op::Cancel { id }
        } else {
            let (id, user, buy) = live[rng.below(live.len() as u64) as usize];
            let quantity = book.get(Uuid::from_u64_pair(0, id)).map(|o| o.remaining()).unwrap_or_default();
            let quantity = u64::try_from(quantity.mantissa()).unwrap_or(1).max(1);
            let offset = rng.below(BAND);
            let price = if buy { MID - offset } else { MID + 1 + offset };
            Op::Move { id, user, buy, price, quantity }
        };
        let outcomes = apply(&mut book, &command(&op));
        track(&book, &outcomes, &mut live, &mut position, &op);
        commands.push(op);
    }
    (resting, commands)
}

mod matchcore_side {
    use super::Op;
    use std::collections::HashMap;

    /// The same ops as `matchcore` commands; an order's id is the sequence number of its submit.
    pub fn commands(resting: &[Op], ops: &[Op]) -> (Vec<matchcore::Command>, Vec<matchcore::Command>) {
        use matchcore::*;
        let mut seq = 0u64;
        let mut ids: HashMap<u64, u64> = HashMap::new();
        let mut convert = |op: &Op| {
            let meta = CommandMeta { sequence_number: SequenceNumber(seq), timestamp: Timestamp(seq) };
            let kind = match *op {
                Op::Submit { id, buy, price, quantity, ioc, .. } => {
                    ids.insert(id, seq);
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let tif = if ioc { TimeInForce::Ioc } else { TimeInForce::Gtc };
                    CommandKind::Submit(SubmitCmd {
                        order: NewOrder::Limit(LimitOrder::new(
                            Price(price),
                            QuantityPolicy::Standard { quantity: Quantity(quantity) },
                            OrderFlags::new(side, false, tif),
                        )),
                    })
                }
                Op::Cancel { id } => CommandKind::Cancel(CancelCmd {
                    order_id: OrderId(ids.get(&id).copied().unwrap_or(u64::MAX)),
                    order_kind: OrderKind::Limit,
                }),
                Op::Move { id, price, .. } => CommandKind::Amend(AmendCmd {
                    order_id: OrderId(ids.get(&id).copied().unwrap_or(u64::MAX)),
                    patch: AmendPatch::Limit(LimitOrderPatch::new().with_price(Price(price))),
                }),
            };
            seq += 1;
            Command { meta, kind }
        };
        let resting = resting.iter().map(&mut convert).collect();
        let ops = ops.iter().map(&mut convert).collect();
        (resting, ops)
    }
}

fn bench(c: &mut Criterion) {
    let (resting, ops) = workload();
    let mut prefilled = Book::default();
    for op in &resting {
        apply(&mut prefilled, &command(op));
    }
    let commands: Vec<Command> = ops.iter().map(command).collect();
    let (mc_resting, mc_ops) = matchcore_side::commands(&resting, &ops);
    let mut mc_prefilled = matchcore::OrderBook::new("ETH-USDT");
    for command in &mc_resting {
        black_box(mc_prefilled.execute(command));
    }
    println!(
        "workload: {} resting orders on {} bid and {} ask levels, {} commands",
        prefilled.len(),
        prefilled.orders(Side::Buy).map(|o| o.price).collect::<std::collections::BTreeSet<_>>().len(),
        prefilled.orders(Side::Sell).map(|o| o.price).collect::<std::collections::BTreeSet<_>>().len(),
        ops.len()
    );

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(ops.len() as u64));
    group.sample_size(10);
    group.bench_function("bourse", |b| {
        b.iter_batched(
            || prefilled.clone(),
            |mut book| {
                for command in &commands {
                    black_box(apply(&mut book, command));
                }
                book
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("matchcore", |b| {
        b.iter_batched(
            || mc_prefilled.clone(),
            |mut book| {
                for command in &mc_ops {
                    black_box(book.execute(command));
                }
                book
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
