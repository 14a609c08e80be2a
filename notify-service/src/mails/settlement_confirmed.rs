//! `settlement.confirmed`: the user's trades of a window are settled on chain.

use bourse_common::catalog::SettlementConfirmed;
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<SettlementConfirmed> = Kind {
    template: "settlement_confirmed.j2",
    source: include_str!("../../templates/settlement_confirmed.j2"),
    compose,
};

fn compose(event: SettlementConfirmed, _site: &Site) -> Draft {
    let legs: Vec<_> = event
        .legs
        .into_iter()
        .map(|l| {
            let sign = if l.amount.value().is_sign_positive() { "+" } else { "" };
            context! {
                amount => format!("{sign}{}", money(l.amount, &l.currency)),
                tx_hash => l.tx_hash,
                block_number => l.block_number,
            }
        })
        .collect();
    Draft { to: To::User(event.user_id), context: context! { trades => event.trades, legs => legs } }
}

#[cfg(test)]
mod tests {
    use bourse_common::catalog::SettlementLeg;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn lists_each_currency_moved_with_its_transaction() {
        let leg = |currency: &str, amount: &str, tx_hash: &str| SettlementLeg {
            currency: currency.into(),
            amount: amount.parse().unwrap(),
            tx_hash: tx_hash.into(),
            block_number: 12,
        };
        let mail = super::super::tests::render(&SettlementConfirmed {
            window_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            trades: 2,
            legs: vec![leg("ETH", "0.998", "0xaaa"), leg("USDT", "-2000", "0xbbb")],
        });
        assert_eq!(mail.subject, "Your trades are settled on chain (2 trades)");
        for part in ["+0.998 ETH: transaction 0xaaa (block 12)", "-2000 USDT: transaction 0xbbb (block 12)"] {
            assert!(mail.text.contains(part), "{part}: {}", mail.text);
        }
    }
}
