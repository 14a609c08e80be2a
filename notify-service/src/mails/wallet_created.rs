//! `wallet.created`: the user's deposit address on the chain.

use bourse_common::catalog::WalletCreated;
use minijinja::context;

use super::{Draft, Kind, Site, To};

pub const KIND: Kind<WalletCreated> = Kind {
    template: "wallet_created.j2",
    source: include_str!("../../templates/wallet_created.j2"),
    compose,
};

fn compose(event: WalletCreated, _site: &Site) -> Draft {
    Draft {
        to: To::User(event.user_id),
        context: context! { address => event.address, chain_id => event.chain_id },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn gives_the_address_and_the_chain() {
        let address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let mail = super::super::tests::render(&WalletCreated {
            user_id: Uuid::now_v7(),
            address: address.into(),
            chain_id: 31_337,
        });
        assert_eq!(mail.subject, "Your deposit address");
        assert!(mail.text.contains(&format!("Address  {address}")), "{}", mail.text);
        assert!(mail.text.contains("Chain    31337"), "{}", mail.text);
        assert!(mail.html.contains(&format!("<code>{address}</code>")));
    }
}
