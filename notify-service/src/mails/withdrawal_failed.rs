//! `withdrawal.failed`: a withdrawal that will not happen; everything held is back.

use bourse_common::catalog::WithdrawalFailed;
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<WithdrawalFailed> = Kind {
    template: "withdrawal_failed.j2",
    source: include_str!("../../templates/withdrawal_failed.j2"),
    compose,
};

fn compose(event: WithdrawalFailed, _site: &Site) -> Draft {
    Draft {
        to: To::User(event.user_id),
        context: context! {
            amount => money(event.amount, &event.currency),
            address => event.address,
            reason => event.reason,
            tx_hash => event.tx_hash,
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn says_why_and_that_the_funds_are_back() {
        let mail = super::super::tests::render(&WithdrawalFailed {
            withdrawal_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            currency: "ETH".into(),
            amount: "0.25".parse().unwrap(),
            address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            reason: "the transaction reverted in block 7".into(),
            tx_hash: Some("0xabc".into()),
        });
        assert_eq!(mail.subject, "Withdrawal failed: 0.25 ETH");
        for part in ["the transaction reverted in block 7", "back in your account", "Transaction 0xabc"] {
            assert!(mail.text.contains(part), "{part}: {}", mail.text);
        }
    }
}
