//! The one table of Bourse's services: name, default port, environment
//! prefix, and the public routes each owns behind the gateway with who may
//! call them. The gateway's routing, upstreams, readiness probes and Swagger
//! list, and `bourse up`, all read it. A new service is its crate, one row
//! here (and in [`BEHIND_GATEWAY`]) and one line in the CLI's stack.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A user with a valid token.
    User,
    /// An administrator.
    Admin,
}

/// How a route's path is matched against a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// The path itself only.
    Exact,
    /// The path and everything below it (`/api/orders`, `/api/orders/..`).
    Under,
    /// Segment by segment, `*` standing for any one segment (`/api/markets/*/book`).
    Pattern,
}

/// A public route (or family of routes) a service owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub matching: PathMatch,
    pub access: Access,
}

impl Route {
    pub const fn exact(path: &'static str, access: Access) -> Self {
        Self { path, matching: PathMatch::Exact, access }
    }

    pub const fn under(path: &'static str, access: Access) -> Self {
        Self { path, matching: PathMatch::Under, access }
    }

    pub const fn pattern(path: &'static str, access: Access) -> Self {
        Self { path, matching: PathMatch::Pattern, access }
    }

    /// How `path` (which it matches) is named in metrics: the route, never
    /// the ids in the path (`/api/orders/{rest}` for `/api/orders/42/cancel`).
    pub fn label(&self, path: &str) -> String {
        match self.matching {
            PathMatch::Under if path != self.path => format!("{}/{{rest}}", self.path),
            _ => self.path.to_string(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self.matching {
            PathMatch::Exact => path == self.path,
            PathMatch::Under => {
                path.strip_prefix(self.path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Pattern => {
                let (mut want, mut got) = (self.path.split('/'), path.split('/'));
                loop {
                    match (want.next(), got.next()) {
                        (None, None) => return true,
                        (Some("*"), Some(segment)) if !segment.is_empty() => {}
                        (Some(w), Some(g)) if w == g => {}
                        _ => return false,
                    }
                }
            }
        }
    }
}

/// A row of the service table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Also the producer of its messages and the prefix of its queues.
    pub name: &'static str,
    pub default_port: u16,
    /// `<PREFIX>__DATABASE__URL` and the like override its configuration.
    pub env_prefix: &'static str,
    /// The public routes it owns behind the gateway.
    pub routes: &'static [Route],
    /// Where the gateway serves this service's OpenAPI document, for its Swagger UI.
    pub api_doc: &'static str,
    /// The queues it consumes (each with its `.dlq`), for the operators' dead-letter routes.
    pub queues: &'static [&'static str],
    /// When it has a queue per market, their prefix (`<prefix>.<market>`).
    pub market_queues: Option<&'static str>,
}

impl ServiceInfo {
    /// Where it answers on one machine with its default port.
    pub fn default_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.default_port)
    }
}

use Access::{Admin, Public, User};

pub const GATEWAY: ServiceInfo = ServiceInfo {
    name: "gateway",
    default_port: 8080,
    env_prefix: "GATEWAY",
    routes: &[],
    api_doc: "/api-docs/openapi.json",
    queues: &[],
    market_queues: None,
};

pub const ORDER: ServiceInfo = ServiceInfo {
    name: "order-service",
    default_port: 8081,
    env_prefix: "ORDER",
    routes: &[
        Route::exact("/api/currencies", Public),
        Route::exact("/api/markets", Public),
        Route::under("/api/orders", User),
        Route::under("/api/triggers", User),
        Route::under("/api/admin/orders", Admin),
    ],
    api_doc: "/api-docs/order-service/openapi.json",
    queues: &["order-service.saga"],
    market_queues: None,
};

pub const PAYMENT: ServiceInfo = ServiceInfo {
    name: "payment-service",
    default_port: 8082,
    env_prefix: "PAYMENT",
    routes: &[
        Route::under("/api/users/me/accounts", User),
        Route::under("/api/history/finance", User),
        Route::under("/api/admin/payments", Admin),
        Route::under("/api/admin/audit", Admin),
    ],
    api_doc: "/api-docs/payment-service/openapi.json",
    queues: &[
        "payment-service.users",
        "payment-service.commands",
        "payment-service.chain",
        "payment-service.matching",
    ],
    market_queues: None,
};

pub const MATCHING: ServiceInfo = ServiceInfo {
    name: "matching-service",
    default_port: 8083,
    env_prefix: "MATCHING",
    routes: &[
        Route::pattern("/api/markets/*/book", Public),
        Route::under("/api/history/trades", Public),
        Route::under("/api/history/candles", Public),
    ],
    api_doc: "/api-docs/matching-service/openapi.json",
    queues: &[],
    market_queues: Some(ORDERS_QUEUES),
};

const ORDERS_QUEUES: &str = "matching-service.orders";

/// matching-service's queue of a market's commands: one active consumer, so
/// that they apply in the order they were sent.
pub fn orders_queue(market: &str) -> String {
    market_queue(ORDERS_QUEUES, market)
}

fn market_queue(prefix: &str, market: &str) -> String {
    format!("{prefix}.{market}")
}

pub const CHAIN: ServiceInfo = ServiceInfo {
    name: "chain-service",
    default_port: 8084,
    env_prefix: "CHAIN",
    routes: &[
        Route::under("/api/users/me/wallets", User),
        Route::under("/api/users/me/deposits", User),
        Route::under("/api/withdrawals", User),
        Route::under("/api/admin/chain", Admin),
    ],
    api_doc: "/api-docs/chain-service/openapi.json",
    queues: &["chain-service.users", "chain-service.payments", "chain-service.settlements"],
    market_queues: None,
};

pub const NOTIFY: ServiceInfo = ServiceInfo {
    name: "notify-service",
    default_port: 8085,
    env_prefix: "NOTIFY",
    routes: &[Route::under("/api/admin/notifications", Admin)],
    api_doc: "/api-docs/notify-service/openapi.json",
    queues: &["notify-service.users", "notify-service.mails"],
    market_queues: None,
};

/// The services behind the gateway, in the order of its Swagger list.
pub const BEHIND_GATEWAY: [&ServiceInfo; 5] = [&ORDER, &PAYMENT, &MATCHING, &CHAIN, &NOTIFY];

/// Every consumer queue of a stack trading `markets`, with the service that consumes it.
pub fn queues<'a>(markets: impl IntoIterator<Item = &'a str> + Clone) -> Vec<(&'static ServiceInfo, String)> {
    BEHIND_GATEWAY
        .into_iter()
        .flat_map(|s| {
            let fixed = s.queues.iter().map(|q| q.to_string());
            let per_market = s
                .market_queues
                .into_iter()
                .flat_map(|prefix| markets.clone().into_iter().map(move |m| market_queue(prefix, m)));
            fixed.chain(per_market).map(move |q| (s, q))
        })
        .collect()
}

/// A service behind the gateway by name.
pub fn find(name: &str) -> Option<&'static ServiceInfo> {
    BEHIND_GATEWAY.into_iter().find(|s| s.name == name)
}

/// The service that owns `path`, and its route. `None`: no such route.
pub fn route(path: &str) -> Option<(&'static ServiceInfo, &'static Route)> {
    BEHIND_GATEWAY
        .into_iter()
        .find_map(|service| service.routes.iter().find(|r| r.matches(path)).map(|r| (service, r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(path: &str) -> Option<(&'static str, Access)> {
        route(path).map(|(s, r)| (s.name, r.access))
    }

    #[test]
    fn every_public_route_has_one_owner() {
        assert_eq!(owner("/api/orders"), Some(("order-service", User)));
        assert_eq!(owner("/api/orders/123"), Some(("order-service", User)));
        assert_eq!(owner("/api/markets"), Some(("order-service", Public)));
        assert_eq!(owner("/api/markets/ETH-USDT/book"), Some(("matching-service", Public)));
        assert_eq!(owner("/api/markets//book"), None);
        assert_eq!(owner("/api/markets/ETH-USDT/book/x"), None);
        assert_eq!(owner("/api/users/me/accounts/USDT/top-up"), Some(("payment-service", User)));
        assert_eq!(owner("/api/admin/payments/audit"), Some(("payment-service", Admin)));
        assert_eq!(owner("/api/admin/notifications"), Some(("notify-service", Admin)));
        assert_eq!(owner("/api/users/me/wallets"), Some(("chain-service", User)));
        assert_eq!(owner("/api/ordersx"), None);
        assert_eq!(owner("/api/nothing"), None);
    }

    #[test]
    fn matching_service_consumes_a_queue_for_each_market_it_is_given() {
        let queues = queues(["ETH-USDT", "SOL-USDT"]);
        let matching: Vec<&str> =
            queues.iter().filter(|(s, _)| s.name == MATCHING.name).map(|(_, q)| q.as_str()).collect();
        assert_eq!(matching, ["matching-service.orders.ETH-USDT", "matching-service.orders.SOL-USDT"]);
        assert!(queues.iter().any(|(s, q)| s.name == ORDER.name && q == "order-service.saga"));
        assert_eq!(queues.len(), 1 + 4 + 2 + 3 + 2);
    }

    #[test]
    fn no_two_rows_claim_a_route_and_names_ports_and_prefixes_are_unique() {
        let all: Vec<&ServiceInfo> = std::iter::once(&GATEWAY).chain(BEHIND_GATEWAY).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.default_port, b.default_port);
                assert_ne!(a.env_prefix, b.env_prefix);
            }
        }
        for service in BEHIND_GATEWAY {
            for r in service.routes {
                let sample = r.path.replace('*', "x");
                let owners: Vec<&str> = BEHIND_GATEWAY
                    .into_iter()
                    .filter(|s| s.routes.iter().any(|o| o.matches(&sample)))
                    .map(|s| s.name)
                    .collect();
                assert_eq!(owners, [service.name], "{sample}");
            }
        }
    }
}
