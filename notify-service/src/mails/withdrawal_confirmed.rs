//! `withdrawal.confirmed`: a withdrawal with its confirmations, debited.

use bourse_common::catalog::WithdrawalConfirmed;
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<WithdrawalConfirmed> = Kind {
    template: "withdrawal_confirmed.j2",
    source: include_str!("../../templates/withdrawal_confirmed.j2"),
    compose,
};

fn compose(event: WithdrawalConfirmed, _site: &Site) -> Draft {
    Draft {
        to: To::User(event.user_id),
        context: context! {
            amount => money(event.amount, &event.currency),
            fee => money(event.fee, &event.currency),
            address => event.address,
            tx_hash => event.tx_hash,
            block_number => event.block_number,
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn says_what_was_sent_where_with_its_fee_and_transaction() {
        let mail = super::super::tests::render(&WithdrawalConfirmed {
            withdrawal_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            currency: "ETH".into(),
            amount: "0.25".parse().unwrap(),
            fee: "0.0005".parse().unwrap(),
            address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            tx_hash: "0xabc".into(),
            block_number: 40,
        });
        assert_eq!(mail.subject, "Withdrawal confirmed: 0.25 ETH");
        for part in [
            "0.25 ETH",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "fee of 0.0005 ETH",
            "Transaction 0xabc (block 40)",
        ] {
            assert!(mail.text.contains(part), "{part}: {}", mail.text);
        }
    }
}
