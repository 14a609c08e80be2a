//! What a service needs to take part in messaging, shared by its relay, its
//! consumers and its routes: the [`Bus`]; and [`Crashed`], how a component
//! stopped by an injected fault ends.

use std::sync::Arc;

use crate::config::MessagingConfig;
use crate::db::Db;
use crate::faults::Faults;
use crate::metrics::Metrics;

/// A service's database, broker and messaging settings, for its relay, consumers and routes.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The service name, written as `producer` into every envelope.
    pub producer: String,
    pub db: Db,
    pub amqp_url: String,
    pub config: MessagingConfig,
    pub faults: Arc<Faults>,
    pub metrics: Arc<Metrics>,
}

/// Returned when an injected crash stopped a component.
#[derive(Debug, thiserror::Error)]
#[error("crashed (fault injection)")]
pub struct Crashed;
