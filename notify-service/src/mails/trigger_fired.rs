//! `trigger.fired`: a price trigger fired on a trade and placed its order.

use bourse_common::catalog::{OrderType, TriggerFired, TriggerKind};
use minijinja::context;

use super::{Draft, Kind, Site, To, money};

pub const KIND: Kind<TriggerFired> =
    Kind { template: "trigger_fired.j2", source: include_str!("../../templates/trigger_fired.j2"), compose };

fn compose(event: TriggerFired, site: &Site) -> Draft {
    let terms = event.terms;
    let market = site.reference.market(&terms.market);
    let (base, quote) = market.map(|m| (m.base.as_str(), m.quote.as_str())).unwrap_or_default();
    let order = match (terms.order_type, terms.price) {
        (OrderType::Limit, Some(price)) => format!("limit at {}", money(price, quote)),
        (_, Some(cap)) => format!("market, at most {}", money(cap, quote)),
        (_, None) => "market".to_string(),
    };
    Draft {
        to: To::User(event.user_id),
        context: context! {
            trigger_id => event.trigger_id.to_string(),
            order_id => event.order_id.to_string(),
            kind => match event.kind {
                TriggerKind::Oco => "OCO".to_string(),
                kind => kind.as_str().replace('_', "-"),
            },
            market => terms.market,
            side => terms.side.as_str(),
            quantity => money(terms.quantity, base),
            stop => money(event.stop_price, quote),
            trade_price => money(event.trade_price, quote),
            order,
        },
    }
}

#[cfg(test)]
mod tests {
    use bourse_common::catalog::{OrderTerms, Side, TimeInForce};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn names_the_stop_the_trade_and_the_order_placed() {
        let mail = super::super::tests::render(&TriggerFired {
            trigger_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            order_id: Uuid::from_u128(7),
            kind: TriggerKind::StopLimit,
            stop_price: "1900".parse().unwrap(),
            trade_price: "1899.5".parse().unwrap(),
            fired_at: chrono::Utc::now(),
            terms: OrderTerms {
                market: "ETH-USDT".into(),
                side: Side::Sell,
                order_type: OrderType::Limit,
                price: Some("1890".parse().unwrap()),
                quantity: "2".parse().unwrap(),
                time_in_force: TimeInForce::Gtc,
            },
        });
        assert_eq!(mail.subject, "Your stop-limit sell 2 ETH on ETH-USDT fired");
        for part in ["1900 USDT", "1899.5 USDT", "limit at 1890 USDT", "00000000-0000-0000-0000-000000000007"]
        {
            assert!(mail.text.contains(part), "{part}: {}", mail.text);
        }
    }
}
