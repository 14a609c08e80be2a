//! `order.rejected`: the refusal, with the reason and the amounts.

use bourse_common::catalog::{OrderRejected, OrderType, Side};
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<OrderRejected> = Kind {
    template: "order_rejected.j2",
    source: include_str!("../../templates/order_rejected.j2"),
    compose,
};

fn compose(event: OrderRejected, site: &Site) -> Draft {
    let market = site.reference.market(&event.market);
    let (base, quote) = market.map(|m| (m.base.as_str(), m.quote.as_str())).unwrap_or_default();
    let unknown = || "-".to_string();
    let side = event.side.map_or("-", Side::as_str);
    let quantity = event.quantity.map(|q| money(q, base)).unwrap_or_else(unknown);
    Draft {
        to: To::User(event.user_id),
        context: context! {
            order_id => event.order_id.to_string(),
            market => event.market,
            action => side,
            side,
            order_type => event.order_type.map_or("-", OrderType::as_str),
            quantity,
            price => event.price.map(|p| money(p, quote)).unwrap_or_else(unknown),
            required => match (event.amount, &event.currency) {
                (Some(amount), Some(currency)) => money(amount, currency),
                _ => unknown(),
            },
            reason => event.reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn says_why_with_the_amounts() {
        let mail = super::super::tests::render(&OrderRejected {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            market: "ETH-USDT".into(),
            reason: "insufficient funds: 100 available, 3000.5 needed USDT".into(),
            side: Some(Side::Buy),
            order_type: Some(OrderType::Limit),
            price: Some("2000.5".parse().unwrap()),
            quantity: Some("1.5".parse().unwrap()),
            currency: Some("USDT".into()),
            amount: Some("3000.75".parse().unwrap()),
        });
        assert_eq!(mail.subject, "Order rejected: buy 1.5 ETH on ETH-USDT");
        for line in [
            "Side       buy",
            "Type       limit",
            "Quantity   1.5 ETH",
            "Price      2000.5 USDT",
            "To reserve 3000.75 USDT",
            "Reason: insufficient funds",
        ] {
            assert!(mail.text.contains(line), "{line} in {}", mail.text);
        }
        assert!(mail.html.contains("<td>3000.75 USDT</td>"));
    }
}
