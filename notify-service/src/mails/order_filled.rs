//! `funds.settled`: an order was filled or partly filled, with what was credited.

use bourse_common::catalog::{FundsSettled, Side};
use minijinja::context;

use super::{Draft, Kind, Site, To, money, past_tense};

pub const KIND: Kind<FundsSettled> =
    Kind { template: "order_filled.j2", source: include_str!("../../templates/order_filled.j2"), compose };

fn compose(event: FundsSettled, _: &Site) -> Draft {
    let (base, quote) = match event.side {
        Side::Buy => (&event.received_currency, &event.paid_currency),
        Side::Sell => (&event.paid_currency, &event.received_currency),
    };
    let remaining = event.remaining.unwrap_or_default();
    Draft {
        to: To::User(event.user_id),
        context: context! {
            order_id => event.order_id.to_string(),
            trade_id => event.trade_id.to_string(),
            market => event.market,
            side => event.side.as_str(),
            action => past_tense(event.side),
            filled => remaining.value().is_zero(),
            quantity => money(event.quantity, base),
            price => money(event.price, quote),
            paid => money(event.paid, &event.paid_currency),
            received => money(event.received, &event.received_currency),
            fee => money(event.fee, &event.received_currency),
            remaining => money(remaining, base),
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn settled(remaining: &str) -> FundsSettled {
        FundsSettled {
            trade_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            market: "ETH-USDT".into(),
            side: Side::Buy,
            maker: false,
            price: "2000".parse().unwrap(),
            quantity: "0.5".parse().unwrap(),
            paid_currency: "USDT".into(),
            paid: "1000".parse().unwrap(),
            received_currency: "ETH".into(),
            received: "0.499".parse().unwrap(),
            fee: "0.001".parse().unwrap(),
            remaining: Some(remaining.parse().unwrap()),
        }
    }

    #[test]
    fn a_fill_names_what_was_credited_in_the_currency_received() {
        let mail = super::super::tests::render(&settled("0"));
        assert_eq!(mail.subject, "Order filled: bought 0.5 ETH on ETH-USDT");
        for line in [
            "your buy order on ETH-USDT was filled.",
            "Quantity   0.5 ETH at 2000 USDT",
            "Paid       1000 USDT",
            "Credited   0.499 ETH (after a 0.001 ETH fee)",
        ] {
            assert!(mail.text.contains(line), "{line} in {}", mail.text);
        }
        assert!(!mail.text.contains("Unfilled"));
        assert!(mail.html.contains("<strong>0.499 ETH</strong>"));
    }

    #[test]
    fn a_partial_fill_says_what_is_left() {
        let mail = super::super::tests::render(&settled("1.25"));
        assert_eq!(mail.subject, "Order partially filled: bought 0.5 ETH on ETH-USDT");
        assert!(mail.text.contains("Unfilled   1.25 ETH"), "{}", mail.text);
    }
}
