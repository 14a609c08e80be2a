//! Money: `rust_decimal::Decimal`, never a float. On the wire an amount is a JSON
//! string (`"0.015"`); a JSON number is refused because it may already have been
//! rounded by the client's float parser. In the database an amount is TEXT on
//! both back ends (exact, and one code path; arithmetic happens in Rust).
//! Every amount is checked against its currency's scale: more decimals are
//! rejected, never rounded.

use std::fmt;
use std::str::FromStr;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A currency and the number of decimals its amounts may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    /// `ETH`, `USDT`, ...
    pub code: String,
    /// Decimals allowed in an amount of this currency.
    pub scale: u32,
    /// The largest amount one request may carry (a top-up, a withdrawal; a
    /// market's price): beyond it 422 `amount_too_large`. None: no bound of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Amount>,
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("{amount} has more than {scale} decimals, the scale of {currency}")]
    TooManyDecimals { amount: Decimal, currency: String, scale: u32 },
    #[error("amount must be greater than zero, got {0}")]
    NotPositive(Decimal),
    #[error("{amount} is above the maximum {max} of {currency}")]
    TooLarge { amount: Decimal, max: Decimal, currency: String },
}

impl MoneyError {
    /// The stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotANumber(_) => "invalid_amount",
            Self::TooManyDecimals { .. } => "amount_scale_exceeded",
            Self::NotPositive(_) => "amount_not_positive",
            Self::TooLarge { .. } => "amount_too_large",
        }
    }
}

/// An exact decimal amount. Its scale is not tied to a currency until
/// [`Amount::check_scale`] or [`Amount::positive_in`] is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    pub fn new(value: Decimal) -> Self {
        Self(value)
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// Refuses an amount with more decimals than `currency` allows
    /// (trailing zeros do not count: `1.50` fits a scale of 1).
    pub fn check_scale(self, currency: &Currency) -> Result<Self, MoneyError> {
        if self.0.normalize().scale() > currency.scale {
            return Err(MoneyError::TooManyDecimals {
                amount: self.0,
                currency: currency.code.clone(),
                scale: currency.scale,
            });
        }
        Ok(self)
    }

    /// A strictly positive amount within the currency's scale and maximum:
    /// what a quantity, a price or a top-up must be.
    pub fn positive_in(self, currency: &Currency) -> Result<Self, MoneyError> {
        if self.0 <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(self.0));
        }
        if let Some(max) = currency.max
            && self > max
        {
            return Err(MoneyError::TooLarge { amount: self.0, max: max.0, currency: currency.code.clone() });
        }
        self.check_scale(currency)
    }
}

impl From<Decimal> for Amount {
    fn from(value: Decimal) -> Self {
        Self(value)
    }
}

impl FromStr for Amount {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `from_str_exact` refuses what it would have to round.
        Decimal::from_str_exact(s.trim()).map(Self).map_err(|_| MoneyError::NotANumber(s.to_string()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.normalize().fmt(f)
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, rhs: Amount) -> Amount {
        Amount(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;
    fn sub(self, rhs: Amount) -> Amount {
        Amount(self.0 - rhs.0)
    }
}

impl std::ops::Neg for Amount {
    type Output = Amount;
    fn neg(self) -> Amount {
        Amount(-self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only strings: a JSON number may already be a rounded float.
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An exact decimal amount, as a string."))
            .examples([serde_json::json!("0.015")])
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

impl ToSql<Text, diesel::sqlite::Sqlite> for Amount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::sqlite::Sqlite>) -> serialize::Result {
        out.set_value(self.to_string());
        Ok(serialize::IsNull::No)
    }
}

impl ToSql<Text, diesel::pg::Pg> for Amount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        use std::io::Write;
        write!(out, "{self}")?;
        Ok(serialize::IsNull::No)
    }
}

impl ToSql<Text, crate::db::MultiBackend> for Amount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, crate::db::MultiBackend>) -> serialize::Result {
        out.set_value((Text, self));
        Ok(serialize::IsNull::No)
    }
}

impl<DB> FromSql<Text, DB> for Amount
where
    DB: Backend,
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, DB>>::from_sql(bytes)?;
        Ok(text.parse::<Amount>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth() -> Currency {
        Currency { code: "ETH".into(), scale: 8, max: None }
    }

    fn amount(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn scale_is_checked_never_rounded() {
        assert_eq!(amount("0.00000001").positive_in(&eth()), Ok(amount("0.00000001")));
        assert_eq!(amount("1.500000000").positive_in(&eth()), Ok(amount("1.5")));
        let err = amount("0.000000001").positive_in(&eth()).unwrap_err();
        assert_eq!(err.code(), "amount_scale_exceeded");
        assert_eq!(amount("0").positive_in(&eth()).unwrap_err().code(), "amount_not_positive");
        assert_eq!(amount("-1").positive_in(&eth()).unwrap_err().code(), "amount_not_positive");
    }

    #[test]
    fn wire_format_is_a_string_and_numbers_are_refused() {
        let a: Amount = serde_json::from_str("\"0.015\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"0.015\"");
        assert!(serde_json::from_str::<Amount>("0.015").is_err());
        assert!(serde_json::from_str::<Amount>("\"1e3\"").is_err());
        assert!(serde_json::from_str::<Amount>("\"abc\"").is_err());
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(amount("0.1") + amount("0.2"), amount("0.3"));
        assert_eq!((amount("1") - amount("0.999")).to_string(), "0.001");
    }
}
