//! One encoding for the enums that are stored and sent as words (`buy`,
//! `partially_filled`, `gtc`): [`named_enum!`] defines such an enum once,
//! with its word per variant, used alike by serde, `Display`, `FromStr` and
//! the database; [`stored_as_text!`] maps it to a TEXT column of either back
//! end (what diesel's own derives expand to). A stored word that names no variant is an error when the row is
//! read, never a silent default.
//!
//! The two are separate so that a service's pure `domain` defines its enums
//! with [`named_enum!`] and its `storage` adds the diesel mapping with
//! [`stored_as_text!`]: the domain never sees diesel.

/// A stored or received word that names no variant of the enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not a {what}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

/// Defines an enum whose variants are words: each variant's word is its
/// name in JSON, in the database and in `Display`. Generates `ALL`,
/// `as_str`, `Display`, `FromStr` and serde.
///
/// ```
/// bourse_common::named_enum! {
///     /// Buy or sell.
///     pub enum Side { Buy = "buy", Sell = "sell" }
/// }
/// assert_eq!("sell".parse::<Side>().unwrap(), Side::Sell);
/// assert_eq!(Side::Buy.to_string(), "buy");
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:tt ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant's word, as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::stored::UnknownWord;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err($crate::stored::UnknownWord { what: stringify!($name), word: word.to_string() }),
                }
            }
        }
    };
}

/// Maps a [`named_enum!`] enum to a TEXT column on SQLite and PostgreSQL,
/// in the crate that defines it (the orphan rule): values bind as their
/// word, and a word that names no variant fails the read.
#[macro_export]
macro_rules! stored_as_text {
    ($($name:ty),+ $(,)?) => {$(
        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> diesel::serialize::Result {
                out.set_value(self.as_str());
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                use std::io::Write;
                out.write_all(self.as_str().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, $crate::db::MultiBackend> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, $crate::db::MultiBackend>,
            ) -> diesel::serialize::Result {
                out.set_value((diesel::sql_types::Text, self));
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let word = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(bytes)?;
                Ok(word.parse::<$name>()?)
            }
        }

        impl<DB, ST> diesel::deserialize::Queryable<ST, DB> for $name
        where
            DB: diesel::backend::Backend,
            ST: diesel::sql_types::SingleValue,
            $name: diesel::deserialize::FromSql<ST, DB>,
        {
            type Row = Self;

            fn build(row: Self) -> diesel::deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Text> for $name {
            type Expression = diesel::internal::derives::as_expression::Bound<diesel::sql_types::Text, Self>;

            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl<'a> diesel::expression::AsExpression<diesel::sql_types::Text> for &'a $name {
            type Expression = diesel::internal::derives::as_expression::Bound<diesel::sql_types::Text, Self>;

            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Nullable<diesel::sql_types::Text>> for $name {
            type Expression =
                diesel::internal::derives::as_expression::Bound<diesel::sql_types::Nullable<diesel::sql_types::Text>, Self>;

            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl<'a> diesel::expression::AsExpression<diesel::sql_types::Nullable<diesel::sql_types::Text>>
            for &'a $name
        {
            type Expression =
                diesel::internal::derives::as_expression::Bound<diesel::sql_types::Nullable<diesel::sql_types::Text>, Self>;

            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }
    )+};
}

crate::stored_as_text!(
    crate::catalog::Side,
    crate::catalog::OrderType,
    crate::catalog::TimeInForce,
    crate::catalog::BookStatus,
    crate::catalog::Interval,
    crate::catalog::TriggerKind,
    crate::catalog::PriceMove,
    crate::catalog::DisarmReason,
    crate::auth::Role,
);

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use crate::catalog::{BookStatus, Side, TimeInForce};

    #[test]
    fn each_variant_has_one_word_for_json_display_and_parsing() {
        for tif in TimeInForce::ALL {
            let json = serde_json::to_value(tif).unwrap();
            assert_eq!(json, serde_json::Value::String(tif.to_string()));
            assert_eq!(tif.as_str().parse::<TimeInForce>().unwrap(), *tif);
        }
        assert_eq!(BookStatus::PartiallyFilled.as_str(), "partially_filled");
        let err = "sideways".parse::<Side>().unwrap_err();
        assert_eq!(err.to_string(), "`sideways` is not a Side");
    }

    diesel::table! {
        words (id) {
            id -> Integer,
            word -> Text,
        }
    }

    #[test]
    fn a_stored_word_reads_back_and_an_unknown_word_is_an_error_not_a_default() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        diesel::sql_query("CREATE TABLE words (id INTEGER PRIMARY KEY, word TEXT NOT NULL)")
            .execute(&mut conn)
            .unwrap();
        diesel::insert_into(words::table)
            .values((words::id.eq(1), words::word.eq(Side::Sell)))
            .execute(&mut conn)
            .unwrap();
        let side: Side = words::table.find(1).select(words::word).first(&mut conn).unwrap();
        assert_eq!(side, Side::Sell);
        let found: i64 =
            words::table.filter(words::word.eq(Side::Sell)).count().get_result(&mut conn).unwrap();
        assert_eq!(found, 1);
        diesel::insert_into(words::table)
            .values((words::id.eq(2), words::word.eq("sideways")))
            .execute(&mut conn)
            .unwrap();
        let bad = words::table.find(2).select(words::word).first::<Side>(&mut conn);
        assert!(bad.is_err(), "an unknown stored word must not decode");
    }
}
