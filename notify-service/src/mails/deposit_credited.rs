//! `deposit.confirmed`: a deposit with its confirmations, credited.

use bourse_common::catalog::DepositConfirmed;
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<DepositConfirmed> = Kind {
    template: "deposit_credited.j2",
    source: include_str!("../../templates/deposit_credited.j2"),
    compose,
};

fn compose(event: DepositConfirmed, _site: &Site) -> Draft {
    Draft {
        to: To::User(event.user_id),
        context: context! {
            amount => money(event.amount, &event.currency),
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
    fn says_what_was_credited_from_which_transaction() {
        let mail = super::super::tests::render(&DepositConfirmed {
            deposit_id: "31337:0xabc:0".into(),
            user_id: Uuid::now_v7(),
            currency: "ETH".into(),
            amount: "1.5".parse().unwrap(),
            tx_hash: "0xabc".into(),
            block_number: 12,
        });
        assert_eq!(mail.subject, "Deposit credited: 1.5 ETH");
        assert!(mail.text.contains("Transaction 0xabc (block 12)"), "{}", mail.text);
    }
}
