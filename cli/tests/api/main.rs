//! The whole stack, started in-process as `bourse up` starts it, against a
//! real RabbitMQ vhost and real SQLite or PostgreSQL databases, used only
//! through HTTP as a client would; `order_tolerance` alone calls the
//! services' handlers directly, to deliver a saga's messages in every order.

#![allow(clippy::unwrap_used)] // a test that cannot go on should stop loudly

mod audit;
mod bench;
mod browser;
mod chain;
mod dead_letters;
mod explorer;
mod faults;
mod helpers;
mod metrics;
mod money;
mod notify;
mod openapi;
mod operators;
mod order_tolerance;
mod orders;
mod security_edge;
mod security_identity;
mod security_reads;
mod security_trades;
mod security_ws;
mod settlement;
mod stack;
mod traces;
mod trading;
mod triggers;
