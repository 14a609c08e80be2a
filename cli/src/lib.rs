//! `bourse`: the composition root and the operator's tool. It starts the whole
//! stack in-process ([`stack`]), and reads the messaging system for debugging:
//! the event log, a saga's trace, dead letters and their replay, outbox rows;
//! it grants the first administrator ([`admin`]);
//! and it runs the chaos harness ([`chaos`]) against a stack of its own.

pub mod admin;
pub mod anvil;
pub mod bench;
pub mod chaos;
pub mod client;
pub mod demo;
pub mod isolated;
pub mod mailbox;
pub mod stack;
