//! Reference data: the currencies and markets of the exchange, from
//! configuration. Every service that checks an amount against a scale reads
//! it from here, so the same rules hold at the gateway, in orders and in payments.

use serde::{Deserialize, Serialize};

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
}

impl Market {
    /// The scale of a price, as a pseudo-currency for [`Amount::positive_in`].
    pub fn price_unit(&self) -> Currency {
        Currency { code: self.quote.clone(), scale: self.price_scale }
    }

    /// The scale of a quantity, as a pseudo-currency for [`Amount::positive_in`].
    pub fn quantity_unit(&self) -> Currency {
        Currency { code: self.base.clone(), scale: self.quantity_scale }
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
        let currency = |code: &str, scale| Currency { code: code.into(), scale };
        let market = |base: &str, min: &str, max: &str| Market {
            id: format!("{base}-USDT"),
            base: base.into(),
            quote: "USDT".into(),
            price_scale: 2,
            quantity_scale: 4,
            min_quantity: min.parse().unwrap_or_default(),
            max_quantity: max.parse().unwrap_or_default(),
        };
        Self {
            currencies: vec![currency("BTC", 8), currency("ETH", 8), currency("USDT", 6)],
            markets: vec![market("BTC", "0.0001", "100"), market("ETH", "0.001", "10000")],
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
    fn a_market_whose_notional_overflows_the_quote_scale_is_refused() {
        let mut data = ReferenceData::default();
        data.markets[0].quantity_scale = 8;
        assert!(data.validate().is_err());
    }
}
