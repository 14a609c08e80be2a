//! Reference data: the currencies and markets of the exchange, from
//! configuration. Every service that checks an amount against a scale reads
//! it from here, so the same rules hold at the gateway, in orders and in payments.

use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use crate::money::{Amount, Currency};

/// A market of two currencies: orders buy or sell `base` for `quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Market {
    /// `ETH-USDT`.
    pub id: String,
    /// The currency bought or sold (`ETH`).
    pub base: String,
    /// The currency prices are quoted in (`USDT`).
    pub quote: String,
    /// Decimals allowed in a price.
    pub price_scale: u32,
    /// Decimals allowed in a quantity.
    pub quantity_scale: u32,
    /// The smallest quantity of one order.
    pub min_quantity: Amount,
    /// The largest quantity of one order.
    pub max_quantity: Amount,
    /// The highest price of one order (a market buy's cap too): beyond it 422
    /// `price_above_maximum`. At most [`MAX_PRICE`], so that the book keys
    /// every price exactly.
    #[serde(default = "default_max_price")]
    pub max_price: Amount,
}

/// The highest price any market may allow. The matching engine keys prices
/// as integers of 10^-12 units in a Decimal's 96-bit mantissa, exact below
/// about 7.9e16; every price the markets accept stays well below it.
pub const MAX_PRICE: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0); // 10^15

fn default_max_price() -> Amount {
    Amount::new(Decimal::from(1_000_000_000u64))
}

impl Market {
    /// The scale of a price, as a pseudo-currency for [`Amount::positive_in`].
    pub fn price_unit(&self) -> Currency {
        Currency { code: self.quote.clone(), scale: self.price_scale, max: Some(self.max_price) }
    }

    /// The scale of a quantity, as a pseudo-currency for [`Amount::positive_in`].
    pub fn quantity_unit(&self) -> Currency {
        Currency { code: self.base.clone(), scale: self.quantity_scale, max: None }
    }
}

/// The currencies and markets the exchange trades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceData {
    pub currencies: Vec<Currency>,
    pub markets: Vec<Market>,
}

impl Default for ReferenceData {
    fn default() -> Self {
        let currency =
            |code: &str, scale, max: &str| Currency { code: code.into(), scale, max: max.parse().ok() };
        let market = |base: &str, min: &str, max: &str, max_price: &str| Market {
            id: format!("{base}-USDT"),
            base: base.into(),
            quote: "USDT".into(),
            price_scale: 2,
            quantity_scale: 4,
            min_quantity: min.parse().unwrap_or_default(),
            max_quantity: max.parse().unwrap_or_default(),
            max_price: max_price.parse().unwrap_or_else(|_| default_max_price()),
        };
        Self {
            currencies: vec![
                currency("BTC", 8, "1000"),
                currency("ETH", 8, "100000"),
                currency("USDT", 6, "1000000000"),
            ],
            markets: vec![
                market("BTC", "0.0001", "100", "10000000"),
                market("ETH", "0.001", "10000", "1000000"),
            ],
        }
    }
}

/// A configuration whose markets do not fit its currencies.
#[derive(Debug, thiserror::Error)]
#[error("reference data: {0}")]
pub struct InvalidReferenceData(String);

impl ReferenceData {
    pub fn currency(&self, code: &str) -> Option<&Currency> {
        self.currencies.iter().find(|c| c.code == code)
    }

    pub fn market(&self, id: &str) -> Option<&Market> {
        self.markets.iter().find(|m| m.id == id)
    }

    /// Every market trades known currencies, and a price times a quantity
    /// fits the quote currency's scale (so a reservation is always exact).
    pub fn validate(&self) -> Result<(), InvalidReferenceData> {
        for m in &self.markets {
            let (Some(base), Some(quote)) = (self.currency(&m.base), self.currency(&m.quote)) else {
                return Err(InvalidReferenceData(format!("market {} trades an unknown currency", m.id)));
            };
            if m.quantity_scale > base.scale || m.price_scale + m.quantity_scale > quote.scale {
                return Err(InvalidReferenceData(format!(
                    "market {}: quantity or price x quantity has more decimals than its currencies allow",
                    m.id
                )));
            }
            // The matching engine orders prices exactly up to 12 decimals.
            if m.price_scale > 12 {
                return Err(InvalidReferenceData(format!("market {}: a price scale above 12", m.id)));
            }
            if m.max_price.value() <= Decimal::ZERO || m.max_price.value() > MAX_PRICE {
                return Err(InvalidReferenceData(format!(
                    "market {}: max_price must be positive and at most {MAX_PRICE}",
                    m.id
                )));
            }
            if m.max_price.value().checked_mul(m.max_quantity.value()).is_none() {
                return Err(InvalidReferenceData(format!(
                    "market {}: max_price x max_quantity overflows",
                    m.id
                )));
            }
            if m.min_quantity > m.max_quantity || m.min_quantity.value().is_sign_negative() {
                return Err(InvalidReferenceData(format!("market {}: bad quantity limits", m.id)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        let data = ReferenceData::default();
        data.validate().unwrap();
        assert_eq!(data.market("ETH-USDT").map(|m| m.quote.as_str()), Some("USDT"));
        assert!(data.market("DOGE-USDT").is_none());
    }

    #[test]
    fn prices_are_bounded_below_what_the_book_keys_exactly() {
        assert_eq!(MAX_PRICE, Decimal::from(1_000_000_000_000_000u64));
        let mut data = ReferenceData::default();
        data.markets[0].max_price = Amount::new(MAX_PRICE * Decimal::TEN);
        assert!(data.validate().is_err());
        let market = ReferenceData::default().markets[1].clone();
        let huge: Amount = "79228162514264337593543950335".parse().unwrap();
        assert_eq!(huge.positive_in(&market.price_unit()).unwrap_err().code(), "amount_too_large");
        assert!(market.max_price.positive_in(&market.price_unit()).is_ok());
    }

    #[test]
    fn a_market_whose_notional_overflows_the_quote_scale_is_refused() {
        let mut data = ReferenceData::default();
        data.markets[0].quantity_scale = 8;
        assert!(data.validate().is_err());
    }
}
