//! The matching engine: one order book per market, price-time priority, as a
//! pure, deterministic state machine. The same sequence of submits and
//! cancels always gives the same fills. No clock, no I/O.
//!
//! Rules:
//! - a taker fills against the best opposite price first, and within a price
//!   against the oldest resting order; every fill is at the maker's price;
//! - `gtc` rests what is left, `ioc` cancels what is left, `fok` fills whole
//!   at once or not at all, `post_only` is cancelled if it would take;
//!   market orders are `ioc` and take any price (a market buy stops at its
//!   price cap when it carries one);
//! - self-trade prevention, "cancel taker": when the next maker belongs to
//!   the taker's user, the taker's remainder is cancelled (fills already
//!   made stand) and the resting order is left untouched.

use std::collections::BTreeMap;

use bourse_common::catalog::{BookStatus, OrderTerms, OrderType, Side, SubmitOrder, TimeInForce};
use bourse_common::money::Amount;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use uuid::Uuid;

/// An order entering the book: its terms as the catalog has them (the
/// market is the caller's: the book does not check it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub id: Uuid,
    pub user: Uuid,
    pub terms: OrderTerms,
}

impl From<SubmitOrder> for NewOrder {
    fn from(command: SubmitOrder) -> Self {
        Self { id: command.order_id, user: command.user_id, terms: command.terms }
    }
}

/// An order resting in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resting {
    pub id: Uuid,
    pub user: Uuid,
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    pub filled: Decimal,
    /// Arrival order: lower is older.
    pub seq: u64,
}

impl Resting {
    pub fn remaining(&self) -> Decimal {
        self.quantity - self.filled
    }
}

/// One fill between a taker and a maker, at the maker's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub price: Decimal,
    pub quantity: Decimal,
    pub taker_side: Side,
    pub taker_order: Uuid,
    pub taker_user: Uuid,
    pub maker_order: Uuid,
    pub maker_user: Uuid,
    /// What each order still has to fill after this one.
    pub taker_remaining: Decimal,
    pub maker_remaining: Decimal,
}

/// Where an order stands after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In the book (possibly partly filled).
    Resting,
    Filled,
    Cancelled(CancelReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    Requested,
    /// `ioc` or market: the rest could not fill at once.
    NotFilledAtOnce,
    /// `fok`: it could not fill whole.
    FillOrKill,
    /// `post_only`: it would have taken liquidity.
    WouldTake,
    /// Its next match was an order of the same user.
    SelfTrade,
    /// Its cancel came before it (a retried submit arrived after its cancel):
    /// it never entered the book.
    BeforeSubmit,
    /// The limit leg of an OCO whose `expires_at` passed.
    Expired,
    /// The limit leg of an OCO whose stop the price had crossed before it was armed.
    StopCrossed,
}

impl CancelReason {
    /// Why, in words for the user (`order.updated`'s `reason`).
    pub fn message(self) -> &'static str {
        match self {
            Self::Requested => "cancelled on request",
            Self::NotFilledAtOnce => "the rest could not fill at once",
            Self::FillOrKill => "fill-or-kill: not enough liquidity to fill whole",
            Self::WouldTake => "post-only: it would have taken liquidity",
            Self::SelfTrade => "self-trade prevented: the next match was your own order",
            Self::BeforeSubmit => "cancelled on request before it reached the book",
            Self::Expired => "its OCO expired",
            Self::StopCrossed => "its OCO's stop had already been crossed when it was placed",
        }
    }
}

/// The new state of an order the command touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub order: Uuid,
    pub user: Uuid,
    pub quantity: Decimal,
    pub filled: Decimal,
    pub state: State,
}

impl Update {
    /// The order's status as the catalog words it (`order.updated`).
    pub fn status(&self) -> BookStatus {
        match self.state {
            State::Resting if self.filled.is_zero() => BookStatus::Open,
            State::Resting => BookStatus::PartiallyFilled,
            State::Filled => BookStatus::Filled,
            State::Cancelled(_) => BookStatus::Cancelled,
        }
    }

    /// Why it was cancelled, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.state {
            State::Cancelled(reason) => Some(reason),
            State::Resting | State::Filled => None,
        }
    }
}

/// What one command did: fills in order, then every touched order's state
/// (makers as they were filled, the taker or cancelled order last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub fills: Vec<Fill>,
    pub updates: Vec<Update>,
}

impl Outcome {
    /// An order turned away at the door for `reason`: it never enters the
    /// book, nothing fills, it is cancelled. The book does not know why (a
    /// cancel that came first is the caller's to remember).
    pub fn turned_away(order: &NewOrder, reason: CancelReason) -> Self {
        Self {
            fills: Vec::new(),
            updates: vec![Update {
                order: order.id,
                user: order.user,
                quantity: order.terms.quantity.value(),
                filled: Decimal::ZERO,
                state: State::Cancelled(reason),
            }],
        }
    }
}

/// Decimals of a price the book orders by exactly (markets have fewer:
/// `ReferenceData::validate` checks it).
pub const MAX_PRICE_SCALE: u32 = 12;

/// A price as an integer number of 10^-12 units: the book's levels are keyed
/// by it, since comparing integers is several times cheaper than Decimals.
/// Exact for prices below about 7.9e16 (a Decimal's 96-bit mantissa at scale
/// 12); every market's `max_price` is at most `reference::MAX_PRICE` (10^15,
/// checked by `ReferenceData::validate` and at order placement), so every
/// price that reaches a book is keyed exactly.
type PriceKey = i128;

/// 10^n for n in 0..=MAX_PRICE_SCALE.
const POW10: [i128; MAX_PRICE_SCALE as usize + 1] = {
    let mut table = [1i128; MAX_PRICE_SCALE as usize + 1];
    let mut n = 1;
    while n < table.len() {
        table[n] = table[n - 1] * 10;
        n += 1;
    }
    table
};

/// Largest magnitude a Decimal's mantissa holds (96 bits).
const MAX_MANTISSA: i128 = (1i128 << 96) - 1;

fn key(price: Decimal) -> PriceKey {
    // Fast path: scaling up is a multiplication, exactly what `rescale` does
    // while the mantissa fits in 96 bits; anything else goes through `rescale`
    // so the key is the same as it always was.
    if let Some(up) = MAX_PRICE_SCALE.checked_sub(price.scale()) {
        let scaled = price.mantissa() * POW10[up as usize];
        if scaled.abs() <= MAX_MANTISSA {
            return scaled;
        }
    }
    let mut p = price;
    p.rescale(MAX_PRICE_SCALE);
    p.mantissa()
}

/// "No slot": the end of a list.
const NIL: u32 = u32::MAX;

/// A vector of values addressed by `u32` slots; a removed slot is reused by
/// the next insert, so a book that churns orders allocates nothing once warm.
/// A free slot keeps its stale value: nothing points at it any more.
#[derive(Debug, Clone)]
struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self { items: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(at) => {
                self.items[at as usize] = value;
                at
            }
            None => {
                self.items.push(value);
                // A book holds far fewer than 2^32 - 1 orders (NIL is reserved).
                u32::try_from(self.items.len() - 1).unwrap_or(NIL)
            }
        }
    }

    fn release(&mut self, at: u32) {
        self.free.push(at);
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, at: u32) -> &T {
        &self.items[at as usize]
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, at: u32) -> &mut T {
        &mut self.items[at as usize]
    }
}

/// A resting order and its neighbours in its price level, oldest first.
#[derive(Debug, Clone)]
struct Slot {
    order: Resting,
    level: u32,
    prev: u32,
    next: u32,
}

/// One price of one side: a doubly linked list of its orders' slots
/// (`head` is NIL when it is empty).
#[derive(Debug, Clone, Copy)]
struct Level {
    key: PriceKey,
    head: u32,
    tail: u32,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// How many empty levels a side keeps at most before it sweeps them, unless
/// they are fewer than its live ones.
const SWEEP_AT: usize = 1024;

/// One side of the book: its price levels, ordered by an ordered map (for
/// the best and for walking them in order) and found by a hash map, so that
/// resting an order at a price the side already has costs a hash lookup, not
/// a tree search.
///
/// A level emptied at the best end goes at once, so the best level is never
/// empty; one emptied inside stays, empty, for the next order at its price
/// (moves and cancels keep reusing a few prices) until the side holds more
/// than `SWEEP_AT` empty levels and more empty than live ones: one sweep then
/// drops them all, so an empty level costs O(1) amortized and the memory stays
/// within twice the live levels (or `SWEEP_AT`).
#[derive(Debug, Clone, Default)]
struct Ladder {
    by_price: BTreeMap<PriceKey, u32>,
    at_price: FxHashMap<PriceKey, u32>,
    levels: Slab<Level>,
    /// How many of `levels` are empty.
    empty: usize,
}

impl Ladder {
    /// The best level (highest bid, lowest ask) if `side` is this ladder's side.
    fn best(&self, side: Side) -> Option<u32> {
        let best = match side {
            Side::Buy => self.by_price.last_key_value(),
            Side::Sell => self.by_price.first_key_value(),
        };
        best.map(|(_, &at)| at)
    }

    /// The level for price `k`, made if the side has none.
    fn level_for(&mut self, k: PriceKey) -> u32 {
        if let Some(&at) = self.at_price.get(&k) {
            if self.levels[at].is_empty() {
                self.empty -= 1;
            }
            return at;
        }
        let at = self.levels.insert(Level { key: k, head: NIL, tail: NIL });
        self.by_price.insert(k, at);
        self.at_price.insert(k, at);
        at
    }

    /// A level of this `side` just lost its last order.
    fn emptied(&mut self, side: Side) {
        self.empty += 1;
        while let Some(best) = self.best(side) {
            if !self.levels[best].is_empty() {
                break;
            }
            let k = self.levels[best].key;
            self.by_price.remove(&k);
            self.drop_level(k, best);
        }
        if self.empty > SWEEP_AT && self.empty * 2 > self.by_price.len() {
            let mut dropped = Vec::with_capacity(self.empty);
            self.by_price.retain(|&k, &mut at| {
                let keep = !self.levels[at].is_empty();
                if !keep {
                    dropped.push((k, at));
                }
                keep
            });
            for (k, at) in dropped {
                self.drop_level(k, at);
            }
        }
    }

    /// Forgets the empty level `at` of price `k`, already out of `by_price`.
    fn drop_level(&mut self, k: PriceKey, at: u32) {
        self.at_price.remove(&k);
        self.levels.release(at);
        self.empty -= 1;
    }
}

/// One market's book.
///
/// Orders live in a slab, each price level is an intrusive list of slots
/// (oldest at the head), each side is a [`Ladder`] of levels, and an id map
/// finds an order's slot: a cancel is a hash removal and an O(1) unlink, a
/// resting insert a hash lookup of its price and an O(1) link.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: Ladder,
    asks: Ladder,
    slots: Slab<Slot>,
    /// Where each resting order is; ids are not attacker-chosen (the service makes them).
    index: FxHashMap<Uuid, u32>,
    next_seq: u64,
}

/// The orders of one level, oldest first.
struct LevelOrders<'a> {
    slots: &'a Slab<Slot>,
    next: u32,
}

impl<'a> Iterator for LevelOrders<'a> {
    type Item = &'a Resting;

    fn next(&mut self) -> Option<&'a Resting> {
        if self.next == NIL {
            return None;
        }
        let slot = &self.slots[self.next];
        self.next = slot.next;
        Some(&slot.order)
    }
}

impl Book {
    /// A book holding `orders` (e.g. reloaded from storage), in their `seq` order.
    pub fn from_resting(mut orders: Vec<Resting>) -> Self {
        orders.sort_by_key(|o| o.seq);
        let mut book = Book::default();
        for order in orders {
            book.next_seq = book.next_seq.max(order.seq + 1);
            book.insert(order);
        }
        book
    }

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// The levels of a side, best price first (some inside may be empty).
    fn levels_best_first(&self, side: Side) -> Box<dyn Iterator<Item = &Level> + '_> {
        let ladder = self.ladder(side);
        let level = |&at: &u32| &ladder.levels[at];
        match side {
            Side::Buy => Box::new(ladder.by_price.values().rev().map(level)),
            Side::Sell => Box::new(ladder.by_price.values().map(level)),
        }
    }

    fn level_orders(&self, level: &Level) -> LevelOrders<'_> {
        LevelOrders { slots: &self.slots, next: level.head }
    }

    /// Rests `order` at the tail of its price level.
    fn insert(&mut self, order: Resting) {
        let k = key(order.price);
        let id = order.id;
        let ladder = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = ladder.level_for(k);
        let tail = ladder.levels[level].tail;
        let at = self.slots.insert(Slot { order, level, prev: tail, next: NIL });
        match tail {
            NIL => ladder.levels[level].head = at,
            _ => self.slots[tail].next = at,
        }
        ladder.levels[level].tail = at;
        self.index.insert(id, at);
    }

    /// Takes the order in slot `at` out of its level (telling its side when
    /// that was the level's last order) and frees the slot; the id map is the
    /// caller's.
    fn unlink(&mut self, at: u32) -> &Resting {
        let Slot { level, prev, next, .. } = self.slots[at];
        let side = self.slots[at].order.side;
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        match prev {
            NIL => ladder.levels[level].head = next,
            _ => self.slots[prev].next = next,
        }
        match next {
            NIL => ladder.levels[level].tail = prev,
            _ => self.slots[next].prev = prev,
        }
        if ladder.levels[level].is_empty() {
            ladder.emptied(side);
        }
        self.slots.release(at);
        &self.slots[at].order
    }

    /// The best level of a side (highest bid, lowest ask), never empty.
    fn best_level(&self, side: Side) -> Option<&Level> {
        let ladder = self.ladder(side);
        ladder.best(side).map(|at| &ladder.levels[at])
    }

    /// The best price on a side: highest bid, lowest ask.
    pub fn best(&self, side: Side) -> Option<Decimal> {
        let level = self.best_level(side)?;
        self.level_orders(level).next().map(|o| o.price)
    }

    /// Resting orders of a side, best price first, oldest first within a price.
    pub fn orders(&self, side: Side) -> Box<dyn Iterator<Item = &Resting> + '_> {
        Box::new(self.levels_best_first(side).flat_map(|level| self.level_orders(level)))
    }

    pub fn get(&self, id: Uuid) -> Option<&Resting> {
        self.index.get(&id).map(|&at| &self.slots[at].order)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Would a taker on `side` with `limit` trade against `maker_price`?
    fn crosses(side: Side, limit: Option<PriceKey>, maker_price: PriceKey) -> bool {
        match (side, limit) {
            (_, None) => true,
            (Side::Buy, Some(limit)) => maker_price <= limit,
            (Side::Sell, Some(limit)) => maker_price >= limit,
        }
    }

    /// How much a taker of `user` could fill at once before its limit, or its own order.
    fn fillable(&self, side: Side, user: Uuid, quantity: Decimal, limit: Option<PriceKey>) -> Decimal {
        let mut total = Decimal::ZERO;
        for level in self.levels_best_first(side.opposite()) {
            if !Self::crosses(side, limit, level.key) {
                break;
            }
            for maker in self.level_orders(level) {
                if maker.user == user {
                    return total;
                }
                total += maker.remaining();
                if total >= quantity {
                    return total;
                }
            }
        }
        total
    }

    /// Matches `order`, rests or cancels what is left.
    pub fn submit(&mut self, order: &NewOrder) -> Outcome {
        let terms = &order.terms;
        let side = terms.side;
        let quantity = terms.quantity.value();
        let limit = terms.price.map(Amount::value);
        let limit_key = limit.map(key);
        let tif = match terms.order_type {
            OrderType::Market => TimeInForce::Ioc,
            OrderType::Limit => terms.time_in_force,
        };
        let contra = side.opposite();
        let done = |filled, state| Update { order: order.id, user: order.user, quantity, filled, state };

        let would_take = self.best_level(contra).is_some_and(|best| Self::crosses(side, limit_key, best.key));
        if tif == TimeInForce::PostOnly && would_take {
            return Outcome {
                fills: Vec::new(),
                updates: vec![done(Decimal::ZERO, State::Cancelled(CancelReason::WouldTake))],
            };
        }
        if tif == TimeInForce::Fok && self.fillable(side, order.user, quantity, limit_key) < quantity {
            return Outcome {
                fills: Vec::new(),
                updates: vec![done(Decimal::ZERO, State::Cancelled(CancelReason::FillOrKill))],
            };
        }

        let mut outcome = Outcome::default();
        let mut filled = Decimal::ZERO;
        let mut stopped = None;
        if would_take {
            while filled < quantity {
                let Some(best) = self.best_level(contra) else { break };
                if !Self::crosses(side, limit_key, best.key) {
                    break;
                }
                let head = best.head;
                let maker = &mut self.slots[head].order;
                if maker.user == order.user {
                    stopped = Some(CancelReason::SelfTrade);
                    break;
                }
                let take = maker.remaining().min(quantity - filled);
                maker.filled += take;
                filled += take;
                let maker_remaining = maker.remaining();
                outcome.fills.push(Fill {
                    price: maker.price,
                    quantity: take,
                    taker_side: side,
                    taker_order: order.id,
                    taker_user: order.user,
                    maker_order: maker.id,
                    maker_user: maker.user,
                    taker_remaining: quantity - filled,
                    maker_remaining,
                });
                let maker_done = maker_remaining.is_zero();
                outcome.updates.push(Update {
                    order: maker.id,
                    user: maker.user,
                    quantity: maker.quantity,
                    filled: maker.filled,
                    state: if maker_done { State::Filled } else { State::Resting },
                });
                if maker_done {
                    let id = maker.id;
                    self.index.remove(&id);
                    self.unlink(head);
                }
            }
        }

        let state = if filled == quantity {
            State::Filled
        } else if let Some(reason) = stopped {
            State::Cancelled(reason)
        } else if let (Some(price), TimeInForce::Gtc | TimeInForce::PostOnly) = (limit, tif) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.insert(Resting { id: order.id, user: order.user, side, price, quantity, filled, seq });
            State::Resting
        } else {
            State::Cancelled(CancelReason::NotFilledAtOnce)
        };
        let update = done(filled, state);
        if outcome.updates.is_empty() {
            outcome.updates = vec![update];
        } else {
            outcome.updates.push(update);
        }
        outcome
    }

    /// Takes a resting order out of the book on request; nothing if it is
    /// not there (already filled or cancelled).
    pub fn cancel(&mut self, id: Uuid) -> Outcome {
        self.cancel_because(id, CancelReason::Requested)
    }

    /// Takes a resting order out of the book for `reason`; nothing if it is not there.
    pub fn cancel_because(&mut self, id: Uuid, reason: CancelReason) -> Outcome {
        let Some(at) = self.index.remove(&id) else { return Outcome::default() };
        let order = self.unlink(at);
        let update = Update {
            order: order.id,
            user: order.user,
            quantity: order.quantity,
            filled: order.filled,
            state: State::Cancelled(reason),
        };
        Outcome { fills: Vec::new(), updates: vec![update] }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn user(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn order(
        id: Uuid,
        user: Uuid,
        side: Side,
        order_type: OrderType,
        price: Option<Decimal>,
        quantity: Decimal,
        time_in_force: TimeInForce,
    ) -> NewOrder {
        let terms = OrderTerms {
            market: "ETH-USDT".to_string(),
            side,
            order_type,
            price: price.map(Amount::new),
            quantity: Amount::new(quantity),
            time_in_force,
        };
        NewOrder { id, user, terms }
    }

    fn limit(id: u128, user_n: u128, side: Side, price: &str, quantity: &str, tif: TimeInForce) -> NewOrder {
        order(
            Uuid::from_u128(1000 + id),
            user(user_n),
            side,
            OrderType::Limit,
            Some(d(price)),
            d(quantity),
            tif,
        )
    }

    #[test]
    fn price_then_time_priority_and_fills_at_the_makers_price() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "101", "1", TimeInForce::Gtc));
        book.submit(&limit(2, 2, Side::Sell, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(3, 3, Side::Sell, "100", "1", TimeInForce::Gtc));
        let out = book.submit(&limit(4, 4, Side::Buy, "101", "2.5", TimeInForce::Gtc));
        let fills: Vec<(Uuid, Decimal, Decimal)> =
            out.fills.iter().map(|f| (f.maker_order, f.price, f.quantity)).collect();
        assert_eq!(
            fills,
            [
                (Uuid::from_u128(1002), d("100"), d("1")),
                (Uuid::from_u128(1003), d("100"), d("1")),
                (Uuid::from_u128(1001), d("101"), d("0.5")),
            ]
        );
        assert_eq!(out.updates.last().map(|u| u.state), Some(State::Filled));
        assert_eq!(book.get(Uuid::from_u128(1001)).map(Resting::remaining), Some(d("0.5")));
    }

    #[test]
    fn ioc_cancels_the_rest_and_fok_fills_whole_or_not_at_all() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "100", "1", TimeInForce::Gtc));
        let fok = book.submit(&limit(2, 2, Side::Buy, "100", "2", TimeInForce::Fok));
        assert!(fok.fills.is_empty());
        assert_eq!(fok.updates[0].state, State::Cancelled(CancelReason::FillOrKill));
        let ioc = book.submit(&limit(3, 2, Side::Buy, "100", "2", TimeInForce::Ioc));
        assert_eq!(ioc.fills.len(), 1);
        assert_eq!(
            (ioc.updates[1].filled, ioc.updates[1].state),
            (d("1"), State::Cancelled(CancelReason::NotFilledAtOnce))
        );
        assert!(book.is_empty());
    }

    #[test]
    fn post_only_never_takes_and_a_market_order_on_an_empty_side_ends_cleanly() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "100", "1", TimeInForce::Gtc));
        let post = book.submit(&limit(2, 2, Side::Buy, "100", "1", TimeInForce::PostOnly));
        assert_eq!(post.updates[0].state, State::Cancelled(CancelReason::WouldTake));
        let resting = book.submit(&limit(3, 2, Side::Buy, "99", "1", TimeInForce::PostOnly));
        assert_eq!(resting.updates[0].state, State::Resting);
        let market =
            order(Uuid::from_u128(9), user(5), Side::Buy, OrderType::Market, None, d("1"), TimeInForce::Gtc);
        let mut empty = Book::default();
        let out = empty.submit(&market);
        assert!(out.fills.is_empty());
        assert_eq!(out.updates[0].state, State::Cancelled(CancelReason::NotFilledAtOnce));
    }

    #[test]
    fn an_order_never_fills_against_its_own_user() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(2, 7, Side::Sell, "100", "1", TimeInForce::Gtc));
        let out = book.submit(&limit(3, 7, Side::Buy, "100", "2", TimeInForce::Gtc));
        assert_eq!(out.fills.len(), 1, "fills user 1, then stops before its own order");
        assert_eq!(out.updates.last().map(|u| u.state), Some(State::Cancelled(CancelReason::SelfTrade)));
        assert!(book.get(Uuid::from_u128(1002)).is_some(), "the resting own order stays");
    }

    #[test]
    fn cancel_takes_a_resting_order_out_once() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Buy, "100", "2", TimeInForce::Gtc));
        book.submit(&limit(2, 2, Side::Sell, "100", "0.5", TimeInForce::Gtc));
        let out = book.cancel(Uuid::from_u128(1001));
        assert_eq!(
            (out.updates[0].filled, out.updates[0].state),
            (d("0.5"), State::Cancelled(CancelReason::Requested))
        );
        assert!(book.cancel(Uuid::from_u128(1001)).updates.is_empty());
        assert!(book.is_empty());
    }

    #[test]
    fn an_order_turned_away_is_cancelled_with_nothing_filled_and_leaves_the_book_as_it_was() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "100", "1", TimeInForce::Gtc));
        let crossing = limit(2, 2, Side::Buy, "100", "2", TimeInForce::Gtc);
        let out = Outcome::turned_away(&crossing, CancelReason::BeforeSubmit);
        assert!(out.fills.is_empty());
        let update = &out.updates[0];
        assert_eq!((update.order, update.user), (crossing.id, crossing.user));
        assert_eq!((update.quantity, update.filled), (d("2"), Decimal::ZERO));
        assert_eq!(
            (update.status(), update.reason()),
            (BookStatus::Cancelled, Some(CancelReason::BeforeSubmit))
        );
        assert_eq!(CancelReason::BeforeSubmit.message(), "cancelled on request before it reached the book");
        assert_eq!(book.len(), 1, "the book is not touched");
    }

    #[test]
    fn an_update_says_its_status_in_the_catalogs_words() {
        let mut book = Book::default();
        let rest = book.submit(&limit(1, 1, Side::Sell, "100", "2", TimeInForce::Gtc));
        assert_eq!((rest.updates[0].status(), rest.updates[0].reason()), (BookStatus::Open, None));
        let take = book.submit(&limit(2, 2, Side::Buy, "100", "1", TimeInForce::Gtc));
        let statuses: Vec<BookStatus> = take.updates.iter().map(Update::status).collect();
        assert_eq!(statuses, [BookStatus::PartiallyFilled, BookStatus::Filled]);
        let cancel = book.cancel(Uuid::from_u128(1001));
        assert_eq!(
            (cancel.updates[0].status(), cancel.updates[0].reason()),
            (BookStatus::Cancelled, Some(CancelReason::Requested))
        );
    }

    #[test]
    fn a_freed_slot_is_reused_and_the_order_in_it_is_the_new_one() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Buy, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(2, 2, Side::Buy, "100", "1", TimeInForce::Gtc));
        book.cancel(Uuid::from_u128(1001));
        book.submit(&limit(3, 3, Side::Sell, "101", "2", TimeInForce::Gtc));
        assert_eq!(book.slots.items.len(), 2, "the cancelled order's slot took the new one");
        assert_eq!(book.get(Uuid::from_u128(1001)), None);
        assert_eq!(book.get(Uuid::from_u128(1003)).map(|o| (o.side, o.price)), Some((Side::Sell, d("101"))));
        let bids: Vec<Uuid> = book.orders(Side::Buy).map(|o| o.id).collect();
        assert_eq!(bids, [Uuid::from_u128(1002)]);
        let out = book.submit(&limit(4, 4, Side::Sell, "100", "1", TimeInForce::Gtc));
        assert_eq!(out.fills.iter().map(|f| f.maker_order).collect::<Vec<_>>(), [Uuid::from_u128(1002)]);
    }

    /// Every level of `ladder` is in both maps and the slab, and `empty` counts the empty ones.
    fn assert_sound(ladder: &Ladder) {
        let empty = ladder.by_price.values().filter(|&&at| ladder.levels[at].is_empty()).count();
        assert_eq!(ladder.empty, empty);
        assert_eq!(ladder.at_price.len(), ladder.by_price.len());
        assert_eq!(ladder.levels.items.len() - ladder.levels.free.len(), ladder.by_price.len());
        for (k, at) in &ladder.by_price {
            assert_eq!((ladder.at_price.get(k), ladder.levels[*at].key), (Some(at), *k));
        }
    }

    #[test]
    fn a_level_emptied_at_the_best_price_goes_at_once_by_cancel_or_fill() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Sell, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(2, 1, Side::Sell, "101", "1", TimeInForce::Gtc));
        book.submit(&limit(3, 1, Side::Sell, "101", "1", TimeInForce::Gtc));
        assert_eq!(book.asks.by_price.len(), 2);
        book.cancel(Uuid::from_u128(1002));
        assert_eq!((book.asks.by_price.len(), book.best(Side::Sell)), (2, Some(d("100"))));
        book.submit(&limit(4, 2, Side::Buy, "100", "1", TimeInForce::Gtc));
        assert_eq!((book.asks.by_price.len(), book.best(Side::Sell)), (1, Some(d("101"))), "filled away");
        book.cancel(Uuid::from_u128(1003));
        assert_eq!((book.asks.by_price.len(), book.best(Side::Sell)), (0, None), "cancelled away");
        assert_sound(&book.asks);
        assert!(book.is_empty());
    }

    #[test]
    fn an_empty_level_inside_a_side_is_reused_until_a_sweep_drops_it() {
        let mut book = Book::default();
        let n = 3 * SWEEP_AT as u128;
        for i in 1..=n {
            book.submit(&limit(i, 1, Side::Buy, &i.to_string(), "1", TimeInForce::Gtc));
        }
        book.cancel(Uuid::from_u128(1005));
        assert_eq!((book.bids.by_price.len(), book.bids.empty), (n as usize, 1), "it stays, empty");
        book.submit(&limit(n + 1, 2, Side::Buy, "5", "1", TimeInForce::Gtc));
        assert_eq!((book.bids.by_price.len(), book.bids.empty), (n as usize, 0), "and is reused");
        assert_sound(&book.bids);
        for i in (1..n).filter(|&i| i != 5) {
            book.cancel(Uuid::from_u128(1000 + i));
            assert!(book.bids.empty <= SWEEP_AT.max(book.bids.by_price.len() - book.bids.empty));
        }
        assert_sound(&book.bids);
        assert!(book.bids.by_price.len() < SWEEP_AT + 3, "swept: {}", book.bids.by_price.len());
        let left: Vec<(u128, Decimal)> =
            book.orders(Side::Buy).map(|o| (o.id.as_u128() - 1000, o.price)).collect();
        assert_eq!(left, [(n, Decimal::from(n)), (n + 1, d("5"))]);
        // Empty levels between the two do not stop a taker.
        let out = book.submit(&limit(n + 2, 3, Side::Sell, "1", "2", TimeInForce::Fok));
        assert_eq!(out.fills.iter().map(|f| f.price).collect::<Vec<_>>(), [Decimal::from(n), d("5")]);
        assert_eq!((book.bids.by_price.len(), book.bids.empty), (0, 0), "the best end never stays empty");
        assert_sound(&book.bids);
    }

    #[test]
    fn a_moved_order_goes_behind_the_orders_already_at_its_new_price() {
        let mut book = Book::default();
        book.submit(&limit(1, 1, Side::Buy, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(2, 2, Side::Buy, "100", "1", TimeInForce::Gtc));
        book.submit(&limit(3, 3, Side::Buy, "100", "1", TimeInForce::Gtc));
        // The middle and then the head move away and back: each goes to the tail.
        book.cancel(Uuid::from_u128(1002));
        book.submit(&limit(2, 2, Side::Buy, "100", "1", TimeInForce::Gtc));
        book.cancel(Uuid::from_u128(1001));
        book.submit(&limit(1, 1, Side::Buy, "100", "1", TimeInForce::Gtc));
        let queue: Vec<u128> = book.orders(Side::Buy).map(|o| o.id.as_u128() - 1000).collect();
        assert_eq!(queue, [3, 2, 1]);
        let out = book.submit(&limit(4, 4, Side::Sell, "100", "3", TimeInForce::Gtc));
        let makers: Vec<u128> = out.fills.iter().map(|f| f.maker_order.as_u128() - 1000).collect();
        assert_eq!(makers, [3, 2, 1], "FIFO inside the level after the moves");
    }

    #[test]
    fn a_price_is_keyed_the_same_at_any_scale() {
        assert_eq!(key(d("100")), key(d("100.000000000000")));
        assert_eq!(key(d("0.000000000001")), 1);
        // More decimals than the book orders by round as `rescale` does.
        assert_eq!(key(d("1.0000000000004")), key(d("1")));
        // Past 96 bits at scale 12 the key is what `rescale` makes of it.
        let huge = d("100000000000000000000");
        let mut rescaled = huge;
        rescaled.rescale(MAX_PRICE_SCALE);
        assert_eq!(key(huge), rescaled.mantissa());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit { user: u128, side: bool, price: u32, quantity: u32, tif: u8, market: bool },
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u128..4, any::<bool>(), 95u32..105, 1u32..50, 0u8..4, prop::bool::weighted(0.1)).prop_map(
                |(user, side, price, quantity, tif, market)| Op::Submit { user, side, price, quantity, tif, market }
            ),
            1 => (0usize..64).prop_map(Op::Cancel),
        ]
    }

    fn run(ops: &[Op]) -> (Book, Vec<Outcome>, HashMap<Uuid, Decimal>) {
        let mut book = Book::default();
        let mut outcomes = Vec::new();
        let mut quantities = HashMap::new();
        let mut ids = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let outcome = match op {
                Op::Submit { user: u, side, price, quantity, tif, market } => {
                    let id = Uuid::from_u128(n as u128 + 1);
                    let quantity = Decimal::new(*quantity as i64, 1);
                    ids.push(id);
                    quantities.insert(id, quantity);
                    book.submit(&order(
                        id,
                        user(*u),
                        if *side { Side::Buy } else { Side::Sell },
                        if *market { OrderType::Market } else { OrderType::Limit },
                        (!market).then(|| Decimal::from(*price)),
                        quantity,
                        [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok, TimeInForce::PostOnly]
                            [*tif as usize],
                    ))
                }
                Op::Cancel(i) => match ids.get(*i) {
                    Some(id) => book.cancel(*id),
                    None => Outcome::default(),
                },
            };
            outcomes.push(outcome);
        }
        (book, outcomes, quantities)
    }

    proptest! {
        #[test]
        fn the_book_stays_sound_and_replays_identically(ops in prop::collection::vec(op(), 1..200)) {
            let (book, outcomes, quantities) = run(&ops);
            let mut filled: HashMap<Uuid, Decimal> = HashMap::new();
            for outcome in &outcomes {
                for fill in &outcome.fills {
                    prop_assert!(fill.quantity > Decimal::ZERO);
                    prop_assert_ne!(fill.maker_user, fill.taker_user, "no self-trade");
                    // Both sides of a trade move by the same quantity.
                    *filled.entry(fill.maker_order).or_default() += fill.quantity;
                    *filled.entry(fill.taker_order).or_default() += fill.quantity;
                }
                for update in &outcome.updates {
                    prop_assert!(update.filled <= update.quantity);
                    prop_assert_eq!(update.filled, filled.get(&update.order).copied().unwrap_or_default());
                    prop_assert_eq!(update.state == State::Filled, update.filled == update.quantity);
                }
            }
            for (id, f) in &filled {
                prop_assert!(*f <= quantities[id], "never filled beyond its quantity");
            }
            if let (Some(bid), Some(ask)) = (book.best(Side::Buy), book.best(Side::Sell)) {
                prop_assert!(bid < ask, "the book never stays crossed: {} >= {}", bid, ask);
            }
            for side in [Side::Buy, Side::Sell] {
                for resting in book.orders(side) {
                    prop_assert!(resting.remaining() > Decimal::ZERO);
                    prop_assert_eq!(resting.filled, filled.get(&resting.id).copied().unwrap_or_default());
                }
            }
            assert_sound(&book.bids);
            assert_sound(&book.asks);
            // Deterministic: the same commands give the same fills and states.
            let (again, outcomes_again, _) = run(&ops);
            prop_assert_eq!(outcomes, outcomes_again);
            prop_assert_eq!(again.len(), book.len());
            // A book rebuilt from its resting orders matches the same way.
            let resting: Vec<Resting> = book.orders(Side::Buy).chain(book.orders(Side::Sell)).cloned().collect();
            let mut rebuilt = Book::from_resting(resting);
            let mut original = book.clone();
            let probe = order(
                Uuid::from_u128(u128::MAX),
                user(99),
                Side::Buy,
                OrderType::Market,
                None,
                Decimal::from(1000),
                TimeInForce::Ioc,
            );
            prop_assert_eq!(original.submit(&probe), rebuilt.submit(&probe));
        }
    }
}
