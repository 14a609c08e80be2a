//! Price triggers, pure: what a valid trigger is, the order it places when it
//! fires and what that order holds from placement, and how a trigger's
//! status moves on each message of its life. No actix-web, lapin or diesel.
//!
//! A trigger is placed `pending` and asks payment-service to reserve, under
//! the id of the order it will place, what that order needs: a limit order's
//! price x quantity (a buy) or its quantity (a sell); a market buy at a cap
//! (`market_buy_cap_percent` above its stop). Reserved, it is `active` and
//! armed in its market's book (matching-service), which fires it on the
//! first trade that crosses its stop and places its order in the same
//! transaction: a fired trigger never meets an insufficient-funds rejection.
//! Cancelled or expired, it is taken out of the book first, then its
//! reservation is released whole.
//!
//! An OCO is one order with two ways to execute, as a bracket: a limit order
//! (`limit_price`) that rests in the book from arming, and a stop that, when
//! crossed, takes that order out and places it again as its stop leg
//! (`stop_limit_price`, or a market order), under the same id. It holds once,
//! what the greater leg needs, so both can never execute; when its limit order
//! trades the stop is disarmed (`traded`), and the order's end (a fill, a
//! cancel) releases what it still holds, as any order's.

use bourse_common::catalog::{OrderType, PriceMove, Side, TimeInForce, Trail, TriggerKind};
use bourse_common::money::{Amount, MoneyError};
use bourse_common::reference::Market;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::{OrderError, OrderRequest, ValidOrder};

/// A trigger as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// A market id, e.g. `ETH-USDT`.
    pub market: String,
    pub side: Side,
    pub kind: TriggerKind,
    /// The price that fires it (every kind but `trailing_stop`). A buy stop
    /// above the last price, a sell stop below; a take-profit the reverse.
    pub stop_price: Option<Amount>,
    /// The price of the limit order it places (`stop_limit`, `take_profit_limit`);
    /// an `oco`'s limit order, in the book from placement: a sell above its
    /// stop, a buy below.
    pub limit_price: Option<Amount>,
    /// An `oco`'s stop leg: the price of the limit order it becomes when the
    /// stop is crossed (absent: a market order).
    pub stop_limit_price: Option<Amount>,
    /// A trailing stop's distance from the best price seen (one of the two).
    pub trail_amount: Option<Amount>,
    /// ... or as a percentage of it, above 0 and below 100.
    pub trail_percent: Option<Amount>,
    /// In the base currency.
    pub quantity: Amount,
    /// For the limit order it places (default `gtc`); a market order is `ioc`.
    pub time_in_force: Option<TimeInForce>,
    /// After this it never fires: it expires and its funds are released.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a trigger request is refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("{0}")]
    Order(OrderError),
    #[error("a {0} trigger needs a stop_price")]
    StopRequired(TriggerKind),
    #[error("a trailing stop takes no stop_price: its stop follows the price")]
    StopNotAllowed,
    #[error("a {0} trigger needs a limit_price")]
    LimitRequired(TriggerKind),
    #[error("a {0} trigger places a market order: it takes no limit_price")]
    LimitNotAllowed(TriggerKind),
    #[error("a trailing stop needs exactly one of trail_amount and trail_percent")]
    TrailRequired,
    #[error("only a trailing stop takes a trail")]
    TrailNotAllowed,
    #[error("stop_price: {0}")]
    Stop(MoneyError),
    #[error("trail_amount: {0}")]
    TrailAmount(MoneyError),
    #[error("trail_percent must be above 0 and below 100 with at most 2 decimals, got {0}")]
    TrailPercent(Decimal),
    #[error("a {kind} {side} at {stop} would fire at once: the last price is {last}")]
    WouldFireNow { kind: TriggerKind, side: Side, stop: Decimal, last: Decimal },
    #[error("the market has no trade yet for a trailing stop to follow")]
    NothingToTrail,
    #[error("expires_at is not in the future")]
    ExpiryPassed,
    #[error("a {0} trigger places a market order, always ioc: time_in_force is not allowed")]
    TimeInForceNotAllowed(TriggerKind),
    #[error("only an oco takes a stop_limit_price")]
    StopLimitNotAllowed,
    #[error("an oco {side}'s limit_price {limit} must be {} its stop_price {stop}", if *.side == Side::Sell { "above" } else { "below" })]
    OcoLegs { side: Side, limit: Decimal, stop: Decimal },
    #[error("you have {active} triggers not yet ended, the most allowed: cancel one")]
    TooMany { active: u64 },
}

impl TriggerError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Order(e) => e.code(),
            Self::StopRequired(_) => "stop_price_required",
            Self::StopNotAllowed => "stop_price_not_allowed",
            Self::LimitRequired(_) => "limit_price_required",
            Self::LimitNotAllowed(_) => "limit_price_not_allowed",
            Self::TrailRequired => "trail_required",
            Self::TrailNotAllowed => "trail_not_allowed",
            Self::Stop(MoneyError::TooLarge { .. }) => "stop_price_above_maximum",
            Self::Stop(e) | Self::TrailAmount(e) => e.code(),
            Self::TrailPercent(_) => "invalid_trail_percent",
            Self::WouldFireNow { .. } => "stop_would_fire_now",
            Self::NothingToTrail => "no_last_price",
            Self::ExpiryPassed => "expiry_in_the_past",
            Self::TimeInForceNotAllowed(_) => "time_in_force_not_allowed",
            Self::StopLimitNotAllowed => "stop_limit_price_not_allowed",
            Self::OcoLegs { .. } => "oco_legs_inconsistent",
            Self::TooMany { .. } => "too_many_triggers",
        }
    }
}

/// A trigger that passed every check: how it fires, and the order it places
/// with what that order reserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTrigger {
    pub fires_when: PriceMove,
    pub stop_price: Option<Amount>,
    pub trail: Option<Trail>,
    pub order: ValidOrder,
    /// An OCO's limit order, in the book from arming under the same id.
    pub limit_leg: Option<ValidOrder>,
}

impl ValidTrigger {
    /// What it holds from placement, in `order.reserve_currency`: its
    /// order's need, an OCO's greater leg's (both are the same side).
    pub fn reserve_amount(&self) -> Amount {
        let leg = self.limit_leg.as_ref().map(|leg| leg.reserve_amount);
        leg.map_or(self.order.reserve_amount, |leg| leg.max(self.order.reserve_amount))
    }

    /// The limit every trade settling its order respects: its order's price;
    /// an OCO's loosest leg's (a buy's higher, a sell's lower, none with a market sell leg).
    pub fn reserve_limit(&self) -> Option<Amount> {
        let Some(leg) = &self.limit_leg else { return self.order.terms.price };
        let (a, b) = (leg.terms.price?, self.order.terms.price?);
        Some(match self.order.terms.side {
            Side::Buy => a.max(b),
            Side::Sell => a.min(b),
        })
    }
}

/// The kinds that place a limit order.
fn places_limit(kind: TriggerKind) -> bool {
    matches!(kind, TriggerKind::StopLimit | TriggerKind::TakeProfitLimit)
}

impl TriggerRequest {
    /// Checks the request against its market, the market's last price (when
    /// there was a trade) and the time now. A market buy it places carries a
    /// cap `cap_percent` above its stop (a trailing buy: above its first
    /// stop, the highest it can have), rounded up to the market's price
    /// scale and at most its maximum price: that is what it reserves.
    pub fn validate(
        &self,
        market: Option<&Market>,
        last_price: Option<Decimal>,
        now: chrono::DateTime<chrono::Utc>,
        cap_percent: Decimal,
    ) -> Result<ValidTrigger, TriggerError> {
        let kind = self.kind;
        let oco = kind == TriggerKind::Oco;
        let market =
            market.ok_or_else(|| TriggerError::Order(OrderError::UnknownMarket(self.market.clone())))?;
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(TriggerError::ExpiryPassed);
        }
        let fires_when = kind.fires_when(self.side);
        let trailing = kind == TriggerKind::TrailingStop;
        let stop_price = match (trailing, self.stop_price) {
            (true, Some(_)) => return Err(TriggerError::StopNotAllowed),
            (true, None) => None,
            (false, None) => return Err(TriggerError::StopRequired(kind)),
            (false, Some(p)) => Some(p.positive_in(&market.price_unit()).map_err(TriggerError::Stop)?),
        };
        let trail = match (trailing, self.trail_amount, self.trail_percent) {
            (false, None, None) => None,
            (false, _, _) => return Err(TriggerError::TrailNotAllowed),
            (true, Some(a), None) => {
                let a = a.positive_in(&market.price_unit()).map_err(TriggerError::TrailAmount)?;
                Some(Trail::Amount(a.value()))
            }
            (true, None, Some(p)) => {
                let p = p.value();
                if p <= Decimal::ZERO || p >= Decimal::ONE_HUNDRED || p.normalize().scale() > 2 {
                    return Err(TriggerError::TrailPercent(p));
                }
                Some(Trail::Percent(p))
            }
            (true, _, _) => return Err(TriggerError::TrailRequired),
        };
        // The stop it would have now; a trailing one needs a price to trail.
        let first_stop = match (stop_price, trail) {
            (Some(stop), _) => Some(stop.value()),
            (None, Some(trail)) => {
                Some(trail.stop(fires_when, last_price.ok_or(TriggerError::NothingToTrail)?))
            }
            (None, None) => None,
        };
        if let (Some(stop), Some(last)) = (stop_price, last_price)
            && fires_when.crosses(stop.value(), last)
        {
            return Err(TriggerError::WouldFireNow { kind, side: self.side, stop: stop.value(), last });
        }
        // The price of the order it places: an OCO's stop leg's, or its kind's limit.
        let (placed_limit, leg_price) = match (oco, self.limit_price, self.stop_limit_price) {
            (true, None, _) => return Err(TriggerError::LimitRequired(kind)),
            (true, Some(leg), stop_limit) => (stop_limit, Some(leg)),
            (false, _, Some(_)) => return Err(TriggerError::StopLimitNotAllowed),
            (false, limit, None) => (limit, None),
        };
        let limit = places_limit(kind) || (oco && placed_limit.is_some());
        let price = match (limit, placed_limit, self.side) {
            (true, None, _) => return Err(TriggerError::LimitRequired(kind)),
            (true, Some(p), _) => Some(p),
            (false, Some(_), _) => return Err(TriggerError::LimitNotAllowed(kind)),
            (false, None, Side::Sell) => None,
            (false, None, Side::Buy) => first_stop.map(|stop| Amount::new(cap(stop, cap_percent, market))),
        };
        let time_in_force = match (limit, self.time_in_force) {
            (false, Some(tif)) if tif != TimeInForce::Ioc => {
                return Err(TriggerError::TimeInForceNotAllowed(kind));
            }
            (_, tif) => tif,
        };
        let order = OrderRequest {
            market: self.market.clone(),
            side: self.side,
            order_type: if limit { OrderType::Limit } else { OrderType::Market },
            price,
            quantity: self.quantity,
            time_in_force,
        }
        .validate(Some(market))
        .map_err(TriggerError::Order)?;
        let limit_leg = match (leg_price, stop_price) {
            (Some(leg), Some(stop)) => {
                let (leg, stop) = (leg.value(), stop.value());
                let consistent = if self.side == Side::Sell { leg > stop } else { leg < stop };
                if !consistent {
                    return Err(TriggerError::OcoLegs { side: self.side, limit: leg, stop });
                }
                let request = OrderRequest {
                    market: self.market.clone(),
                    side: self.side,
                    order_type: OrderType::Limit,
                    price: Some(Amount::new(leg)),
                    quantity: self.quantity,
                    time_in_force: Some(TimeInForce::Gtc),
                };
                Some(request.validate(Some(market)).map_err(TriggerError::Order)?)
            }
            _ => None,
        };
        Ok(ValidTrigger { fires_when, stop_price, trail, order, limit_leg })
    }
}

/// A market buy's cap: `percent` above `stop`, rounded up to the market's
/// price scale, at most its maximum price.
fn cap(stop: Decimal, percent: Decimal, market: &Market) -> Decimal {
    let raw = stop * (Decimal::ONE_HUNDRED + percent) / Decimal::ONE_HUNDRED;
    raw.round_dp_with_strategy(market.price_scale, RoundingStrategy::AwayFromZero)
        .min(market.max_price.value())
}

/// A user with `active` triggers not yet ended may place one more only below `max`.
pub fn room_for_another(active: u64, max: u32) -> Result<(), TriggerError> {
    if active >= u64::from(max) { Err(TriggerError::TooMany { active }) } else { Ok(()) }
}

bourse_common::named_enum! {
    /// Where a trigger is in its life.
    #[derive(utoipa::ToSchema)]
    pub enum TriggerStatus {
        /// Its funds are being reserved.
        Pending = "pending",
        /// Funded and armed: it fires on the first trade that crosses its stop.
        Active = "active",
        /// It fired and placed its order (`order_id`); an OCO's stop fired.
        Fired = "fired",
        /// An OCO's limit order traded: its stop is off, the order goes on.
        Traded = "traded",
        Cancelled = "cancelled",
        Expired = "expired",
        /// Its funds could not be reserved, or its stop was crossed before it was armed (`reject_reason`).
        Rejected = "rejected",
    }
}

impl TriggerStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Active)
    }
}

bourse_common::named_enum! {
    /// An end asked for a trigger not yet final: a cancel, or its expiry.
    pub enum Ending {
        Cancel = "cancel",
        Expiry = "expiry",
    }
}

impl Ending {
    /// The status a trigger ends in when its funds go back for this reason.
    pub fn status(self) -> TriggerStatus {
        match self {
            Self::Cancel => TriggerStatus::Cancelled,
            Self::Expiry => TriggerStatus::Expired,
        }
    }
}

/// What a trigger knows of its life: its status, an end asked for while
/// its funds are being reserved or while it is armed, and whether it is an
/// OCO (whose order is in the book from arming: the order's end, not the
/// trigger's, gives its funds back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerState {
    pub status: TriggerStatus,
    pub ending: Option<Ending>,
    pub oco: bool,
}

/// A message or request in a trigger's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerStep {
    /// `funds.reserved` for its order id.
    FundsReserved,
    /// `funds.rejected` for its order id.
    FundsRejected,
    /// `trigger.fired`.
    Fired,
    /// `trigger.disarmed` with its reason.
    Disarmed(bourse_common::catalog::DisarmReason),
    /// A cancel request, or its expiry seen by the sweep.
    End(Ending),
}

/// What a trigger's step sends, besides the state it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerEffect {
    /// `matching.arm-trigger`: funded, into its book.
    Arm,
    /// `matching.disarm-trigger`: out of its book (it may fire first).
    Disarm,
    /// `payment.release-funds`: never armed, or out of its book: its funds go back whole.
    Release,
}

impl TriggerState {
    /// The state a trigger moves to on `step`, and what that sends. A final
    /// trigger stays as it is; so does a step that came twice. The table:
    ///
    /// | step | pending | active |
    /// | --- | --- | --- |
    /// | funds reserved | `active`, arm; with an end asked: that end, release | - |
    /// | funds rejected | `rejected` | - |
    /// | fired | - | `fired` (whatever end was asked: the book decided first) |
    /// | disarmed (cancelled, expired) | - | `cancelled` / `expired`, release (an OCO: its order's end releases) |
    /// | disarmed (invalid) | - | `rejected`, release (an OCO: as above) |
    /// | disarmed (traded: an OCO's limit order traded) | - | `traded` |
    /// | end asked | remember it (the funds' answer decides) | remember it, disarm |
    pub fn after(self, step: TriggerStep) -> (Self, Option<TriggerEffect>) {
        use TriggerStatus::{Active, Pending};
        if self.status.is_final() {
            return (self, None);
        }
        let to = |status| Self { status, ..self };
        match (step, self.status) {
            (TriggerStep::FundsReserved, Pending) => match self.ending {
                Some(end) => (to(end.status()), Some(TriggerEffect::Release)),
                None => (to(Active), Some(TriggerEffect::Arm)),
            },
            (TriggerStep::FundsRejected, Pending) => (to(TriggerStatus::Rejected), None),
            (TriggerStep::Fired, Active) => (to(TriggerStatus::Fired), None),
            (TriggerStep::Disarmed(reason), Active) => {
                use bourse_common::catalog::DisarmReason;
                // Out of the book for the end asked here, whatever words the book used.
                let status = match (reason, self.ending) {
                    (DisarmReason::Invalid, _) => TriggerStatus::Rejected,
                    (DisarmReason::Traded, _) => TriggerStatus::Traded,
                    (_, Some(end)) => end.status(),
                    (DisarmReason::Expired, None) => TriggerStatus::Expired,
                    (DisarmReason::Cancelled, None) => TriggerStatus::Cancelled,
                };
                (to(status), (!self.oco).then_some(TriggerEffect::Release))
            }
            (TriggerStep::End(_), _) if self.ending.is_some() => (self, None),
            (TriggerStep::End(end), Pending) => (Self { ending: Some(end), ..self }, None),
            (TriggerStep::End(end), Active) => {
                (Self { ending: Some(end), ..self }, Some(TriggerEffect::Disarm))
            }
            _ => (self, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_common::catalog::DisarmReason;
    use bourse_common::reference::ReferenceData;
    use chrono::{TimeZone, Utc};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn request(side: Side, kind: TriggerKind, stop: Option<&str>, limit: Option<&str>) -> TriggerRequest {
        TriggerRequest {
            market: "ETH-USDT".into(),
            side,
            kind,
            stop_price: stop.map(|s| s.parse().unwrap()),
            limit_price: limit.map(|s| s.parse().unwrap()),
            stop_limit_price: None,
            trail_amount: None,
            trail_percent: None,
            quantity: "2".parse().unwrap(),
            time_in_force: None,
            expires_at: None,
        }
    }

    fn check(r: &TriggerRequest, last: Option<&str>) -> Result<ValidTrigger, TriggerError> {
        r.validate(ReferenceData::default().market(&r.market), last.map(d), now(), d("10"))
    }

    fn code(r: &TriggerRequest, last: Option<&str>) -> &'static str {
        check(r, last).unwrap_err().code()
    }

    #[test]
    fn a_stop_limit_sell_holds_its_quantity_and_places_a_limit_order() {
        let v = check(&request(Side::Sell, TriggerKind::StopLimit, Some("1900"), Some("1890")), Some("2000"))
            .unwrap();
        assert_eq!(v.fires_when, PriceMove::Falls);
        assert_eq!((v.order.reserve_currency.as_str(), v.order.reserve_amount.value()), ("ETH", d("2")));
        assert_eq!(v.order.terms.order_type, OrderType::Limit);
        assert_eq!(v.order.terms.price.map(Amount::value), Some(d("1890")));
    }

    #[test]
    fn a_market_buy_stop_holds_at_its_cap_rounded_up_to_the_price_scale() {
        let v = check(&request(Side::Buy, TriggerKind::Stop, Some("2100.01"), None), Some("2000")).unwrap();
        assert_eq!(v.fires_when, PriceMove::Rises);
        // 2100.01 * 1.1 = 2310.011 -> 2310.02
        assert_eq!(v.order.terms.price.map(Amount::value), Some(d("2310.02")));
        assert_eq!(v.order.reserve_amount.value(), d("4620.04"));
        assert_eq!(v.order.terms.time_in_force, TimeInForce::Ioc);
    }

    #[test]
    fn a_trailing_buy_is_capped_above_its_first_stop() {
        let mut r = request(Side::Buy, TriggerKind::TrailingStop, None, None);
        r.trail_percent = Some("5".parse().unwrap());
        let v = check(&r, Some("2000")).unwrap();
        assert_eq!(v.trail, Some(Trail::Percent(d("5"))));
        assert_eq!(v.order.terms.price.map(Amount::value), Some(d("2310")));
        assert_eq!(code(&r, None), "no_last_price");
    }

    #[test]
    fn a_stop_the_last_price_already_crossed_is_refused() {
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::Stop, Some("2000"), None), Some("2000")),
            "stop_would_fire_now"
        );
        assert_eq!(
            code(&request(Side::Buy, TriggerKind::Stop, Some("1999"), None), Some("2000")),
            "stop_would_fire_now"
        );
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::TakeProfit, Some("1999"), None), Some("2000")),
            "stop_would_fire_now"
        );
        assert!(
            check(&request(Side::Buy, TriggerKind::TakeProfit, Some("1999"), None), Some("2000")).is_ok()
        );
        // No trade yet: nothing to compare with.
        assert!(check(&request(Side::Sell, TriggerKind::Stop, Some("2000"), None), None).is_ok());
    }

    #[test]
    fn bad_requests_have_stable_codes() {
        let stop = |s| request(Side::Sell, TriggerKind::Stop, s, None);
        assert_eq!(code(&stop(None), None), "stop_price_required");
        assert_eq!(code(&stop(Some("0")), None), "amount_not_positive");
        assert_eq!(code(&stop(Some("1.001")), None), "amount_scale_exceeded");
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::StopLimit, Some("1"), None), None),
            "limit_price_required"
        );
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::Stop, Some("1"), Some("1")), None),
            "limit_price_not_allowed"
        );
        let mut trailing = request(Side::Sell, TriggerKind::TrailingStop, None, None);
        assert_eq!(code(&trailing, Some("5")), "trail_required");
        trailing.trail_percent = Some("100".parse().unwrap());
        assert_eq!(code(&trailing, Some("5")), "invalid_trail_percent");
        trailing.trail_amount = Some("1".parse().unwrap());
        assert_eq!(code(&trailing, Some("5")), "trail_required");
        trailing.stop_price = Some("1".parse().unwrap());
        assert_eq!(code(&trailing, Some("5")), "stop_price_not_allowed");
        let mut expired = stop(Some("1"));
        expired.expires_at = Some(now());
        assert_eq!(code(&expired, None), "expiry_in_the_past");
        let mut tif = stop(Some("1"));
        tif.time_in_force = Some(TimeInForce::Gtc);
        assert_eq!(code(&tif, None), "time_in_force_not_allowed");
        let mut unknown = stop(Some("1"));
        unknown.market = "DOGE-USDT".into();
        assert_eq!(code(&unknown, None), "unknown_market");
        let mut tiny = stop(Some("1"));
        tiny.quantity = "0.0000000000001".parse().unwrap();
        assert_eq!(code(&tiny, None), "amount_scale_exceeded");
    }

    #[test]
    fn an_oco_holds_once_what_its_greater_leg_needs() {
        // A buy: its limit order at 1800 below, its stop at 2100 above, a stop-limit at 2150.
        let mut buy = request(Side::Buy, TriggerKind::Oco, Some("2100"), Some("1800"));
        buy.stop_limit_price = Some("2150".parse().unwrap());
        let v = check(&buy, Some("2000")).unwrap();
        assert_eq!(v.fires_when, PriceMove::Rises);
        let leg = v.limit_leg.as_ref().unwrap();
        assert_eq!(
            (leg.terms.order_type, leg.terms.price.map(Amount::value)),
            (OrderType::Limit, Some(d("1800")))
        );
        assert_eq!(leg.terms.time_in_force, TimeInForce::Gtc);
        assert_eq!(v.order.terms.price.map(Amount::value), Some(d("2150")));
        assert_eq!(
            (v.reserve_amount().value(), v.reserve_limit().map(Amount::value)),
            (d("4300"), Some(d("2150")))
        );
        // Its stop a market buy: capped 10 % above the stop.
        buy.stop_limit_price = None;
        let v = check(&buy, Some("2000")).unwrap();
        assert_eq!(v.order.terms.order_type, OrderType::Market);
        assert_eq!(
            (v.reserve_amount().value(), v.reserve_limit().map(Amount::value)),
            (d("4620"), Some(d("2310")))
        );
        // A sell holds its quantity; with a market stop leg, no limit on what a fill may receive.
        let sell = request(Side::Sell, TriggerKind::Oco, Some("1800"), Some("2200"));
        let v = check(&sell, Some("2000")).unwrap();
        assert_eq!((v.order.reserve_currency.as_str(), v.reserve_amount().value()), ("ETH", d("2")));
        assert_eq!(v.reserve_limit(), None);
        let mut sell = sell;
        sell.stop_limit_price = Some("1790".parse().unwrap());
        assert_eq!(check(&sell, Some("2000")).unwrap().reserve_limit().map(Amount::value), Some(d("1790")));
    }

    #[test]
    fn oco_legs_must_be_consistent() {
        let sell = |stop, limit| request(Side::Sell, TriggerKind::Oco, Some(stop), Some(limit));
        assert_eq!(code(&sell("2200", "1800"), None), "oco_legs_inconsistent");
        assert_eq!(code(&sell("1800", "1800"), None), "oco_legs_inconsistent");
        assert_eq!(
            code(&request(Side::Buy, TriggerKind::Oco, Some("1800"), Some("2200")), None),
            "oco_legs_inconsistent"
        );
        assert_eq!(code(&sell("1800", "2200"), Some("1750")), "stop_would_fire_now");
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::Oco, Some("1800"), None), None),
            "limit_price_required"
        );
        assert_eq!(
            code(&request(Side::Sell, TriggerKind::Oco, None, Some("2200")), None),
            "stop_price_required"
        );
        assert_eq!(code(&sell("1800", "2200.001"), None), "amount_scale_exceeded");
        let mut stop_limit = request(Side::Sell, TriggerKind::StopLimit, Some("1800"), Some("1790"));
        stop_limit.stop_limit_price = Some("1790".parse().unwrap());
        assert_eq!(code(&stop_limit, None), "stop_limit_price_not_allowed");
        let mut market_leg_tif = sell("1800", "2200");
        market_leg_tif.time_in_force = Some(TimeInForce::Gtc);
        assert_eq!(code(&market_leg_tif, None), "time_in_force_not_allowed");
    }

    #[test]
    fn the_status_table() {
        use TriggerStatus::{Active, Cancelled, Expired, Fired, Pending, Rejected};
        let s = |status, ending| TriggerState { status, ending, oco: false };
        let pending = s(Pending, None);
        assert_eq!(pending.after(TriggerStep::FundsReserved), (s(Active, None), Some(TriggerEffect::Arm)));
        assert_eq!(pending.after(TriggerStep::FundsRejected), (s(Rejected, None), None));
        // Cancelled while its funds were being reserved: they go straight back.
        let (asked, effect) = pending.after(TriggerStep::End(Ending::Cancel));
        assert_eq!((asked, effect), (s(Pending, Some(Ending::Cancel)), None));
        assert_eq!(
            asked.after(TriggerStep::FundsReserved),
            (s(Cancelled, Some(Ending::Cancel)), Some(TriggerEffect::Release))
        );
        // Armed: out of the book first.
        let active = s(Active, None);
        let (asked, effect) = active.after(TriggerStep::End(Ending::Expiry));
        assert_eq!((asked, effect), (s(Active, Some(Ending::Expiry)), Some(TriggerEffect::Disarm)));
        assert_eq!(asked.after(TriggerStep::End(Ending::Cancel)), (asked, None), "asked once");
        assert_eq!(
            asked.after(TriggerStep::Disarmed(DisarmReason::Expired)),
            (s(Expired, Some(Ending::Expiry)), Some(TriggerEffect::Release))
        );
        // The book fired it before the cancel reached it: fired it is.
        assert_eq!(asked.after(TriggerStep::Fired).0.status, Fired);
        assert_eq!(
            active.after(TriggerStep::Disarmed(DisarmReason::Invalid)),
            (s(Rejected, None), Some(TriggerEffect::Release))
        );
        // Final, or twice: nothing.
        for end in [s(Fired, None), s(Cancelled, None), s(Rejected, None)] {
            for step in [TriggerStep::FundsReserved, TriggerStep::Fired, TriggerStep::End(Ending::Cancel)] {
                assert_eq!(end.after(step), (end, None));
            }
        }
        assert_eq!(active.after(TriggerStep::FundsReserved), (active, None));
        // An OCO: its order's end gives its funds back, not the trigger's.
        let oco = TriggerState { oco: true, ..active };
        assert_eq!(oco.after(TriggerStep::Disarmed(DisarmReason::Cancelled)).1, None);
        assert_eq!(
            oco.after(TriggerStep::Disarmed(DisarmReason::Traded)),
            (TriggerState { status: TriggerStatus::Traded, ..oco }, None)
        );
        let (asked, _) = oco.after(TriggerStep::End(Ending::Cancel));
        assert_eq!(asked.after(TriggerStep::Disarmed(DisarmReason::Traded)).0.status, TriggerStatus::Traded);
        let pending_oco = TriggerState { status: Pending, ending: Some(Ending::Cancel), oco: true };
        assert_eq!(pending_oco.after(TriggerStep::FundsReserved).1, Some(TriggerEffect::Release));
    }
}
