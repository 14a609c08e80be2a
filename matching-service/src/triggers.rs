//! The armed price triggers of one market, evaluated on every trade.
//!
//! A [`TriggerBook`] holds the stop orders, take-profits and trailing stops that wait for the market
//! price to reach them. Every trade of the market calls [`TriggerBook::trade`], which first moves the
//! trailing stops the trade improves on, then removes and returns every trigger the trade crosses.
//!
//! # Firing order
//!
//! The triggers one trade fires come back in a deterministic order:
//!
//! 1. every [`PriceMove::Falls`] trigger crossed, highest stop first (the order a falling price passes
//!    through them), equal stops by `seq` ascending (oldest first);
//! 2. then every [`PriceMove::Rises`] trigger crossed, lowest stop first, equal stops by `seq` ascending.
//!
//! Fixed and trailing triggers interleave by that same (stop, seq) order. `seq` is meant to be unique;
//! should two triggers share one, their ids break the tie.
//!
//! # Cost
//!
//! With `n` triggers armed, a trade costs O(log n), plus O(log n) for each trigger it fires, plus
//! amortized O(log n) for each trailing trigger it moves; it never scans the book.
//!
//! - Fixed stops sit in two ordered sets keyed by (stop, seq, id); what a trade fires is at one end.
//! - Trailing stops sit in four *trail sets*, one per direction and trail kind (the order of trail
//!   amounts and that of trail percentages only agree within one kind). In a set, the triggers that
//!   share a best price form a *group*, ordered by trail parameter, so its first member has the nearest
//!   stop. A trade that reaches the best price of some groups merges them into one group at the trade
//!   price, the smaller into the larger, so that a trigger changes group O(log n) times amortized;
//!   moving a group's best price moves all its members' stops at once. An ordered index of each
//!   group's nearest stop finds the groups a trade crosses.
//! - An id → location map makes [`TriggerBook::remove`], [`TriggerBook::stop`] and
//!   [`TriggerBook::best`] O(log n).
//!
//! # Prices
//!
//! Prices are exact [`Decimal`]s, compared exactly; there are no floats and no rounding beyond
//! `Decimal`'s own 28 decimal places (arithmetic saturates at `Decimal`'s bounds instead of
//! panicking). Prices are assumed positive (the stop order of percent trails relies on it) and trails
//! non-negative (a positive trail keeps a moved stop on the far side of the trade that moved it).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use bourse_common::catalog::{PriceMove, Trail};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use uuid::Uuid;

/// Where a trigger's stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A fixed stop price.
    Fixed(Decimal),
    /// A trailing stop: `best` is the best price seen since it was armed (the highest for
    /// [`PriceMove::Falls`], the lowest for [`PriceMove::Rises`]); its stop is `best - amount` or
    /// `best * (1 - pct/100)` for `Falls`, `best + amount` or `best * (1 + pct/100)` for `Rises`.
    Trailing {
        /// How far the stop stays behind `best`.
        trail: Trail,
        /// The best price seen so far; usually the last trade price when the trigger is armed.
        best: Decimal,
    },
}

/// A trigger to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    /// The trigger's id.
    pub id: Uuid,
    /// Arming order: unique in the book, lower is older; orders triggers with equal stops.
    pub seq: u64,
    /// Which way the price must move to fire it.
    pub direction: PriceMove,
    /// Its stop, fixed or trailing.
    pub level: Level,
}

/// A trigger that a trade fired, and so removed from the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// The trigger's id.
    pub id: Uuid,
    /// Its stop price when it fired.
    pub stop: Decimal,
}

/// The armed triggers of one market; see the [module documentation](self) for the rules and costs.
#[derive(Debug, Clone, Default)]
pub struct TriggerBook {
    /// Fixed `Falls` triggers by (stop, seq, id).
    fixed_falls: BTreeSet<Entry>,
    /// Fixed `Rises` triggers by (stop, seq, id).
    fixed_rises: BTreeSet<Entry>,
    /// Trailing triggers, one trail set per [`Shape`], at [`Shape::index`].
    trailing: [TrailSet; 4],
    /// Where each armed trigger is.
    index: Index,
}

impl TriggerBook {
    /// Arms `trigger`. A trigger already armed with the same id is replaced (removed, then armed anew).
    pub fn insert(&mut self, trigger: Armed) {
        let Armed { id, seq, direction, level } = trigger;
        self.remove(id);
        let location = match level {
            Level::Fixed(stop) => {
                self.fixed_mut(direction).insert((stop, seq, id));
                Location::Fixed { direction, stop, seq }
            }
            Level::Trailing { trail, best } => {
                let (kind, param) = split(trail);
                let shape = Shape { direction, kind };
                let group = self.set_mut(shape).insert(shape, best, (param, seq, id));
                Location::Trailing { shape, group, param, seq }
            }
        };
        self.index.insert(id, location);
    }

    /// Disarms the trigger `id` (on cancel or expiry); returns false if it was not armed.
    pub fn remove(&mut self, id: Uuid) -> bool {
        match self.index.remove(&id) {
            None => false,
            Some(Location::Fixed { direction, stop, seq }) => {
                self.fixed_mut(direction).remove(&(stop, seq, id));
                true
            }
            Some(Location::Trailing { shape, group, param, seq }) => {
                self.set_mut(shape).remove(shape, group, (param, seq, id));
                true
            }
        }
    }

    /// The number of armed triggers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no trigger is armed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the trigger `id` is armed.
    #[must_use]
    pub fn contains(&self, id: Uuid) -> bool {
        self.index.contains_key(&id)
    }

    /// The current stop price of the armed trigger `id` (a trailing one's as it has moved so far).
    #[must_use]
    pub fn stop(&self, id: Uuid) -> Option<Decimal> {
        match *self.index.get(&id)? {
            Location::Fixed { stop, .. } => Some(stop),
            Location::Trailing { shape, group, param, .. } => {
                self.set(shape).best(group).map(|best| shape.stop(param, best))
            }
        }
    }

    /// The best price seen by the armed trailing trigger `id`; `None` for a fixed one or an unknown id.
    #[must_use]
    pub fn best(&self, id: Uuid) -> Option<Decimal> {
        match *self.index.get(&id)? {
            Location::Fixed { .. } => None,
            Location::Trailing { shape, group, .. } => self.set(shape).best(group),
        }
    }

    /// Applies one trade at `price`: first every trailing trigger whose best price the trade beats
    /// moves its best to `price` (and its stop with it); then every trigger the trade crosses is
    /// removed and returned, in the firing order of the module documentation.
    #[must_use = "fired triggers are no longer in the book and must be released"]
    pub fn trade(&mut self, price: Decimal) -> Vec<Fired> {
        for (set, shape) in self.trailing.iter_mut().zip(Shape::ALL) {
            set.advance(shape, price, &mut self.index);
        }
        let (mut falls, mut rises) = (Vec::new(), Vec::new());
        fire_fixed(&mut self.fixed_falls, PriceMove::Falls, price, &mut self.index, &mut falls);
        fire_fixed(&mut self.fixed_rises, PriceMove::Rises, price, &mut self.index, &mut rises);
        for (set, shape) in self.trailing.iter_mut().zip(Shape::ALL) {
            let out = match shape.direction {
                PriceMove::Falls => &mut falls,
                PriceMove::Rises => &mut rises,
            };
            set.fire(shape, price, &mut self.index, out);
        }
        falls.sort_unstable_by_key(|&(stop, seq, id)| (Reverse(stop), seq, id));
        rises.sort_unstable();
        falls.into_iter().chain(rises).map(|(stop, _, id)| Fired { id, stop }).collect()
    }

    /// The fixed triggers of `direction`.
    fn fixed_mut(&mut self, direction: PriceMove) -> &mut BTreeSet<Entry> {
        match direction {
            PriceMove::Falls => &mut self.fixed_falls,
            PriceMove::Rises => &mut self.fixed_rises,
        }
    }

    /// The trail set of `shape`.
    fn set(&self, shape: Shape) -> &TrailSet {
        &self.trailing[shape.index()]
    }

    /// The trail set of `shape`, mutably.
    fn set_mut(&mut self, shape: Shape) -> &mut TrailSet {
        &mut self.trailing[shape.index()]
    }
}

/// A trigger's sort key: (stop or trail parameter, seq, id).
type Entry = (Decimal, u64, Uuid);

/// A group's id, unique within its trail set.
type GroupId = u64;

/// Where each armed trigger is, by id.
type Index = FxHashMap<Uuid, Location>;

/// Where an armed trigger is, enough to find its entry again.
#[derive(Debug, Clone, Copy)]
enum Location {
    /// In the fixed set of `direction`, as `(stop, seq, id)`.
    Fixed { direction: PriceMove, stop: Decimal, seq: u64 },
    /// In group `group` of the trail set of `shape`, as `(param, seq, id)`.
    Trailing { shape: Shape, group: GroupId, param: Decimal, seq: u64 },
}

/// The kind of a trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailKind {
    /// [`Trail::Amount`].
    Amount,
    /// [`Trail::Percent`].
    Percent,
}

/// A trail's kind, and its amount or percentage.
fn split(trail: Trail) -> (TrailKind, Decimal) {
    match trail {
        Trail::Amount(param) => (TrailKind::Amount, param),
        Trail::Percent(param) => (TrailKind::Percent, param),
    }
}

/// The direction and trail kind that a trail set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    direction: PriceMove,
    kind: TrailKind,
}

impl Shape {
    /// Every shape, `ALL[i].index() == i`.
    const ALL: [Shape; 4] = [
        Shape { direction: PriceMove::Falls, kind: TrailKind::Amount },
        Shape { direction: PriceMove::Falls, kind: TrailKind::Percent },
        Shape { direction: PriceMove::Rises, kind: TrailKind::Amount },
        Shape { direction: PriceMove::Rises, kind: TrailKind::Percent },
    ];

    /// Its position in [`Shape::ALL`].
    fn index(self) -> usize {
        match (self.direction, self.kind) {
            (PriceMove::Falls, TrailKind::Amount) => 0,
            (PriceMove::Falls, TrailKind::Percent) => 1,
            (PriceMove::Rises, TrailKind::Amount) => 2,
            (PriceMove::Rises, TrailKind::Percent) => 3,
        }
    }

    /// The stop of a trail `param` behind `best`. For positive prices, a smaller `param` is a nearer stop.
    fn stop(self, param: Decimal, best: Decimal) -> Decimal {
        let trail = match self.kind {
            TrailKind::Amount => Trail::Amount(param),
            TrailKind::Percent => Trail::Percent(param),
        };
        trail.stop(self.direction, best)
    }
}

/// Pops every trigger of the fixed set of `direction` that a trade at `price` crosses into `out`.
fn fire_fixed(
    set: &mut BTreeSet<Entry>,
    direction: PriceMove,
    price: Decimal,
    index: &mut Index,
    out: &mut Vec<Entry>,
) {
    let high = direction == PriceMove::Falls;
    while let Some(&entry) = edge(set, high)
        && direction.crosses(entry.0, price)
    {
        set.remove(&entry);
        index.remove(&entry.2);
        out.push(entry);
    }
}

/// The last element of `set` if `high`, else its first.
fn edge<T: Ord>(set: &BTreeSet<T>, high: bool) -> Option<&T> {
    if high { set.last() } else { set.first() }
}

/// Trailing triggers that share a best price.
#[derive(Debug, Clone)]
struct Group {
    /// The best price its members have seen.
    best: Decimal,
    /// The stop of its first member: the nearest to `best`.
    nearest: Decimal,
    /// Its members as (trail parameter, seq, id).
    members: BTreeSet<Entry>,
}

/// The trailing triggers of one [`Shape`], grouped by best price.
///
/// Invariant: every group in `groups` has members, has its best in `by_best` and its
/// `(nearest, id)` in `by_nearest`, except while a method holds it unlinked.
#[derive(Debug, Clone, Default)]
struct TrailSet {
    groups: FxHashMap<GroupId, Group>,
    by_best: BTreeMap<Decimal, GroupId>,
    by_nearest: BTreeSet<(Decimal, GroupId)>,
    next_group: GroupId,
}

impl TrailSet {
    /// Adds `entry` to the group at `best`, made if needed; returns that group.
    fn insert(&mut self, shape: Shape, best: Decimal, entry: Entry) -> GroupId {
        let id = match self.by_best.get(&best) {
            Some(&id) => id,
            None => self.new_group(best),
        };
        self.unlink(id);
        if let Some(group) = self.groups.get_mut(&id) {
            group.members.insert(entry);
        }
        self.link(shape, id);
        id
    }

    /// Removes `entry` from group `id`.
    fn remove(&mut self, shape: Shape, id: GroupId, entry: Entry) {
        self.unlink(id);
        if let Some(group) = self.groups.get_mut(&id) {
            group.members.remove(&entry);
        }
        self.link(shape, id);
    }

    /// The best price of group `id`.
    fn best(&self, id: GroupId) -> Option<Decimal> {
        self.groups.get(&id).map(|group| group.best)
    }

    /// Moves every group whose best price a trade at `price` beats to `price`, merging them (and any
    /// group already at `price`) into one.
    fn advance(&mut self, shape: Shape, price: Decimal, index: &mut Index) {
        // The first group reached is the worst; if it is at `price`, it is the only one reached.
        if !self
            .worst(shape.direction)
            .is_some_and(|(best, _)| best != price && reaches(shape.direction, price, best))
        {
            return;
        }
        let mut merged = None;
        while let Some((best, id)) = self.worst(shape.direction)
            && reaches(shape.direction, price, best)
        {
            self.by_best.remove(&best); // also done by `unlink`; here it guarantees progress
            self.unlink(id);
            merged = Some(merged.map_or(id, |other| self.merge(other, id, index)));
        }
        if let Some(id) = merged {
            if let Some(group) = self.groups.get_mut(&id) {
                group.best = price;
            }
            self.link(shape, id);
        }
    }

    /// The group with the worst best price (the lowest for `Falls`, the highest for `Rises`).
    fn worst(&self, direction: PriceMove) -> Option<(Decimal, GroupId)> {
        let worst = match direction {
            PriceMove::Falls => self.by_best.first_key_value(),
            PriceMove::Rises => self.by_best.last_key_value(),
        };
        worst.map(|(&best, &id)| (best, id))
    }

    /// Merges the unlinked groups `a` and `b`, the smaller into the larger; returns the one left.
    fn merge(&mut self, a: GroupId, b: GroupId, index: &mut Index) -> GroupId {
        let size = |id| self.groups.get(&id).map_or(0, |group| group.members.len());
        let (into, from) = if size(a) >= size(b) { (a, b) } else { (b, a) };
        let (Some(source), Some(target)) = (self.groups.remove(&from), self.groups.get_mut(&into)) else {
            return into;
        };
        for entry in source.members {
            if let Some(Location::Trailing { group, .. }) = index.get_mut(&entry.2) {
                *group = into;
            }
            target.members.insert(entry);
        }
        into
    }

    /// Pops every trigger that a trade at `price` crosses into `out`.
    fn fire(&mut self, shape: Shape, price: Decimal, index: &mut Index, out: &mut Vec<Entry>) {
        let high = shape.direction == PriceMove::Falls;
        while let Some(&(nearest, id)) = edge(&self.by_nearest, high)
            && shape.direction.crosses(nearest, price)
        {
            self.by_nearest.remove(&(nearest, id)); // also done by `unlink`; here it guarantees progress
            self.unlink(id);
            if let Some(group) = self.groups.get_mut(&id) {
                pop_crossed(group, shape, price, index, out);
            }
            self.link(shape, id);
        }
    }

    /// Makes an empty, unlinked group at `best`.
    fn new_group(&mut self, best: Decimal) -> GroupId {
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(id, Group { best, nearest: best, members: BTreeSet::new() });
        id
    }

    /// Takes group `id` out of the indexes, before changing its best price or first member.
    fn unlink(&mut self, id: GroupId) {
        if let Some(group) = self.groups.get(&id) {
            self.by_best.remove(&group.best);
            self.by_nearest.remove(&(group.nearest, id));
        }
    }

    /// Puts group `id` back into the indexes with its nearest stop recomputed, or drops it if empty.
    fn link(&mut self, shape: Shape, id: GroupId) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        let Some(&(param, _, _)) = group.members.first() else {
            self.groups.remove(&id);
            return;
        };
        group.nearest = shape.stop(param, group.best);
        let displaced = self.by_best.insert(group.best, id);
        debug_assert!(displaced.is_none(), "two groups at one best price");
        self.by_nearest.insert((group.nearest, id));
    }
}

/// Whether a trade at `price` reaches or beats `best`: at or above it for `Falls`, at or below for `Rises`.
fn reaches(direction: PriceMove, price: Decimal, best: Decimal) -> bool {
    match direction {
        PriceMove::Falls => price >= best,
        PriceMove::Rises => price <= best,
    }
}

/// Pops the members of `group` that a trade at `price` crosses, nearest first, into `out`.
fn pop_crossed(group: &mut Group, shape: Shape, price: Decimal, index: &mut Index, out: &mut Vec<Entry>) {
    while let Some(&(param, seq, id)) = group.members.first() {
        let stop = shape.stop(param, group.best);
        if !shape.direction.crosses(stop, price) {
            break;
        }
        group.members.pop_first();
        index.remove(&id);
        out.push((stop, seq, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn uid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn fixed(n: u128, seq: u64, direction: PriceMove, stop: &str) -> Armed {
        Armed { id: uid(n), seq, direction, level: Level::Fixed(d(stop)) }
    }

    fn trailing(n: u128, seq: u64, direction: PriceMove, trail: Trail, best: &str) -> Armed {
        Armed { id: uid(n), seq, direction, level: Level::Trailing { trail, best: d(best) } }
    }

    fn ids(fired: &[Fired]) -> Vec<u128> {
        fired.iter().map(|f| f.id.as_u128()).collect()
    }

    fn book(triggers: &[Armed]) -> TriggerBook {
        let mut book = TriggerBook::default();
        for &t in triggers {
            book.insert(t);
        }
        book
    }

    use PriceMove::{Falls, Rises};

    #[test]
    fn shapes_are_at_their_index() {
        for (i, shape) in Shape::ALL.into_iter().enumerate() {
            assert_eq!(shape.index(), i);
        }
    }

    #[test]
    fn fixed_falls_fires_at_or_below_its_stop() {
        let mut b = book(&[fixed(1, 1, Falls, "100")]);
        assert!(b.trade(d("100.01")).is_empty());
        assert_eq!(b.stop(uid(1)), Some(d("100")));
        assert_eq!(b.best(uid(1)), None);
        assert_eq!(b.trade(d("100")), vec![Fired { id: uid(1), stop: d("100") }]);
        assert!(b.is_empty());
        assert!(b.trade(d("90")).is_empty());
    }

    #[test]
    fn fixed_rises_fires_at_or_above_its_stop() {
        let mut b = book(&[fixed(1, 1, Rises, "100")]);
        assert!(b.trade(d("99.99")).is_empty());
        assert_eq!(b.trade(d("100.5")), vec![Fired { id: uid(1), stop: d("100") }]);
        assert!(!b.contains(uid(1)));
    }

    #[test]
    fn a_gap_fires_each_once_in_the_documented_order() {
        let mut b = book(&[
            fixed(1, 1, Falls, "95"),
            fixed(2, 2, Falls, "99"),
            fixed(3, 3, Falls, "97"),
            fixed(4, 4, Falls, "80"),
            fixed(5, 5, Rises, "101"),
            trailing(6, 6, Falls, Trail::Amount(d("2")), "100"), // stop 98
            trailing(7, 7, Falls, Trail::Percent(d("4")), "100"), // stop 96
        ]);
        let fired = b.trade(d("90"));
        assert_eq!(ids(&fired), vec![2, 6, 3, 7, 1]);
        assert_eq!(fired.iter().map(|f| f.stop).collect::<Vec<_>>(), [99, 98, 97, 96, 95].map(Decimal::from));
        assert_eq!(b.len(), 2);
        assert!(b.trade(d("90")).is_empty());

        let mut b = book(&[
            fixed(1, 1, Rises, "105"),
            fixed(2, 2, Rises, "101"),
            trailing(3, 3, Rises, Trail::Amount(d("3")), "100"), // stop 103
            trailing(4, 4, Rises, Trail::Percent(d("2")), "100"), // stop 102
            fixed(5, 5, Rises, "111"),
        ]);
        assert_eq!(ids(&b.trade(d("110"))), vec![2, 4, 3, 1]);
        assert_eq!(ids(&b.trade(d("120"))), vec![5]);
    }

    #[test]
    fn falls_fire_before_rises() {
        // Only possible when a Falls stop is above a Rises stop, e.g. a take-profit and a stop.
        let mut b = book(&[fixed(1, 1, Rises, "90"), fixed(2, 2, Falls, "110")]);
        assert_eq!(ids(&b.trade(d("100"))), vec![2, 1]);
    }

    #[test]
    fn equal_stops_fire_by_seq() {
        let mut b = book(&[
            fixed(1, 30, Falls, "100"),
            trailing(2, 10, Falls, Trail::Amount(d("5")), "105"),
            fixed(3, 20, Falls, "100.0"),
            trailing(4, 5, Falls, Trail::Percent(d("10")), "111.1"), // stop 99.99
        ]);
        assert_eq!(ids(&b.trade(d("99"))), vec![2, 3, 1, 4]);
        let mut b = book(&[fixed(1, 9, Rises, "100"), fixed(2, 3, Rises, "100"), fixed(3, 6, Rises, "100")]);
        assert_eq!(ids(&b.trade(d("100"))), vec![2, 3, 1]);
    }

    #[test]
    fn trailing_amount_fires_on_exactly_its_trail() {
        let t = trailing(1, 1, Falls, Trail::Amount(d("5")), "110");
        let mut b = book(&[t]);
        assert_eq!(b.stop(uid(1)), Some(d("105")));
        assert!(b.trade(d("105.01")).is_empty());
        assert_eq!(b.trade(d("105")), vec![Fired { id: uid(1), stop: d("105") }]);

        let mut b = book(&[t]);
        assert!(b.trade(d("120")).is_empty());
        assert_eq!((b.best(uid(1)), b.stop(uid(1))), (Some(d("120")), Some(d("115"))));
        assert!(b.trade(d("118")).is_empty());
        assert_eq!(b.best(uid(1)), Some(d("120")));
        assert!(b.trade(d("115.01")).is_empty());
        assert_eq!(b.trade(d("114")), vec![Fired { id: uid(1), stop: d("115") }]);
    }

    #[test]
    fn trailing_percent_fires_on_exactly_its_trail() {
        let mut b = book(&[trailing(1, 1, Falls, Trail::Percent(d("10")), "200")]);
        assert_eq!(b.stop(uid(1)), Some(d("180")));
        assert!(b.trade(d("250")).is_empty());
        assert_eq!(b.stop(uid(1)), Some(d("225")));
        assert!(b.trade(d("225.000000001")).is_empty());
        assert_eq!(b.trade(d("225")), vec![Fired { id: uid(1), stop: d("225") }]);
    }

    #[test]
    fn trailing_rises_mirrors_falls() {
        let mut b = book(&[
            trailing(1, 1, Rises, Trail::Amount(d("5")), "100"),
            trailing(2, 2, Rises, Trail::Percent(d("10")), "100"),
        ]);
        assert_eq!((b.stop(uid(1)), b.stop(uid(2))), (Some(d("105")), Some(d("110"))));
        assert!(b.trade(d("90")).is_empty());
        assert_eq!((b.best(uid(1)), b.stop(uid(1))), (Some(d("90")), Some(d("95"))));
        assert_eq!((b.best(uid(2)), b.stop(uid(2))), (Some(d("90")), Some(d("99"))));
        assert!(b.trade(d("94.99")).is_empty());
        assert_eq!(ids(&b.trade(d("95"))), vec![1]);
        assert!(b.trade(d("98.99")).is_empty());
        assert_eq!(b.trade(d("99")), vec![Fired { id: uid(2), stop: d("99") }]);
    }

    #[test]
    fn groups_merge_and_keep_their_members_addressable() {
        let mut b = book(&[
            trailing(1, 1, Falls, Trail::Amount(d("1")), "100"),
            trailing(2, 2, Falls, Trail::Amount(d("2")), "101"),
            trailing(3, 3, Falls, Trail::Amount(d("3")), "102"),
            trailing(4, 4, Falls, Trail::Amount(d("8")), "110"),
        ]);
        assert!(b.trade(d("103")).is_empty());
        for (n, stop) in [(1, "102"), (2, "101"), (3, "100"), (4, "102")] {
            assert_eq!(b.stop(uid(n)), Some(d(stop)));
        }
        assert!(b.remove(uid(2)));
        assert!(b.trade(d("104")).is_empty());
        assert_eq!((b.stop(uid(1)), b.stop(uid(3))), (Some(d("103")), Some(d("101"))));
        assert_eq!(ids(&b.trade(d("100"))), vec![1, 4, 3]);
        assert!(b.is_empty());
    }

    #[test]
    fn remove_disarms() {
        let mut b = book(&[
            fixed(1, 1, Falls, "100"),
            trailing(2, 2, Falls, Trail::Amount(d("1")), "101"),
            trailing(3, 3, Falls, Trail::Amount(d("2")), "101"),
        ]);
        assert!(b.remove(uid(1)));
        assert!(!b.remove(uid(1)));
        assert!(b.remove(uid(2)));
        assert!(!b.remove(uid(9)));
        assert_eq!((b.len(), b.stop(uid(2)), b.best(uid(2))), (1, None, None));
        assert_eq!(ids(&b.trade(d("90"))), vec![3]);
    }

    #[test]
    fn insert_of_an_armed_id_replaces_it() {
        let mut b = book(&[fixed(1, 1, Falls, "100")]);
        b.insert(trailing(1, 2, Rises, Trail::Amount(d("1")), "100"));
        assert_eq!((b.len(), b.stop(uid(1)), b.best(uid(1))), (1, Some(d("101")), Some(d("100"))));
        assert!(b.trade(d("100")).is_empty());
        assert_eq!(ids(&b.trade(d("101"))), vec![1]);
    }

    /// The naive model: a list of triggers, scanned on every trade.
    #[derive(Default)]
    struct Model(Vec<Armed>);

    impl Model {
        fn insert(&mut self, t: Armed) {
            self.remove(t.id);
            self.0.push(t);
        }

        fn remove(&mut self, id: Uuid) -> bool {
            let before = self.0.len();
            self.0.retain(|t| t.id != id);
            before != self.0.len()
        }

        fn stop(t: &Armed) -> Decimal {
            let hundred = Decimal::ONE_HUNDRED;
            match (t.level, t.direction) {
                (Level::Fixed(stop), _) => stop,
                (Level::Trailing { trail: Trail::Amount(a), best }, Falls) => best - a,
                (Level::Trailing { trail: Trail::Amount(a), best }, Rises) => best + a,
                (Level::Trailing { trail: Trail::Percent(p), best }, Falls) => {
                    best * (Decimal::ONE - p / hundred)
                }
                (Level::Trailing { trail: Trail::Percent(p), best }, Rises) => {
                    best * (Decimal::ONE + p / hundred)
                }
            }
        }

        fn trade(&mut self, price: Decimal) -> Vec<Fired> {
            for t in &mut self.0 {
                if let Level::Trailing { best, .. } = &mut t.level {
                    let beats = if t.direction == Falls { price > *best } else { price < *best };
                    if beats {
                        *best = price;
                    }
                }
            }
            let crossed = |t: &Armed| match t.direction {
                Falls => price <= Self::stop(t),
                Rises => price >= Self::stop(t),
            };
            let (mut fired, kept): (Vec<Armed>, Vec<Armed>) = self.0.iter().partition(|t| crossed(t));
            self.0 = kept;
            fired.sort_by_key(|t| {
                let stop = Self::stop(t);
                (t.direction == Rises, if t.direction == Falls { -stop } else { stop }, t.seq)
            });
            fired.iter().map(|t| Fired { id: t.id, stop: Self::stop(t) }).collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, PriceMove, Level),
        Remove(u8),
        Trade(Decimal),
    }

    const IDS: u8 = 24;

    /// Prices 80.0 to 120.5 in steps of 0.5.
    fn price() -> impl Strategy<Value = Decimal> {
        (160i64..=241).prop_map(|half| Decimal::new(half * 5, 1))
    }

    fn level() -> impl Strategy<Value = Level> {
        let trail = prop_oneof![
            (0i64..=8).prop_map(|a| Trail::Amount(Decimal::new(a * 5, 1))),
            (0i64..=30).prop_map(|p| Trail::Percent(Decimal::new(p * 5, 1))),
        ];
        prop_oneof![
            price().prop_map(Level::Fixed),
            (trail, price()).prop_map(|(trail, best)| Level::Trailing { trail, best }),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let direction = prop_oneof![Just(Falls), Just(Rises)];
        prop_oneof![
            4 => (0..IDS, direction, level()).prop_map(|(id, dir, level)| Op::Insert(id, dir, level)),
            1 => (0..IDS).prop_map(Op::Remove),
            4 => price().prop_map(Op::Trade),
        ]
    }

    fn assert_same(book: &TriggerBook, model: &Model) {
        assert_eq!(book.len(), model.0.len());
        for n in 0..IDS {
            let id = uid(n.into());
            let t = model.0.iter().find(|t| t.id == id);
            assert_eq!(book.contains(id), t.is_some());
            assert_eq!(book.stop(id), t.map(Model::stop));
            let best = t.and_then(|t| match t.level {
                Level::Fixed(_) => None,
                Level::Trailing { best, .. } => Some(best),
            });
            assert_eq!(book.best(id), best);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_naive_model(ops in proptest::collection::vec(op(), 1..200)) {
            let (mut book, mut model) = (TriggerBook::default(), Model::default());
            for (seq, op) in (0u64..).zip(ops) {
                match op {
                    Op::Insert(n, direction, level) => {
                        let t = Armed { id: uid(n.into()), seq, direction, level };
                        book.insert(t);
                        model.insert(t);
                    }
                    Op::Remove(n) => prop_assert_eq!(book.remove(uid(n.into())), model.remove(uid(n.into()))),
                    Op::Trade(price) => prop_assert_eq!(book.trade(price), model.trade(price)),
                }
                assert_same(&book, &model);
            }
        }
    }
}
