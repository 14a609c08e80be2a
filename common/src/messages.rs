//! The message catalog contract. Every message type is a payload struct that
//! implements [`Message`]: its `type` name, its version and whether it is an
//! event (published on `bourse.events`, many may listen) or a command (sent on
//! `bourse.commands` to the one service that owns it). The routing key of a
//! message is its type name, and `<type>.<shard>` for a command whose owner
//! is sharded (matching-service, by market: [`Message::shard`]).

use serde::{Serialize, de::DeserializeOwned};

use crate::topology;

/// Event or command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Command,
    /// Market data (quotes, trades, book changes) on the transient `bourse.market`:
    /// recomputable, not kept in the event log.
    Market,
}

impl Kind {
    pub fn exchange(self) -> &'static str {
        match self {
            Kind::Event => topology::EVENTS,
            Kind::Command => topology::COMMANDS,
            Kind::Market => topology::MARKET,
        }
    }
}

/// A message payload of the catalog.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The `type` of the envelope and the routing key, e.g. `funds.reserved`.
    const TYPE: &'static str;
    /// Bumped when the payload changes incompatibly.
    const VERSION: u32 = 1;
    const KIND: Kind;

    /// The shard of its owner a command goes to, for an owner sharded by it
    /// (matching-service: the market): each shard's queue is bound to the
    /// routing keys of its own shards only.
    fn shard(&self) -> Option<&str> {
        None
    }

    /// `TYPE`, or `TYPE.<shard>` for a sharded command.
    fn routing_key(&self) -> String {
        match self.shard() {
            Some(shard) => format!("{}.{shard}", Self::TYPE),
            None => Self::TYPE.to_string(),
        }
    }
}
