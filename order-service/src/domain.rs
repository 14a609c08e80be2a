//! The rules of orders, pure: what a valid order is, what it reserves, and
//! which status may follow which.

use bourse_common::catalog::{OrderType, Side, TimeInForce};
use bourse_common::money::{Amount, MoneyError};
use bourse_common::reference::Market;

/// An order as a client asks for it (already typed, not yet validated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// A market id, e.g. `ETH-USDT`.
    pub market: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Required for a limit order, and for a market buy as the highest
    /// price accepted (it sizes the reservation). Decimal string.
    pub price: Option<Amount>,
    /// Decimal string, in the base currency.
    pub quantity: Amount,
    /// `gtc` (default) or `ioc`; market orders are always `ioc`.
    pub time_in_force: Option<TimeInForce>,
}

/// Why an order request is refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("no market {0}")]
    UnknownMarket(String),
    #[error("a {0} order needs a price")]
    PriceRequired(&'static str),
    #[error("a market sell takes no price")]
    PriceNotAllowed,
    #[error("price: {0}")]
    Price(MoneyError),
    #[error("quantity: {0}")]
    Quantity(MoneyError),
    #[error("quantity {quantity} is below the minimum {min} of {market}")]
    BelowMinimum { quantity: Amount, min: Amount, market: String },
    #[error("quantity {quantity} is above the maximum {max} of {market}")]
    AboveMaximum { quantity: Amount, max: Amount, market: String },
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownMarket(_) => "unknown_market",
            Self::PriceRequired(_) => "price_required",
            Self::PriceNotAllowed => "price_not_allowed",
            Self::Price(e) | Self::Quantity(e) => e.code(),
            Self::BelowMinimum { .. } => "quantity_below_minimum",
            Self::AboveMaximum { .. } => "quantity_above_maximum",
        }
    }
}

/// An order that passed every check, with what it must reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidOrder {
    pub market: String,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Amount>,
    pub quantity: Amount,
    pub time_in_force: TimeInForce,
    pub reserve_currency: String,
    pub reserve_amount: Amount,
}

impl OrderRequest {
    /// Checks the request against its market. A buy reserves price x quantity
    /// of the quote currency, a sell the quantity of the base currency.
    pub fn validate(&self, market: Option<&Market>) -> Result<ValidOrder, OrderError> {
        let market = market.ok_or_else(|| OrderError::UnknownMarket(self.market.clone()))?;
        let quantity = self.quantity.positive_in(&market.quantity_unit()).map_err(OrderError::Quantity)?;
        if quantity < market.min_quantity {
            return Err(OrderError::BelowMinimum {
                quantity,
                min: market.min_quantity,
                market: market.id.clone(),
            });
        }
        if quantity > market.max_quantity {
            return Err(OrderError::AboveMaximum {
                quantity,
                max: market.max_quantity,
                market: market.id.clone(),
            });
        }
        let price = match (self.order_type, self.side, self.price) {
            (OrderType::Limit, _, None) => return Err(OrderError::PriceRequired("limit")),
            (OrderType::Market, Side::Buy, None) => return Err(OrderError::PriceRequired("market buy")),
            (OrderType::Market, Side::Sell, Some(_)) => return Err(OrderError::PriceNotAllowed),
            (_, _, Some(p)) => Some(p.positive_in(&market.price_unit()).map_err(OrderError::Price)?),
            (_, _, None) => None,
        };
        let time_in_force = match self.order_type {
            OrderType::Market => TimeInForce::Ioc,
            OrderType::Limit => self.time_in_force.unwrap_or_default(),
        };
        let (reserve_currency, reserve_amount) = match (self.side, price) {
            (Side::Buy, Some(p)) => (market.quote.clone(), Amount::new(p.value() * quantity.value())),
            _ => (market.base.clone(), quantity),
        };
        Ok(ValidOrder {
            market: market.id.clone(),
            side: self.side,
            order_type: self.order_type,
            price,
            quantity,
            time_in_force,
            reserve_currency,
            reserve_amount,
        })
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Open,
    PartiallyFilled,
    Filled,
    CancelRequested,
    Cancelled,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Open,
        Status::PartiallyFilled,
        Status::Filled,
        Status::CancelRequested,
        Status::Cancelled,
        Status::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Open => "open",
            Status::PartiallyFilled => "partially_filled",
            Status::Filled => "filled",
            Status::CancelRequested => "cancel_requested",
            Status::Cancelled => "cancelled",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// May a user still cancel it?
    pub fn is_cancellable(self) -> bool {
        matches!(self, Status::Pending | Status::Open | Status::PartiallyFilled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_common::reference::ReferenceData;

    fn request(side: Side, order_type: OrderType, price: Option<&str>, quantity: &str) -> OrderRequest {
        OrderRequest {
            market: "ETH-USDT".into(),
            side,
            order_type,
            price: price.map(|p| p.parse().unwrap()),
            quantity: quantity.parse().unwrap(),
            time_in_force: None,
        }
    }

    fn check(r: &OrderRequest) -> Result<ValidOrder, OrderError> {
        r.validate(ReferenceData::default().market(&r.market))
    }

    #[test]
    fn a_limit_buy_reserves_price_times_quantity_of_the_quote() {
        let v = check(&request(Side::Buy, OrderType::Limit, Some("2000.50"), "1.5")).unwrap();
        assert_eq!((v.reserve_currency.as_str(), v.reserve_amount.to_string().as_str()), ("USDT", "3000.75"));
    }

    #[test]
    fn a_sell_reserves_its_quantity_of_the_base() {
        let v = check(&request(Side::Sell, OrderType::Market, None, "0.25")).unwrap();
        assert_eq!((v.reserve_currency.as_str(), v.reserve_amount.to_string().as_str()), ("ETH", "0.25"));
        assert_eq!(v.time_in_force, TimeInForce::Ioc);
    }

    #[test]
    fn bad_requests_are_refused_with_their_code() {
        let code = |r: OrderRequest| check(&r).unwrap_err().code();
        assert_eq!(code(request(Side::Buy, OrderType::Limit, None, "1")), "price_required");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("0"), "1")), "amount_not_positive");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1.001"), "1")), "amount_scale_exceeded");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "-1")), "amount_not_positive");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "0.00001")), "amount_scale_exceeded");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "0.0001")), "quantity_below_minimum");
        assert_eq!(code(request(Side::Sell, OrderType::Market, Some("1"), "1")), "price_not_allowed");
        let mut unknown = request(Side::Buy, OrderType::Limit, Some("1"), "1");
        unknown.market = "DOGE-USDT".into();
        assert_eq!(code(unknown), "unknown_market");
    }
}
